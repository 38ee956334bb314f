import { RefusalLog } from '../refusal-log';
import { EventEmitter } from 'node:events';
import { IncomingMessage } from 'node:http';
import { Context, Middleware, Next } from 'koa';
import { Logger } from '../log';
import { WebhookResult } from '../metrics/metrics';
import { KeyCounts } from '../util/key-counts';
import { BodyAbortedError, BodyEvictedError, BodyTimeoutError, BodyTooLargeError, BodyTooSlowError, readRawBody } from './raw-body';

/**
 * The largest webhook body read. A real call event is a few KiB: the connect event's SDP offer is
 * 1-3 KiB and is refused above MAX_SDP_CHARS (16 KiB, events.ts), JSON escaping its CRLFs adds a few
 * per cent, and the envelope is under 1 KiB; an inbound text message is at most 4,096 characters
 * (under 48 KiB even if every one were sent as a \uXXXX surrogate pair). 64 KiB covers all of them
 * with room, and is a quarter of what one slow upload could hold before.
 */
export const WEBHOOK_MAX_BODY_BYTES = 64 * 1024;

export interface IngressLimits {
  /** Time to receive the whole body once the handler starts reading it (WEBHOOK_READ_TIMEOUT_MS). */
  readTimeoutMs: number;
  /** Bodies read at once for senders not (yet) verified, all together (WEBHOOK_MAX_CONCURRENT_READS). */
  maxConcurrentReads: number;
  /** Of those, at once from one client address (WEBHOOK_MAX_READS_PER_CLIENT). */
  maxReadsPerClient: number;
  /** Reads kept for verified senders alone, besides the others (WEBHOOK_VERIFIED_READS). */
  verifiedReads: number;
  /** After the first second, a body arriving slower than this on average is cut (WEBHOOK_MIN_BYTES_PER_S; 0: no minimum). */
  minBytesPerS: number;
}

/** The provider's check of its signature header alone (present, well formed, fresh), made before any read. */
export type HeaderCheck = { ok: true } | { ok: false; reason: string; stale?: true };

/** Any rate is accepted during a read's first second; only then can it be cut for slowness or made to give way. */
export const READ_GRACE_MS = 1000;
/** How long an address stays a verified sender after its last correctly signed webhook, and how many are remembered. */
export const VERIFIED_SENDER_TTL_MS = 60 * 60 * 1000;
export const VERIFIED_SENDERS_MAX = 256;

/** Why a webhook request was answered before its event was looked at. */
export interface Refusal {
  status: 400 | 401 | 408 | 413 | 503;
  /** The answer's `error`: says what was wrong, never what was expected (no secrets). */
  error: string;
  result: WebhookResult;
  /** Seconds, on 503. */
  retryAfterS?: number;
}

export type Received = { ok: true; raw: Buffer } | { ok: false; refusal: Refusal };

/** One body being read: who sends it, in which pool, since when, how much so far; `signal` aborts when it must make way. */
export interface BodyRead {
  readonly client: string;
  readonly pool: 'verified' | 'open';
  readonly started: number;
  bytes: number;
  lastDataAt: number;
  readonly signal: AbortSignal;
  /** 'client' or 'total': the limit it was made to give way for (set when it was). */
  evictedFor: 'client' | 'total' | null;
}

interface SlotRead extends BodyRead { readonly abort: AbortController }

/**
 * The bodies being read, in two pools: one for verified senders only (addresses that recently
 * delivered a correctly signed webhook), which no other request can take, and one open to all, with
 * a share per client address. A pool (or a client's share) that is full does not refuse the newcomer:
 * the read that is worst makes way for it, ended at once. Worst: among reads past their first second,
 * the slowest on average; otherwise the one that has waited longest for data. A real webhook's body
 * arrives with its headers and is read within a few milliseconds, so it is never the worst for long:
 * stalled and trickling reads make way, and whoever holds them cannot keep the door shut.
 * A client has an entry only while one of its reads is in progress.
 */
export class ReadSlots {
  private readonly reads = new Set<SlotRead>();
  private readonly openPerClient = new KeyCounts();
  private openCount = 0;
  private verifiedCount = 0;
  /** Reads ended to make way for a newcomer, since start (tests print it). */
  evictions = 0;

  constructor(private readonly maxOpen: number, private readonly maxPerClient: number, private readonly maxVerified = 0, private readonly now: () => number = () => performance.now()) {}

  /** Takes a slot for a read from `client`, ending the worst read in its way if the slots are full. */
  acquire(client: string, verified = false): { read: BodyRead; release: () => void } {
    let pool: BodyRead['pool'] = 'open';
    if (verified && this.verifiedCount < this.maxVerified) pool = 'verified';
    else if (verified && this.maxVerified > 0 && this.openCount >= this.maxOpen) {
      // Its own pool and the open one are both full: a slot of its own pool makes way.
      this.evict([...this.reads].filter((r) => r.pool === 'verified'), 'total');
      pool = 'verified';
    } else {
      if (this.openPerClient.get(client) >= this.maxPerClient) {
        this.evict([...this.reads].filter((r) => r.pool === 'open' && r.client === client), 'client');
      }
      if (this.openCount >= this.maxOpen) this.evict([...this.reads].filter((r) => r.pool === 'open'), 'total');
    }
    const t = this.now();
    const abort = new AbortController();
    const read: SlotRead = { client, pool, started: t, bytes: 0, lastDataAt: t, evictedFor: null, abort, signal: abort.signal };
    this.add(read);
    return { read, release: () => this.remove(read) };
  }

  /** Records progress on a read (its size so far). */
  progress(read: BodyRead, bytes: number): void {
    read.bytes = bytes;
    read.lastDataAt = this.now();
  }

  get reading(): number {
    return this.reads.size;
  }

  get clients(): number {
    return new Set([...this.reads].map((r) => r.client)).size;
  }

  private evict(candidates: Array<SlotRead>, limit: 'client' | 'total'): void {
    const worst = this.worst(candidates);
    if (!worst) return;
    this.remove(worst);
    worst.evictedFor = limit;
    this.evictions++;
    worst.abort.abort();
  }

  private worst<T extends BodyRead>(candidates: T[]): T | null {
    const t = this.now();
    const past = candidates.filter((r) => t - r.started >= READ_GRACE_MS);
    if (past.length) return past.reduce((a, b) => (b.bytes / (t - b.started) < a.bytes / (t - a.started) ? b : a));
    return candidates.reduce<T | null>((a, b) => (!a || b.lastDataAt < a.lastDataAt ? b : a), null);
  }

  private add(read: SlotRead): void {
    this.reads.add(read);
    if (read.pool === 'verified') this.verifiedCount++;
    else {
      this.openCount++;
      this.openPerClient.add(read.client);
    }
  }

  private remove(read: SlotRead): void {
    if (!this.reads.delete(read)) return;
    if (read.pool === 'verified') this.verifiedCount--;
    else {
      this.openCount--;
      this.openPerClient.remove(read.client);
    }
  }
}

/**
 * Addresses that delivered a correctly signed webhook within the last `ttlMs`: at most `max`, the
 * longest unseen forgotten first. Only the secret's holder can add one.
 */
export class VerifiedSenders {
  private readonly seen = new Map<string, number>();

  constructor(private readonly max = VERIFIED_SENDERS_MAX, private readonly ttlMs = VERIFIED_SENDER_TTL_MS, private readonly now: () => number = Date.now) {}

  add(address: string): void {
    this.seen.delete(address);
    this.seen.set(address, this.now());
    if (this.seen.size > this.max) this.seen.delete(this.seen.keys().next().value as string);
  }

  has(address: string): boolean {
    const at = this.seen.get(address);
    if (at === undefined) return false;
    if (this.now() - at < this.ttlMs) return true;
    this.seen.delete(address);
    return false;
  }

  get size(): number {
    return this.seen.size;
  }
}

/**
 * The door of a provider's webhook endpoint (POST /webhooks/<provider>), before any event is looked at: a request without a plausible,
 * fresh signature header is refused before a byte of its body is read (401); a declared length over
 * the cap is refused unread (413); the body must arrive within the read timeout (408), after its first
 * second at least at the minimum rate (408), and under the cap (413). When the read slots are full the
 * worst read in the way is ended (503 with Retry-After) so that the newcomer is read (ReadSlots).
 * Whether the signature matches the body is the caller's check, once the body is read; the caller
 * then marks the address a verified sender (`verified`).
 */
export class IngressGuard extends EventEmitter {
  readonly slots: ReadSlots;
  readonly senders = new VerifiedSenders();

  constructor(private readonly limits: IngressLimits) {
    super();
    this.slots = new ReadSlots(limits.maxConcurrentReads, limits.maxReadsPerClient, limits.verifiedReads);
  }

  /** A correctly signed webhook came from this address. */
  verified(client: string): void {
    this.senders.add(client);
  }

  /** `maxBytes`: the largest body this provider sends (YCloud: one event, 64 KiB; Meta: a batch). */
  async receive(req: IncomingMessage, sig: HeaderCheck, client: string, maxBytes = WEBHOOK_MAX_BODY_BYTES): Promise<Received> {
    if (!sig.ok) return refuse(401, sig.reason, sig.stale ? 'stale' : 'bad_signature');
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > maxBytes) {
      return refuse(413, `body larger than ${maxBytes} bytes`, 'malformed');
    }
    const { read, release } = this.slots.acquire(client, this.senders.has(client));
    /** 'reading' (the number of bodies being read) on every change: tests await a count instead of sleeping. */
    this.emit('reading', this.slots.reading);
    try {
      return { ok: true, raw: await readRawBody(req, maxBytes, {
        timeoutMs: this.limits.readTimeoutMs, minBytesPerS: this.limits.minBytesPerS, graceMs: READ_GRACE_MS,
        signal: read.signal, onProgress: (n) => this.slots.progress(read, n),
      }) };
    } catch (err) {
      if (err instanceof BodyTooLargeError) return refuse(413, `body larger than ${maxBytes} bytes`, 'malformed');
      if (err instanceof BodyTimeoutError) return refuse(408, `body not received within ${this.limits.readTimeoutMs} ms`, 'timeout');
      if (err instanceof BodyTooSlowError) return refuse(408, `body arrived slower than ${this.limits.minBytesPerS} bytes/s`, 'timeout');
      if (err instanceof BodyEvictedError) {
        const why = read.evictedFor === 'client' ? 'from this address' : 'in all';
        return refuse(503, `too many webhook bodies in progress ${why}: this one, the slowest, made way for another`, 'overloaded', 1);
      }
      if (err instanceof BodyAbortedError) return refuse(400, 'body incomplete', 'malformed');
      throw err;
    } finally {
      release();
      this.emit('reading', this.slots.reading);
    }
  }
}

function refuse(status: Refusal['status'], error: string, result: WebhookResult, retryAfterS?: number): Received {
  return { ok: false, refusal: retryAfterS === undefined ? { status, error, result } : { status, error, result, retryAfterS } };
}

/**
 * Answers a refusal: its status and `{ error }`, Retry-After when it has one, and `Connection: close`:
 * the body, unread or read in part, is never read further and the socket is not kept for another request.
 */
export function answerRefusal(ctx: Context, r: Refusal): void {
  ctx.status = r.status;
  ctx.body = { error: r.error };
  if (r.retryAfterS !== undefined) ctx.set('Retry-After', String(r.retryAfterS));
  ctx.set('Connection', 'close');
}

/** C0 controls (CR, LF, NUL, ...), DEL, and UTF-16 halves without their other half. */
const UNSAFE_TEXT = /[\u0000-\u001f\u007f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Whether a string has a control character or a lone surrogate (neither is ever a valid parameter). */
export function hasUnsafeText(s: string): boolean {
  return UNSAFE_TEXT.test(s);
}

/**
 * Refuses, for every route, a query parameter whose name or value holds a control character or a
 * lone surrogate: 400 `{ error, field }`. Postgres refuses NUL in text, and no parameter of the API
 * takes a control character, so such a value would otherwise end in a database error.
 */
export function queryTextGuard(log: Logger): Middleware {
  const refusals = new RefusalLog(log);
  return async (ctx: Context, next: Next) => {
    if (!ctx.querystring) return next();
    for (const [name, v] of Object.entries(ctx.query)) {
      const values = Array.isArray(v) ? v : [v ?? ''];
      if (hasUnsafeText(name) || values.some(hasUnsafeText)) {
        const field = printable(name);
        refusals.warn({ ip: ctx.ip, path: ctx.path, field }, 'request refused: control character in a query parameter');
        ctx.status = 400;
        ctx.body = { error: `${field} holds a control character or an invalid character`, field };
        return;
      }
    }
    return next();
  };
}

/** The text with every unsafe character replaced by U+FFFD and cut to `max` characters (for logs and answers). */
export function printable(s: string, max = 100): string {
  return s.slice(0, max).replace(new RegExp(UNSAFE_TEXT.source, 'g'), '\ufffd');
}


