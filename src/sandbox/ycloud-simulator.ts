import { ProviderSim } from './simulator/engine';

// The provider simulator: one call engine, a YCloud face and a Meta face (src/sandbox/simulator/).
export * from './simulator/types';
export { DEFAULT_LINE, newWacid, ProviderSim, ProviderSimOptions, SimLine } from './simulator/engine';

/** The simulator with YCloud's face, as the YCloud tests and the sandbox have always made it. */
export class YCloudSim extends ProviderSim {
  constructor(apiKey: string, secret: string) {
    super({ face: 'ycloud', apiKey, secret });
  }
}
