import http from 'node:http';
import Koa from 'koa';
import Router from '@koa/router';
import { Logger } from '../log';
import { openApiRoutes } from './openapi';

/** What /readyz reports: ok, and each dependency's check by name. */
export interface Readiness { ready: () => Promise<{ ok: boolean; checks: Record<string, unknown> }> }

/** The Koa app: webhooks plus health/readiness for load balancers and orchestrators. */
export function createHttpApp(routers: Array<Router | Koa.Middleware>, readiness: Readiness, log: Logger): Koa {
  const app = new Koa();
  app.proxy = true;
  app.use(async (ctx, next) => {
    try {
      await next();
    } catch (err) {
      log.error({ err: (err as Error).message, path: ctx.path }, 'unhandled HTTP error');
      ctx.status = 500;
      ctx.body = { error: 'internal error' };
    }
  });
  const health = new Router();
  health.get('/healthz', (ctx) => {
    ctx.body = { ok: true };
  });
  health.get('/readyz', async (ctx) => {
    const r = await readiness.ready();
    ctx.status = r.ok ? 200 : 503;
    ctx.body = r;
  });
  // The OpenAPI document is public and mounted ahead of the /api routers (and their auth).
  // A plain middleware in the list (the /api guard) runs in its place, ahead of the routers after it.
  for (const r of [health, openApiRoutes(), ...routers]) {
    if (r instanceof Router) app.use(r.routes()).use(r.allowedMethods());
    else app.use(r);
  }
  return app;
}

export function listen(app: Koa, port: number, host?: string): Promise<http.Server> {
  return new Promise((resolve, reject) => {
    const server = http.createServer(app.callback());
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}
