import http from 'node:http';
import net from 'node:net';
import Koa from 'koa';
import Router from '@koa/router';
import { Logger } from '../log';
import { queryTextGuard } from './ingress-guard';
import { plainAddress } from '../util/addresses';
import { RefusalLog } from '../refusal-log';
import { openApiRoutes } from './openapi';
import { KeyCounts } from '../util/key-counts';

/**
 * What /readyz reports: ok, each dependency's check by name (true/false, for anyone), and the details
 * behind them (addresses, errors), only for `HttpAppOptions.mayReadDetails`.
 */
export interface ReadinessReport { ok: boolean; checks: Record<string, boolean>; details?: Record<string, unknown> }
export interface Readiness { ready: () => Promise<ReadinessReport> }

/**
 * `trustProxy`: how many reverse proxies in front append to X-Forwarded-For (TRUST_PROXY). 0: the header
 * is ignored and ctx.ip is the socket's peer, so a client cannot choose the address that is logged.
 * `mayReadDetails`: whether this request may see /readyz's details (the admin token); default: nobody.
 */
export interface HttpAppOptions { trustProxy?: number; mayReadDetails?: (ctx: Koa.Context) => boolean }

/** The Koa app: webhooks plus health/readiness for load balancers and orchestrators. */
/** The routes an app serves, as "METHOD /path/{param}" (HEAD left out): logged at start-up, checked against the OpenAPI document. */
export function routeTable(app: Koa): string[] {
  const out = new Set<string>();
  for (const mw of app.middleware as Array<Koa.Middleware & { router?: Router }>) {
    for (const layer of mw.router?.stack ?? []) {
      if (!layer.methods.length) continue; // router.use(): middleware, not a route
      const p = String(layer.path).replace(/:([A-Za-z0-9_]+)(\([^)]*\))?/g, '{$1}');
      for (const m of layer.methods) if (m !== 'HEAD') out.add(`${m} ${p}`);
    }
  }
  return [...out].sort();
}

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
      log.error({ err, path: ctx.path }, 'unhandled HTTP error');
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
  // Debug: any client can cause one at will (a reset mid-request), so at info they would be a flood.
  app.on('error', (err: Error, ctx?: Koa.Context) => log.debug({ err: err.message, path: ctx?.path ?? null, ip: ctx?.ip ?? null }, 'HTTP connection error'));
  const health = new Router();
  health.get('/healthz', (ctx) => {
    ctx.body = { ok: true };
  });
  health.get('/readyz', async (ctx) => {
    const r = await readiness.ready();
    ctx.status = r.ok ? 200 : 503;
    ctx.set('Cache-Control', 'no-store');
    // Load balancers need the status only; which addresses are behind it is for the operator.
    ctx.body = opts.mayReadDetails?.(ctx) ? r : { ok: r.ok, checks: r.checks };
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

export interface ListenOptions {
  /** HTTP_MAX_CONNECTIONS: connections beyond it are closed as they arrive. */
  maxConnections?: number;
  /** HTTP_MAX_CONNECTIONS_PER_CLIENT: connections from one address (the socket's peer) beyond it are closed as they arrive. */
  maxConnectionsPerClient?: number;
  /** Where refused connections are logged (rate-limited). */
  log?: Logger;
}

export function listen(app: Koa, port: number, host?: string, opts: ListenOptions = {}): Promise<http.Server> {
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
    if (opts.maxConnectionsPerClient) capPerClient(server, opts.maxConnectionsPerClient, opts.log);
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

/**
 * Closes a connection as it arrives when its address already has `max` open: one client holding
 * connections (idle, or sending its headers slowly) cannot take the whole HTTP_MAX_CONNECTIONS from
 * the others. Holds one counter per address with a connection open.
 */
export function capPerClient(server: http.Server, max: number, log?: Logger): void {
  const open = new KeyCounts();
  const refusals = log ? new RefusalLog(log) : null;
  server.on('connection', (socket: net.Socket) => {
    const addr = plainAddress(socket.remoteAddress ?? '');
    const n = open.get(addr);
    if (n >= max) {
      refusals?.warn({ ip: addr, open: n }, 'HTTP connection refused: too many open from this address');
      socket.destroy();
      return;
    }
    open.add(addr);
    socket.once('close', () => open.remove(addr));
  });
}
