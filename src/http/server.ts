import http from 'node:http';
import Koa from 'koa';
import Router from '@koa/router';
import { Logger } from '../log';
import { plainAddress, queryTextGuard } from './ingress-guard';
import { openApiRoutes } from './openapi';

/** What /readyz reports: ok, and each dependency's check by name. */
export interface Readiness { ready: () => Promise<{ ok: boolean; checks: Record<string, unknown> }> }

/**
 * `trustProxy`: how many reverse proxies in front append to X-Forwarded-For (TRUST_PROXY). 0: the header
 * is ignored and ctx.ip is the socket's peer, so a client cannot choose the address that is logged.
 */
export interface HttpAppOptions { trustProxy?: number }

/** The Koa app: webhooks plus health/readiness for load balancers and orchestrators. */
export function createHttpApp(routers: Array<Router | Koa.Middleware>, readiness: Readiness, log: Logger, opts: HttpAppOptions = {}): Koa {
  const app = new Koa();
  const hops = opts.trustProxy ?? 0;
  app.proxy = hops > 0;
  // Koa reads the client from the right of X-Forwarded-For: the entry the farthest trusted proxy appended.
  app.maxIpsCount = hops;
  app.use(async (ctx, next) => {
    try {
      await next();
    } catch (err) {
      log.error({ err: (err as Error).message, path: ctx.path }, 'unhandled HTTP error');
      ctx.status = 500;
      ctx.body = { error: 'internal error' };
    }
  });
  // The client address as logged and limited: the socket's peer, or with TRUST_PROXY the forwarded one.
  app.use((ctx, next) => {
    ctx.request.ip = plainAddress(ctx.request.ip);
    return next();
  });
  app.use(queryTextGuard(log));
  // A connection that fails under a request (a client that went away mid-body) is logged, not printed to stderr.
  app.on('error', (err: Error, ctx?: Koa.Context) => log.info({ err: err.message, path: ctx?.path ?? null, ip: ctx?.ip ?? null }, 'HTTP connection error'));
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

/**
 * Bounds on every HTTP connection, whatever the route: the request line and headers within 10 s, the
 * whole request (body included) within 30 s, at most 1,000 requests on one keep-alive connection, an
 * idle connection closed after 5 s between requests or 120 s without traffic; Node checks them every
 * second. Webhook bodies have their own, tighter limits (ingress-guard.ts).
 */
export const HTTP_LIMITS = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  socketIdleMs: 120_000,
  maxRequestsPerSocket: 1000,
  checkIntervalMs: 1000,
} as const;

/** `maxConnections` (HTTP_MAX_CONNECTIONS): connections beyond it are closed as they arrive. */
export function listen(app: Koa, port: number, host?: string, opts: { maxConnections?: number } = {}): Promise<http.Server> {
  return new Promise((resolve, reject) => {
    const server = http.createServer({
      headersTimeout: HTTP_LIMITS.headersTimeoutMs,
      requestTimeout: HTTP_LIMITS.requestTimeoutMs,
      keepAliveTimeout: HTTP_LIMITS.keepAliveTimeoutMs,
      connectionsCheckingInterval: HTTP_LIMITS.checkIntervalMs,
    }, app.callback());
    server.maxRequestsPerSocket = HTTP_LIMITS.maxRequestsPerSocket;
    server.setTimeout(HTTP_LIMITS.socketIdleMs);
    if (opts.maxConnections) server.maxConnections = opts.maxConnections;
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}
