import crypto from 'node:crypto';
import Router from '@koa/router';
import { Logger } from '../log';
import { Metrics } from '../metrics/metrics';
import { tokenDigest as digest } from './auth';
import { RefusalLog } from '../refusal-log';

export interface MetricsRouteDeps {
  metrics: Metrics;
  /** METRICS_TOKEN: when set, scrapes must send `Authorization: Bearer <token>`; null: open. */
  token: string | null;
  log: Logger;
}

/** GET /metrics: the Prometheus text exposition of the bridge's registry. */
export function metricsRoutes(d: MetricsRouteDeps): Router {
  const router = new Router();
  const expected = d.token ? digest(d.token) : null;
  // Anyone can send scrapes without the token by the thousand: their log lines are rate-limited.
  const refusals = new RefusalLog(d.log);
  router.get('/metrics', async (ctx) => {
    if (expected) {
      const given = /^Bearer (.+)$/.exec(ctx.get('Authorization'))?.[1] ?? '';
      if (!crypto.timingSafeEqual(digest(given), expected)) {
        refusals.warn({ ip: ctx.ip }, 'metrics scrape refused: bad token');
        ctx.status = 401;
        ctx.set('WWW-Authenticate', 'Bearer realm="metrics"');
        ctx.body = { error: 'bad or missing bearer token' };
        return;
      }
    }
    ctx.set('Content-Type', d.metrics.contentType);
    ctx.set('Cache-Control', 'no-store');
    ctx.body = await d.metrics.text();
  });
  return router;
}
