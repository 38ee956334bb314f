import http from 'node:http';
import { AccountField, SimMediaKind, SimOp, SimPermissionRequest, SimPermissionView, SimPerson } from './types';

/** An API request in the engine's terms, as a face read it from its wire format. */
export type Op =
  | { op: 'connect'; phoneId: string | null; from: string | null; to: string | null; recipient: string | null; sdp: string; context: string | null }
  | { op: 'pre_accept' | 'accept'; wacid: string; sdpType: unknown; sdp: unknown; context: string | null }
  | { op: 'reject' | 'terminate'; wacid: string }
  | { op: 'message'; phoneId: string | null; from: string | null; to: string; permissionRequest: boolean; text: string }
  | { op: 'call_permissions'; phoneId: string; to: string }
  /** credentials: the read asks for the SIP password too (Meta's include_sip_credentials=true). */
  | { op: 'settings'; key: string; update: Record<string, unknown> | null; credentials?: boolean }
  | { op: 'media' | 'media_download'; mediaId: string }
  | { op: 'invalid'; message: string; wacid?: string | null }
  | { op: 'not_found'; message: string };

/** What the engine answers an Op with, before a face renders it. */
export type Outcome =
  | { kind: 'success' }
  | { kind: 'connected'; wacid: string; to: string; withWacid: boolean }
  | { kind: 'message_sent'; wamid: string; to: string }
  | { kind: 'permissions'; view: SimPermissionView }
  | { kind: 'settings'; settings: Record<string, unknown> }
  | { kind: 'media'; mediaId: string; url: string; mimeType: string; sha256: string; size: number }
  | { kind: 'bytes'; body: Buffer; mimeType: string };

/** An API error in the engine's terms (YCloud's code word; WhatsApp's numeric code, Meta's `code`). */
export interface SimError { status: number; code: string; message: string; whatsappCode?: number; subcode?: number }

/** A call as the webhooks describe it. */
export interface CallView {
  wacid: string;
  phoneId: string;
  wabaId: string;
  direction: 'USER_INITIATED' | 'BUSINESS_INITIATED';
  /** The business number (E.164). */
  business: string;
  /** The WhatsApp user. */
  person: SimPerson;
  /** Meta's biz_opaque_callback_data, once the business gave it. */
  context: string | null;
  ctaPayload: string | null;
  deeplinkPayload: string | null;
}

/** A webhook in the engine's terms, as a face renders it. */
export type SimEvent =
  | { kind: 'connect'; call: CallView; sdpType: 'offer' | 'answer'; sdp: string; at: number }
  | { kind: 'status'; call: CallView; status: 'RINGING' | 'ACCEPTED' | 'REJECTED'; at: number }
  | { kind: 'terminate'; call: CallView; status: 'COMPLETED' | 'FAILED'; startTime: number; endTime: number; durationS: number | null; at: number }
  | { kind: 'permission_reply'; request: SimPermissionRequest; person: SimPerson; wabaId: string; phoneId: string; accept: boolean; permanent: boolean; expires: number | null; at: number }
  /** `url`: null when the notice names the media id only (the bridge then asks GET /{mediaId} for the URL). */
  | { kind: 'media'; call: CallView; media: SimMediaKind; mediaId: string; url: string | null; mimeType: string; sha256: string; at: number }
  | { kind: 'account'; field: AccountField; wabaId: string; phoneId: string; business: string; value: Record<string, unknown>; at: number };

/** How one provider's wire format looks: the engine's requests, answers and webhooks in that provider's words. */
export interface Face {
  readonly name: 'ycloud' | 'meta';
  /** The API base path the bridge is given (after the server's origin). */
  readonly basePath: string;
  /** Reads a request; `path` is the URL path without the base, as recorded in `requests`. */
  parse(method: string, path: string, query: URLSearchParams, body: Record<string, unknown>): Op;
  /** The path recorded for a request, e.g. "/calls/accept" (YCloud) or "/123/calls" (Meta). */
  localPath(pathname: string): string;
  /** Which SimOp a request is, for faults and waits, before it is acted on. */
  opOf(op: Op): SimOp;
  authorized(headers: http.IncomingHttpHeaders): boolean;
  unauthorized(): { status: number; body: unknown };
  error(err: SimError): { status: number; body: unknown };
  render(outcome: Outcome): unknown;
  /** Where a media file is downloaded, after the server's origin. */
  mediaPath(mediaId: string): string;
  /** A new media id as this provider writes them. */
  newMediaId(): string;
  /** A number's calling settings before anyone set them. */
  defaultSettings(): Record<string, unknown>;
  /** Headers every API answer carries (a request id). */
  answerHeaders(): Record<string, string>;
  /** A webhook body for an event. */
  webhook(ev: SimEvent): Record<string, unknown>;
  /** The signature header's value for a webhook body. `timestamp`: YCloud's signed time (unix s). */
  sign(body: string, secret: string, timestamp?: number): string;
  /** The signature header's name. */
  readonly signatureHeader: string;
  /** Other headers a webhook POST carries. */
  webhookHeaders(): Record<string, string>;
  /** What the timeline calls a webhook body, and the call it is about. */
  describe(payload: unknown): { type: string; wacid: string | null };
  /** The bridge's dedupe keys for a webhook body (the ids its 'event-processed' names). */
  deliveryIds(payload: unknown): string[];
}

export const ERR = {
  invalid: (message: string): SimError => ({ status: 400, code: 'INVALID_ARGUMENT', message }),
  notFound: (message: string): SimError => ({ status: 404, code: 'NOT_FOUND', message }),
  precondition: (message: string, whatsappCode?: number): SimError => ({ status: 400, code: 'FAILED_PRECONDITION', message, ...(whatsappCode ? { whatsappCode } : {}) }),
  whatsapp: (message: string, whatsappCode: number): SimError => ({ status: 400, code: 'WHATSAPP_ERROR', message, whatsappCode }),
};

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}
