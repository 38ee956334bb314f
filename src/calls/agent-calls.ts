import { performance } from 'node:perf_hooks';
import Srf from 'drachtio-srf';
import { Config } from '../config';
import { Logger } from '../log';
import { Metrics } from '../metrics/metrics';
import { InviteRateLimiter } from '../sip/invite-limits';
import { AcceptedInvite, OutboundGate } from '../sip/outbound-invites';
import { CallDeps } from './call-deps';
import { OutboundCall } from './outbound-call';
import { CallRegistry } from './registry';

/** Retry-After (s) on the 503 that refuses an INVITE while MAX_CALLS_IN_PROGRESS calls are up. */
const CAPACITY_RETRY_AFTER_S = 10;

export interface AgentCallsDeps {
  config: Pick<Config, 'outbound' | 'shutdown'>;
  calls: CallRegistry;
  callDeps: CallDeps;
  /** Who may place calls (trusted sources, digest) and what they dial (numbers, headers). */
  gate: OutboundGate;
  /** INVITE rate limits per source and overall (SIP_INVITE_RATE*, SIP_INVITE_BURST*). */
  rate: InviteRateLimiter;
  metrics: Metrics;
  log: Logger;
}

/**
 * Where an agent's call starts: an INVITE from the PBX passes the gates in order, each answering the
 * INVITE itself when it refuses, then becomes an OutboundCall (whose own first step is the permission
 * check, against Postgres and the provider):
 *   trust (a trusted source) → rate (per source and overall) → capacity (calls in progress) →
 *   draining (the bridge is stopping) → auth and number (digest, the dialled and business numbers).
 * Untrusted sources are refused first: only what may place calls is charged to the rate limits.
 */
export class AgentCalls {
  private rateWarnedAt = 0;

  constructor(private readonly d: AgentCallsDeps) {}

  onInvite(req: Srf.SrfRequest, res: Srf.SrfResponse): void {
    const t = performance.now();
    const admitted = this.admit(req, res);
    if (!admitted) return;
    const call = new OutboundCall(this.d.callDeps, req, res, admitted);
    this.d.callDeps.marks.mark(call.id, 'invite_received', t);
    this.d.calls.addOutbound(call);
    void call.run();
  }

  /** The gates, in order; null when one refused (and answered) the INVITE. */
  private admit(req: Srf.SrfRequest, res: Srf.SrfResponse): AcceptedInvite | null {
    const { gate } = this.d;
    if (!gate.fromTrustedSource(req, res)) return null;
    if (!this.withinRate(req, res)) return null;
    if (!this.withinCapacity(res)) return null;
    if (!this.notDraining(res)) return null;
    return gate.admit(req, res);
  }

  /** A flood is answered before any other work, so calls in progress and other sources carry on. */
  private withinRate(req: Srf.SrfRequest, res: Srf.SrfResponse): boolean {
    const rate = this.d.rate.take(req.source_address);
    if (rate.ok) return true;
    res.send(503, 'Service Unavailable', { headers: { 'Retry-After': String(rate.retryAfterS), Reason: `SIP;cause=503;text="INVITE rate limit (${rate.limit})"` } });
    this.d.metrics.inviteReceived('refused_rate_limited');
    if (this.rateWarnedAt + 10_000 < Date.now()) {
      this.rateWarnedAt = Date.now();
      this.d.log.warn({ source: req.source_address, limit: rate.limit }, 'INVITEs over the rate limit are refused with 503 (logged at most every 10 s)');
    }
    return false;
  }

  private withinCapacity(res: Srf.SrfResponse): boolean {
    if (this.d.calls.active < this.d.config.outbound.limits.maxCallsInProgress) return true;
    res.send(503, 'Service Unavailable', { headers: { 'Retry-After': String(CAPACITY_RETRY_AFTER_S), Reason: 'SIP;cause=503;text="calls in progress at the limit"' } });
    this.d.metrics.inviteReceived('refused_capacity');
    return false;
  }

  /** Draining: the PBX tries another bridge now and this one again after Retry-After. */
  private notDraining(res: Srf.SrfResponse): boolean {
    if (this.d.calls.accepts) return true;
    res.send(503, 'Service Unavailable', { headers: { 'Retry-After': String(this.d.config.shutdown.retryAfterS) } });
    this.d.metrics.inviteReceived('refused_draining');
    return false;
  }
}
