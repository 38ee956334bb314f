import { CallEvent } from '../calls/call-events';

/** One event out of a verified webhook body, as the pipeline stores and dedupes it. */
export interface Delivery {
  /** The provider's id for the event (the dedupe key). */
  id: string;
  /** The provider's event type (metrics, logs, the stored row). */
  type: string;
  /** The event as sent, parsed: kept (or redacted, see storedPayload) in webhook_events. */
  payload: unknown;
  /** What the calls act on; null for events the bridge stores but does not act on. */
  event: CallEvent | null;
}

/**
 * A body that failed parsing names its `type` when it got as far as having one. A batch (Meta's
 * envelope) may be taken in part: `rejected` are the parts that can never be valid (quarantined).
 */
export type ParsedWebhook =
  | { ok: true; deliveries: Delivery[]; rejected?: RejectedPart[] }
  | { ok: false; reason: string; type?: string };

/** One part of a batch refused as never valid, kept as sent. */
export interface RejectedPart { reason: string; type?: string; payload: unknown }

export type SignatureCheck = { ok: true } | { ok: false; reason: string; stale?: true };

/**
 * A provider's webhooks (the inbound half of the provider port): how a request is authenticated and
 * how its body becomes call events. The HTTP endpoint, the durable store and the calls are the same
 * for every provider.
 */
export interface WebhookSource {
  /** The path segment: POST /webhooks/<provider>. */
  readonly provider: string;
  /** The request header that carries the signature. */
  readonly signatureHeader: string;
  /** The largest body the provider sends (a bigger one gets 413 unread). */
  readonly maxBodyBytes: number;
  /** The header alone (present, well formed, fresh): checked before a byte of the body is read. */
  checkHeader(header: string | undefined): SignatureCheck;
  /** The signature over the raw bytes as received, in constant time. */
  verify(header: string | undefined, raw: Buffer): SignatureCheck;
  /** The verified body as events; refused as a whole when it cannot be valid. */
  parse(body: Buffer): ParsedWebhook;
  /** An event read back from webhook_events (replay after a restart, another node's offer). */
  decodeStored(payload: unknown): CallEvent | null;
  /** The provider's subscription check (Meta: GET with hub.verify_token and hub.challenge); absent: none. */
  verifyChallenge?(query: Record<string, string | undefined>): { status: number; body: string };
}
