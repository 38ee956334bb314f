import crypto from 'node:crypto';
import { Context, Middleware, Next } from 'koa';
import { Logger } from '../log';
import { RefusalLog } from '../refusal-log';

/** What a bearer token may do: everything under /api, or read calls and reports only. */
export type ApiRole = 'admin' | 'reporting';

export interface ApiAuthOptions {
  /** ADMIN_API_TOKEN: full access; null: none. */
  adminToken: string | null;
  /** REPORTING_API_TOKENS: read-only access to calls and reports. */
  reportingTokens: readonly string[];
  log: Logger;
}

/** Routers match paths case-insensitively and with or without a trailing slash: so does this. */
const UNDER_API = /^\/api(?:\/|$)/i;
const PUBLIC: readonly RegExp[] = [/^\/api\/openapi\.json\/?$/i];
/** What a reporting token may GET: calls, one call, its recording and media files, live calls, and reports. */
const REPORTING: readonly RegExp[] = [
  /^\/api\/calls\/?$/i,
  /^\/api\/calls\/[^/]+\/?$/i,
  /^\/api\/calls\/[^/]+\/recording\/?$/i,
  /^\/api\/calls\/[^/]+\/media\/[^/]+\/?$/i,
  /^\/api\/reports\/[^/]+\/?$/i,
];
const READ = new Set(['GET', 'HEAD']);

export function isApiPath(path: string): boolean {
  return UNDER_API.test(path);
}

/** GET /api/openapi.json needs no token. */
export function isPublicRoute(method: string, path: string): boolean {
  return READ.has(method) && PUBLIC.some((r) => r.test(path));
}

/** Whether a reporting token may make this request (everything else under /api needs the admin token). */
export function reportingMayUse(method: string, path: string): boolean {
  return READ.has(method) && REPORTING.some((r) => r.test(path));
}

/** Same-length digests of tokens, so comparing them takes the same time whatever was sent. */
export const tokenDigest = (s: string): Buffer => crypto.createHash('sha256').update(s, 'utf8').digest();

/**
 * Compares the token with every configured one in constant time (both sides hashed to the same length,
 * then timingSafeEqual; no early exit). Returns its role, or null.
 */
export function tokenRole(given: string, admin: Buffer | null, reporting: readonly Buffer[]): ApiRole | null {
  const g = tokenDigest(given);
  let role: ApiRole | null = null;
  if (admin && crypto.timingSafeEqual(g, admin)) role = 'admin';
  for (const r of reporting) if (crypto.timingSafeEqual(g, r) && !role) role = 'reporting';
  return role;
}

/**
 * The one guard for everything under /api (app-level, ahead of every router): 404 when no token is
 * configured at all, 401 without a valid bearer token, 403 when a reporting token asks for more than
 * reading calls and reports. Sets ctx.state.role. Tokens are never logged.
 */
export function apiAuth(o: ApiAuthOptions): Middleware {
  const admin = o.adminToken ? tokenDigest(o.adminToken) : null;
  const reporting = o.reportingTokens.map(tokenDigest);
  // Anyone can send requests without a token by the thousand: their log lines are rate-limited.
  const refusals = new RefusalLog(o.log);
  return async (ctx: Context, next: Next) => {
    if (!isApiPath(ctx.path) || isPublicRoute(ctx.method, ctx.path)) return next();
    if (!admin && reporting.length === 0) return refuse(ctx, 404, 'admin API disabled: set ADMIN_API_TOKEN');
    const given = bearerToken(ctx);
    const role = given ? tokenRole(given, admin, reporting) : null;
    if (!role) {
      refusals.warn({ ip: ctx.ip, method: ctx.method, path: ctx.path, reason: given ? 'bad token' : 'no token' }, 'API request refused');
      ctx.set('WWW-Authenticate', given ? 'Bearer realm="wa-sip-bridge", error="invalid_token"' : 'Bearer realm="wa-sip-bridge"');
      return refuse(ctx, 401, given ? 'bad bearer token' : 'missing bearer token (Authorization: Bearer <token>)');
    }
    if (role === 'reporting' && !reportingMayUse(ctx.method, ctx.path)) {
      refusals.warn({ ip: ctx.ip, method: ctx.method, path: ctx.path }, 'API request refused: reporting token on an admin route');
      return refuse(ctx, 403, 'a reporting token may only read calls and reports (GET /api/calls..., /api/reports/...)');
    }
    ctx.state.role = role;
    return next();
  };
}

/** Whether a request carries the admin token (ADMIN_API_TOKEN), compared in constant time; never with none set. */
export function adminBearer(adminToken: string | null): (ctx: Context) => boolean {
  const admin = adminToken ? tokenDigest(adminToken) : null;
  return (ctx) => {
    const given = bearerToken(ctx);
    return Boolean(admin && given && tokenRole(given, admin, []) === 'admin');
  };
}

/** The token of the request's `Authorization: Bearer <token>` header; undefined without one. */
export function bearerToken(ctx: Context): string | undefined {
  return /^Bearer +(\S+) *$/i.exec(ctx.get('Authorization'))?.[1];
}

/** The role the guard gave this request (undefined when the guard did not run). */
export function roleOf(ctx: Context): ApiRole | undefined {
  const r: unknown = ctx.state.role;
  return r === 'admin' || r === 'reporting' ? r : undefined;
}

function refuse(ctx: Context, status: number, error: string): void {
  ctx.status = status;
  ctx.body = { error };
}
