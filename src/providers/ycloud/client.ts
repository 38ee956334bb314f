import { CallingSettingsChange } from '../../calls/calling-settings';
import { BSUID, CallRef } from '../../calls/call-events';
import { BusinessLine, ConnectRequest, PermissionRequestBody, ProviderError, RemotePermission, WhatsAppProvider } from '../../calls/provider-port';
import { Metrics, YCloudEndpoint } from '../../metrics/metrics';
import { JsonHttp, RequestFailure, RETRY } from '../http-request';
import { isRecord } from '../payload-bounds';

/** A YCloud request that failed: the provider port's error, named for YCloud. */
export class YCloudError extends ProviderError {
  constructor(
    message: string,
    httpStatus: number | null,
    code: string | null,
    requestId: string | null,
    /** Meta's own error code (e.g. 138006), when YCloud passes it through. */
    whatsappCode: number | null,
    /** No HTTP answer: the request timed out (true) or the network failed (false). */
    timedOut = false,
  ) {
    super(message, 'YCloud', httpStatus, code, requestId, whatsappCode, timedOut);
    this.name = 'YCloudError';
  }

  /** A failed request as YCloud's error body names it: `{error: {code, message, requestId, whatsappApiError: {code}}}`. */
  static of(f: RequestFailure): YCloudError {
    const err = isRecord(f.json) && isRecord(f.json.error) ? f.json.error : {};
    const wa = isRecord(err.whatsappApiError) ? err.whatsappApiError : {};
    return new YCloudError(
      f.message,
      f.httpStatus,
      err.code === undefined ? null : String(err.code),
      f.headers?.get('YCloud-Request-ID') ?? (typeof err.requestId === 'string' ? err.requestId : null),
      typeof wa.code === 'number' ? wa.code : null,
      f.timedOut,
    );
  }
}

export interface YCloudClientOptions {
  baseUrl: string;
  apiKey: string;
  timeoutMs: number;
  /** A media download as a whole (default 60 s) and its size (default 50 MiB). */
  mediaTimeoutMs?: number;
  maxMediaBytes?: number;
}

const DEFAULT_MEDIA_TIMEOUT_MS = 60_000;
const DEFAULT_MAX_MEDIA_BYTES = 50 * 1024 * 1024;
/** YCloud's media asset ids (24 hex digits in its docs): nothing that could leave the path. */
const MEDIA_ASSET_ID = /^[A-Za-z0-9._-]{1,200}$/;

/** YCloud's REST API for calls (the provider port's YCloud adapter): API key auth, timeouts, typed errors. */
export class YCloudClient implements WhatsAppProvider {
  readonly name = 'YCloud';
  private readonly http: JsonHttp<YCloudEndpoint>;

  /** `metrics`: each request is counted and timed by its endpoint's fixed name (never its URL). */
  constructor(private readonly opts: YCloudClientOptions, metrics?: Metrics) {
    this.http = new JsonHttp({
      baseUrl: opts.baseUrl,
      baseUrlSetting: 'YCLOUD_API_BASE_URL',
      headers: { 'X-API-Key': opts.apiKey },
      timeoutMs: opts.timeoutMs,
      error: YCloudError.of,
      record: metrics ? (endpoint, result, seconds) => metrics.ycloudRequest(endpoint, result, seconds) : undefined,
    });
  }

  async preAccept(call: CallRef, sdpAnswer: string): Promise<void> {
    await this.post('preAccept', '/whatsapp/calls/preAccept', { phoneId: call.phoneId, wacid: call.wacid, sdpType: 'answer', sdp: sdpAnswer });
  }

  async accept(call: CallRef, sdpAnswer: string): Promise<void> {
    await this.post('accept', '/whatsapp/calls/accept', { phoneId: call.phoneId, wacid: call.wacid, sdpType: 'answer', sdp: sdpAnswer });
  }

  /** Retried within the timeout (see RETRY): rejecting a call twice rejects it once. */
  async reject(call: CallRef): Promise<void> {
    await this.http.request('reject', 'POST', '/whatsapp/calls/reject', { phoneId: call.phoneId, wacid: call.wacid }, RETRY);
  }

  /** Retried within the timeout (see RETRY): ending a call twice ends it once. */
  async terminate(call: CallRef): Promise<void> {
    await this.http.request('terminate', 'POST', '/whatsapp/calls/terminate', { phoneId: call.phoneId, wacid: call.wacid }, RETRY);
  }

  /**
   * Places a business-initiated call. The wacid comes back here when YCloud returns it, else in the
   * connect webhook. YCloud calls numbers only (no BSUID), and has no field for a context to echo.
   */
  async connect(call: ConnectRequest): Promise<{ wacid: string | null }> {
    if (BSUID.test(call.to)) throw new YCloudError('YCloud cannot call a user by BSUID', 400, null, null, null);
    const res = await this.post('connect', '/whatsapp/calls/connect', { from: call.from.number, to: call.to, sdpType: 'offer', sdp: call.sdpOffer });
    const wacid = isRecord(res) && typeof res.wacid === 'string' ? res.wacid : null;
    return { wacid };
  }

  /** A call-permission request, as a free-form interactive message or as a template that carries one. */
  async requestPermission(from: BusinessLine, to: string, body: PermissionRequestBody): Promise<{ messageId: string | null }> {
    const message = body.kind === 'interactive'
      ? { type: 'interactive', interactive: { type: 'call_permission_request', action: { name: 'call_permission_request' }, body: { text: body.text } } }
      : { type: 'template', template: { name: body.name, language: { code: body.language, policy: 'deterministic' }, components: body.components ?? [] } };
    const res = await this.post('send_message', '/whatsapp/messages/sendDirectly', { from: from.number, to, ...message });
    return { messageId: isRecord(res) && typeof res.id === 'string' ? res.id : null };
  }

  /** YCloud has no read of the permission state: the local permission table decides. */
  async permissionState(): Promise<RemotePermission | null> {
    return null;
  }

  /**
   * A call's recording (audio/ogg) or transcription (application/json), as the
   * `whatsapp.call.*.updated` webhooks name it: GET /whatsapp/calls/media/{mediaAssetId} answers the
   * whole file (downloadable for 30 days; no Range header: YCloud answers one with 400).
   */
  async fetchMedia(_from: BusinessLine, media: { mediaId: string; url: string | null }): Promise<{ body: Buffer; mimeType: string }> {
    if (!MEDIA_ASSET_ID.test(media.mediaId)) throw new YCloudError(`YCloud: media asset id "${media.mediaId.slice(0, 100)}" is not 1-200 of A-Z a-z 0-9 . _ -`, 400, null, null, null);
    const path = `/whatsapp/calls/media/${encodeURIComponent(media.mediaId)}`;
    return this.http.download('media', this.opts.baseUrl + path, `media ${media.mediaId}`, {
      withCredential: true,
      timeoutMs: this.opts.mediaTimeoutMs ?? DEFAULT_MEDIA_TIMEOUT_MS,
      maxBytes: this.opts.maxMediaBytes ?? DEFAULT_MAX_MEDIA_BYTES,
    });
  }

  /** A read: retried within the timeout (see RETRY). YCloud names the number by WABA id and E.164. */
  async getCallingSettings(line: BusinessLine): Promise<unknown> {
    return this.http.request('settings_get', 'GET', settingsPath(line), undefined, RETRY);
  }

  /** YCloud's settings body: `calling` with the change as it is named here (camelCase); a SIP change is refused (YCloud has no SIP mode). */
  async updateCallingSettings(line: BusinessLine, change: CallingSettingsChange): Promise<unknown> {
    if (change.sip !== undefined) {
      throw new YCloudError(`YCloud has no SIP mode for ${line.number}: Meta's native SIP is set on a number of a Meta account (WA_PROVIDER=meta, or a meta account in NUMBERS_FILE)`, 400, null, null, null);
    }
    return this.http.request('settings_update', 'POST', settingsPath(line), { calling: { ...change } });
  }

  private post(endpoint: YCloudEndpoint, path: string, body: Record<string, unknown>): Promise<unknown> {
    return this.http.request(endpoint, 'POST', path, body);
  }
}

function settingsPath(line: BusinessLine): string {
  if (!line.wabaId) throw new YCloudError(`YCloud: no WABA id for ${line.number}: its settings cannot be addressed`, 400, null, null, null);
  return `/whatsapp/phoneNumbers/${encodeURIComponent(line.wabaId)}/${encodeURIComponent(line.number)}/settings`;
}
