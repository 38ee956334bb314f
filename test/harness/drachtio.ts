export * from '../../src/sandbox/local-drachtio';
