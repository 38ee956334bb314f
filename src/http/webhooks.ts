import { performance } from 'node:perf_hooks';
import Router from '@koa/router';
import { CdrStore } from '../cdr/store';
import { Marks } from '../calls/marks';
import { Logger } from '../log';
import { Metrics } from '../metrics/metrics';
import { parseWebhookEvent, wacidOf, WebhookEvent } from '../providers/ycloud/events';
import { verifyWebhookSignature } from '../providers/ycloud/signature';
import { BodyTooLargeError, readRawBody } from './raw-body';

export interface WebhookDeps {
  secret: string;
  toleranceSeconds: number;
  cdr: CdrStore;
  log: Logger;
  marks: Marks;
  /** Acts on a stored event after the HTTP answer has gone out. */
  /** `arrivedAt` is the performance.now() of the request's arrival, for latency marks. */
  process: (event: WebhookEvent, arrivedAt: number) => Promise<void>;
  /** Told once an event has been acted on and marked processed (tests, metrics). */
  processed?: (eventId: string) => void;
  /** Counts every request by event type and result (wasb_webhook_events_total). */
  metrics?: Metrics;
}

const MAX_BODY = 256 * 1024;

/**
 * POST /webhooks/ycloud: verify the signature over the raw bytes, validate, store once by event id,
 * answer at once, then process. Forged → 401, malformed → 400, redelivery → 200 and ignored.
 */
export function webhookRoutes(d: WebhookDeps): Router {
  const router = new Router();
  router.post('/webhooks/ycloud', async (ctx) => {
    const arrived = performance.now();
    let raw: Buffer;
    try {
      raw = await readRawBody(ctx.req, MAX_BODY);
    } catch (err) {
      const tooLarge = err instanceof BodyTooLargeError;
      d.log.warn({ ip: ctx.ip, err: (err as Error).message }, 'webhook refused: unreadable body');
      d.metrics?.webhookEvent('unknown', 'malformed');
      ctx.status = tooLarge ? 413 : 400;
      ctx.body = { error: tooLarge ? 'body too large' : 'unreadable body' };
      return;
    }
    const sig = verifyWebhookSignature(d.secret, ctx.get('YCloud-Signature') || undefined, raw, d.toleranceSeconds);
    if (!sig.ok) {
      d.log.warn({ ip: ctx.ip, reason: sig.reason, endpoint: ctx.get('X-Webhook-Endpoint-ID') || null }, 'webhook refused: bad signature');
      d.metrics?.webhookEvent('unknown', sig.stale ? 'stale' : 'bad_signature');
      ctx.status = 401;
      ctx.body = { error: sig.reason };
      return;
    }
    const parsed = parseWebhookEvent(raw);
    if (!parsed.ok) {
      d.log.warn({ ip: ctx.ip, reason: parsed.reason, body: raw.subarray(0, 500).toString('utf8') }, 'webhook refused: malformed');
      d.metrics?.webhookEvent(parsed.type ?? 'unknown', 'malformed');
      ctx.status = 400;
      ctx.body = { error: `malformed event: ${parsed.reason}` };
      return;
    }
    const wacid = wacidOf(parsed.event);
    if (wacid && parsed.type === 'whatsapp.call.connect') d.marks.mark(wacid, 'webhook_received', arrived);
    let fresh: boolean;
    try {
      fresh = await d.cdr.recordWebhook(parsed.id, parsed.type, wacid, JSON.parse(raw.toString('utf8')));
    } catch (err) {
      // Not stored: let YCloud retry rather than lose it.
      d.log.error({ err: (err as Error).message, eventId: parsed.id }, 'webhook not stored; asking for a retry');
      d.metrics?.webhookEvent(parsed.type, 'store_failed');
      ctx.status = 503;
      ctx.body = { error: 'temporarily unable to store the event' };
      return;
    }
    ctx.status = 200;
    ctx.body = { ok: true, duplicate: !fresh };
    if (!fresh) {
      d.log.info({ eventId: parsed.id, type: parsed.type }, 'duplicate webhook ignored');
      d.metrics?.webhookEvent(parsed.type, 'duplicate');
      return;
    }
    const event = parsed.event;
    if (!event) {
      d.metrics?.webhookEvent(parsed.type, 'ignored');
      return;
    }
    setImmediate(() => {
      d.process(event, arrived).then(
        () => {
          d.metrics?.webhookEvent(parsed.type, 'processed');
          return d.cdr.markWebhookProcessed(parsed.id);
        },
        (err: unknown) => {
          d.metrics?.webhookEvent(parsed.type, 'error');
          d.log.error({ err: (err as Error).message, eventId: parsed.id }, 'webhook processing failed');
          return d.cdr.markWebhookProcessed(parsed.id, (err as Error).message);
        },
      ).then(
        () => d.processed?.(parsed.id),
        (err: unknown) => d.log.error({ err: (err as Error).message }, 'could not mark webhook processed'),
      );
    });
  });
  return router;
}
