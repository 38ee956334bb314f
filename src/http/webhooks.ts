import { performance } from 'node:perf_hooks';
import Router from '@koa/router';
import { CdrStore } from '../cdr/store';
import { Marks } from '../calls/marks';
import { Logger } from '../log';
import { Metrics } from '../metrics/metrics';
import { IncomingEvent, IngestResult } from '../events/pipeline';
import { parseWebhookEvent, wacidOf } from '../providers/ycloud/events';
import { verifyWebhookSignature } from '../providers/ycloud/signature';
import { WebhookQuarantine } from '../cdr/quarantine';
import { answerRefusal, IngressGuard, printable, RefusalLog } from './ingress-guard';

export interface WebhookDeps {
  secret: string;
  toleranceSeconds: number;
  cdr: CdrStore;
  log: Logger;
  marks: Marks;
  /** Stores a verified event and starts acting on it (src/events/pipeline.ts). */
  ingest: (e: IncomingEvent) => Promise<IngestResult>;
  /** Counts every request by event type and result (wasb_webhook_events_total). */
  metrics?: Metrics;
  /** The signature header, size, time and concurrency checks before and while the body is read. */
  ingress: IngressGuard;
  /** Where signed events refused as never valid are kept (their answer is 4xx, so YCloud stops). */
  quarantine: WebhookQuarantine;
}

/**
 * POST /webhooks/ycloud: verify the signature over the raw bytes, validate, then store once by event
 * id while processing starts, and answer once stored. Forged → 401, malformed → 400, redelivery → 200 and ignored.
 */
export function webhookRoutes(d: WebhookDeps): Router {
  const router = new Router();
  // Unsigned, forged and over-limit requests can come in floods: their log lines are rate-limited.
  const refusals = new RefusalLog(d.log);
  router.post('/webhooks/ycloud', async (ctx) => {
    const arrived = performance.now();
    const endpoint = printable(ctx.get('X-Webhook-Endpoint-ID')) || null;
    const got = await d.ingress.receive(ctx.req, ctx.get('YCloud-Signature') || undefined, ctx.ip);
    if (!got.ok) {
      refusals.warn({ ip: ctx.ip, status: got.refusal.status, reason: got.refusal.error, endpoint }, 'webhook refused');
      d.metrics?.webhookEvent('unknown', got.refusal.result);
      answerRefusal(ctx, got.refusal);
      return;
    }
    const raw = got.raw;
    const sig = verifyWebhookSignature(d.secret, ctx.get('YCloud-Signature') || undefined, raw, d.toleranceSeconds);
    if (!sig.ok) {
      refusals.warn({ ip: ctx.ip, reason: sig.reason, endpoint }, 'webhook refused: bad signature');
      d.metrics?.webhookEvent('unknown', sig.stale ? 'stale' : 'bad_signature');
      answerRefusal(ctx, { status: 401, error: sig.reason, result: sig.stale ? 'stale' : 'bad_signature' });
      return;
    }
    // Signed with the secret: this address is YCloud's (or the proxy's in front), and gets read slots others cannot take.
    d.ingress.verified(ctx.ip);
    // The signature covers the bytes as sent; a leading UTF-8 BOM is not JSON, so it is left out of what is parsed.
    const body = withoutBom(raw);
    const parsed = parseWebhookEvent(body);
    if (!parsed.ok) {
      // Signed, so from YCloud, and never valid: kept as sent (a redelivery counts again). YCloud retries
      // any non-2xx, so a kept event is answered 202 (received, not acted on): a 4xx would be redelivered
      // for ever. Not kept (Postgres down): 503, and YCloud's redelivery tries again.
      const kept = await d.quarantine.keep(raw, parsed.reason, ctx.ip).then(() => true, (err: unknown) => {
        d.log.error({ err: (err as Error).message, reason: parsed.reason }, 'refused webhook not quarantined; asking for a retry');
        return false;
      });
      d.log.warn({ ip: ctx.ip, reason: printable(parsed.reason, 500), type: parsed.type ?? null, bytes: raw.length, quarantined: kept }, 'webhook refused: malformed');
      d.metrics?.webhookEvent(parsed.type ?? 'unknown', kept ? 'malformed' : 'store_failed');
      ctx.status = kept ? 202 : 503;
      ctx.body = kept
        ? { ok: false, quarantined: true, error: `malformed event: ${printable(parsed.reason, 500)}` }
        : { error: 'temporarily unable to store the event' };
      return;
    }
    const wacid = wacidOf(parsed.event);
    if (wacid && parsed.type === 'whatsapp.call.connect') d.marks.mark(wacid, 'webhook_received', arrived);
    // Stored and processed together (see EventPipeline); the answer waits for the write only.
    const result = await d.ingest({
      id: parsed.id, type: parsed.type, wacid, payload: JSON.parse(body.toString('utf8')) as unknown, event: parsed.event, arrivedAt: arrived,
    });
    if (result === 'store_failed') {
      // Not stored: let YCloud retry rather than lose it.
      d.metrics?.webhookEvent(parsed.type, 'store_failed');
      ctx.status = 503;
      ctx.body = { error: 'temporarily unable to store the event' };
      return;
    }
    ctx.status = 200;
    ctx.body = { ok: true, duplicate: result === 'duplicate' };
    if (result === 'duplicate') {
      d.log.info({ eventId: parsed.id, type: parsed.type }, 'duplicate webhook ignored');
      d.metrics?.webhookEvent(parsed.type, 'duplicate');
    } else if (!parsed.event) {
      d.metrics?.webhookEvent(parsed.type, 'ignored');
    }
  });
  return router;
}

/** The bytes without a leading UTF-8 byte order mark (EF BB BF), which some senders put before JSON. */
export function withoutBom(raw: Buffer): Buffer {
  return raw.length >= 3 && raw[0] === 0xef && raw[1] === 0xbb && raw[2] === 0xbf ? raw.subarray(3) : raw;
}
