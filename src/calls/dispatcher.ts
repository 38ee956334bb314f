import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { CdrStore } from '../cdr/store';
import { DtmfEvent } from '../media/dtmf-log';
import { Logger } from '../log';
import { CallingTerminate, WebhookEvent } from '../providers/ycloud/events';
import { providerEndFields } from './cdr-fields';
import { InboundCall, InboundDeps } from './inbound-call';
import { LiveCall, LiveCalls } from './live';
import { OutboundCall } from './outbound-call';
import { permissionReplyOf, PermissionStore } from './permissions';

const BUFFER_MS = 2 * 60 * 1000;

/**
 * Routes verified, de-duplicated webhook events to the calls they concern, by wacid. Events that come
 * before their call is known (a terminate overtaking its connect; status or connect webhooks arriving
 * before calls/connect has returned the wacid) are buffered and replayed in order once it is.
 */
export class CallDispatcher extends EventEmitter implements LiveCalls {
  private readonly inbound = new Map<string, InboundCall>();
  private readonly outbound = new Map<string, OutboundCall>();
  private readonly unbound = new Set<OutboundCall>();
  private readonly buffered = new Map<string, { events: WebhookEvent[]; expires: number }>();
  private readonly recentlyEnded = new Map<string, string>();
  private accepting = true;

  constructor(private readonly deps: InboundDeps, private readonly cdr: CdrStore, private readonly permissions: PermissionStore, private readonly log: Logger) {
    super();
  }

  get accepts(): boolean {
    return this.accepting;
  }

  /** Resolves with the CDR id once the call with this wacid (inbound) or bridge id (outbound) has ended. */
  whenEnded(key: string): Promise<string> {
    const done = this.recentlyEnded.get(key);
    if (done) return Promise.resolve(done);
    return new Promise((resolve) => {
      const on = (k: string, id: string) => {
        if (k !== key) return;
        this.off('call-ended', on);
        resolve(id);
      };
      this.on('call-ended', on);
    });
  }

  /** An agent's call enters: it is tracked until YCloud names it, then by its wacid. */
  trackOutbound(call: OutboundCall): void {
    this.unbound.add(call);
    call.once('ended', () => {
      this.unbound.delete(call);
      if (call.wacid) this.outbound.delete(call.wacid);
      this.ended(call.id, call.id);
    });
  }

  /** YCloud named an outbound call: route its wacid to it and replay what came early. */
  bindOutbound(wacid: string, call: OutboundCall): void {
    this.unbound.delete(call);
    this.outbound.set(wacid, call);
    const early = this.buffered.get(wacid);
    this.buffered.delete(wacid);
    if (!early) return;
    void (async () => {
      for (const e of early.events) await this.handle(e);
    })().catch((err: unknown) => this.log.error({ err: (err as Error).message, wacid }, 'replaying buffered webhooks failed'));
  }

  async handle(event: WebhookEvent, arrivedAt = performance.now()): Promise<void> {
    switch (event.type) {
      case 'whatsapp.call.connect': {
        const c = event.callingConnect;
        if (c.direction === 'BUSINESS_INITIATED') {
          const call = this.outbound.get(c.wacid) ?? [...this.unbound].find((o) => o.matchesUnbound(c));
          if (call) return call.onConnect(c);
          return this.buffer(c.wacid, event);
        }
        if (this.inbound.has(c.wacid) || this.recentlyEnded.has(c.wacid)) return; // same call, another event id
        const call = new InboundCall(this.deps, c);
        this.inbound.set(c.wacid, call);
        call.once('ended', () => {
          this.inbound.delete(c.wacid);
          this.ended(c.wacid, call.id);
        });
        if (this.takeBuffered(c.wacid).some((e) => e.type === 'whatsapp.call.terminate')) {
          this.log.info({ wacid: c.wacid }, 'connect arrived after its terminate: not bridging');
          call.onTerminate({ wacid: c.wacid });
        } else if (!this.accepting) {
          await call.refuse('bridge is shutting down');
        } else {
          await call.run();
        }
        return;
      }
      case 'whatsapp.call.terminate': {
        const t = event.callingTerminate;
        const call = this.inbound.get(t.wacid) ?? this.outbound.get(t.wacid);
        if (call) return call.onTerminate(t);
        if (!(await this.recordOnEndedCall(t))) this.buffer(t.wacid, event);
        return;
      }
      case 'whatsapp.call.status.updated': {
        const s = event.callingStatusUpdated;
        const out = this.outbound.get(s.wacid);
        if (out) return out.onStatus(s.status, arrivedAt);
        const id = this.inbound.get(s.wacid)?.id ?? (await this.cdr.findCallByWacid(s.wacid))?.id;
        if (id) await this.cdr.addEvent(id, 'provider_status', { status: s.status });
        else this.buffer(s.wacid, event);
        return;
      }
      case 'whatsapp.inbound_message.received': {
        const reply = permissionReplyOf(event.whatsappInboundMessage, event.id);
        if (!reply) return;
        this.deps.metrics?.permissionReply('error' in reply ? 'other' : reply.response);
        if ('error' in reply) throw new Error(reply.error);
        await this.permissions.recordReply(reply);
        this.log.info({ business: reply.businessNumber, customer: reply.customerNumber, response: reply.response, permanent: reply.isPermanent }, 'call permission reply recorded');
        return;
      }
    }
  }

  /** A digit from rtpengine's DTMF log: to the call it belongs to (rtpengine's call-id is the call's id). */
  digit(ev: DtmfEvent): void {
    const call = this.all().find((c) => c.id === ev.callId);
    if (call) call.onMediaDigit(ev.sourceTag, { digit: ev.digit, durationMs: ev.durationMs });
  }

  /** Calls in progress (either direction, named by YCloud or not yet). */
  get active(): number {
    return this.inbound.size + this.outbound.size + this.unbound.size;
  }

  /** Calls in progress by direction (wasb_calls_in_progress). */
  get activeByDirection(): { inbound: number; outbound: number } {
    return { inbound: this.inbound.size, outbound: this.outbound.size + this.unbound.size };
  }

  /** New calls are refused from now on (WhatsApp calls rejected, agents' INVITEs answered 503). */
  stopAccepting(): void {
    this.accepting = false;
  }

  /** Resolves once no call is in progress. */
  whenIdle(): Promise<void> {
    if (this.active === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const on = () => {
        if (this.active > 0) return;
        this.off('call-ended', on);
        resolve();
      };
      this.on('call-ended', on);
    });
  }

  /** Calls in progress, oldest first. */
  list(): LiveCall[] {
    const now = Date.now();
    return this.all().filter((c) => !c.isEnding).map((c) => c.toLive(now)).sort((a, b) => a.startedAt.localeCompare(b.startedAt));
  }

  /** An operator ends a call in progress (bridge id); false when there is none with that id. */
  async hangup(id: string): Promise<boolean> {
    const call = this.all().find((c) => c.id === id && !c.isEnding);
    if (!call) return false;
    await call.hangup('ended by an operator');
    return true;
  }

  private all(): Array<InboundCall | OutboundCall> {
    return [...this.inbound.values(), ...this.outbound.values(), ...this.unbound];
  }

  /** Stops taking calls and ends the ones in progress (each step of a teardown is bounded). */
  async shutdown(): Promise<void> {
    this.accepting = false;
    await Promise.all(this.all().map((c) => c.hangup()));
  }

  private ended(key: string, id: string): void {
    this.recentlyEnded.set(key, id);
    if (this.recentlyEnded.size > 1000) this.recentlyEnded.delete(this.recentlyEnded.keys().next().value!);
    this.emit('call-ended', key, id);
  }

  /** Stores YCloud's final view of a call that has already ended here; false if no such call. */
  private async recordOnEndedCall(t: CallingTerminate): Promise<boolean> {
    const id = await this.cdr.updateCallByWacid(t.wacid, providerEndFields(t));
    if (id) await this.cdr.addEvent(id, 'provider_terminate', { status: t.status ?? null, duration: t.duration ?? null });
    return id !== null;
  }

  private buffer(wacid: string, event: WebhookEvent): void {
    const now = Date.now();
    for (const [k, b] of this.buffered) if (b.expires < now) this.buffered.delete(k);
    const b = this.buffered.get(wacid) ?? { events: [], expires: now + BUFFER_MS };
    b.events.push(event);
    this.buffered.set(wacid, b);
    this.log.debug({ wacid, type: event.type }, 'webhook for a call not known yet: buffered');
  }

  private takeBuffered(wacid: string): WebhookEvent[] {
    const b = this.buffered.get(wacid);
    this.buffered.delete(wacid);
    return b?.events ?? [];
  }
}
