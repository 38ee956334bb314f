import { StoredWebhook, WebhookCursor, WebhookEvents } from '../cdr/webhook-events';
import { Logger } from '../log';
import { CallEvent } from '../calls/call-events';
import { EventContext, LeaveUnprocessed, storedEventContext } from '../calls/event-context';
import { TypedEmitter } from '../util/typed-emitter';
import { BoundedMap } from '../util/bounded-map';
import { WebhookStoreBatcher } from './store-batcher';
import { storedPayload } from './stored-payload';

/** A verified, parsed webhook as it enters the pipeline. */
export interface IncomingEvent {
  id: string;
  /** The provider account whose webhook it came in (its WebhookSource decodes the stored row). */
  provider: string;
  type: string;
  wacid: string | null;
  /** The parsed JSON body: stored as it came for events the bridge acts on, else redacted (see storedPayload). */
  payload: unknown;
  /** Null for event types the bridge stores but does not act on. */
  event: CallEvent | null;
  /** performance.now() of the request's arrival (latency marks). */
  arrivedAt: number;
}

export type IngestResult = 'stored' | 'duplicate' | 'store_failed';

export interface PipelineDeps {
  /** Where the events are stored and marked. */
  webhookEvents: WebhookEvents;
  nodeId: string;
  log: Logger;
  handle: (event: CallEvent, ctx: EventContext) => Promise<void>;
  /** An event read back from webhook_events, in the calls' words (its provider account's WebhookSource.decodeStored). */
  decode: (provider: string, payload: unknown) => CallEvent | null;
}

export interface PipelineEvents {
  /**
   * An event has been acted on and marked processed (or failed and marked so; or left unprocessed, ok
   * false: see LeaveUnprocessed). `actedOn` false: an event the calls do not act on, marked processed as stored.
   */
  processed: [eventId: string, type: string, ok: boolean, actedOn: boolean];
}

/**
 * How long event writes are gathered before they are stored together. The 200 to YCloud waits for it
 * (YCloud allows 6 s); bridging a call does not.
 */
const STORE_BATCH_MS = 5;
/** How long processed marks are gathered before they are written together. */
const MARK_BATCH_MS = 20;
/** Event ids this node remembers having taken (the in-memory first-seen check). */
const SEEN_MAX = 50_000;

/**
 * From a verified webhook to the call it concerns, at least once and without waiting on the disk
 * first: the processing starts at once and the durable write follows within STORE_BATCH_MS, batched
 * with others (an in-memory first-seen check keeps a redelivery from starting the work twice).
 * YCloud gets its 200 only once the event is stored; bridging a call waits for its admission (see
 * CallDispatcher); every event is marked processed when acted on. Whatever was stored but never
 * marked (the process died) is replayed at start-up, or by a survivor when a node dies.
 */
export class EventPipeline extends TypedEmitter<PipelineEvents> {
  private readonly seen = new BoundedMap<string, Promise<boolean>>(SEEN_MAX);
  /** Event writes gathered into one INSERT per STORE_BATCH_MS (see WebhookStoreBatcher). */
  private readonly batcher: WebhookStoreBatcher;
  private marks: Array<{ id: string; error: string | null }> = [];
  private markFlush: Promise<void> | null = null;

  constructor(private readonly d: PipelineDeps) {
    super();
    this.batcher = new WebhookStoreBatcher(d.webhookEvents, STORE_BATCH_MS);
  }

  /** Stores and starts processing a delivery; resolves once it is stored (or known, or not storable now). */
  async ingest(e: IncomingEvent): Promise<IngestResult> {
    const prior = this.seen.get(e.id);
    if (prior) {
      const known = await prior.then(() => true, () => false);
      if (known) return 'duplicate';
    }
    const stored = this.batcher.store({ id: e.id, type: e.type, provider: e.provider, wacid: e.wacid, payload: storedPayload(e), nodeId: this.d.nodeId });
    this.seen.set(e.id, stored);
    // A failed write is forgotten here, so YCloud's redelivery is taken afresh.
    stored.catch(() => {
      if (this.seen.get(e.id) === stored) this.seen.delete(e.id);
    });
    const verdict = stored.catch(() => false);
    if (e.event && !prior) void this.execute(e.event, { eventId: e.id, type: e.type, provider: e.provider, arrivedAt: e.arrivedAt, stored: verdict, replay: false, receivedAt: new Date() });
    else if (!e.event) {
      void verdict.then(async (fresh) => {
        if (!fresh) return;
        await this.mark(e.id);
        this.emit('processed', e.id, e.type, true, false);
      });
    }
    try {
      return (await stored) ? 'stored' : 'duplicate';
    } catch (err) {
      this.d.log.error({ err, eventId: e.id }, 'webhook not stored; asking for a retry');
      return 'store_failed';
    }
  }

  /**
   * Starts processing (or closing) what `nodeId` stored but never marked processed, oldest first.
   * Resolves once all are started, with how many, and `done`, which settles when all have been acted on.
   */
  async replay(nodeId: string): Promise<{ events: number; done: Promise<void> }> {
    const started: Array<Promise<void>> = [];
    let after: WebhookCursor | null = null;
    for (;;) {
      const batch = await this.d.webhookEvents.unprocessedWebhooks(nodeId, 200, after);
      if (batch.length === 0) return { events: started.length, done: Promise.all(started).then(() => undefined) };
      // Started in order, not awaited: events for one call keep their order in its lane, and a
      // replayed call that rings for 25 s does not hold up start-up (nor the events after it).
      for (const w of batch) started.push(this.runStored(w));
      after = batch[batch.length - 1]!.cursor;
    }
  }

  /** Processes one stored event by id (another node asked this one, whose call it concerns). */
  async processStored(eventId: string, owns: (e: CallEvent) => boolean): Promise<boolean> {
    const w = await this.d.webhookEvents.webhook(eventId);
    if (!w) return false;
    const parsed = this.d.decode(w.provider, w.payload);
    if (!parsed || !owns(parsed)) return false;
    await this.execute(parsed, storedEventContext(eventId, w.type, w.provider, w.receivedAt));
    return true;
  }

  private async runStored(w: StoredWebhook): Promise<void> {
    const event = this.d.decode(w.provider, w.payload);
    if (!event) {
      await this.mark(w.id, 'replayed: not an event the bridge acts on');
      return;
    }
    this.seen.set(w.id, Promise.resolve(false));
    await this.execute(event, storedEventContext(w.id, w.type, w.provider, w.receivedAt));
  }

  /** Acts on the event, then marks it processed once its row exists; never throws. */
  private async execute(event: CallEvent, ctx: EventContext): Promise<void> {
    let error: string | undefined;
    try {
      await this.d.handle(event, ctx);
    } catch (err) {
      error = errorText(err);
      if (err instanceof LeaveUnprocessed) {
        this.d.log.error({ err, eventId: ctx.eventId, type: ctx.type }, 'webhook left unprocessed: it will be replayed');
        this.emit('processed', ctx.eventId, ctx.type, false, true);
        return;
      }
      this.d.log.error({ err, eventId: ctx.eventId, type: ctx.type }, 'webhook processing failed');
    }
    const stored = await ctx.stored;
    // Not stored by this delivery: a redelivery's row belongs to the first one, which marks it.
    if (stored || ctx.replay) await this.mark(ctx.eventId, error);
    this.emit('processed', ctx.eventId, ctx.type, error === undefined, true);
  }

  /** Writes the processed marks gathered so far (shutdown: before Postgres is closed). */
  async flushMarks(): Promise<void> {
    await this.markFlush;
  }

  /**
   * Marks an event processed. Marks are gathered for MARK_BATCH_MS and written in one statement: one
   * UPDATE per batch rather than per event, and none while the next set-up step is under way. An event
   * whose mark is lost (the process died first) is replayed at start-up, where acting on it again is
   * harmless (its call exists by then).
   */
  private mark(id: string, error?: string): Promise<void> {
    this.marks.push({ id, error: error ?? null });
    this.markFlush ??= new Promise<void>((resolve) => setTimeout(resolve, MARK_BATCH_MS)).then(async () => {
      const batch = this.marks.splice(0);
      this.markFlush = null;
      await this.d.webhookEvents.markWebhooksProcessed(batch).catch((err: unknown) =>
        this.d.log.error({ err, events: batch.length }, 'could not mark webhooks processed (they will be replayed)'));
    });
    return this.markFlush;
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
