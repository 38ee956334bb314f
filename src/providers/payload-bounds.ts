import { TextDecoder } from 'node:util';
import { z } from 'zod';
import { MAX_SDP_AUDIO, MAX_SDP_MEDIA } from '../media/sdp';

/**
 * The bounds every provider's webhook payload is held to before anything acts on it (YCloud's and
 * Meta's adapters share them): what cannot be valid is refused (and, signed, kept in quarantine)
 * instead of reaching the database, where it would fail on every redelivery, or a SIP header, where a
 * CR/LF would start a new one.
 */

/** The longest SDP accepted: a WhatsApp offer or answer is 1-3 KiB. */
export const MAX_SDP_CHARS = 16 * 1024;
/** m= sections in a connect SDP: WhatsApp sends one audio section; room for a data or video one (the PBX's SDP has the same cap). */
export { MAX_SDP_AUDIO, MAX_SDP_MEDIA };
/** Nesting of the whole event: a real one is 4 deep (YCloud's interactive inbound message), 8 in Meta's envelope. */
export const MAX_DEPTH = 16;
/** Any string in the event (the SDP has its own, equal bound), and any object key. */
export const MAX_STRING_CHARS = 16 * 1024;
export const MAX_KEY_CHARS = 256;

/** wacid and phoneId end up in SIP headers (X-WhatsApp-Call-Id, X-WhatsApp-Phone-Id) and CDR columns. */
export const wacid = z.string().regex(/^[A-Za-z0-9._:=+/-]{1,200}$/, 'a wacid is 1-200 of A-Z a-z 0-9 . _ : = + / -');
export const phoneId = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'a phoneId is 1-64 of A-Z a-z 0-9 . _ -');
/** A provider status (COMPLETED, RINGING, ...): the CDR keeps 24 characters. */
export const status = z.string().regex(/^[A-Za-z_]{1,24}$/, 'a status is 1-24 letters or _');
export const text = (max: number) => z.string().max(max);
/** Times in ms since the epoch, durations in s: finite, in a sane range. */
export const num = z.number().finite().min(-1e15).max(1e15);

/** Lines of an SDP: C0 controls other than CR, LF and tab (and DEL) are never part of one. */
const SDP_BINARY = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;
export const sdp = z.string().min(1).max(MAX_SDP_CHARS).superRefine((v, ctx) => {
  if (SDP_BINARY.test(v)) ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'control characters in the SDP' });
  const media = v.match(/^m=/gm)?.length ?? 0;
  const audio = v.match(/^m=audio[ \t]/gm)?.length ?? 0;
  if (media > MAX_SDP_MEDIA) ctx.addIssue({ code: z.ZodIssueCode.custom, message: `${media} media sections; at most ${MAX_SDP_MEDIA}` });
  if (audio > MAX_SDP_AUDIO) ctx.addIssue({ code: z.ZodIssueCode.custom, message: `${audio} audio sections; at most ${MAX_SDP_AUDIO}` });
});

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** A raw body as JSON, or why not (bytes that are not UTF-8, text that is not JSON). */
export function readJson(raw: Buffer): { ok: true; json: unknown } | { ok: false; reason: string } {
  try {
    return { ok: true, json: JSON.parse(utf8.decode(raw)) };
  } catch (err) {
    return { ok: false, reason: err instanceof TypeError ? 'body is not UTF-8' : 'body is not JSON' };
  }
}

/** NUL, or half of a UTF-16 surrogate pair without the other half. */
const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * Why a parsed JSON value could not be stored as it is, naming where; null when it can. Refused:
 * nesting deeper than MAX_DEPTH, a string over MAX_STRING_CHARS, a key over MAX_KEY_CHARS, a NUL or a
 * lone UTF-16 surrogate (Postgres' jsonb takes neither). Iterative.
 */
export function checkStorable(value: unknown): string | null {
  const stack: Array<{ v: unknown; depth: number; path: string }> = [{ v: value, depth: 0, path: '(root)' }];
  for (let item = stack.pop(); item; item = stack.pop()) {
    const { v, depth, path } = item;
    if (typeof v === 'string') {
      if (v.length > MAX_STRING_CHARS) return `${path}: string longer than ${MAX_STRING_CHARS} characters`;
      if (UNSTORABLE.test(v)) return `${path}: NUL or unpaired surrogate in a string`;
      continue;
    }
    if (typeof v !== 'object' || v === null) continue;
    if (depth >= MAX_DEPTH) return `${path}: nested deeper than ${MAX_DEPTH} levels`;
    const entries: Array<[string, unknown]> = Array.isArray(v) ? v.map((x, i) => [String(i), x]) : Object.entries(v);
    for (const [k, x] of entries) {
      if (k.length > MAX_KEY_CHARS) return `${path}: key longer than ${MAX_KEY_CHARS} characters`;
      if (UNSTORABLE.test(k)) return `${path}: NUL or unpaired surrogate in a key`;
      stack.push({ v: x, depth: depth + 1, path: depth < 4 ? `${path === '(root)' ? '' : `${path}.`}${/^[\w.-]{1,40}$/.test(k) ? k : '?'}` : path });
    }
  }
  return null;
}

/** A zod failure as one line: each issue with where it is. */
export function describeIssues(err: z.ZodError): string {
  return err.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
}

/** Unix seconds (number or numeric string), milliseconds, or an ISO date; null when absent or unreadable. */
export function parseTimestamp(v: unknown): Date | null {
  if (v === undefined || v === null || v === '') return null;
  if (typeof v === 'number' || (typeof v === 'string' && /^\d+$/.test(v))) {
    const n = Number(v);
    if (!Number.isFinite(n)) return null;
    const d = new Date(n < 1e12 ? n * 1000 : n);
    return Number.isNaN(d.getTime()) ? null : d;
  }
  if (typeof v === 'string') {
    const d = new Date(v);
    return Number.isNaN(d.getTime()) ? null : d;
  }
  return null;
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
