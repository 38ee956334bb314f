declare module 'rtpengine-client' {
  import { EventEmitter } from 'node:events';

  export type NgParams = Record<string, unknown>;
  export type NgResponse = Record<string, unknown> & { result?: string; 'error-reason'?: string; sdp?: string };

  export class Client extends EventEmitter {
    constructor(opts: { localPort?: number; localAddress?: string; timeout?: number; rejectOnError?: boolean });
    offer(port: number, host: string, params: NgParams): Promise<NgResponse>;
    answer(port: number, host: string, params: NgParams): Promise<NgResponse>;
    delete(port: number, host: string, params: NgParams): Promise<NgResponse>;
    query(port: number, host: string, params: NgParams): Promise<NgResponse>;
    ping(port: number, host: string): Promise<NgResponse>;
    /** The call-ids rtpengine holds (`limit`: at most this many). */
    list(port: number, host: string, params: NgParams): Promise<NgResponse>;
    /** Totals, and (10.5) `statistics.interfaces`: each logical interface's name, address and port range. */
    statistics(port: number, host: string, params: NgParams): Promise<NgResponse>;
    blockMedia(port: number, host: string, params: NgParams): Promise<NgResponse>;
    unblockMedia(port: number, host: string, params: NgParams): Promise<NgResponse>;
    playMedia(port: number, host: string, params: NgParams): Promise<NgResponse>;
    stopMedia(port: number, host: string, params: NgParams): Promise<NgResponse>;
    blockDTMF(port: number, host: string, params: NgParams): Promise<NgResponse>;
    playDTMF(port: number, host: string, params: NgParams): Promise<NgResponse>;
    startRecording(port: number, host: string, params: NgParams): Promise<NgResponse>;
    stopRecording(port: number, host: string, params: NgParams): Promise<NgResponse>;
    close(): void;
  }
}
