import crypto from 'node:crypto';
import { z } from 'zod';
import { AccountNotice, BSUID, CallEvent, CallMediaAvailable, CallProgress, PermissionReply, WhatsAppUser } from '../../calls/call-events';
import { Delivery } from '../../events/webhook-source';
import { normalizeE164 } from '../../util/numbers';
import { checkStorable, describeIssues, isRecord, num, parseTimestamp, phoneId, readJson, sdp, status, text, wacid } from '../payload-bounds';

/**
 * Meta's webhook envelope (Graph API, field `calls`, `messages`, `account_update`, ...) taken apart into
 * one Delivery per call, status, message or account update, each validated and bounded on its own:
 * one that cannot be valid is rejected (quarantined) while the others beside it are delivered.
 *
 * Each delivery's payload is a `MetaStored` unit: the change's field, its entry, the metadata, the one
 * contact it is about and the one item, so webhook_events holds enough to decode it again alone.
 */

/** At most this many events out of one POST are delivered; the rest are rejected (quarantined). */
export const MAX_DELIVERIES = 50;
/** At most this many rejections are reported for one POST (the last one says how many more were left out). */
export const MAX_REJECTED = 50;
/** Webhook ids and permission event ids are kept in 200 characters. */
const MAX_ID_CHARS = 200;

/** One event of the envelope as stored. */
export interface MetaStored {
  provider: 'meta';
  field: string;
  entry: { id: string; time: number | null };
  metadata: { phone_number_id: string; display_phone_number?: string } | null;
  /** The contact (Meta's `contacts[]`) the item is about, when the change names one. */
  contact: unknown;
  /** Which array of the change's value the item came from; `value`: the change's value is the item. */
  part: 'calls' | 'statuses' | 'messages' | 'value';
  item: unknown;
}

export type Rejected = { reason: string; payload: unknown };

/** Meta's own name for a number: digits (a `+` tolerated). */
const digits = z.string().regex(/^\+?[1-9]\d{5,15}$/, 'not a phone number (digits)');
const bsuid = z.string().regex(BSUID, 'not a business-scoped user id');
/** Unix seconds as Meta sends them (a string), or a number; as ms since the epoch. */
const seconds = z.union([z.string().regex(/^\d{1,13}$/, 'not unix seconds'), num]).transform((v) => toMs(Number(v)));
/** A name, username or payload a person chose: kept printable (controls dropped) and bounded; empty: null. */
const label = (max: number) => z.string().max(4 * max).transform((v) => printable(v, max));
const upper = status.transform((v) => v.toUpperCase());

const metadataSchema = z.object({
  phone_number_id: phoneId,
  display_phone_number: text(32).optional(),
});

const contactSchema = z.object({
  wa_id: digits.optional(),
  user_id: bsuid.optional(),
  profile: z.object({ name: label(256).optional(), username: label(128).optional() }).optional(),
});

const storedSchema = z.object({
  provider: z.literal('meta'),
  field: z.string().regex(/^[a-z_]{1,64}$/, 'a field is 1-64 of a-z _'),
  entry: z.object({ id: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'an entry id is 1-64 of A-Z a-z 0-9 . _ -'), time: num.nullable() }),
  metadata: metadataSchema.nullable(),
  contact: contactSchema.nullable().optional(),
  part: z.enum(['calls', 'statuses', 'messages', 'value']),
  item: z.unknown(),
});

const mediaSchema = z.object({
  id: z.string().regex(/^[A-Za-z0-9._:=+/-]{1,200}$/, 'a media id is 1-200 of A-Z a-z 0-9 . _ : = + / -'),
  mime_type: text(100).optional(),
  sha256: text(128).optional(),
  url: z.string().url().max(2048).optional(),
});

const callSchema = z.object({
  id: wacid,
  event: z.string().regex(/^[a-z_]{1,40}$/, 'an event is 1-40 of a-z _'),
  timestamp: seconds,
  from: digits.optional(),
  to: digits.optional(),
  from_user_id: bsuid.optional(),
  to_user_id: bsuid.optional(),
  direction: z.enum(['USER_INITIATED', 'BUSINESS_INITIATED']).optional(),
  session: z.object({ sdp_type: z.enum(['offer', 'answer']), sdp }).optional(),
  status: upper.optional(),
  start_time: seconds.optional(),
  end_time: seconds.optional(),
  duration: z.union([num, z.string().regex(/^\d{1,9}$/).transform(Number)]).optional(),
  biz_opaque_callback_data: text(512).optional(),
  cta_payload: label(512).optional(),
  deeplink_payload: label(1024).optional(),
  /**
   * Per-call recording and transcription (`event` call_recording_available / call_transcription_available).
   * UNCONFIRMED shape: the reference names the events and their contents (media id, sha256, mime type,
   * short-lived URL) but the search tool found no payload in Meta's documentation. Accepted: one object
   * under `recording`, `transcription` or `media` with {id, mime_type?, sha256?, url?}.
   */
  recording: mediaSchema.optional(),
  transcription: mediaSchema.optional(),
  media: mediaSchema.optional(),
});

const statusSchema = z.object({
  id: wacid,
  type: z.string().regex(/^[a-z_]{1,24}$/).optional(),
  status: upper,
  timestamp: seconds.optional(),
  recipient_id: digits.optional(),
  recipient_user_id: bsuid.optional(),
  biz_opaque_callback_data: text(512).optional(),
});

const messageSchema = z.object({
  id: wacid,
  type: z.string().regex(/^[a-z_]{1,40}$/, 'a message type is 1-40 of a-z _'),
  timestamp: seconds,
  from: digits.optional(),
  from_user_id: bsuid.optional(),
  interactive: z.object({
    type: z.string().max(64),
    call_permission_reply: z.object({
      response: z.string().max(32),
      is_permanent: z.union([z.boolean(), z.enum(['true', 'false'])]).optional(),
      expiration_timestamp: z.union([num, z.string().max(40)]).optional(),
      response_source: text(64).optional(),
    }).optional(),
  }).optional(),
  /** A voicemail is an audio message whose id is the call's wacid (GA 2026-06). */
  audio: mediaSchema.optional(),
});

const accountSchema = z.object({
  event: z.string().regex(/^[A-Za-z_]{1,64}$/, 'an account event is 1-64 letters or _').optional(),
  metadata: metadataSchema.optional(),
  phone_number_id: phoneId.optional(),
});

const envelopeSchema = z.object({ object: z.literal('whatsapp_business_account'), entry: z.array(z.unknown()).min(1) });
const entrySchema = z.object({
  id: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'an entry id is 1-64 of A-Z a-z 0-9 . _ -'),
  time: num.optional(),
  changes: z.array(z.unknown()),
});
const changeSchema = z.object({ field: z.string().regex(/^[a-z_]{1,64}$/, 'a field is 1-64 of a-z _'), value: z.record(z.unknown()) });

/** The outcome of one POST: the events delivered, and those rejected (each with why). */
export type ParsedEnvelope =
  | { ok: true; deliveries: Delivery[]; rejected: Rejected[] }
  | { ok: false; reason: string };

/**
 * Takes a verified body apart. Refused as a whole: bytes that are not UTF-8 JSON, or an envelope that is
 * not `{object: 'whatsapp_business_account', entry: [...]}`, or one where nothing could be delivered.
 */
export function parseMetaEnvelope(raw: Buffer): ParsedEnvelope {
  const read = readJson(raw);
  if (!read.ok) return read;
  const env = envelopeSchema.safeParse(read.json);
  if (!env.success) return { ok: false, reason: describeIssues(env.error) };
  const deliveries: Delivery[] = [];
  const rejected: Rejected[] = [];
  let leftOut = 0;
  const reject = (reason: string, payload: unknown) => {
    if (rejected.length < MAX_REJECTED) rejected.push({ reason, payload });
    else leftOut++;
  };
  for (const unit of units(env.data.entry, reject)) {
    const decoded = decodeUnit(unit);
    if (!decoded.ok) reject(decoded.reason, unit);
    else if (deliveries.length >= MAX_DELIVERIES) reject(`more than ${MAX_DELIVERIES} events in one POST`, unit);
    else deliveries.push({ id: decoded.id, type: decoded.type, payload: unit, event: decoded.event });
  }
  if (leftOut > 0) rejected.push({ reason: `${leftOut} more rejected events left out (at most ${MAX_REJECTED} are kept per POST)`, payload: null });
  if (deliveries.length === 0) {
    const reason = rejected.length ? rejected.slice(0, 3).map((r) => r.reason).join('; ') : 'no event in the envelope';
    return { ok: false, reason };
  }
  return { ok: true, deliveries, rejected };
}

/** The stored units of an envelope's entries, each change's arrays split item by item. Bad entries and changes are rejected. */
function* units(entries: unknown[], reject: (reason: string, payload: unknown) => void): Generator<MetaStored> {
  for (const rawEntry of entries) {
    const entry = entrySchema.safeParse(rawEntry);
    if (!entry.success) {
      reject(`entry: ${describeIssues(entry.error)}`, rawEntry);
      continue;
    }
    for (const rawChange of entry.data.changes) {
      const change = changeSchema.safeParse(rawChange);
      const unstorable = change.success ? checkStorable(rawChange) : null;
      if (!change.success || unstorable) {
        reject(`change: ${change.success ? unstorable : describeIssues(change.error)}`, rawChange);
        continue;
      }
      const { field, value } = change.data;
      const meta = value.metadata === undefined ? null : metadataSchema.safeParse(value.metadata);
      if (meta && !meta.success) {
        reject(`change ${field}: metadata: ${describeIssues(meta.error)}`, rawChange);
        continue;
      }
      const base = { provider: 'meta' as const, field, entry: { id: entry.data.id, time: entry.data.time ?? null }, metadata: meta ? meta.data : null };
      const parts = (['calls', 'statuses', 'messages'] as const).filter((p) => value[p] !== undefined);
      const notArray = parts.find((p) => !Array.isArray(value[p]));
      if (notArray) {
        reject(`change ${field}: ${notArray} is not an array`, rawChange);
        continue;
      }
      if (parts.length === 0) {
        yield { ...base, contact: null, part: 'value', item: value };
        continue;
      }
      const contacts = Array.isArray(value.contacts) ? value.contacts : [];
      for (const part of parts) {
        for (const item of value[part] as unknown[]) yield { ...base, contact: contactFor(item, contacts), part, item };
      }
    }
  }
}

/** The contact an item is about: the one whose wa_id or user_id names its user, else the only one. */
function contactFor(item: unknown, contacts: unknown[]): unknown {
  if (!isRecord(item)) return null;
  const ids = new Set<unknown>([item.from, item.to, item.from_user_id, item.to_user_id, item.recipient_id, item.recipient_user_id].filter((v) => typeof v === 'string'));
  const match = contacts.find((c) => isRecord(c) && (ids.has(c.wa_id) || ids.has(c.user_id)));
  return match ?? (contacts.length === 1 ? contacts[0] : null);
}

type Decoded = { ok: true; id: string; type: string; event: CallEvent | null } | { ok: false; reason: string };

/** A stored unit as a delivery's id, type and event: what parse delivers and what a replay decodes. */
export function decodeUnit(payload: unknown): Decoded {
  const unit = storedSchema.safeParse(payload);
  if (!unit.success) return { ok: false, reason: describeIssues(unit.error) };
  const u = unit.data;
  const unstorable = checkStorable(payload);
  if (unstorable) return { ok: false, reason: unstorable };
  const at = `${u.field}.${u.part}`;
  try {
    switch (u.part) {
      case 'calls': return fromCall(u, parseItem(callSchema, u.item, at));
      case 'statuses': return fromStatus(u, parseItem(statusSchema, u.item, at));
      case 'messages': return fromMessage(u, parseItem(messageSchema, u.item, at));
      case 'value': return fromValue(u);
    }
  } catch (err) {
    if (err instanceof ItemError) return { ok: false, reason: err.message };
    throw err;
  }
}

class ItemError extends Error {}

function parseItem<T extends z.ZodTypeAny>(schema: T, item: unknown, at: string): z.infer<T> {
  const r = schema.safeParse(item);
  if (!r.success) throw new ItemError(`${at}: ${describeIssues(r.error)}`);
  return r.data;
}

type Unit = z.infer<typeof storedSchema>;
type Call = z.infer<typeof callSchema>;

function phoneIdOf(u: Unit): string {
  if (!u.metadata) throw new ItemError(`${u.field}.${u.part}: no metadata.phone_number_id`);
  return u.metadata.phone_number_id;
}

function businessNumber(u: Unit): string | null {
  return u.metadata?.display_phone_number ? normalizeE164(u.metadata.display_phone_number) : null;
}

function e164(v: string | undefined): string | null {
  return v === undefined ? null : normalizeE164(v);
}

function contactOf(u: Unit): z.infer<typeof contactSchema> | null {
  return u.contact ?? null;
}

function fromCall(u: Unit, c: Call): Decoded {
  const pid = phoneIdOf(u);
  const id = deliveryId(c.id, c.event, String(Math.floor(c.timestamp / 1000)));
  const type = `calls.${c.event}`;
  const ok = (event: CallEvent | null): Decoded => ({ ok: true, id, type, event });
  switch (c.event) {
    case 'connect': {
      if (!c.session) throw new ItemError(`${type}: no session (SDP)`);
      if (c.direction === 'USER_INITIATED') {
        if (c.session.sdp_type !== 'offer') throw new ItemError(`${type}: a user's call carries an offer, not an ${c.session.sdp_type}`);
        const user = userOf(e164(c.from), c.from_user_id ?? null, contactOf(u));
        const from = user.number ?? user.userId;
        const to = e164(c.to) ?? businessNumber(u);
        if (!from) throw new ItemError(`${type}: neither from nor from_user_id names the caller`);
        if (!to) throw new ItemError(`${type}: neither to nor metadata.display_phone_number names the business number`);
        return ok({
          kind: 'offered', wacid: c.id, phoneId: pid, from, to, sdpType: 'offer', sdp: c.session.sdp, dialTime: c.timestamp, user,
          ctaPayload: c.cta_payload ?? null, deeplinkPayload: c.deeplink_payload ?? null,
        });
      }
      if (c.direction === 'BUSINESS_INITIATED') {
        if (c.session.sdp_type !== 'answer') throw new ItemError(`${type}: a business call's connect carries an answer, not an ${c.session.sdp_type}`);
        const from = e164(c.from) ?? businessNumber(u);
        const to = e164(c.to) ?? c.to_user_id ?? null;
        if (!from || !to) throw new ItemError(`${type}: the business number or the user's address is missing`);
        return ok({ kind: 'answered', wacid: c.id, phoneId: pid, from, to, sdpType: 'answer', sdp: c.session.sdp, context: c.biz_opaque_callback_data ?? null });
      }
      throw new ItemError(`${type}: no direction`);
    }
    case 'terminate':
      return ok({
        kind: 'ended', wacid: c.id, phoneId: pid, cause: c.status ?? null, durationS: c.duration ?? null,
        startedAt: c.start_time ?? null, endedAt: c.end_time ?? null,
      });
    case 'call_recording_available':
    case 'call_transcription_available': {
      const media = c.recording ?? c.transcription ?? c.media;
      if (!media) throw new ItemError(`${type}: no recording, transcription or media object`);
      const kind = c.event === 'call_recording_available' ? 'recording' : 'transcription';
      return ok(mediaEvent(c.id, pid, kind, media));
    }
    default:
      return ok(null); // a call event the bridge does not act on: stored, not acted on
  }
}

function mediaEvent(wacidValue: string, pid: string | null, media: CallMediaAvailable['media'], m: z.infer<typeof mediaSchema>): CallMediaAvailable {
  return { kind: 'media_available', wacid: wacidValue, phoneId: pid, media, mediaId: m.id, url: m.url ?? null, mimeType: m.mime_type ?? null, sha256: m.sha256 ?? null };
}

function userOf(number: string | null, userId: string | null, contact: z.infer<typeof contactSchema> | null): WhatsAppUser {
  return {
    number: number ?? e164(contact?.wa_id),
    userId: userId ?? contact?.user_id ?? null,
    profileName: contact?.profile?.name ?? null,
    username: contact?.profile?.username ?? null,
  };
}

/** Meta's call statuses (business-initiated calls) as the calls read them. */
const PROGRESS: Partial<Record<string, CallProgress>> = { RINGING: 'ringing', ACCEPTED: 'accepted', REJECTED: 'rejected' };

function fromStatus(u: Unit, s: z.infer<typeof statusSchema>): Decoded {
  const id = deliveryId(s.id, s.status);
  if (s.type !== 'call') return { ok: true, id, type: 'statuses.message', event: null };
  return { ok: true, id, type: 'statuses.call', event: { kind: 'status', wacid: s.id, phoneId: phoneIdOf(u), status: s.status, progress: PROGRESS[s.status] ?? 'other' } };
}

function fromMessage(u: Unit, m: z.infer<typeof messageSchema>): Decoded {
  const id = deliveryId(m.id);
  const type = `messages.${m.type}`;
  if (m.type === 'interactive' && m.interactive?.type === 'call_permission_reply') {
    return { ok: true, id, type, event: { kind: 'permission_reply', reply: permissionReply(u, m, id) } };
  }
  if (m.type === 'audio' && m.audio && m.id.startsWith('wacid.')) {
    return { ok: true, id, type: 'messages.voicemail', event: mediaEvent(m.id, phoneIdOf(u), 'voicemail', m.audio) };
  }
  return { ok: true, id, type, event: null };
}

function permissionReply(u: Unit, m: z.infer<typeof messageSchema>, eventId: string): PermissionReply | { error: string } {
  const reply = m.interactive?.call_permission_reply;
  const business = businessNumber(u);
  const user = userOf(e164(m.from), m.from_user_id ?? null, contactOf(u));
  const customer = user.number ?? user.userId;
  if (!reply || !business || !customer) return { error: 'call_permission_reply without reply, the business number or the user' };
  if (reply.response !== 'accept' && reply.response !== 'reject') return { error: `unknown permission response "${reply.response}"` };
  return {
    businessNumber: business,
    customerNumber: customer,
    response: reply.response,
    isPermanent: reply.is_permanent === true || reply.is_permanent === 'true',
    expiresAt: parseTimestamp(reply.expiration_timestamp),
    responseSource: reply.response_source ?? null,
    repliedAt: new Date(m.timestamp),
    wamid: m.id,
    eventId,
  };
}

/** Account fields: a restriction stops calls, a violation warns, a settings change informs. */
function fromValue(u: Unit): Decoded {
  const value = isRecord(u.item) ? u.item : {};
  const id = deliveryId(u.field, u.entry.id, String(u.entry.time ?? ''), sha8(value));
  if (u.field !== 'account_update' && u.field !== 'account_settings_update') return { ok: true, id, type: u.field, event: null };
  const a = accountSchema.safeParse(value);
  if (!a.success) return { ok: false, reason: `${u.field}: ${describeIssues(a.error)}` };
  const event = a.data.event ?? (u.field === 'account_settings_update' ? 'settings_changed' : 'unknown');
  const notice: AccountNotice = {
    kind: 'account_notice',
    phoneId: u.metadata?.phone_number_id ?? a.data.metadata?.phone_number_id ?? a.data.phone_number_id ?? null,
    field: u.field,
    event,
    severity: severityOf(u.field, event, value),
    detail: value,
  };
  return { ok: true, id, type: u.field, event: notice };
}

function severityOf(field: string, event: string, value: Record<string, unknown>): AccountNotice['severity'] {
  if (field === 'account_settings_update') return 'info';
  if (/RESTRICT/i.test(event) || value.restriction_info !== undefined) return 'restriction';
  if (/VIOLATION|QUALITY|WARN/i.test(event) || value.violation_info !== undefined) return 'warning';
  return 'info';
}

/** `meta:` + the parts joined by `:`; hashed when longer than a webhook id may be. */
function deliveryId(...parts: string[]): string {
  const id = `meta:${parts.join(':')}`;
  return id.length <= MAX_ID_CHARS ? id : `meta:h:${crypto.createHash('sha256').update(id).digest('hex')}`;
}

function sha8(value: unknown): string {
  return crypto.createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 8);
}

function toMs(n: number): number {
  return n < 1e12 ? n * 1000 : n;
}

/** C0/C1 controls and DEL dropped (nothing may start a new SIP header line), trimmed, at most `max` characters; empty: null. */
function printable(v: string, max: number): string | null {
  // eslint-disable-next-line no-control-regex
  const s = v.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, '').trim().slice(0, max);
  return s === '' ? null : s;
}
