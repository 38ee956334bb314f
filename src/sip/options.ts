import Srf from 'drachtio-srf';
import { Logger } from '../log';
import { Periodic } from '../util/periodic';
import { SipMetrics, sipResultOf, sipTimer } from '../metrics/sip';
import { withTimeout } from './dialog-requests';

/** What the bridge speaks, for OPTIONS answers and the PBX's trunk monitors. */
export const ALLOW = 'INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY';
export const ACCEPT = 'application/sdp, application/dtmf-relay, message/sipfrag';

/**
 * Answers out-of-dialog OPTIONS (PBX qualify, trunk monitors, load balancers): 200 with Allow and
 * Accept while the bridge takes calls, 503 while it does not (shutting down).
 */
export function answerOptions(srf: Srf, accepting: () => boolean): void {
  const on = (srf as unknown as { options: (h: (req: Srf.SrfRequest, res: Srf.SrfResponse) => void) => void }).options;
  on.call(srf, (_req, res) => {
    const headers = { Allow: ALLOW, Accept: ACCEPT, Supported: 'replaces, timer' };
    if (accepting()) res.send(200, { headers });
    else res.send(503, 'Service Unavailable', { headers: { ...headers, 'Retry-After': '30' } });
  });
}

type Health = 'up' | 'down' | 'unknown';
/** drachtio-srf's Srf#request as it really is (its typings differ). */
type OutOfDialogRequest = (uri: string, opts: { method: string; headers?: Record<string, string> }, cb: (err: unknown, req?: Srf.SrfRequest) => void) => void;

/**
 * Pings each PBX target with OPTIONS; a target that gave no answer at all to its last ping is tried
 * only after the ones that did (all of them are still tried, in order, when every one is down).
 * Any SIP response counts as alive: a PBX may well answer OPTIONS with 404 or 405.
 */
export class PbxTargetMonitor {
  private readonly health = new Map<string, Health>();
  private readonly pinger: Periodic;

  constructor(
    private readonly srf: Srf,
    private targets: string[],
    private readonly opts: { intervalMs: number; timeoutMs: number; canPing: () => boolean },
    private readonly log: Logger,
    /** Where the pings are counted. */
    private readonly metrics: SipMetrics,
  ) {
    for (const t of targets) this.health.set(t, 'unknown');
    this.pinger = new Periodic(() => this.pingAll(), opts.intervalMs);
  }

  /** One route's targets in the order to try them now (a target not pinged here keeps its place). */
  orderOf(targets: string[]): string[] {
    return [...targets.filter((t) => this.health.get(t) !== 'down'), ...targets.filter((t) => this.health.get(t) === 'down')];
  }

  /** The targets to ping from now on (every number's route, after a reload); health is kept for those that stay. */
  setTargets(targets: string[]): void {
    this.targets = [...new Set(targets)];
    for (const t of [...this.health.keys()]) if (!this.targets.includes(t)) this.health.delete(t);
    for (const t of this.targets) if (!this.health.has(t)) this.health.set(t, 'unknown');
  }

  status(): Record<string, Health> {
    return Object.fromEntries(this.health);
  }

  /** Pings now and every `intervalMs` (never when it is 0). */
  start(): void {
    if (this.opts.intervalMs > 0) void this.pinger.start();
  }

  /** Stops pinging; waits (bounded by the ping timeout) for a round in flight. */
  stop(): Promise<void> {
    return this.pinger.stop();
  }

  /** One round of pings (also used by tests to avoid waiting for the interval). */
  async pingAll(): Promise<void> {
    if (!this.opts.canPing()) return;
    await Promise.all(this.targets.map(async (t) => {
      const alive = await this.ping(t);
      const before = this.health.get(t);
      this.health.set(t, alive ? 'up' : 'down');
      if (before !== (alive ? 'up' : 'down')) this.log.info({ target: t, alive }, alive ? 'PBX target answers OPTIONS' : 'PBX target does not answer OPTIONS: tried last');
    }));
  }

  private ping(target: string): Promise<boolean> {
    const done = sipTimer(this.metrics, 'OPTIONS');
    const answered = new Promise<boolean>((resolve) => {
      try {
        const send = this.srf.request as unknown as OutOfDialogRequest;
        send.call(this.srf, target, { method: 'OPTIONS', headers: { Accept: ACCEPT } }, (err, req) => {
          if (err || !req) {
            done('error');
            return resolve(false);
          }
          // drachtio-server answers for a target it could not reach at all (ICMP port unreachable,
          // no route) with a 503 of its own: that response comes from the network, not the PBX.
          req.on('response', (res?: Srf.SrfResponse) => {
            const from = res as (Srf.SrfResponse & { source?: string; source_address?: string }) | undefined;
            done(from?.source_address ? sipResultOf(from.status) : 'error');
            resolve(Boolean(from?.source_address));
          });
        });
      } catch {
        done('error');
        resolve(false);
      }
    });
    return withTimeout(answered, this.opts.timeoutMs, 'OPTIONS unanswered').catch(() => {
      done('timeout');
      return false;
    });
  }
}
