import { CallRef } from './call-events';

/**
 * What the calls ask of a WhatsApp provider (the port; src/providers/ycloud is one adapter). Each
 * request is bounded by the adapter's timeout; a failure is a ProviderError.
 */
export interface WhatsAppProvider {
  /** The provider's name as people know it (logs, CDR errors: "YCloud: ..."). */
  readonly name: string;
  /** Answers a user's offer before the PBX answers, so ICE and DTLS are up when it does. Sent once. */
  preAccept(call: CallRef, sdpAnswer: string): Promise<void>;
  /** The PBX answered: the WhatsApp user is connected. Sent once (an unanswered accept leaves the call's state unknown). */
  accept(call: CallRef, sdpAnswer: string): Promise<void>;
  /** Turns away a call never accepted. Safe to repeat. */
  reject(call: CallRef): Promise<void>;
  /** Ends an accepted call (or a business-initiated one). Safe to repeat. */
  terminate(call: CallRef): Promise<void>;
  /** Places a business-initiated call with the bridge's offer; the wacid when the answer carries it (else the next webhook does). Sent once. */
  connect(call: { from: string; to: string; sdpOffer: string }): Promise<{ wacid: string | null }>;
  /** Asks a WhatsApp user for permission to call them; the message id when the provider gives one. */
  requestPermission(from: string, to: string, body: PermissionRequestBody): Promise<{ messageId: string | null }>;
  /** The number's calling settings as the provider returns them. Safe to repeat. */
  getCallingSettings(account: string, phoneNumber: string): Promise<unknown>;
  updateCallingSettings(account: string, phoneNumber: string, settings: Record<string, unknown>): Promise<unknown>;
}

export type PermissionRequestBody =
  | { kind: 'interactive'; text: string }
  | { kind: 'template'; name: string; language: string; components?: unknown[] };

/**
 * A provider request that failed, with what the calls decide on: the HTTP status (null: no answer at
 * all), WhatsApp's own error code (e.g. 138006, no permission) and whether the request timed out.
 */
export class ProviderError extends Error {
  constructor(
    message: string,
    /** The adapter's name (ProviderError.provider): "YCloud". */
    readonly provider: string,
    readonly httpStatus: number | null,
    readonly code: string | null,
    readonly requestId: string | null,
    /** Meta's own error code (e.g. 138006), when the provider passes it through. */
    readonly whatsappCode: number | null,
    /** No HTTP answer: the request timed out (true) or the network failed (false). */
    readonly timedOut = false,
  ) {
    super(message);
    this.name = 'ProviderError';
  }

  /** No answer came: a request that is not safe to repeat may or may not have been applied. */
  get unanswered(): boolean {
    return this.httpStatus === null;
  }
}
