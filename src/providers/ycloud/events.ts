import { z } from 'zod';
import { BSUID, CallEvent, CallMediaAvailable, CallProgress, PermissionReply } from '../../calls/call-events';
import { normalizeE164 } from '../../util/numbers';
import {
  checkStorable, describeIssues, MAX_DEPTH, MAX_KEY_CHARS, MAX_SDP_AUDIO, MAX_SDP_CHARS, MAX_SDP_MEDIA, MAX_STRING_CHARS,
  num, parseTimestamp, phoneId, readJson, sdp, status, text, wacid,
} from '../payload-bounds';

/**
 * Webhook payloads from the YCloud reference, validated before anything acts on them. Every field is
 * bounded (src/providers/payload-bounds.ts, shared with Meta's adapter).
 */
const e164 = z.string().regex(/^\+?[1-9]\d{5,15}$/, 'not an E.164 number');

export { checkStorable, MAX_DEPTH, MAX_KEY_CHARS, MAX_SDP_AUDIO, MAX_SDP_CHARS, MAX_SDP_MEDIA, MAX_STRING_CHARS };

/** A business-scoped user id (YCloud's docs show `fromUserId` / `toUserId` on connects since 2026). */
const bsuid = z.string().regex(BSUID, 'not a business-scoped user id (CC.alnum)');

export const callingConnectSchema = z.object({
  id: text(200).optional(),
  wacid,
  phoneId,
  from: e164,
  to: e164,
  fromUserId: bsuid.optional(),
  fromParentUserId: bsuid.optional(),
  toUserId: bsuid.optional(),
  toParentUserId: bsuid.optional(),
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

/**
 * A file WhatsApp made of a call (`whatsapp.call.recording.updated` under `callingRecording`,
 * `whatsapp.call.transcription.updated` under `callingTranscription`): AVAILABLE names the media asset
 * to download (GET /whatsapp/calls/media/{mediaAssetId}, for 30 days); FAILED carries YCloud's error.
 */
export const callingMediaSchema = z.object({
  wacid,
  phoneId: phoneId.optional(),
  mediaAssetId: z.string().regex(/^[A-Za-z0-9._-]{1,200}$/, 'a mediaAssetId is 1-200 of A-Z a-z 0-9 . _ -').optional(),
  status,
  error: z.object({ code: text(200).optional(), message: text(2000).optional(), retryable: z.boolean().optional() }).optional(),
}).superRefine((v, ctx) => {
  if (v.status === 'AVAILABLE' && !v.mediaAssetId) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['mediaAssetId'], message: 'an AVAILABLE file needs its mediaAssetId' });
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
  z.object({ ...envelope, type: z.literal('whatsapp.call.recording.updated'), callingRecording: callingMediaSchema }),
  z.object({ ...envelope, type: z.literal('whatsapp.call.transcription.updated'), callingTranscription: callingMediaSchema }),
]);

/** Any other event type is accepted (so YCloud stops retrying) and stored, but not acted on. */
export const unknownEventSchema = z.object({ ...envelope, type: z.string().regex(/^[A-Za-z0-9._-]{1,100}$/, 'a type is 1-100 of A-Z a-z 0-9 . _ -') });

export type WebhookEvent = z.infer<typeof webhookEventSchema>;

/** The types read here: one of them that does not match its schema is malformed, not unknown. */
const KNOWN_TYPES = [
  'whatsapp.call.connect', 'whatsapp.call.status.updated', 'whatsapp.call.terminate', 'whatsapp.inbound_message.received',
  'whatsapp.call.recording.updated', 'whatsapp.call.transcription.updated',
] as const satisfies readonly WebhookEvent['type'][];

/** A malformed event names its `type` when it got as far as having one. */
export type ParsedEvent = { ok: true; event: WebhookEvent | null; id: string; type: string; json: unknown } | { ok: false; reason: string; type?: string };

export function parseWebhookEvent(raw: Buffer): ParsedEvent {
  const read = readJson(raw);
  if (!read.ok) return read;
  const json = read.json;
  const base = unknownEventSchema.safeParse(json);
  if (!base.success) return { ok: false, reason: describeIssues(base.error) };
  const unstorable = checkStorable(json);
  if (unstorable) return { ok: false, reason: unstorable, type: base.data.type };
  const known = webhookEventSchema.safeParse(json);
  if (known.success) return { ok: true, event: known.data, id: known.data.id, type: known.data.type, json };
  if ((KNOWN_TYPES as readonly string[]).includes(base.data.type)) return { ok: false, reason: describeIssues(known.error), type: base.data.type };
  return { ok: true, event: null, id: base.data.id, type: base.data.type, json };
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
      if (c.direction !== 'USER_INITIATED') return { kind: 'answered', ...common, context: null };
      // YCloud names the caller by number, and (documented since 2026) by BSUID; no profile, username, CTA or deep link.
      const user = { number: c.from, userId: c.fromUserId ?? null, profileName: null, username: null };
      return { kind: 'offered', ...common, dialTime: c.dialTime ?? null, user, ctaPayload: null, deeplinkPayload: null };
    }
    case 'whatsapp.call.status.updated': {
      const s = event.callingStatusUpdated;
      // YCloud's status event names the WABA, not the number.
      return { kind: 'status', wacid: s.wacid, phoneId: null, status: s.status, progress: PROGRESS[s.status] ?? 'other' };
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
    case 'whatsapp.call.recording.updated':
      return mediaEvent('recording', event.callingRecording);
    case 'whatsapp.call.transcription.updated':
      return mediaEvent('transcription', event.callingTranscription);
  }
}

/**
 * An AVAILABLE file as the calls' media notice (YCloud gives no URL, type or checksum: the download
 * names its type); any other status (FAILED: YCloud could not make the file) is stored, not acted on.
 */
function mediaEvent(media: 'recording' | 'transcription', m: z.infer<typeof callingMediaSchema>): CallMediaAvailable | null {
  if (m.status !== 'AVAILABLE' || !m.mediaAssetId) return null;
  return { kind: 'media_available', wacid: m.wacid, phoneId: m.phoneId ?? null, media, mediaId: m.mediaAssetId, url: null, mimeType: null, sha256: null };
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
