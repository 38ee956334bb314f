import { Logger } from '../log';
import { CALL_WIDTHS, CallFields, EVENT_WIDTHS, NewCall } from './models';
import { clampToWidths, describeDbError, isPrimaryKeyTaken, isTransientDbError } from './write-safety';

/**
 * The writes a call's recorder makes (a CdrStore, or a gate in front of one), and where they go when
 * they cannot be made (the spill file replayed at the next start), when there is such a place.
 */
export interface CdrWrites {
  createCall(id: string, fields: NewCall): Promise<void>;
  updateCall(id: string, fields: CallFields): Promise<void>;
  addEvent(callId: string, type: string, detail: object | null, at?: Date): Promise<void>;
  /** Null or absent: writes given up are lost (counted). */
  readonly spill?: CdrSpillSink | null;
}

/** One write of a call's record, in the order it was made. */
export type CdrWrite =
  | { kind: 'create'; fields: NewCall }
  | { kind: 'update'; fields: CallFields }
  | { kind: 'event'; type: string; detail: object | null; at: Date };

/** A recorder whose queued writes can be handed over (the spill takes them at shutdown). */
export interface SpillableRecorder {
  readonly callId: string;
  /** Hands every write still queued to the spill; the recorder's later writes go there too. */
  spillQueued(why: string): void;
}

/** Where writes that could not reach Postgres are kept, in order, for the next start (see CdrSpill). */
export interface CdrSpillSink {
  /** Appends these writes of one call, in order; never throws (a failure is logged with what it lost). */
  append(callId: string, writes: readonly CdrWrite[], why: string): void;
  /** A recorder has writes queued (it is asked to hand them over at shutdown)... */
  track(r: SpillableRecorder): void;
  /** ...or has none left. */
  untrack(r: SpillableRecorder): void;
}

/** How a CallRecorder retries; the bridge takes these from its settings (CDR_RETRY_S, DATABASE_TIMEOUT_MS). */
export interface RecorderOptions {
  /** How long writes that fail for a passing reason (Postgres unreachable, slow) are retried before the queued ones are given up. */
  retryForMs: number;
  /** Bound on one attempt, besides the database's own timeouts (a write whose attempt is cut is retried). */
  attemptTimeoutMs: number;
  /** Wait before the first retry; doubled after each failure, up to `maxBackoffMs`. */
  firstBackoffMs: number;
  maxBackoffMs: number;
  /**
   * How long the first of a batch of writes waits before it starts (0: the next turn). Not inline: a
   * set-up step's own requests (ng commands, the SIP answer, YCloud) go out and come back before any
   * CDR statement competes with them for the CPU, and the updates of one step merge into one statement.
   */
  startDelayMs: number;
  /** Most writes held for one call: past it, timeline events are dropped (counted) and field updates merged. */
  maxQueued: number;
  /** The clock and the wait between attempts (tests replace them). */
  now: () => number;
  sleep: (ms: number) => Promise<void>;
  /** Told how many writes were given up, each time some are (a metric). */
  onGiveUp?: (writes: number) => void;
}

export const DEFAULT_RECORDER_OPTIONS: RecorderOptions = {
  retryForMs: 120000,
  attemptTimeoutMs: 15000,
  firstBackoffMs: 250,
  maxBackoffMs: 5000,
  maxQueued: 500,
  // Set-up steps take 2-10 ms each on loopback.
  startDelayMs: 20,
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

/** What one attempt came to. */
type Attempt = 'ok' | 'transient' | 'refused';

class AttemptTimeout extends Error {
  constructor(ms: number) {
    super(`CDR write took longer than ${ms} ms`);
    this.name = 'AttemptTimeout';
  }
}

/**
 * Writes one call's record in order without holding up signalling. Writes queue behind each other;
 * one that fails because Postgres is unreachable or slow is retried (backing off) until it succeeds
 * or `retryForMs` has passed since the failures began, so an outage of a few seconds or minutes
 * loses nothing. Past that the queued writes go to the store's spill file (replayed into Postgres at the
 * next start), and so do the call's later writes, so its record stays in order; with no spill they are
 * given up loudly, and later writes get one try each until Postgres answers again. At shutdown the
 * spill takes what is still queued (spillQueued). A write Postgres refuses for what it says is logged and skipped. Strings
 * longer than their columns are cut to fit (and logged) rather than costing the whole write. Log lines
 * carry an error's message and code only, never its SQL or parameters (phone numbers).
 */
export class CallRecorder {
  private readonly known: CallFields = {};
  private readonly queue: CdrWrite[] = [];
  /** The head of the queue is being written (it must not be merged into). */
  private headBusy = false;
  private running: Promise<void> | null = null;
  private failingSince: number | null = null;
  private failures = 0;
  /** The retry budget was spent: writes get one try each until one succeeds. */
  private givenUp = false;
  private dropped = 0;
  private warnedFull = false;
  /** Set once this call's writes have gone to the spill: every later one follows them there, in order. */
  private spilledTo: CdrSpillSink | null = null;
  private spilled = 0;
  private readonly opts: RecorderOptions;

  constructor(private readonly store: CdrWrites, readonly callId: string, private readonly log: Logger, opts: Partial<RecorderOptions> = {}) {
    this.opts = { ...DEFAULT_RECORDER_OPTIONS, ...opts };
  }

  /** The CDR as written so far (what the live-calls view shows), without waiting for Postgres. */
  get fields(): Readonly<CallFields> {
    return this.known;
  }

  /**
   * Writes that did not reach Postgres so far: given up, refused, or spilled to file for the next
   * start to write (0 when the whole record reached Postgres).
   */
  get lostWrites(): number {
    return this.dropped + this.spilled;
  }

  create(fields: NewCall): void {
    const clamped = this.clamp(fields, CALL_WIDTHS);
    Object.assign(this.known, clamped);
    this.enqueue({ kind: 'create', fields: clamped });
  }

  update(fields: CallFields): void {
    const clamped = this.clamp(fields, CALL_WIDTHS);
    Object.assign(this.known, clamped);
    this.enqueue({ kind: 'update', fields: clamped });
  }

  event(type: string, detail: object | null = null): void {
    const { type: fitted } = this.clamp({ type }, EVENT_WIDTHS);
    this.enqueue({ kind: 'event', type: fitted, detail, at: new Date() });
  }

  /**
   * Resolves once every write queued so far has been written, refused, given up or spilled: within
   * `retryForMs` plus one attempt and one backoff, however long Postgres stays away.
   */
  async flushed(): Promise<void> {
    while (this.running) await this.running;
  }

  private clamp<T extends object>(fields: T, widths: ReadonlyMap<string, number>): T {
    const r = clampToWidths(fields, widths);
    for (const c of r.clamped) this.log.warn({ callId: this.callId, ...c }, `CDR ${c.field} is longer than its column: cut to ${c.max} characters`);
    return r.fields;
  }

  /** Hands every queued write to the store's spill (see CdrSpillSink); the later ones follow. */
  spillQueued(why: string): void {
    const sink = this.store.spill;
    if (!sink) return;
    const writes = this.queue.splice(0);
    sink.untrack(this);
    if (!this.spilledTo) {
      this.log.warn({ callId: this.callId, writes: writes.length, why },
        'CDR writes spilled to file (replayed into Postgres at the next start); the rest of this call\'s record follows them there');
    }
    this.spilledTo = sink;
    this.spilled += writes.length;
    if (writes.length > 0) sink.append(this.callId, writes, why);
  }

  private enqueue(w: CdrWrite): void {
    if (this.spilledTo) {
      this.spilled++;
      return this.spilledTo.append(this.callId, [w], 'follows the writes spilled before it');
    }
    const q = this.queue;
    const mergeable = (i: number) => i >= 0 && q[i]!.kind === 'update' && !(i === 0 && this.headBusy);
    if (w.kind === 'update') {
      // Updates touch one row: a later one may join an earlier queued one without changing the result.
      const last = q.length - 1;
      let into = mergeable(last) ? last : -1;
      if (into < 0 && q.length >= this.opts.maxQueued) for (let i = last; i >= 0 && into < 0; i--) if (mergeable(i)) into = i;
      if (into >= 0) {
        const target = q[into] as { fields: CallFields };
        target.fields = { ...target.fields, ...w.fields };
        return this.kick();
      }
    } else if (w.kind === 'event' && q.length >= this.opts.maxQueued) {
      this.drop(1);
      if (!this.warnedFull) this.log.error({ callId: this.callId, queued: q.length }, 'CDR writes are backing up: timeline events dropped');
      this.warnedFull = true;
      return;
    }
    q.push(w);
    this.store.spill?.track(this);
    this.kick();
  }

  private kick(): void {
    if (this.running) return;
    // See startDelayMs.
    const delay = this.opts.startDelayMs;
    const started = new Promise<void>((resolve) => (delay > 0 ? setTimeout(resolve, delay) : setImmediate(resolve)));
    this.running = started.then(() => this.drain()).finally(() => {
      this.running = null;
      if (this.queue.length > 0) this.kick();
      else this.store.spill?.untrack(this);
    });
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const w = this.queue[0]!;
      this.headBusy = true;
      const result = await this.attempt(w);
      this.headBusy = false;
      // Spilled while this write was in flight: the spill has it too (replaying it again is harmless).
      if (this.spilledTo) return;
      if (result === 'ok') {
        this.queue.shift();
        if (this.failingSince !== null) this.log.info({ callId: this.callId, failedAttempts: this.failures }, 'CDR writes go through again');
        this.failingSince = null;
        this.failures = 0;
        this.givenUp = false;
        continue;
      }
      if (result === 'refused') {
        this.queue.shift();
        this.drop(1);
        continue;
      }
      // A gated store offers its spill once its verdict is in: writes queued before it are handed over too.
      this.store.spill?.track(this);
      const now = this.opts.now();
      this.failingSince ??= now;
      this.failures++;
      if (this.givenUp || now - this.failingSince >= this.opts.retryForMs) {
        if (this.store.spill) {
          this.spillQueued(`Postgres unreachable for ${now - this.failingSince} ms (past the retry limit)`);
          return;
        }
        const n = this.queue.splice(0).length;
        this.drop(n);
        this.givenUp = true;
        this.log.error({ callId: this.callId, writes: n, failingForMs: now - this.failingSince },
          'CDR writes given up: Postgres stayed unreachable past the retry limit; this call\'s record is incomplete');
        continue;
      }
      await this.opts.sleep(Math.min(this.opts.maxBackoffMs, this.opts.firstBackoffMs * 2 ** (this.failures - 1)));
    }
  }

  private async attempt(w: CdrWrite): Promise<Attempt> {
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new AttemptTimeout(this.opts.attemptTimeoutMs)), this.opts.attemptTimeoutMs);
    });
    const write = Promise.resolve().then(() => this.write(w));
    write.catch(() => undefined);
    try {
      await Promise.race([write, limit]);
      return 'ok';
    } catch (err) {
      // A create retried after a timed-out attempt that did commit (it waited on a lock): done, not refused.
      if (w.kind === 'create' && this.failures > 0 && isPrimaryKeyTaken(err, 'calls')) return 'ok';
      const transient = err instanceof AttemptTimeout || isTransientDbError(err);
      const what = w.kind === 'event' ? `event ${w.type}` : w.kind;
      if (!transient) {
        this.log.error({ callId: this.callId, err: describeDbError(err) }, `CDR ${what} refused by Postgres: skipped`);
      } else if (this.failures === 0) {
        this.log.warn({ callId: this.callId, err: describeDbError(err) }, `CDR ${what} failed; retrying until Postgres answers`);
      }
      return transient ? 'transient' : 'refused';
    } finally {
      clearTimeout(timer);
    }
  }

  private write(w: CdrWrite): Promise<void> {
    switch (w.kind) {
      case 'create': return this.store.createCall(this.callId, w.fields);
      case 'update': return this.store.updateCall(this.callId, w.fields);
      case 'event': return this.store.addEvent(this.callId, w.type, w.detail, w.at);
    }
  }

  private drop(n: number): void {
    if (n === 0) return;
    this.dropped += n;
    this.opts.onGiveUp?.(n);
  }
}
