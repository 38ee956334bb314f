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

/** A WhatsApp user calls the business: their offer. */
export interface CallOffered extends CallRef, CarriedSdp {
  kind: 'offered';
  /** The WhatsApp user's number (E.164). */
  from: string;
  /** The business number (E.164). */
  to: string;
  /** When the user dialled (ms since the epoch), when the provider says. */
  dialTime: number | null;
}

/** The WhatsApp user's phone took the business's call: their answer to the bridge's offer. */
export interface CallAnswered extends CallRef, CarriedSdp {
  kind: 'answered';
  /** The business number (E.164). */
  from: string;
  /** The WhatsApp user's number (E.164). */
  to: string;
}

/** Where a business-initiated call stands at the WhatsApp user's end. */
export type CallProgress = 'ringing' | 'accepted' | 'rejected' | 'other';

export interface CallStatus {
  kind: 'status';
  wacid: string;
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

/** Every event the calls act on. */
export type CallEvent = CallOffered | CallAnswered | CallStatus | CallEnded | PermissionReplied;

/** The call an event is about (its lane and its node), or null for events about no call. */
export function wacidOf(event: CallEvent | null): string | null {
  if (!event || event.kind === 'permission_reply') return null;
  return event.wacid;
}
