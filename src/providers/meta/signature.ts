import crypto from 'node:crypto';
import { SignatureCheck } from '../../events/webhook-source';

/** The header Meta signs its webhooks with. */
export const META_SIGNATURE_HEADER = 'X-Hub-Signature-256';

/** Builds the `X-Hub-Signature-256` value for a body: `sha256=<hex HMAC-SHA256(body) keyed with the App Secret>`. */
export function signMetaWebhook(appSecret: string, rawBody: Buffer | string): string {
  return `sha256=${crypto.createHmac('sha256', appSecret).update(rawBody).digest('hex')}`;
}

const SHAPE = /^sha256=([0-9a-fA-F]{64})$/;

/**
 * The header alone: present and `sha256=` + 64 hex digits. Meta's signature has no timestamp, so a
 * header is never "stale" (a replay is caught by the dedupe keys instead).
 */
export function checkMetaSignatureHeader(header: string | undefined): SignatureCheck {
  if (!header) return { ok: false, reason: `missing ${META_SIGNATURE_HEADER} header` };
  if (header.length > 80 || !SHAPE.test(header)) return { ok: false, reason: `malformed ${META_SIGNATURE_HEADER} header` };
  return { ok: true };
}

/** Verifies `X-Hub-Signature-256` over the raw bytes as received, in constant time. */
export function verifyMetaSignature(appSecret: string, header: string | undefined, rawBody: Buffer): SignatureCheck {
  const shape = checkMetaSignatureHeader(header);
  if (!shape.ok) return shape;
  const given = Buffer.from(SHAPE.exec(header!)![1]!, 'hex');
  const expected = crypto.createHmac('sha256', appSecret).update(rawBody).digest();
  if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) return { ok: false, reason: 'signature mismatch' };
  return { ok: true };
}
