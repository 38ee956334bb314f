import type { Context } from 'koa';
import { readRawBody } from './raw-body';

/** The most a JSON request body of the API or the sandbox page may hold. */
const MAX_JSON_BODY_BYTES = 64 * 1024;

/**
 * The request's body as a JSON object (an empty body is `{}`), or null once the request has been
 * answered 400: not JSON, not an object, too large, or not received in time.
 */
export async function jsonBody(ctx: Context): Promise<Record<string, unknown> | null> {
  try {
    const v: unknown = JSON.parse((await readRawBody(ctx.req, MAX_JSON_BODY_BYTES)).toString('utf8') || '{}');
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    /* fall through */
  }
  ctx.status = 400;
  ctx.body = { error: 'body must be a JSON object' };
  return null;
}
