import { performance } from 'node:perf_hooks';
import { Client, NgParams, NgResponse } from 'rtpengine-client';
import { Logger } from '../log';
import { Metrics, RtpengineResult } from '../metrics/metrics';
import { Periodic } from '../util/periodic';
import { TypedEmitter } from '../util/typed-emitter';

export class MediaError extends Error {
  constructor(message: string, readonly command: string) {
    super(message);
    this.name = 'MediaError';
  }
}

type NgCommand = 'offer' | 'answer' | 'query' | 'delete' | 'blockMedia' | 'unblockMedia' | 'playMedia' | 'stopMedia' | 'blockDTMF' | 'playDTMF' | 'startRecording' | 'stopRecording' | 'ping';

export interface NgAddress { host: string; port: number }

/** An rtpengine's `host:port`, as RTPENGINE_NG lists it (health keys, calls.recovery). */
export const ngAddressText = (a: NgAddress): string => `${a.host}:${a.port}`;

/**
 * A typed, fail-loud front to rtpengine's ng protocol: every command has a timeout, an error result
 * rejects, and calls are spread over the configured rtpengines (one is pinned per call). Each
 * rtpengine is pinged on an interval; one that does not answer gets no new calls until it does.
 */
export interface RtpEngineEvents {
  health: [address: string, alive: boolean];
  /** rtpengine wrote an SDP for the side behind interface `to` (the second name of the `direction`). */
  sdp: [callId: string, to: string, sdp: string];
}

export class RtpEngine extends TypedEmitter<RtpEngineEvents> {
  private readonly client: Client;
  private next = 0;
  /** Answered its last ping (true until the first ping says otherwise). */
  private readonly alive = new Map<string, boolean>();
  private pinger: Periodic | null = null;

  constructor(private readonly addresses: NgAddress[], timeoutMs: number, private readonly log?: Logger, private readonly metrics?: Metrics) {
    super();
    if (addresses.length === 0) throw new Error('no rtpengine configured');
    this.client = new Client({ timeout: timeoutMs, localAddress: localAddressFor(addresses[0]!.host) });
    this.client.on('error', () => { /* per-command errors reject their promise */ });
    for (const a of addresses) this.alive.set(ngAddressText(a), true);
  }

  /** Picks the rtpengine for a new call: round robin over those answering pings. */
  pick(): NgAddress {
    for (let i = 0; i < this.addresses.length; i++) {
      const a = this.addresses[this.next % this.addresses.length]!;
      this.next++;
      if (this.alive.get(ngAddressText(a))) return a;
    }
    throw new MediaError(`no rtpengine is answering (${this.addresses.map(ngAddressText).join(', ')})`, 'offer');
  }

  /** Each rtpengine and whether it answered its last ping. */
  health(): Record<string, boolean> {
    return Object.fromEntries(this.alive);
  }

  /** Pings every rtpengine now and then every `intervalMs`. */
  startPinging(intervalMs: number): Promise<void> {
    this.pinger ??= new Periodic(() => this.pingAll(), intervalMs);
    return this.pinger.start();
  }

  /** One round of pings; a change of state is logged and emitted. */
  async pingAll(): Promise<void> {
    await Promise.all(this.addresses.map(async (a) => {
      const ok = await this.ping(a).then(() => true, () => false);
      const k = ngAddressText(a);
      if (this.alive.get(k) === ok) return;
      this.alive.set(k, ok);
      if (ok) this.log?.info({ rtpengine: k }, 'rtpengine answers again: it takes new calls');
      else this.log?.error({ rtpengine: k }, 'rtpengine does not answer ng pings: no new calls go to it');
      this.emit('health', k, ok);
    }));
  }

  offer(at: NgAddress, params: NgParams): Promise<NgResponse> {
    return this.run('offer', at, params).then((r) => this.wrote(params, r));
  }
  answer(at: NgAddress, params: NgParams): Promise<NgResponse> {
    return this.run('answer', at, params).then((r) => this.wrote(params, r));
  }

  private wrote(params: NgParams, res: NgResponse): NgResponse {
    const to = Array.isArray(params.direction) ? params.direction[1] : undefined;
    if (typeof to === 'string' && typeof res.sdp === 'string' && typeof params['call-id'] === 'string') this.emit('sdp', params['call-id'], to, res.sdp);
    return res;
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
  /** Records the call (rtpengine's --recording-dir and --recording-method decide where and how). */
  startRecording(at: NgAddress, params: NgParams): Promise<NgResponse> {
    return this.run('startRecording', at, params);
  }
  /** Stops recording and closes the call's recording files now (not at the end of rtpengine's delete delay). */
  stopRecording(at: NgAddress, params: NgParams): Promise<NgResponse> {
    return this.run('stopRecording', at, params);
  }
  ping(at: NgAddress): Promise<NgResponse> {
    return this.run('ping', at, {});
  }

  /** Stops pinging (waits for a round in flight, itself bounded by the command timeout) and closes. */
  async close(): Promise<void> {
    await this.pinger?.stop();
    this.client.close();
  }

  private async run(cmd: NgCommand, at: NgAddress, params: NgParams): Promise<NgResponse> {
    const start = performance.now();
    const done = (result: RtpengineResult) => this.metrics?.rtpengineCommand(cmd, result, (performance.now() - start) / 1000);
    let res: NgResponse;
    try {
      res = cmd === 'ping' ? await this.client.ping(at.port, at.host) : await this.client[cmd](at.port, at.host, params);
    } catch (err) {
      const message = String((err as Error)?.message ?? err);
      done(/timeout/i.test(message) ? 'timeout' : 'error');
      throw new MediaError(`rtpengine ${cmd} at ${at.host}:${at.port}: ${message}`, cmd);
    }
    if (res.result === 'error') {
      done('error');
      throw new MediaError(`rtpengine ${cmd} refused: ${res['error-reason'] ?? 'unknown reason'}`, cmd);
    }
    done('ok');
    return res;
  }
}

function localAddressFor(host: string): string | undefined {
  return host === '127.0.0.1' || host === 'localhost' ? '127.0.0.1' : undefined;
}
