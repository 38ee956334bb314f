import { CallingSettingsChange, SipSettingsChange } from '../../calls/calling-settings';
import { z } from 'zod';
import { BSUID, CallRef } from '../../calls/call-events';
import { BusinessLine, ConnectRequest, PermissionRequestBody, ProviderError, RemotePermission, WhatsAppProvider } from '../../calls/provider-port';
import { MetaEndpoint, Metrics } from '../../metrics/metrics';
import { JsonHttp, RequestFailure, RETRY } from '../http-request';
import { isRecord, parseTimestamp } from '../payload-bounds';

/**
 * A Graph API request that failed: `{error: {message, type, code, error_subcode, fbtrace_id}}`, with
 * WhatsApp's code (e.g. 138006, no call permission) as whatsappCode and the trace id as requestId.
 */
export class MetaError extends ProviderError {
  constructor(
    message: string,
    httpStatus: number | null,
    code: string | null,
    requestId: string | null,
    whatsappCode: number | null,
    timedOut = false,
    /** Graph's error_subcode, when given. */
    readonly subcode: number | null = null,
  ) {
    super(message, 'Meta', httpStatus, code, requestId, whatsappCode, timedOut);
    this.name = 'MetaError';
  }

  static of(f: RequestFailure): MetaError {
    const err = isRecord(f.json) && isRecord(f.json.error) ? f.json.error : {};
    const code = typeof err.code === 'number' && Number.isInteger(err.code) ? err.code : null;
    const subcode = typeof err.error_subcode === 'number' && Number.isInteger(err.error_subcode) ? err.error_subcode : null;
    const trace = typeof err.fbtrace_id === 'string' ? err.fbtrace_id.slice(0, 100) : f.headers?.get('x-fb-trace-id') ?? null;
    const codes = code === null ? '' : ` (code ${code}${subcode === null ? '' : `/${subcode}`})`;
    return new MetaError(`${f.message}${codes}`, f.httpStatus, code === null ? null : String(code), trace, code, f.timedOut, subcode);
  }
}

export interface MetaClientOptions {
  /** e.g. https://graph.facebook.com/v23.0 (META_API_BASE_URL), or a provider that passes the Graph API through. */
  baseUrl: string;
  accessToken: string;
  /** `Authorization` (sent as `Bearer <token>`), or a provider's own header (e.g. `D360-API-KEY`, sent as the raw token). */
  authHeader: string;
  timeoutMs: number;
  /** A media download as a whole (default 60 s) and its size (default 50 MiB). */
  mediaTimeoutMs?: number;
  maxMediaBytes?: number;
}

/** Meta's business-initiated call context (biz_opaque_callback_data) is at most this long. */
export const MAX_CONTEXT_CHARS = 512;
const DEFAULT_MEDIA_TIMEOUT_MS = 60_000;
const DEFAULT_MAX_MEDIA_BYTES = 50 * 1024 * 1024;

/**
 * Meta's Cloud API for calls (the provider port's Meta adapter): one `/{phone number id}/calls`
 * endpoint with an `action`, permissions by `/messages` and `/call_permissions`, media by id. Timeouts,
 * redirects and retries as for YCloud (src/providers/http-request.ts).
 */
export class MetaClient implements WhatsAppProvider {
  readonly name = 'Meta';
  private readonly http: JsonHttp<MetaEndpoint>;
  private readonly baseOrigin: string;

  constructor(private readonly opts: MetaClientOptions, metrics?: Metrics) {
    const baseUrl = opts.baseUrl.replace(/\/+$/, '');
    this.baseOrigin = new URL(baseUrl).origin;
    const bearer = opts.authHeader.toLowerCase() === 'authorization';
    this.http = new JsonHttp({
      baseUrl,
      baseUrlSetting: 'META_API_BASE_URL',
      headers: { [opts.authHeader]: bearer ? `Bearer ${opts.accessToken}` : opts.accessToken },
      timeoutMs: opts.timeoutMs,
      error: MetaError.of,
      record: metrics ? (endpoint, result, seconds) => metrics.metaRequest(endpoint, result, seconds) : undefined,
    });
  }

  async preAccept(call: CallRef, sdpAnswer: string): Promise<void> {
    await this.callAction('pre_accept', call, { session: { sdp_type: 'answer', sdp: sdpAnswer } });
  }

  async accept(call: CallRef, sdpAnswer: string): Promise<void> {
    await this.callAction('accept', call, { session: { sdp_type: 'answer', sdp: sdpAnswer } });
  }

  /** Retried within the timeout: rejecting a call twice rejects it once. */
  async reject(call: CallRef): Promise<void> {
    await this.callAction('reject', call, {}, true);
  }

  /** Retried within the timeout: ending a call twice ends it once. */
  async terminate(call: CallRef): Promise<void> {
    await this.callAction('terminate', call, {}, true);
  }

  /** A business-initiated call to a number (`to`, digits) or a BSUID (`recipient`); the wacid from `calls[0].id`. */
  async connect(call: ConnectRequest): Promise<{ wacid: string | null }> {
    if (call.context !== null && call.context.length > MAX_CONTEXT_CHARS) {
      throw new MetaError(`connect: the context is ${call.context.length} characters; Meta echoes at most ${MAX_CONTEXT_CHARS}`, 400, null, null, null);
    }
    const body: Record<string, unknown> = {
      messaging_product: 'whatsapp',
      ...addressed(call.to),
      action: 'connect',
      session: { sdp_type: 'offer', sdp: call.sdpOffer },
    };
    if (call.context !== null) body.biz_opaque_callback_data = call.context;
    const res = await this.http.request('connect', 'POST', `${phonePath(call.from)}/calls`, body);
    const calls = isRecord(res) && Array.isArray(res.calls) ? res.calls : [];
    const first: unknown = calls[0];
    return { wacid: isRecord(first) && typeof first.id === 'string' ? first.id : null };
  }

  /** A call-permission request: an interactive message (inside the 24 h window) or a template carrying one. */
  async requestPermission(from: BusinessLine, to: string, body: PermissionRequestBody): Promise<{ messageId: string | null }> {
    const message = body.kind === 'interactive'
      ? { type: 'interactive', interactive: { type: 'call_permission_request', action: { name: 'call_permission_request' }, body: { text: body.text } } }
      : { type: 'template', template: { name: body.name, language: { code: body.language }, components: body.components ?? [] } };
    const res = await this.http.request('send_message', 'POST', `${phonePath(from)}/messages`, {
      messaging_product: 'whatsapp', recipient_type: 'individual', ...addressed(to), ...message,
    });
    const messages = isRecord(res) && Array.isArray(res.messages) ? res.messages : [];
    const first: unknown = messages[0];
    return { messageId: isRecord(first) && typeof first.id === 'string' ? first.id : null };
  }

  /** GET /call_permissions for the user: the permission, whether a call or a request may go now, the request quota. Retried. */
  async permissionState(from: BusinessLine, to: string): Promise<RemotePermission | null> {
    const address = addressed(to);
    const query = 'to' in address ? `user_wa_id=${encodeURIComponent(address.to)}` : `recipient=${encodeURIComponent(address.recipient)}`;
    const res = await this.http.request('permission_state', 'GET', `${phonePath(from)}/call_permissions?${query}`, undefined, RETRY);
    const parsed = permissionAnswer.safeParse(res);
    if (!parsed.success) {
      throw new MetaError(`GET call_permissions: an answer without a readable permission: ${parsed.error.issues[0]?.message ?? ''}`, 200, null, null, null);
    }
    return remotePermission(parsed.data);
  }

  /**
   * A call's recording, transcription or voicemail: the media id's URL from the Graph API (or the
   * event's own URL), then the file, with the credential only toward the API's host or an https URL.
   */
  async fetchMedia(_from: BusinessLine, media: { mediaId: string; url: string | null }): Promise<{ body: Buffer; mimeType: string }> {
    let url = media.url;
    if (!url) {
      const res = await this.http.request('media', 'GET', `/${encodeURIComponent(media.mediaId)}`, undefined, RETRY);
      url = isRecord(res) && typeof res.url === 'string' ? res.url : null;
      if (!url) throw new MetaError(`GET media ${media.mediaId}: the answer has no url`, 200, null, null, null);
    }
    let target: URL;
    try {
      target = new URL(url);
    } catch {
      throw new MetaError(`media ${media.mediaId}: not a URL`, null, null, null, null);
    }
    if (target.protocol !== 'https:' && target.origin !== this.baseOrigin) {
      throw new MetaError(`media ${media.mediaId}: ${target.protocol} URL refused (https, or the API's own host)`, null, null, null, null);
    }
    return this.http.download('media', target.href, `media ${media.mediaId}`, {
      withCredential: true,
      timeoutMs: this.opts.mediaTimeoutMs ?? DEFAULT_MEDIA_TIMEOUT_MS,
      maxBytes: this.opts.maxMediaBytes ?? DEFAULT_MAX_MEDIA_BYTES,
    });
  }

  /** A read: retried within the timeout. */
  async getCallingSettings(line: BusinessLine): Promise<unknown> {
    return this.http.request('settings_get', 'GET', `${phonePath(line)}/settings`, undefined, RETRY);
  }

  /**
   * Meta's settings body: `calling` with snake_case names (call_icon_visibility, callback_permission_status,
   * call_hours); the SIP part as `sip {status, servers: [{hostname, port}], webhook_delivery}`,
   * `srtp_key_exchange_protocol` and `audio.additional_codecs` (PCMA and PCMU, or none).
   */
  async updateCallingSettings(line: BusinessLine, change: CallingSettingsChange): Promise<unknown> {
    const calling: Record<string, unknown> = {};
    if (change.status !== undefined) calling.status = change.status;
    if (change.iconVisibility !== undefined) calling.call_icon_visibility = change.iconVisibility;
    if (change.callbackPermissionStatus !== undefined) calling.callback_permission_status = change.callbackPermissionStatus;
    if (change.callHours !== undefined) calling.call_hours = change.callHours;
    if (change.sip !== undefined) Object.assign(calling, metaSipSettings(change.sip));
    return this.http.request('settings_update', 'POST', `${phonePath(line)}/settings`, { calling });
  }

  /**
   * The number's SIP settings as Meta holds them, with its SIP password (`GET settings?include_sip_credentials=true`):
   * what `npm run settings -- sip-password` prints and the preflight compares with the numbers file. Retried.
   * Not on the provider port: only the tooling reads credentials.
   */
  async sipSettings(line: BusinessLine): Promise<MetaSipSettings> {
    const res = await this.http.request('settings_get', 'GET', `${phonePath(line)}/settings?include_sip_credentials=true`, undefined, RETRY);
    return readSipSettings(res);
  }

  /** Meta's SIP password for the number (null: Meta gave none, e.g. SIP was never enabled). */
  async sipPassword(line: BusinessLine): Promise<string | null> {
    return (await this.sipSettings(line)).password;
  }

  private callAction(action: MetaEndpoint, call: CallRef, extra: Record<string, unknown>, safeToRepeat = false): Promise<unknown> {
    const path = `/${encodeURIComponent(call.phoneId)}/calls`;
    return this.http.request(action, 'POST', path, { messaging_product: 'whatsapp', call_id: call.wacid, action, ...extra }, safeToRepeat ? RETRY : undefined);
  }
}

/** The SIP part of a number's calling settings, as read from Graph. */
export interface MetaSipSettings {
  /** sip.status; null when Meta's answer has no SIP part. */
  status: string | null;
  /** sip.servers[0]: the one SIP server Meta sends to (null: none set). */
  server: { hostname: string; port: number } | null;
  /** sip.servers[0].sip_user_password (some answers name it `password`); null: not given. */
  password: string | null;
  /** srtp_key_exchange_protocol, when given. */
  srtpKeyExchange: string | null;
}

/** Whether a provider adapter can read Meta's SIP settings and password (the Graph client, or an adapter that passes them through). */
export function readsSipSettings(p: object): p is { sipSettings(line: BusinessLine): Promise<MetaSipSettings> } {
  return typeof (p as { sipSettings?: unknown }).sipSettings === 'function';
}

/** A SIP settings change in Meta's names (the fields of `calling` it sets). */
export function metaSipSettings(sip: SipSettingsChange): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const part: Record<string, unknown> = {};
  if (sip.status !== undefined) part.status = sip.status;
  if (sip.hostname !== undefined) part.servers = [{ hostname: sip.hostname, port: sip.port ?? DEFAULT_SIP_PORT }];
  if (sip.webhookDelivery !== undefined) part.webhook_delivery = sip.webhookDelivery;
  if (Object.keys(part).length) out.sip = part;
  if (sip.srtpKeyExchange !== undefined) out.srtp_key_exchange_protocol = sip.srtpKeyExchange;
  if (sip.g711 !== undefined) out.audio = { additional_codecs: sip.g711 ? ['PCMA', 'PCMU'] : [] };
  return out;
}

/** Meta sends SIP over TLS to this port unless its settings name another. */
export const DEFAULT_SIP_PORT = 5061;

function readSipSettings(res: unknown): MetaSipSettings {
  const calling = isRecord(res) && isRecord(res.calling) ? res.calling : {};
  const sip = isRecord(calling.sip) ? calling.sip : null;
  const first: unknown = sip && Array.isArray(sip.servers) ? sip.servers[0] : undefined;
  const server = isRecord(first) ? first : null;
  const password = server ? [server.sip_user_password, server.password].find((p): p is string => typeof p === 'string' && p.length > 0) ?? null : null;
  const port = server && typeof server.port === 'number' && Number.isInteger(server.port) ? server.port
    : server && typeof server.port === 'string' && /^\d{1,5}$/.test(server.port) ? Number(server.port) : DEFAULT_SIP_PORT;
  return {
    status: sip && typeof sip.status === 'string' ? sip.status : null,
    server: server && typeof server.hostname === 'string' ? { hostname: server.hostname, port } : null,
    password,
    srtpKeyExchange: typeof calling.srtp_key_exchange_protocol === 'string' ? calling.srtp_key_exchange_protocol : null,
  };
}

/** The number's path: its phone number id (the only way Graph names a number). */
function phonePath(line: BusinessLine): string {
  if (!line.phoneId) throw new MetaError(`no phone number id for ${line.number}: Meta's API cannot address it (set WA_PHONE_ID or the number's phoneId)`, 400, null, null, null);
  return `/${encodeURIComponent(line.phoneId)}`;
}

/** A user's address as Graph takes it: `to` (digits) for an E.164 number, `recipient` for a BSUID. */
function addressed(to: string): { to: string } | { recipient: string } {
  if (/^\+[1-9]\d{6,14}$/.test(to)) return { to: to.slice(1) };
  if (BSUID.test(to)) return { recipient: to };
  throw new MetaError(`"${to.slice(0, 40)}" is neither an E.164 number nor a business-scoped user id`, 400, null, null, null);
}

const limitSchema = z.object({
  time_period: z.string().max(20).optional(),
  max_allowed: z.number().finite().optional(),
  current_usage: z.number().finite().optional(),
  limit_expiration_time: z.union([z.number(), z.string().max(40)]).optional(),
});
const permissionAnswer = z.object({
  permission: z.object({
    status: z.enum(['no_permission', 'temporary', 'permanent']),
    expiration_time: z.union([z.number(), z.string().max(40)]).optional(),
  }),
  actions: z.array(z.object({
    action_name: z.string().max(64),
    can_perform_action: z.boolean().optional(),
    limits: z.array(limitSchema).max(20).optional(),
  })).max(20).optional(),
});

function remotePermission(a: z.infer<typeof permissionAnswer>): RemotePermission {
  const action = (name: string) => a.actions?.find((x) => x.action_name === name);
  const request = action('send_call_permission_request');
  // The tightest quota: the fewest requests left.
  const limits = (request?.limits ?? []).filter((l) => l.max_allowed !== undefined);
  const tightest = limits.sort((x, y) => (x.max_allowed! - (x.current_usage ?? 0)) - (y.max_allowed! - (y.current_usage ?? 0)))[0];
  return {
    status: a.permission.status,
    expiresAt: parseTimestamp(a.permission.expiration_time),
    canCall: action('start_call')?.can_perform_action ?? null,
    canRequest: request?.can_perform_action ?? null,
    requestQuota: tightest
      ? { used: tightest.current_usage ?? 0, allowed: tightest.max_allowed!, period: tightest.time_period ?? '', resetsAt: parseTimestamp(tightest.limit_expiration_time) }
      : null,
  };
}
