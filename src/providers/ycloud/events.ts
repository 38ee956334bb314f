import { TextDecoder } from 'node:util';
import { z } from 'zod';
import { CallEvent, CallProgress, PermissionReply } from '../../calls/call-events';
import { MAX_SDP_AUDIO, MAX_SDP_MEDIA } from '../../media/sdp';
import { normalizeE164 } from '../../util/numbers';

/**
 * Webhook payloads from the YCloud reference, validated before anything acts on them. Every field is
 * bounded: what cannot be valid is refused (and, signed, kept in quarantine) instead of reaching the
 * database, where it would fail on every redelivery, or a SIP header, where a CR/LF would start a new one.
 */
const e164 = z.string().regex(/^\+?[1-9]\d{5,15}$/, 'not an E.164 number');

/** The longest SDP accepted: a WhatsApp offer or answer is 1-3 KiB. */
export const MAX_SDP_CHARS = 16 * 1024;
/** m= sections in a connect SDP: WhatsApp sends one audio section; room for a data or video one (the PBX's SDP has the same cap). */
export { MAX_SDP_AUDIO, MAX_SDP_MEDIA };
/** Nesting of the whole event: a real one is 4 deep (an interactive inbound message). */
export const MAX_DEPTH = 16;
/** Any string in the event (the SDP has its own, equal bound), and any object key. */
export const MAX_STRING_CHARS = 16 * 1024;
export const MAX_KEY_CHARS = 256;

/** wacid and phoneId end up in SIP headers (X-WhatsApp-Call-Id, X-WhatsApp-Phone-Id) and CDR columns. */
const wacid = z.string().regex(/^[A-Za-z0-9._:=+/-]{1,200}$/, 'a wacid is 1-200 of A-Z a-z 0-9 . _ : = + / -');
const phoneId = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'a phoneId is 1-64 of A-Z a-z 0-9 . _ -');
/** A provider status (COMPLETED, RINGING, ...): the CDR keeps 24 characters. */
const status = z.string().regex(/^[A-Za-z_]{1,24}$/, 'a status is 1-24 letters or _');
const text = (max: number) => z.string().max(max);
/** Times in ms since the epoch, durations in s: finite, in a sane range. */
const num = z.number().finite().min(-1e15).max(1e15);

/** Lines of an SDP: C0 controls other than CR, LF and tab (and DEL) are never part of one. */
const SDP_BINARY = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;
const sdp = z.string().min(1).max(MAX_SDP_CHARS).superRefine((v, ctx) => {
  if (SDP_BINARY.test(v)) ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'control characters in the SDP' });
  const media = v.match(/^m=/gm)?.length ?? 0;
  const audio = v.match(/^m=audio[ \t]/gm)?.length ?? 0;
  if (media > MAX_SDP_MEDIA) ctx.addIssue({ code: z.ZodIssueCode.custom, message: `${media} media sections; at most ${MAX_SDP_MEDIA}` });
  if (audio > MAX_SDP_AUDIO) ctx.addIssue({ code: z.ZodIssueCode.custom, message: `${audio} audio sections; at most ${MAX_SDP_AUDIO}` });
});

export const callingConnectSchema = z.object({
  id: text(200).optional(),
  wacid,
  phoneId,
  from: e164,
  to: e164,
  direction: z.enum(['USER_INITIATED', 'BUSINESS_INITIATED']),
  dialTime: num.optional(),
  sdpType: z.enum(['offer', 'answer']),
  sdp,
});

export const callingStatusSchema = z.object({
  wabaId: text(64).optional(),
  wacid,
  status,
  recipientPhone: text(32).optional(),
});

export const callingTerminateSchema = z.object({
  id: text(200).optional(),
  wacid,
  phoneId: phoneId.optional(),
  from: text(32).optional(),
  to: text(32).optional(),
  direction: z.enum(['USER_INITIATED', 'BUSINESS_INITIATED']).optional(),
  startTime: num.optional(),
  endTime: num.optional(),
  duration: num.optional(),
  status: status.optional(),
});

const envelope = {
  id: z.string().min(1).max(200),
  apiVersion: text(64).optional(),
  createTime: text(64).optional(),
};

export const webhookEventSchema = z.discriminatedUnion('type', [
  z.object({ ...envelope, type: z.literal('whatsapp.call.connect'), callingConnect: callingConnectSchema }),
  z.object({ ...envelope, type: z.literal('whatsapp.call.status.updated'), callingStatusUpdated: callingStatusSchema }),
  z.object({ ...envelope, type: z.literal('whatsapp.call.terminate'), callingTerminate: callingTerminateSchema }),
  z.object({ ...envelope, type: z.literal('whatsapp.inbound_message.received'), whatsappInboundMessage: z.record(z.unknown()) }),
]);

/** Any other event type is accepted (so YCloud stops retrying) and stored, but not acted on. */
export const unknownEventSchema = z.object({ ...envelope, type: z.string().regex(/^[A-Za-z0-9._-]{1,100}$/, 'a type is 1-100 of A-Z a-z 0-9 . _ -') });

export type WebhookEvent = z.infer<typeof webhookEventSchema>;

/** A malformed event names its `type` when it got as far as having one. */
export type ParsedEvent = { ok: true; event: WebhookEvent | null; id: string; type: string; json: unknown } | { ok: false; reason: string; type?: string };

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Parses a raw body: a known event (validated), an unknown-but-well-formed one (event null), or an
 * error. Refused besides the schemas: bytes that are not UTF-8, and (anywhere in the event) nesting
 * deeper than MAX_DEPTH, a string over MAX_STRING_CHARS, a key over MAX_KEY_CHARS, a NUL or a lone
 * UTF-16 surrogate (Postgres' jsonb takes neither, so such an event could never be stored).
 */
export function parseWebhookEvent(raw: Buffer): ParsedEvent {
  let json: unknown;
  try {
    json = JSON.parse(utf8.decode(raw));
  } catch (err) {
    return { ok: false, reason: err instanceof TypeError ? 'body is not UTF-8' : 'body is not JSON' };
  }
  const base = unknownEventSchema.safeParse(json);
  if (!base.success) return { ok: false, reason: describe(base.error) };
  const unstorable = checkStorable(json);
  if (unstorable) return { ok: false, reason: unstorable, type: base.data.type };
  const known = webhookEventSchema.safeParse(json);
  if (known.success) return { ok: true, event: known.data, id: known.data.id, type: known.data.type, json };
  const knownTypes: string[] = ['whatsapp.call.connect', 'whatsapp.call.status.updated', 'whatsapp.call.terminate', 'whatsapp.inbound_message.received'];
  if (knownTypes.includes(base.data.type)) return { ok: false, reason: describe(known.error), type: base.data.type };
  return { ok: true, event: null, id: base.data.id, type: base.data.type, json };
}

/** NUL, or half of a UTF-16 surrogate pair without the other half. */
const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Why a parsed JSON value could not be stored as it is, naming where; null when it can. Iterative. */
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

function describe(err: z.ZodError): string {
  return err.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
}

/**
 * A YCloud event in the bridge's own words (src/calls/call-events.ts); null for what the calls do not
 * act on (chat messages other than permission replies).
 */
export function toCallEvent(event: WebhookEvent): CallEvent | null {
  switch (event.type) {
    case 'whatsapp.call.connect': {
      const c = event.callingConnect;
      const common = { wacid: c.wacid, phoneId: c.phoneId, from: c.from, to: c.to, sdpType: c.sdpType, sdp: c.sdp };
      return c.direction === 'USER_INITIATED' ? { kind: 'offered', ...common, dialTime: c.dialTime ?? null } : { kind: 'answered', ...common };
    }
    case 'whatsapp.call.status.updated': {
      const s = event.callingStatusUpdated;
      return { kind: 'status', wacid: s.wacid, status: s.status, progress: PROGRESS[s.status] ?? 'other' };
    }
    case 'whatsapp.call.terminate': {
      const t = event.callingTerminate;
      return {
        kind: 'ended', wacid: t.wacid, phoneId: t.phoneId ?? null, cause: t.status ?? null, durationS: t.duration ?? null,
        startedAt: t.startTime ?? null, endedAt: t.endTime ?? null,
      };
    }
    case 'whatsapp.inbound_message.received': {
      const reply = permissionReplyOf(event.whatsappInboundMessage, event.id);
      return reply ? { kind: 'permission_reply', reply } : null;
    }
  }
}

/** YCloud's call statuses (the status webhook) as the calls read them. */
const PROGRESS: Partial<Record<string, CallProgress>> = { RINGING: 'ringing', ACCEPTED: 'accepted', REJECTED: 'rejected' };

/** Reads a call_permission_reply out of an inbound-message webhook payload; null for any other message. */
export function permissionReplyOf(msg: Record<string, unknown>, eventId: string | null): PermissionReply | { error: string } | null {
  const interactive = msg.interactive as Record<string, unknown> | undefined;
  if (!interactive || interactive.type !== 'call_permission_reply') return null;
  const reply = interactive.call_permission_reply as Record<string, unknown> | undefined;
  const from = typeof msg.from === 'string' ? normalizeE164(msg.from) : null;
  const to = typeof msg.to === 'string' ? normalizeE164(msg.to) : null;
  if (!reply || !from || !to) return { error: 'call_permission_reply without reply, from or to' };
  if (reply.response !== 'accept' && reply.response !== 'reject') return { error: `unknown permission response "${String(reply.response)}"` };
  const sendTime = typeof msg.sendTime === 'string' ? new Date(msg.sendTime) : new Date();
  return {
    businessNumber: to,
    customerNumber: from,
    response: reply.response,
    isPermanent: reply.is_permanent === true || reply.is_permanent === 'true',
    expiresAt: parseTimestamp(reply.expiration_timestamp),
    responseSource: typeof reply.response_source === 'string' ? reply.response_source : null,
    repliedAt: Number.isNaN(sendTime.getTime()) ? new Date() : sendTime,
    wamid: typeof msg.wamid === 'string' ? msg.wamid : null,
    eventId,
  };
}

/** Unix seconds (number or numeric string), milliseconds, or an ISO date; null when absent or unreadable. */
function parseTimestamp(v: unknown): Date | null {
  if (v === undefined || v === null || v === '') return null;
  if (typeof v === 'number' || (typeof v === 'string' && /^\d+$/.test(v))) {
    const n = Number(v);
    return new Date(n < 1e12 ? n * 1000 : n);
  }
  if (typeof v === 'string') {
    const d = new Date(v);
    return Number.isNaN(d.getTime()) ? null : d;
  }
  return null;
}
