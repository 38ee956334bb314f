import { Client, NgParams, NgResponse } from 'rtpengine-client';

export class MediaError extends Error {
  constructor(message: string, readonly command: string) {
    super(message);
    this.name = 'MediaError';
  }
}

type NgCommand = 'offer' | 'answer' | 'query' | 'delete' | 'blockMedia' | 'unblockMedia' | 'playMedia' | 'stopMedia' | 'blockDTMF' | 'playDTMF' | 'ping';

export interface NgAddress { host: string; port: number }

/**
 * A typed, fail-loud front to rtpengine's ng protocol: every command has a timeout, an error result
 * rejects, and calls are spread over the configured rtpengines (one is pinned per call).
 */
export class RtpEngine {
  private readonly client: Client;
  private next = 0;

  constructor(private readonly addresses: NgAddress[], timeoutMs: number) {
    if (addresses.length === 0) throw new Error('no rtpengine configured');
    this.client = new Client({ timeout: timeoutMs, localAddress: localAddressFor(addresses[0]!.host) });
    this.client.on('error', () => { /* per-command errors reject their promise */ });
  }

  /** Picks the rtpengine for a new call (round robin). */
  pick(): NgAddress {
    const a = this.addresses[this.next % this.addresses.length]!;
    this.next++;
    return a;
  }

  offer(at: NgAddress, params: NgParams): Promise<NgResponse> {
    return this.run('offer', at, params);
  }
  answer(at: NgAddress, params: NgParams): Promise<NgResponse> {
    return this.run('answer', at, params);
  }
  /** The call's media statistics (per tag, per stream, totals). */
  query(at: NgAddress, params: NgParams): Promise<NgResponse> {
    return this.run('query', at, params);
  }
  delete(at: NgAddress, params: NgParams): Promise<NgResponse> {
    return this.run('delete', at, params);
  }
  blockMedia(at: NgAddress, params: NgParams): Promise<NgResponse> {
    return this.run('blockMedia', at, params);
  }
  unblockMedia(at: NgAddress, params: NgParams): Promise<NgResponse> {
    return this.run('unblockMedia', at, params);
  }
  /** Plays a media file to the party named by `from-tag` (it hears it). */
  playMedia(at: NgAddress, params: NgParams): Promise<NgResponse> {
    return this.run('playMedia', at, params);
  }
  stopMedia(at: NgAddress, params: NgParams): Promise<NgResponse> {
    return this.run('stopMedia', at, params);
  }
  blockDTMF(at: NgAddress, params: NgParams): Promise<NgResponse> {
    return this.run('blockDTMF', at, params);
  }
  /** Injects a digit as if the party named by `from-tag` had sent it. */
  playDTMF(at: NgAddress, params: NgParams): Promise<NgResponse> {
    return this.run('playDTMF', at, params);
  }
  ping(at: NgAddress): Promise<NgResponse> {
    return this.run('ping', at, {});
  }

  close(): void {
    this.client.close();
  }

  private async run(cmd: NgCommand, at: NgAddress, params: NgParams): Promise<NgResponse> {
    let res: NgResponse;
    try {
      res = cmd === 'ping' ? await this.client.ping(at.port, at.host) : await this.client[cmd](at.port, at.host, params);
    } catch (err) {
      throw new MediaError(`rtpengine ${cmd} at ${at.host}:${at.port}: ${String((err as Error)?.message ?? err)}`, cmd);
    }
    if (res.result === 'error') {
      throw new MediaError(`rtpengine ${cmd} refused: ${res['error-reason'] ?? 'unknown reason'}`, cmd);
    }
    return res;
  }
}

function localAddressFor(host: string): string | undefined {
  return host === '127.0.0.1' || host === 'localhost' ? '127.0.0.1' : undefined;
}
