import { PermissionReplyRow } from '../cdr/permission-records';

/**
 * What a WhatsApp provider tells the bridge, in the bridge's own words. A provider adapter (today
 * src/providers/ycloud) verifies and parses its webhooks into these; nothing under src/calls knows a
 * provider's payloads. Every call event names the call by its WhatsApp call id (`wacid`).
 */

/** A WhatsApp call as the provider's API names it in every request about it. */
export interface CallRef {
  /** The business number's id at the provider (YCloud's and Meta's phone number id). */
  phoneId: string;
  /** WhatsApp's call id. */
  wacid: string;
}

/** The SDP a call event carries, with what the provider says it is. */
export interface CarriedSdp {
  sdpType: 'offer' | 'answer';
  sdp: string;
}

/**
 * Who a WhatsApp user is, as far as the provider says. Since 2026 a user may hide their number: then
 * only a business-scoped user id (BSUID, e.g. `US.13491208655302741918`) and a profile name or
 * username are known. The bridge addresses a user by their "address": the E.164 number when known,
 * else the BSUID (both are valid SIP user parts, and both can be dialled back).
 */
export interface WhatsAppUser {
  /** E.164, when the provider gives it. */
  number: string | null;
  /** The business-scoped user id (BSUID), when the provider gives it. */
  userId: string | null;
  /** The WhatsApp profile name (the SIP display name toward the PBX). */
  profileName: string | null;
  /** The user's WhatsApp username (without @), when they have one. */
  username: string | null;
}

export { BSUID } from '../util/numbers';

/** The user's address: their E.164 number, else their BSUID. */
export function userAddress(u: Pick<WhatsAppUser, 'number' | 'userId'>): string | null {
  return u.number ?? u.userId;
}

/** A WhatsApp user calls the business: their offer. */
export interface CallOffered extends CallRef, CarriedSdp {
  kind: 'offered';
  /** The WhatsApp user's address: E.164 number, or the BSUID when no number is known (see WhatsAppUser). */
  from: string;
  /** The business number (E.164). */
  to: string;
  /** When the user dialled (ms since the epoch), when the provider says. */
  dialTime: number | null;
  /** The caller as far as known (number, BSUID, profile name, username). */
  user: WhatsAppUser;
  /** Which call button (CTA) or deep link the user called from, when the provider says (Meta). */
  ctaPayload: string | null;
  deeplinkPayload: string | null;
  /** The user's country calling code, when the provider says (Meta's SIP: x-wa-meta-country-code). */
  countryCode?: string | null;
}

/** The WhatsApp user's phone took the business's call: their answer to the bridge's offer. */
export interface CallAnswered extends CallRef, CarriedSdp {
  kind: 'answered';
  /** The business number (E.164). */
  from: string;
  /** The WhatsApp user's address (E.164 number, else BSUID). */
  to: string;
  /** What the bridge gave the provider with the connect (Meta's biz_opaque_callback_data), echoed back. */
  context: string | null;
}

/** Where a business-initiated call stands at the WhatsApp user's end. */
export type CallProgress = 'ringing' | 'accepted' | 'rejected' | 'other';

export interface CallStatus {
  kind: 'status';
  wacid: string;
  /** The business number's id at the provider, when the event names it. */
  phoneId: string | null;
  progress: CallProgress;
  /** The provider's own word for it (kept in the timeline). */
  status: string;
}

/** The WhatsApp side ended the call. */
export interface CallEnded {
  kind: 'ended';
  wacid: string;
  phoneId: string | null;
  /** The provider's final status (COMPLETED, FAILED, ...), when it gives one. */
  cause: string | null;
  /** Talk time as WhatsApp counted it (s). */
  durationS: number | null;
  /** When WhatsApp says the call started and ended (ms since the epoch). */
  startedAt: number | null;
  endedAt: number | null;
}

/** A call known to have ended at WhatsApp before its offer was acted on (nothing more said of it). */
export function endedBeforeOffer(call: CallRef): CallEnded {
  return { kind: 'ended', wacid: call.wacid, phoneId: call.phoneId, cause: null, durationS: null, startedAt: null, endedAt: null };
}

/** A WhatsApp user's answer to a call-permission request (stored as it comes; PermissionStore works out its expiry). */
export type PermissionReply = PermissionReplyRow;

export interface PermissionReplied {
  kind: 'permission_reply';
  /** The reply, or why the provider's message could not be read as one. */
  reply: PermissionReply | { error: string };
}

/**
 * A file WhatsApp made of a call, ready to download for a short while (Meta: per-call recording and
 * transcription, a voicemail left after a missed call). The adapter's fetchMedia brings it in.
 */
export interface CallMediaAvailable {
  kind: 'media_available';
  wacid: string;
  phoneId: string | null;
  media: 'recording' | 'transcription' | 'voicemail';
  /** The provider's media id (fetchMedia's argument). */
  mediaId: string;
  /** A direct download URL when the event carries one (short-lived). */
  url: string | null;
  mimeType: string | null;
  sha256: string | null;
}

/** Something about the business account or a number (Meta: account_update, account_settings_update). */
export interface AccountNotice {
  kind: 'account_notice';
  /** The number it is about, when it names one. */
  phoneId: string | null;
  /** The provider's field (account_update, account_settings_update). */
  field: string;
  /** The provider's event (ACCOUNT_VIOLATION, ACCOUNT_RESTRICTION, ...) or "settings_changed". */
  event: string;
  /** How serious: a restriction stops calls; a warning does not yet. */
  severity: 'restriction' | 'warning' | 'info';
  /** The provider's own words, kept as sent (bounded). */
  detail: unknown;
}

/** Every event the calls act on. */
export type CallEvent = CallOffered | CallAnswered | CallStatus | CallEnded | PermissionReplied | CallMediaAvailable | AccountNotice;

/** The call an event is about (its lane and its node), or null for events about no call. */
export function wacidOf(event: CallEvent | null): string | null {
  if (!event || event.kind === 'permission_reply' || event.kind === 'account_notice') return null;
  return event.wacid;
}
