import { EventEmitter } from 'node:events';
import { IncomingMessage } from 'node:http';
import net from 'node:net';
import { Context, Middleware, Next } from 'koa';
import { Logger } from '../log';
import { WebhookResult } from '../metrics/metrics';
import { checkSignatureHeader } from '../providers/ycloud/signature';
import { BodyAbortedError, BodyTimeoutError, BodyTooLargeError, readRawBody } from './raw-body';

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
  /** Bodies read at once, all clients together (WEBHOOK_MAX_CONCURRENT_READS); beyond: 503. */
  maxConcurrentReads: number;
  /** Bodies read at once from one client address (WEBHOOK_MAX_READS_PER_CLIENT); beyond: 429. */
  maxReadsPerClient: number;
  /** Accepted age of the signature's timestamp (YCLOUD_WEBHOOK_TOLERANCE_SECONDS). */
  toleranceSeconds: number;
}

/** Why a webhook request was answered before its event was looked at. */
export interface Refusal {
  status: 400 | 401 | 408 | 413 | 429 | 503;
  /** The answer's `error`: says what was wrong, never what was expected (no secrets). */
  error: string;
  result: WebhookResult;
  /** Seconds, on 429 and 503. */
  retryAfterS?: number;
}

export type Received = { ok: true; raw: Buffer } | { ok: false; refusal: Refusal };

/**
 * Counts the bodies being read, in all and per client address, and refuses beyond the limits instead
 * of queueing. A client has an entry only while one of its reads is in progress, so the map never
 * holds more than `maxTotal` addresses whatever the clients send.
 */
export class ReadSlots {
  private total = 0;
  private readonly perClient = new Map<string, number>();

  constructor(private readonly maxTotal: number, private readonly maxPerClient: number) {}

  /** A release function, or which limit is reached. */
  acquire(client: string): (() => void) | 'client' | 'total' {
    const mine = this.perClient.get(client) ?? 0;
    if (mine >= this.maxPerClient) return 'client';
    if (this.total >= this.maxTotal) return 'total';
    this.total++;
    this.perClient.set(client, mine + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.total--;
      const n = (this.perClient.get(client) ?? 1) - 1;
      if (n > 0) this.perClient.set(client, n);
      else this.perClient.delete(client);
    };
  }

  get reading(): number {
    return this.total;
  }

  get clients(): number {
    return this.perClient.size;
  }
}

/**
 * The door of POST /webhooks/ycloud, before any event is looked at: a request without a plausible,
 * fresh signature header is refused before a byte of its body is read (401); a declared length over
 * the cap is refused unread (413); beyond the concurrent-read limits it is refused at once (429 per
 * client, 503 in all, with Retry-After); the body must arrive within the read timeout (408) and under
 * the cap (413). Whether the signature matches the body is the caller's check, once the body is read.
 */
export class IngressGuard extends EventEmitter {
  readonly slots: ReadSlots;

  constructor(private readonly limits: IngressLimits) {
    super();
    this.slots = new ReadSlots(limits.maxConcurrentReads, limits.maxReadsPerClient);
  }

  async receive(req: IncomingMessage, signature: string | undefined, client: string): Promise<Received> {
    const sig = checkSignatureHeader(signature, this.limits.toleranceSeconds);
    if (!sig.ok) return refuse(401, sig.reason, sig.stale ? 'stale' : 'bad_signature');
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > WEBHOOK_MAX_BODY_BYTES) {
      return refuse(413, `body larger than ${WEBHOOK_MAX_BODY_BYTES} bytes`, 'malformed');
    }
    const release = this.slots.acquire(client);
    if (release === 'client') return refuse(429, 'too many webhook bodies in progress from this address', 'overloaded', 1);
    if (release === 'total') return refuse(503, 'too many webhook bodies in progress', 'overloaded', 1);
    /** 'reading' (the number of bodies being read) on every change: tests await a count instead of sleeping. */
    this.emit('reading', this.slots.reading);
    try {
      return { ok: true, raw: await readRawBody(req, WEBHOOK_MAX_BODY_BYTES, this.limits.readTimeoutMs) };
    } catch (err) {
      if (err instanceof BodyTooLargeError) return refuse(413, `body larger than ${WEBHOOK_MAX_BODY_BYTES} bytes`, 'malformed');
      if (err instanceof BodyTimeoutError) return refuse(408, `body not received within ${this.limits.readTimeoutMs} ms`, 'timeout');
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
  return async (ctx: Context, next: Next) => {
    if (!ctx.querystring) return next();
    for (const [name, v] of Object.entries(ctx.query)) {
      const values = Array.isArray(v) ? v : [v ?? ''];
      if (hasUnsafeText(name) || values.some(hasUnsafeText)) {
        const field = printable(name);
        log.warn({ ip: ctx.ip, path: ctx.path, field }, 'request refused: control character in a query parameter');
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

/** An IPv4 client seen through a dual-stack socket (::ffff:192.0.2.1) as its IPv4 address, one spelling per client. */
export function plainAddress(ip: string): string {
  return ip.startsWith('::ffff:') && net.isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
}

/**
 * Logs refusals at most `perWindow` times per window, then counts the rest and says how many were left
 * out with the next line logged: a flood of forged requests cannot turn into a flood of log lines.
 * Holds two counters, whatever is refused.
 */
export class RefusalLog {
  private windowStart = 0;
  private logged = 0;
  private suppressed = 0;

  constructor(private readonly log: Logger, private readonly perWindow = 20, private readonly windowMs = 10_000, private readonly now: () => number = Date.now) {}

  warn(fields: Record<string, unknown>, msg: string): void {
    const t = this.now();
    if (t - this.windowStart >= this.windowMs) {
      this.windowStart = t;
      this.logged = 0;
    }
    if (this.logged >= this.perWindow) {
      this.suppressed++;
      return;
    }
    this.logged++;
    const left = this.suppressed;
    this.suppressed = 0;
    this.log.warn(left ? { ...fields, suppressedBefore: left } : fields, msg);
  }
}
