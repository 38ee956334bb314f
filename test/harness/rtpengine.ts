export * from '../../src/sandbox/local-rtpengine';
