import { performance } from 'node:perf_hooks';
import Router from '@koa/router';
import { Marks } from '../metrics/marks';
import { Logger } from '../log';
import { Metrics } from '../metrics/metrics';
import { IncomingEvent, IngestResult } from '../events/pipeline';
import { WebhookSource } from '../events/webhook-source';
import { wacidOf } from '../calls/call-events';
import { WebhookQuarantine } from '../cdr/quarantine';
import { answerRefusal, IngressGuard, printable } from './ingress-guard';
import { RefusalLog } from '../refusal-log';

export interface WebhookDeps {
  /**
   * The webhook source of a provider account by name (POST /webhooks/<name>): its signature and its
   * event shapes; null for a name no account has. Read per request, so a reload of the numbers applies.
   */
  source: (account: string) => WebhookSource | null;
  log: Logger;
  marks: Marks;
  /** Stores a verified event and starts acting on it (src/events/pipeline.ts). */
  ingest: (e: IncomingEvent) => Promise<IngestResult>;
  /** Counts every request by event type and result (wasb_webhook_events_total). */
  metrics: Metrics;
  /** The signature header, size, time and concurrency checks before and while the body is read. */
  ingress: IngressGuard;
  /** Where signed events refused as never valid are kept (their answer is 4xx, so YCloud stops). */
  quarantine: WebhookQuarantine;
}

/**
 * POST /webhooks/<provider>: verify the signature over the raw bytes, validate, then store each event
 * once by its id while processing starts, and answer once stored. Forged → 401, malformed → 202 and
 * quarantined, redelivery → 200 and ignored.
 */
export function webhookRoutes(d: WebhookDeps): Router {
  const router = new Router();
  // Unsigned, forged and over-limit requests can come in floods: their log lines are rate-limited.
  const refusals = new RefusalLog(d.log);
  // Meta's subscription check: GET ?hub.mode=subscribe&hub.verify_token=...&hub.challenge=... (403 on a wrong token).
  router.get('/webhooks/:account', (ctx) => {
    const source = d.source(ctx.params.account ?? '');
    if (!source?.verifyChallenge) {
      ctx.status = 404;
      ctx.body = { error: 'no webhook verification here' };
      return;
    }
    const query: Record<string, string | undefined> = {};
    for (const [k, v] of Object.entries(ctx.query)) query[k] = typeof v === 'string' ? v : undefined;
    const answer = source.verifyChallenge(query);
    if (answer.status !== 200) refusals.warn({ ip: ctx.ip, account: source.provider }, 'webhook verification refused: wrong verify token');
    else d.log.info({ account: source.provider }, 'webhook subscription verified');
    ctx.status = answer.status;
    ctx.type = 'text/plain';
    ctx.body = answer.body;
  });
  router.post('/webhooks/:account', async (ctx) => {
    const arrived = performance.now();
    const source = d.source(ctx.params.account ?? '');
    if (!source) {
      ctx.status = 404;
      ctx.body = { error: 'no provider account of that name' };
      return;
    }
    const endpoint = printable(ctx.get('X-Webhook-Endpoint-ID')) || null;
    const header = ctx.get(source.signatureHeader) || undefined;
    const got = await d.ingress.receive(ctx.req, source.checkHeader(header), ctx.ip, source.maxBodyBytes);
    if (!got.ok) {
      refusals.warn({ ip: ctx.ip, status: got.refusal.status, reason: got.refusal.error, endpoint }, 'webhook refused');
      d.metrics.webhookEvent('unknown', got.refusal.result);
      answerRefusal(ctx, got.refusal);
      return;
    }
    const raw = got.raw;
    const sig = source.verify(header, raw);
    if (!sig.ok) {
      refusals.warn({ ip: ctx.ip, reason: sig.reason, endpoint }, 'webhook refused: bad signature');
      d.metrics.webhookEvent('unknown', sig.stale ? 'stale' : 'bad_signature');
      answerRefusal(ctx, { status: 401, error: sig.reason, result: sig.stale ? 'stale' : 'bad_signature' });
      return;
    }
    // Signed with the secret: this address is the provider's (or the proxy's in front), and gets read slots others cannot take.
    d.ingress.verified(ctx.ip);
    // The signature covers the bytes as sent; a leading UTF-8 BOM is not JSON, so it is left out of what is parsed.
    const body = withoutBom(raw);
    const parsed = source.parse(body);
    if (!parsed.ok) {
      // Signed, so from the provider, and never valid: kept as sent (a redelivery counts again). YCloud
      // retries any non-2xx, so a kept event is answered 202 (received, not acted on): a 4xx would be
      // redelivered for ever. Not kept (Postgres down): 503, and the redelivery tries again.
      const kept = await d.quarantine.keep(raw, parsed.reason, ctx.ip).then(() => true, (err: unknown) => {
        d.log.error({ err, reason: parsed.reason }, 'refused webhook not quarantined; asking for a retry');
        return false;
      });
      d.log.warn({ ip: ctx.ip, reason: printable(parsed.reason, 500), type: parsed.type ?? null, bytes: raw.length, quarantined: kept }, 'webhook refused: malformed');
      d.metrics.webhookEvent(parsed.type ?? 'unknown', kept ? 'malformed' : 'store_failed');
      ctx.status = kept ? 202 : 503;
      ctx.body = kept
        ? { ok: false, quarantined: true, error: `malformed event: ${printable(parsed.reason, 500)}` }
        : { error: 'temporarily unable to store the event' };
      return;
    }
    // A batch (Meta's envelope) may hold a change that can never be valid beside good ones: that one is
    // kept in quarantine, the others are processed.
    for (const r of parsed.rejected ?? []) {
      await d.quarantine.keep(Buffer.from(JSON.stringify(r.payload)), r.reason, ctx.ip).catch((err: unknown) =>
        d.log.error({ err, reason: r.reason }, 'refused part of a webhook not quarantined'));
      d.log.warn({ ip: ctx.ip, reason: printable(r.reason, 500), account: source.provider }, 'part of a webhook refused: malformed (quarantined)');
      d.metrics.webhookEvent(r.type ?? 'unknown', 'malformed');
    }
    // Each event is stored and processed on its own (see EventPipeline); the answer waits for the writes only.
    const results = await Promise.all(parsed.deliveries.map((e) => {
      const wacid = wacidOf(e.event);
      if (wacid && (e.event?.kind === 'offered' || e.event?.kind === 'answered')) d.marks.mark(wacid, 'webhook_received', arrived);
      return d.ingest({ ...e, provider: source.provider, wacid, arrivedAt: arrived });
    }));
    if (results.includes('store_failed')) {
      // Not stored: let the provider retry rather than lose it (what was stored is a duplicate then).
      for (const [i, r] of results.entries()) if (r === 'store_failed') d.metrics.webhookEvent(parsed.deliveries[i]!.type, 'store_failed');
      ctx.status = 503;
      ctx.body = { error: 'temporarily unable to store the event' };
      return;
    }
    const duplicate = results.every((r) => r === 'duplicate');
    ctx.status = 200;
    ctx.body = { ok: true, duplicate };
    for (const [i, e] of parsed.deliveries.entries()) {
      if (results[i] === 'duplicate') {
        d.log.info({ eventId: e.id, type: e.type }, 'duplicate webhook ignored');
        d.metrics.webhookEvent(e.type, 'duplicate');
      } else if (!e.event) {
        d.metrics.webhookEvent(e.type, 'ignored');
      }
    }
  });
  return router;
}

/** The bytes without a leading UTF-8 byte order mark (EF BB BF), which some senders put before JSON. */
export function withoutBom(raw: Buffer): Buffer {
  return raw.length >= 3 && raw[0] === 0xef && raw[1] === 0xbb && raw[2] === 0xbf ? raw.subarray(3) : raw;
}
