import { CallRef } from './call-events';
import { CallingSettingsChange } from './calling-settings';

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
  /**
   * Places a business-initiated call with the bridge's offer; the wacid when the answer carries it (else
   * the next webhook does). Sent once. `to` is the user's address: E.164, or a BSUID (Meta's `recipient`;
   * an adapter that cannot call a BSUID throws a ProviderError with httpStatus 400).
   */
  connect(call: ConnectRequest): Promise<{ wacid: string | null }>;
  /** Asks a WhatsApp user (E.164 or BSUID) for permission to call them; the message id when the provider gives one. */
  requestPermission(from: BusinessLine, to: string, body: PermissionRequestBody): Promise<{ messageId: string | null }>;
  /**
   * The provider's own view of the permission to call a user (Meta: GET /call_permissions), read before
   * an agent's call so the agent gets the precise refusal without spending a request; null when the
   * provider has no such read (YCloud). Safe to repeat.
   */
  permissionState(from: BusinessLine, to: string): Promise<RemotePermission | null>;
  /** A call's recording, transcription or voicemail, downloaded (bounded in time and size). Safe to repeat. */
  fetchMedia(from: BusinessLine, media: { mediaId: string; url: string | null }): Promise<{ body: Buffer; mimeType: string }>;
  /** The number's calling settings as the provider returns them. Safe to repeat. */
  getCallingSettings(line: BusinessLine): Promise<unknown>;
  /** Applies a settings change (each adapter writes it in its API's shape). */
  updateCallingSettings(line: BusinessLine, change: CallingSettingsChange): Promise<unknown>;
}

/** A business number as the provider's requests name it: YCloud by E.164 and WABA id, Meta by phone number id. */
export interface BusinessLine {
  /** E.164. */
  number: string;
  /** The phone number id at the provider (null: not configured, and no webhook named it yet). */
  phoneId: string | null;
  /** The WhatsApp Business Account id (YCloud's settings need it). */
  wabaId: string | null;
}

export interface ConnectRequest {
  from: BusinessLine;
  /** The user's address: E.164 (`+...`) or a BSUID. */
  to: string;
  sdpOffer: string;
  /**
   * Echoed back by the provider in the call's webhooks, when it can (Meta's biz_opaque_callback_data,
   * at most 512 characters): the bridge's call id, and the agent's X-WhatsApp-Context.
   */
  context: string | null;
}

/** The provider's view of a call permission (Meta's GET /call_permissions). */
export interface RemotePermission {
  status: 'no_permission' | 'temporary' | 'permanent';
  /** When a temporary permission ends. */
  expiresAt: Date | null;
  /** Whether a call may be started now (start_call), and a permission request sent now. */
  canCall: boolean | null;
  canRequest: boolean | null;
  /** The tightest request quota: used of allowed, in which period, until when. */
  requestQuota: { used: number; allowed: number; period: string; resetsAt: Date | null } | null;
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
