// The simulator is shipped with the bridge (the sandbox runs it too): tests and sandbox share one implementation.
import { ProviderSim } from '../../src/sandbox/ycloud-simulator';

export * from '../../src/sandbox/ycloud-simulator';

/** The simulator with YCloud's face, as the YCloud tests have always made it. */
export class YCloudSim extends ProviderSim {
  constructor(apiKey: string, secret: string) {
    super({ face: 'ycloud', apiKey, secret });
  }
}
