import crypto from 'node:crypto';

/** Builds the `YCloud-Signature` header value for a body: `t=<unix seconds>,s=<hex HMAC-SHA256("<t>." + body)>`. */
export function signWebhook(secret: string, rawBody: Buffer | string, unixSeconds = Math.floor(Date.now() / 1000)): string {
  return `t=${unixSeconds},s=${hmac(secret, unixSeconds, rawBody)}`;
}

/** `stale`: a correct header whose timestamp is outside the window (a replay, or a clock off). */
export type SignatureCheck = { ok: true } | { ok: false; reason: string; stale?: true };

/** A header that is well formed and fresh: what can be checked before the body is read. */
export type SignatureHeader = { ok: true; t: number; s: Buffer } | { ok: false; reason: string; stale?: true };

/** The longest header worth splitting: `t=` 12 digits, `s=` 64 hex digits, separators and a little slack. */
const MAX_HEADER = 200;

/**
 * Checks the `YCloud-Signature` header alone: present, `t=<unix seconds>,s=<64 hex>`, and `t` inside
 * the replay window. The webhook endpoint does this before reading a byte of the body, so a request
 * without a plausible signature costs no body read.
 */
export function checkSignatureHeader(header: string | undefined, toleranceSeconds: number, nowSeconds = Date.now() / 1000): SignatureHeader {
  if (!header) return { ok: false, reason: 'missing YCloud-Signature header' };
  if (header.length > MAX_HEADER) return { ok: false, reason: 'malformed YCloud-Signature header' };
  const parts = new Map<string, string>();
  for (const item of header.split(',')) {
    const i = item.indexOf('=');
    if (i > 0) parts.set(item.slice(0, i).trim(), item.slice(i + 1).trim());
  }
  const t = parts.get('t');
  const s = parts.get('s');
  if (!t || !/^\d{1,12}$/.test(t) || !s || !/^[0-9a-fA-F]{64}$/.test(s)) {
    return { ok: false, reason: 'malformed YCloud-Signature header' };
  }
  const ts = Number(t);
  if (Math.abs(nowSeconds - ts) > toleranceSeconds) return { ok: false, reason: `signature timestamp outside the ${toleranceSeconds}s window`, stale: true };
  return { ok: true, t: ts, s: Buffer.from(s, 'hex') };
}

/** Verifies a `YCloud-Signature` header over the raw body bytes, in constant time, inside a replay window. */
export function verifyWebhookSignature(
  secret: string,
  header: string | undefined,
  rawBody: Buffer,
  toleranceSeconds: number,
  nowSeconds = Date.now() / 1000,
): SignatureCheck {
  const h = checkSignatureHeader(header, toleranceSeconds, nowSeconds);
  if (!h.ok) return h;
  const expected = Buffer.from(hmac(secret, h.t, rawBody), 'hex');
  if (!crypto.timingSafeEqual(expected, h.s)) return { ok: false, reason: 'signature mismatch' };
  return { ok: true };
}

function hmac(secret: string, t: number, body: Buffer | string): string {
  return crypto.createHmac('sha256', secret).update(`${t}.`).update(body).digest('hex');
}
