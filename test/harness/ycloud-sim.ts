// The simulator is shipped with the bridge (the sandbox runs it too): tests and sandbox share one implementation.
export * from '../../src/sandbox/ycloud-simulator';
