// The provider simulator: one call engine with a YCloud face and a Meta face (src/sandbox/simulator/).
export * from './simulator/types';
export { DEFAULT_LINE, newWacid, ProviderSim, ProviderSimOptions, SimLine } from './simulator/engine';
