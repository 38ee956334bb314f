/** The public vocabulary of the provider simulator, the same for its YCloud and its Meta face. */

/** Which provider's wire format the simulator speaks. */
export type FaceName = 'ycloud' | 'meta';

/** What a simulated WhatsApp user's phone must offer the simulator. */
export interface SimUser {
  createOffer(): Promise<string>;
  applyAnswer(sdp: string): Promise<void>;
}

/**
 * Who a simulated WhatsApp user is: a number, or (since 2026's usernames) only a business-scoped user
 * id (BSUID) with a profile name and perhaps a username. The YCloud face needs a number.
 */
export interface SimPerson {
  number: string | null;
  userId: string | null;
  profileName: string | null;
  username: string | null;
}

/**
 * What an API request asked for, in the simulator's own words (both faces map their paths onto it):
 * `failNext`, `delay` and `waitForRequest` accept these names as well as a YCloud path such as "/calls/accept".
 */
export type SimOp =
  | 'connect' | 'pre_accept' | 'accept' | 'reject' | 'terminate'
  | 'message' | 'call_permissions' | 'settings' | 'media' | 'media_download' | 'unknown';

/** An API request as received: `path` is the face's own (YCloud: "/calls/accept"; Meta: "/<phoneId>/calls"). */
export interface SimRequest {
  method: string; path: string; op: SimOp; wacid: string | null; body: Record<string, unknown>; at: number;
  /**
   * What the request carried, the same for both faces: the SDP (connect, pre-accept, accept), the
   * business number and the user's address (E.164 with +, or a BSUID: Meta's `recipient`), the
   * callback context (Meta's biz_opaque_callback_data).
   */
  sdp: string | null; from: string | null; to: string | null; context: string | null;
}
/** An API call as answered: what the sandbox's timeline shows. */
export interface SimApiCall { method: string; path: string; wacid: string | null; body: Record<string, unknown>; status: number; response: unknown; at: number }
/** A webhook POST as delivered, with the bridge's HTTP status (`type`: YCloud's event type; Meta: "calls:connect, statuses:RINGING"). */
export interface SimWebhook { type: string; wacid: string | null; event: unknown; status: number; at: number }
/** A call permission request the business sent (interactive call_permission_request, or a template carrying one). */
export interface SimPermissionRequest { id: string; business: string; customer: string; text: string }
/** What the WhatsApp user answers to a permission request: 7 days, permanently, or no. */
export type PermissionChoice = 'temporary' | 'permanent' | 'decline';
/** A simulated user's call changed state (user-initiated calls; `ended` for both directions). */
export type SimCallState = 'pre_accepted' | 'accepted' | 'ended';

/**
 * A business-initiated call as the simulator sees it; tests script what the WhatsApp user does.
 * `to` is the address the business dialled (E.164, or the BSUID given as Meta's `recipient`);
 * `user` is the simulated user it reached, when one is registered; `context` is Meta's biz_opaque_callback_data.
 */
export interface SimOutboundCall {
  wacid: string;
  phoneId: string;
  from: string;
  to: string;
  offer: string;
  user: SimPerson | null;
  context: string | null;
}
export type OutboundScript = (call: SimOutboundCall) => Promise<void>;

/**
 * An API fault. `location`: with a 3xx status, the redirect's Location (the request is not acted on).
 * `code`: YCloud's error code word; `whatsappCode`: WhatsApp's numeric code (Meta's `error.code`);
 * `subcode`: Meta's `error_subcode`.
 */
export interface Fault { status: number; code?: string; message?: string; whatsappCode?: number; subcode?: number; delayMs?: number; location?: string }

/** A file WhatsApp made of a call (Meta: per-call recording, transcription, voicemail). */
export type SimMediaKind = 'recording' | 'transcription' | 'voicemail';

/** Meta's account-level webhook fields. */
export type AccountField = 'account_update' | 'account_settings_update';

/** Permission state as Meta's GET /call_permissions reports it. */
export interface SimPermissionView {
  permission: { status: 'no_permission' | 'temporary' | 'permanent'; expiration_time?: number };
  actions: Array<{
    action_name: 'send_call_permission_request' | 'start_call';
    can_perform_action: boolean;
    limits: Array<{ time_period: string; max_allowed: number; current_usage: number; limit_expiration_time?: number }>;
  }>;
}
