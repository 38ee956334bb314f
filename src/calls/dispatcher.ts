import { TypedEmitter } from '../util/typed-emitter';
import { CdrStore } from '../cdr/store';
import { DtmfEvent } from '../media/dtmf-log';
import { Logger } from '../log';
import { EventContext, LeaveUnprocessed, storedEventContext } from '../events/pipeline';
import { isTransientDbError } from '../cdr/write-safety';
import { TimeoutError, withTimeout } from '../sip/dialog-requests';
import { BoundedMap } from '../events/bounded-map';
import { CallingTerminate, wacidOf, WebhookEvent } from '../providers/ycloud/events';
import { providerEndFields } from './cdr-fields';
import { Admission, InboundCall, InboundDeps } from './inbound-call';
import { LiveCall, LiveCalls } from './live';
import { OutboundCall } from './outbound-call';
import { permissionReplyOf, PermissionStore } from './permissions';

const BUFFER_MS = 2 * 60 * 1000;
/** Bounds on the buffer of events waiting for their call (keyed by outside input). */
const BUFFER_WACIDS = 10_000;
const BUFFER_PER_WACID = 20;
/** How long an agent's call that YCloud placed may stay unclaimed by any node before it is ended. */
const UNCLAIMED_CONNECT_MS = 15_000;
/** A connect replayed after a restart that is older than this is not bridged: WhatsApp has given up ringing. */
const REPLAY_CONNECT_MAX_AGE_MS = 30_000;
/**
 * How long an admission check that failed for a passing reason (Postgres slow, unreachable) is retried
 * after its first attempt (itself bounded by DATABASE_TIMEOUT_MS); the caller hears ringing meanwhile.
 */
const ADMISSION_RETRY_MS = 3000;
const ADMISSION_FIRST_BACKOFF_MS = 100;

interface Buffered { id: string; event: WebhookEvent }

export interface DispatcherEvents {
  'call-ended': [key: string, id: string];
  /** An event for a call this node does not have: the node that has it should process it. */
  unplaced: [eventId: string, wacid: string];
  /** This node has taken the call with this wacid (events buffered elsewhere belong here). */
  claimed: [wacid: string];
}

/**
 * Routes verified, de-duplicated webhook events to the calls they concern, by wacid. Events that come
 * before their call is known (a terminate overtaking its connect; status or connect webhooks arriving
 * before calls/connect has returned the wacid) are buffered and replayed in order once it is.
 */
export class CallDispatcher extends TypedEmitter<DispatcherEvents> implements LiveCalls {
  private readonly inbound = new Map<string, InboundCall>();
  private readonly outbound = new Map<string, OutboundCall>();
  private readonly unbound = new Set<OutboundCall>();
  private readonly buffered = new BoundedMap<string, { events: Buffered[]; expires: number }>(BUFFER_WACIDS);
  private readonly recentlyEnded = new BoundedMap<string, string>(1000);
  /** Per wacid, the routing of the event before (see handle()); an entry lives while events are in line. */
  private readonly lanes = new Map<string, Promise<void>>();
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
    this.emit('claimed', wacid);
    const early = this.takeBuffered(wacid);
    if (early.length === 0) return;
    void (async () => {
      for (const b of early) await this.handle(b.event, storedEventContext(b.id));
    })().catch((err: unknown) => this.log.error({ err: (err as Error).message, wacid }, 'replaying buffered webhooks failed'));
  }

  /** Whether this node has the call an event concerns (another node asked it to process the event). */
  owns(event: WebhookEvent): boolean {
    switch (event.type) {
      case 'whatsapp.call.connect': {
        const c = event.callingConnect;
        return this.inbound.has(c.wacid) || this.outbound.has(c.wacid) || [...this.unbound].some((o) => o.matchesUnbound(c));
      }
      case 'whatsapp.call.terminate': return this.inbound.has(event.callingTerminate.wacid) || this.outbound.has(event.callingTerminate.wacid);
      case 'whatsapp.call.status.updated': return this.outbound.has(event.callingStatusUpdated.wacid) || this.inbound.has(event.callingStatusUpdated.wacid);
      default: return false;
    }
  }

  /** Another node has taken the call with this wacid: what waits here for it goes there. */
  releaseBuffered(wacid: string): void {
    for (const b of this.takeBuffered(wacid)) this.emit('unplaced', b.id, wacid);
  }

  /**
   * Acts on one event. Events for one wacid are routed one after another, in the order they came (a
   * terminate just before its connect is seen by that connect; a status update never overtakes the
   * one delivered before it); only the routing waits in line, never the call's own work (a WhatsApp
   * user's call being set up does not hold back its terminate). Resolves once the work is done.
   */
  async handle(event: WebhookEvent, ctx: EventContext): Promise<void> {
    const key = wacidOf(event);
    if (!key) return (await this.route(event, ctx))();
    const routed = (this.lanes.get(key) ?? Promise.resolve()).then(() => this.route(event, ctx));
    const lane = routed.then(() => undefined, () => undefined);
    this.lanes.set(key, lane);
    void lane.then(() => {
      if (this.lanes.get(key) === lane) this.lanes.delete(key);
    });
    await (await routed)();
  }

  /** Routes an event to its call (or buffers it); resolves with the call's work, to be awaited after. */
  private async route(event: WebhookEvent, ctx: EventContext): Promise<() => Promise<void>> {
    const done = async () => undefined;
    switch (event.type) {
      case 'whatsapp.call.connect': {
        const c = event.callingConnect;
        if (c.direction === 'BUSINESS_INITIATED') {
          const call = this.outbound.get(c.wacid) ?? [...this.unbound].find((o) => o.matchesUnbound(c));
          if (call) return start(call.onConnect(c));
          if (!ctx.replay) {
            this.place(c.wacid, ctx, event);
            this.endIfStillUnclaimed(c.wacid, c.phoneId, ctx.eventId);
          }
          return done;
        }
        if (this.inbound.has(c.wacid) || this.recentlyEnded.has(c.wacid)) return done; // same call, another event id
        const terminatedHere = this.takeBuffered(c.wacid).some((b) => b.event.type === 'whatsapp.call.terminate');
        const admission = this.admit(c.wacid, terminatedHere);
        const call = new InboundCall(this.deps, c, admission);
        this.inbound.set(c.wacid, call);
        call.once('ended', () => {
          this.inbound.delete(c.wacid);
          this.ended(c.wacid, call.id);
        });
        void admission.then((a) => a === 'go' && this.emit('claimed', c.wacid));
        const age = Date.now() - ctx.receivedAt.getTime();
        if (terminatedHere) {
          this.log.info({ wacid: c.wacid }, 'connect arrived after its terminate: not bridging');
          call.onTerminate({ wacid: c.wacid });
          return done;
        }
        if (!this.accepting) return start(call.refuse('bridge is shutting down'));
        if (ctx.replay && age > REPLAY_CONNECT_MAX_AGE_MS) {
          return start(recorded(call, admission, call.refuse(`not processed before the bridge restarted, and ${Math.round(age / 1000)} s old: not bridged`)));
        }
        return start(recorded(call, admission, call.run()));
      }
      case 'whatsapp.call.terminate': {
        const t = event.callingTerminate;
        const call = this.inbound.get(t.wacid) ?? this.outbound.get(t.wacid);
        if (call) {
          call.onTerminate(t);
          return done;
        }
        if (await this.recordOnEndedCall(t)) return done;
        // YCloud may have named an agent's call here during the wait (a connect for this wacid cannot
        // have come: it waits in this wacid's lane): it gets the terminate now.
        const late = this.outbound.get(t.wacid);
        if (late) {
          late.onTerminate(t);
          return done;
        }
        // Kept for the connect that may follow (it is then not bridged), and offered to the other nodes.
        this.buffer(t.wacid, ctx.eventId, event);
        if (!ctx.replay) this.offer(t.wacid, ctx);
        return done;
      }
      case 'whatsapp.call.status.updated': {
        const s = event.callingStatusUpdated;
        const out = this.outbound.get(s.wacid);
        if (out) return start(out.onStatus(s.status, ctx.arrivedAt));
        const mine = this.inbound.get(s.wacid)?.id;
        const row = mine ? null : await this.cdr.findCallByWacid(s.wacid);
        // YCloud may have named an agent's call here during the wait.
        const named = this.outbound.get(s.wacid);
        if (named) return start(named.onStatus(s.status, ctx.arrivedAt));
        // An agent's call elsewhere is driven by its status events: they go to its node.
        const id = mine ?? (row && (row.ended_at || row.direction === 'inbound') ? row.id : null);
        if (id) await this.cdr.addEvent(id, 'provider_status', { status: s.status });
        else if (!ctx.replay) this.place(s.wacid, ctx, event);
        return done;
      }
      case 'whatsapp.inbound_message.received': {
        const reply = permissionReplyOf(event.whatsappInboundMessage, event.id);
        if (!reply) return done;
        if ('error' in reply) {
          this.deps.metrics?.permissionReply('other');
          throw new Error(reply.error);
        }
        // Counted once per event: a redelivery acted on again (after a restart) finds its row there.
        if (!(await this.permissions.recordReply(reply))) {
          this.log.info({ eventId: event.id, customer: reply.customerNumber }, 'call permission reply already recorded');
          return done;
        }
        this.deps.metrics?.permissionReply(reply.response);
        this.log.info({ business: reply.businessNumber, customer: reply.customerNumber, response: reply.response, permanent: reply.isPermanent }, 'call permission reply recorded');
        return done;
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
    this.emit('call-ended', key, id);
  }

  /**
   * Stores YCloud's final view of a call that has already ended (here or on another node); false if
   * there is no such call, or it is still up on another node (which must hear of the terminate).
   */
  private async recordOnEndedCall(t: CallingTerminate): Promise<boolean> {
    const row = await this.cdr.findCallByWacid(t.wacid);
    if (!row || !row.ended_at) return false;
    await this.cdr.updateCall(row.id, providerEndFields(t));
    await this.cdr.addEvent(row.id, 'provider_terminate', { status: t.status ?? null, duration: t.duration ?? null });
    return true;
  }

  /**
   * Whether an inbound connect may be bridged, decided while its media is being set up: 'go' when no
   * call for the wacid exists and no terminate for it is stored; 'duplicate' for a repeated connect
   * (a redelivery after a restart, another event id, or one another node has taken); 'ended' when its
   * terminate came first. A redelivery while the first is in flight on this node never gets here (the
   * pipeline's first-seen check). It does not wait for the event's own durable write (the 200 to YCloud
   * does): that write is the slowest step of a set-up, and the call row answers the same question.
   *
   * When Postgres cannot tell (slow, unreachable), the check is retried for ADMISSION_RETRY_MS; past
   * that the answer is `unchecked`: the call is rejected at WhatsApp and its CDR says why. The event's
   * 200 has usually gone out already (its write is a different statement, and may well have worked),
   * so dropping the connect silently would lose the call without a trace.
   */
  private async admit(wacid: string, terminatedHere: boolean): Promise<Admission> {
    const started = Date.now();
    const bound = this.deps.config.database.timeoutMs;
    const deadline = started + bound + ADMISSION_RETRY_MS;
    let backoff = ADMISSION_FIRST_BACKOFF_MS;
    for (let attempt = 1; ; attempt++) {
      try {
        const left = Math.max(1, deadline - Date.now());
        const history = await withTimeout(this.cdr.wacidHistory(wacid), Math.min(bound, left), `no answer within ${Math.min(bound, left)} ms`);
        if (attempt > 1) this.log.info({ wacid, attempts: attempt }, 'connect checked against Postgres after retrying');
        if (history.call) return 'duplicate';
        return terminatedHere || history.terminated ? 'ended' : 'go';
      } catch (err) {
        const message = (err as Error).message;
        const retry = err instanceof TimeoutError || isTransientDbError(err);
        if (!retry || Date.now() + backoff >= deadline) {
          this.log.error({ err: message, wacid, attempts: attempt, forMs: Date.now() - started },
            'cannot check the connect against Postgres: rejecting the call at WhatsApp');
          return { unchecked: `admission check failed: Postgres did not answer whether the call was already taken (${attempt} attempts in ${Date.now() - started} ms: ${message.slice(0, 200)})` };
        }
        await new Promise((resolve) => setTimeout(resolve, backoff));
        backoff = Math.min(backoff * 2, 1000);
      }
    }
  }

  /** An event for a call not known here: kept for a while (its call may appear) and offered to the other nodes. */
  private place(wacid: string, ctx: EventContext, event: WebhookEvent): void {
    this.buffer(wacid, ctx.eventId, event);
    this.offer(wacid, ctx);
  }

  /**
   * Offers an event to the other nodes once its row is written (they read it from webhook_events: an
   * offer made before the write has committed would find nothing there).
   */
  private offer(wacid: string, ctx: EventContext): void {
    void ctx.stored.then(() => this.emit('unplaced', ctx.eventId, wacid));
  }

  /**
   * An agent's call that YCloud placed but no node has (its calls/connect timed out here, or the node
   * died): once nobody has claimed it for a while, it is ended at WhatsApp, so the customer's phone
   * does not ring for nobody.
   */
  private endIfStillUnclaimed(wacid: string, phoneId: string, eventId: string): void {
    const t = setTimeout(() => {
      if (!this.buffered.get(wacid)?.events.some((e) => e.id === eventId)) return; // its call took it
      this.unbuffer(wacid, eventId);
      void (async () => {
        if (await this.cdr.findCallByWacid(wacid)) return; // a node has it (named before this came)
        this.log.warn({ wacid }, "a call YCloud placed for an agent matches no call in progress: ending it at WhatsApp");
        await this.deps.ycloud.terminate({ phoneId, wacid });
      })().catch((err: unknown) => this.log.error({ err: (err as Error).message, wacid }, 'could not end an unclaimed call at WhatsApp'));
    }, UNCLAIMED_CONNECT_MS);
    t.unref();
  }

  private buffer(wacid: string, id: string, event: WebhookEvent): void {
    const now = Date.now();
    for (const [k, b] of this.buffered) {
      if (b.expires >= now) break; // oldest first: the rest are younger
      this.buffered.delete(k);
    }
    const b = this.buffered.get(wacid) ?? { events: [], expires: now + BUFFER_MS };
    if (b.events.length >= BUFFER_PER_WACID) b.events.shift();
    b.events.push({ id, event });
    this.buffered.set(wacid, b);
    this.log.debug({ wacid, type: event.type }, 'webhook for a call not known yet: buffered');
  }

  private unbuffer(wacid: string, id: string): void {
    const b = this.buffered.get(wacid);
    if (!b) return;
    b.events = b.events.filter((e) => e.id !== id);
    if (b.events.length === 0) this.buffered.delete(wacid);
  }

  private takeBuffered(wacid: string): Buffered[] {
    const b = this.buffered.get(wacid);
    this.buffered.delete(wacid);
    return b?.events ?? [];
  }
}

/**
 * A call turned away because its admission could not be checked must leave a CDR saying so: if even
 * that write is lost, the event is left unprocessed (replayed after a restart or by a survivor).
 */
async function recorded(call: InboundCall, admission: Promise<Admission>, work: Promise<void>): Promise<void> {
  await work;
  const a = await admission;
  if (typeof a === 'object' && call.lostCdrWrites > 0) {
    throw new LeaveUnprocessed(`the call was rejected (${a.unchecked}) but its CDR could not be written either`);
  }
}

/** Work under way, handed back by route() so the lane does not wait for it. */
function start(work: Promise<void>): () => Promise<void> {
  work.catch(() => undefined); // awaited by handle(); never left unhandled meanwhile
  return () => work;
}
