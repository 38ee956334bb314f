import { CdrStore } from '../cdr/store';
import { EventContext, LeaveUnprocessed, storedEventContext } from './event-context';
import { Logger } from '../log';
import { Metrics } from '../metrics/metrics';
import { TypedEmitter } from '../util/typed-emitter';
import { AccountNotice, CallAnswered, CallEnded, CallEvent, CallMediaAvailable, CallOffered, CallStatus, endedBeforeOffer, PermissionReplied, wacidOf } from './call-events';
import { WhatsAppProvider } from './provider-port';
import { AccountNoticeSink, MediaSink } from './media-sink';
import { providerEndFields } from './cdr-fields';
import { CallFields } from '../cdr/store';
import { CallDeps } from './call-deps';
import { Admission, admitConnect } from './connect-admission';
import { EarlyEvents } from './early-events';
import { InboundCall } from './inbound-call';
import { Lanes, nothing, started } from './lanes';
import { PermissionStore } from './permissions';
import { CallRegistry } from './registry';

/** How long an agent's call that the provider placed may stay unclaimed by any node before it is ended. */
const UNCLAIMED_CONNECT_MS = 15_000;
/** A connect replayed after a restart that is older than this is not bridged: WhatsApp has given up ringing. */
const REPLAY_CONNECT_MAX_AGE_MS = 30_000;

export interface RouterEvents {
  /** An event for a call this node does not have: the node that has it should process it. */
  unplaced: [eventId: string, wacid: string];
  /** This node has taken the call with this wacid (events waiting elsewhere belong here). */
  claimed: [wacid: string];
}

export interface RouterDeps {
  calls: CallRegistry;
  /** What every call needs (a WhatsApp user's call is made here). */
  callDeps: CallDeps;
  cdr: CdrStore;
  permissions: PermissionStore;
  /** Fetches the recordings, transcripts and voicemails the provider makes of calls; null: not kept. */
  media: MediaSink | null;
  /** Where account notices are kept (per number, for the admin API). */
  notices: AccountNoticeSink;
  metrics: Metrics;
  log: Logger;
}

/**
 * Takes each call event to the call it concerns, by wacid: a WhatsApp user's offer starts an
 * InboundCall; answers, statuses and ends go to the call in progress. Events for one wacid are routed
 * in the order they came (Lanes); events that come before their call is known wait for it
 * (EarlyEvents) and are offered to the other nodes. Resolves once the call's work is done.
 */
export class CallRouter extends TypedEmitter<RouterEvents> {
  private readonly lanes = new Lanes();
  private readonly early = new EarlyEvents();

  constructor(private readonly d: RouterDeps) {
    super();
    d.calls.on('named', (wacid) => {
      this.emit('claimed', wacid);
      const waiting = this.early.take(wacid);
      if (waiting.length === 0) return;
      void (async () => {
        for (const e of waiting) await this.handle(e.event, storedEventContext(e.id, e.type, e.provider));
      })().catch((err: unknown) => d.log.error({ err, wacid }, 'replaying early webhooks failed'));
    });
  }

  /**
   * Acts on one event. Events for one wacid are routed one after another, in the order they came (a
   * terminate just before its connect is seen by that connect; a status update never overtakes the
   * one delivered before it); only the routing waits in line, never the call's own work (a WhatsApp
   * user's call being set up does not hold back its terminate).
   */
  handle(event: CallEvent, ctx: EventContext): Promise<void> {
    return this.lanes.run(wacidOf(event), () => this.route(event, ctx));
  }

  /** Whether this node has the call an event concerns (another node asked it to process the event). */
  owns(event: CallEvent): boolean {
    const { calls } = this.d;
    switch (event.kind) {
      case 'answered': return calls.byWacid(event.wacid) !== undefined || calls.unnamedFor(event) !== undefined;
      case 'offered': case 'ended': case 'status': return calls.byWacid(event.wacid) !== undefined;
      default: return false;
    }
  }

  /** Another node has taken the call with this wacid: what waits here for it goes there. */
  releaseEarly(wacid: string): void {
    for (const e of this.early.take(wacid)) this.emit('unplaced', e.id, wacid);
  }

  /** Routes an event to its call (or keeps it); resolves with the call's work, to be awaited after. */
  private async route(event: CallEvent, ctx: EventContext): Promise<() => Promise<void>> {
    switch (event.kind) {
      case 'offered': return this.offered(event, ctx);
      case 'answered': return this.answered(event, ctx);
      case 'ended': return this.ended(event, ctx);
      case 'status': return this.status(event, ctx);
      case 'permission_reply': return this.permissionReply(event);
      case 'media_available': return this.mediaAvailable(event, ctx);
      case 'account_notice': return this.accountNotice(event, ctx);
    }
  }

  /** A WhatsApp user calls: a new InboundCall, admitted against Postgres while its media is set up. */
  private offered(offer: CallOffered, ctx: EventContext): () => Promise<void> {
    const { calls, cdr, log } = this.d;
    const { numbers } = this.d.callDeps;
    const route = numbers.forWebhook(ctx.provider, offer.phoneId, offer.to);
    // A SIP-mode number's calls come by SIP: its call webhooks (sip.webhook_delivery) only add Meta's view.
    if (route?.sip && !ctx.sip) return started(this.observeWebhook(offer, { event: 'meta_webhook_connect', detail: { from: offer.from } }));
    if (calls.inboundCall(offer.wacid) || calls.endedLately(offer.wacid)) return nothing; // same call, another event id
    const endedFirst = this.early.take(offer.wacid).some((e) => e.event.kind === 'ended');
    const admission = admitConnect(cdr, offer.wacid, endedFirst, this.d.callDeps.config.database.timeoutMs, log);
    // A SIP call's actions are SIP (the route's adapter); a webhook call's, its account's.
    const call = new InboundCall(this.d.callDeps, offer, route, route?.sip ? route.provider : this.accountProvider(ctx), admission);
    calls.addInbound(call);
    void admission.then((a) => a === 'go' && this.emit('claimed', offer.wacid));
    if (endedFirst) {
      log.info({ wacid: offer.wacid }, 'connect arrived after its terminate: not bridging');
      call.onWhatsAppEnded(endedBeforeOffer(offer));
      return nothing;
    }
    if (!calls.accepts) return started(call.refuse('bridge is shutting down'));
    if (!call.route) return started(recorded(call, admission, call.refuse(`no business number on this bridge has phone id ${offer.phoneId} (${offer.to}) at provider ${ctx.provider}`)));
    const age = Date.now() - ctx.receivedAt.getTime();
    if (ctx.replay && age > REPLAY_CONNECT_MAX_AGE_MS) {
      return started(recorded(call, admission, call.refuse(`not processed before the bridge restarted, and ${Math.round(age / 1000)} s old: not bridged`)));
    }
    return started(recorded(call, admission, call.run()));
  }

  /** The WhatsApp user's answer to an agent's call. */
  private answered(answer: CallAnswered, ctx: EventContext): () => Promise<void> {
    const call = this.d.calls.outboundCall(answer.wacid) ?? this.d.calls.unnamedFor(answer);
    if (call?.viaSip && !ctx.sip) return started(this.observeWebhook(answer, { event: 'meta_webhook_connect', detail: { direction: 'outbound' } }));
    if (call) return started(call.onAnswer(answer));
    if (ctx.sip) {
      this.early.keep(answer.wacid, { id: ctx.eventId, type: ctx.type, provider: ctx.provider, event: answer });
      return nothing;
    }
    if (!ctx.replay) {
      this.place(answer.wacid, ctx, answer);
      this.endIfStillUnclaimed(answer, ctx);
    }
    return nothing;
  }

  private async ended(end: CallEnded, ctx: EventContext): Promise<() => Promise<void>> {
    const { calls } = this.d;
    const call = calls.byWacid(end.wacid);
    if (call?.viaSip && !ctx.sip) return started(this.observeWebhook(end, { event: 'provider_terminate', detail: { status: end.cause, duration: end.durationS }, fields: providerEndFields(end) }));
    if (call) {
      call.onWhatsAppEnded(end);
      return nothing;
    }
    if (await this.recordOnEndedCall(end)) return nothing;
    // The provider may have named an agent's call here during the wait (a connect for this wacid
    // cannot have come: it waits in this wacid's lane): it gets the end now.
    const late = calls.outboundCall(end.wacid);
    if (late) {
      late.onWhatsAppEnded(end);
      return nothing;
    }
    // Kept for the connect that may follow (it is then not bridged), and offered to the other nodes.
    this.early.keep(end.wacid, { id: ctx.eventId, type: ctx.type, provider: ctx.provider, event: end });
    if (!ctx.replay) this.offer(end.wacid, ctx);
    return nothing;
  }

  private async status(s: CallStatus, ctx: EventContext): Promise<() => Promise<void>> {
    const { calls, cdr } = this.d;
    const out = calls.outboundCall(s.wacid);
    if (out?.viaSip && !ctx.sip) return started(this.observeWebhook(s, { event: 'provider_status', detail: { status: s.status } }));
    if (out) return started(out.onStatus(s, ctx.arrivedAt));
    const mine = calls.inboundCall(s.wacid)?.id;
    const row = mine ? null : await cdr.findCallByWacid(s.wacid);
    // The provider may have named an agent's call here during the wait.
    const named = calls.outboundCall(s.wacid);
    if (named) return started(named.onStatus(s, ctx.arrivedAt));
    // An agent's call elsewhere is driven by its status events: they go to its node.
    const id = mine ?? (row && (row.ended_at || row.direction === 'inbound') ? row.id : null);
    if (id) await cdr.addEvent(id, 'provider_status', { status: s.status });
    else if (!ctx.replay) this.place(s.wacid, ctx, s);
    return nothing;
  }

  private async permissionReply({ reply }: PermissionReplied): Promise<() => Promise<void>> {
    if ('error' in reply) {
      this.d.metrics.permissionReply('other');
      throw new Error(reply.error);
    }
    // Counted once per event: a redelivery acted on again (after a restart) finds its row there.
    if (!(await this.d.permissions.recordReply(reply))) {
      this.d.log.info({ eventId: reply.eventId, customer: reply.customerNumber }, 'call permission reply already recorded');
      return nothing;
    }
    this.d.metrics.permissionReply(reply.response);
    this.d.log.info({ business: reply.businessNumber, customer: reply.customerNumber, response: reply.response, permanent: reply.isPermanent }, 'call permission reply recorded');
    return nothing;
  }

  /** The adapter of the provider account an event came from. */
  private accountProvider(ctx: EventContext): WhatsAppProvider {
    const p = this.d.callDeps.numbers.account(ctx.provider);
    if (!p) throw new Error(`no provider account "${ctx.provider}" on this bridge (removed from the numbers file?)`);
    return p;
  }

  /** A recording, transcription or voicemail WhatsApp made of a call: fetched while its link lasts. */
  private async mediaAvailable(m: CallMediaAvailable, ctx: EventContext): Promise<() => Promise<void>> {
    const fetcher = this.d.media;
    if (!fetcher) {
      this.d.log.info({ wacid: m.wacid, media: m.media }, 'call media offered by the provider, but recording is off: not fetched');
      return nothing;
    }
    const route = m.phoneId ? this.d.callDeps.numbers.forWebhook(ctx.provider, m.phoneId, null) : null;
    const provider = route?.provider ?? this.accountProvider(ctx);
    const line = route?.line ?? { number: '', phoneId: m.phoneId, wabaId: null };
    return started(fetcher.fetch(m, { account: ctx.provider, provider, line }));
  }

  /** Calling restricted, quality warnings, settings changed: recorded per number and counted. */
  private async accountNotice(n: AccountNotice, ctx: EventContext): Promise<() => Promise<void>> {
    const fresh = await this.d.notices.add({ eventId: ctx.eventId, provider: ctx.provider, phoneId: n.phoneId, field: n.field, event: n.event, severity: n.severity, detail: n.detail });
    if (!fresh) return nothing; // kept and counted when first acted on
    this.d.metrics.accountNotice(ctx.provider, n.severity, n.event);
    const log = n.severity === 'info' ? this.d.log.info.bind(this.d.log) : this.d.log.warn.bind(this.d.log);
    log({ provider: ctx.provider, phoneId: n.phoneId, field: n.field, event: n.event }, `provider account notice: ${n.event}`);
    return nothing;
  }

  /**
   * A call webhook for a SIP-mode number (Meta's sip.webhook_delivery): the SIP dialog drives the call,
   * the webhook only adds Meta's view to its CDR (the call's timeline while it is up, its row after).
   */
  private async observeWebhook(e: { wacid: string }, note: { event: string; detail: Record<string, unknown>; fields?: CallFields }): Promise<void> {
    const live = this.d.calls.byWacid(e.wacid);
    if (live) {
      live.noteProviderView(note.event, note.detail, note.fields ?? {});
      return;
    }
    const row = await this.d.cdr.findCallByWacid(e.wacid);
    if (!row) {
      this.d.log.info({ wacid: e.wacid, event: note.event }, 'webhook for a SIP-mode number matches no SIP call: kept in webhook_events only');
      return;
    }
    if (note.fields && Object.keys(note.fields).length) await this.d.cdr.updateCall(row.id, note.fields);
    await this.d.cdr.addEvent(row.id, note.event, note.detail);
  }

  /**
   * Stores the provider's final view of a call that has already ended (here or on another node); false
   * if there is no such call, or it is still up on another node (which must hear of the end).
   */
  private async recordOnEndedCall(end: CallEnded): Promise<boolean> {
    const { cdr } = this.d;
    const row = await cdr.findCallByWacid(end.wacid);
    if (!row || !row.ended_at) return false;
    await cdr.updateCall(row.id, providerEndFields(end));
    await cdr.addEvent(row.id, 'provider_terminate', { status: end.cause, duration: end.durationS });
    return true;
  }

  /** An event for a call not known here: kept for a while (its call may appear) and offered to the other nodes. */
  private place(wacid: string, ctx: EventContext, event: CallEvent): void {
    this.early.keep(wacid, { id: ctx.eventId, type: ctx.type, provider: ctx.provider, event });
    this.offer(wacid, ctx);
  }

  /**
   * Offers an event to the other nodes once its row is written (they read it from webhook_events: an
   * offer made before the write has committed would find nothing there).
   */
  private offer(wacid: string, ctx: EventContext): void {
    if (ctx.sip) return; // a SIP call's events are this node's: its dialog is here
    void ctx.stored.then(() => this.emit('unplaced', ctx.eventId, wacid));
  }

  /**
   * An agent's call that the provider placed but no node has (its calls/connect timed out here, or the
   * node died): once nobody has claimed it for a while, it is ended at WhatsApp, so the customer's
   * phone does not ring for nobody.
   */
  private endIfStillUnclaimed(answer: CallAnswered, ctx: EventContext): void {
    const { eventId } = ctx;
    const { wacid, phoneId } = answer;
    const t = setTimeout(() => {
      if (!this.early.holds(wacid, eventId)) return; // its call took it
      this.early.drop(wacid, eventId);
      void (async () => {
        if (await this.d.cdr.findCallByWacid(wacid)) return; // a node has it (named before this came)
        this.d.log.warn({ wacid }, 'a call the provider placed for an agent matches no call in progress: ending it at WhatsApp');
        await this.accountProvider(ctx).terminate({ phoneId, wacid });
      })().catch((err: unknown) => this.d.log.error({ err, wacid }, 'could not end an unclaimed call at WhatsApp'));
    }, UNCLAIMED_CONNECT_MS);
    t.unref();
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
