// Child processes and free ports: shared with the sandbox, which starts its own rtpengine and drachtio-server.
export * from '../../src/sandbox/processes';
