import { performance } from 'node:perf_hooks';
import { Metrics, YCloudEndpoint, YCloudResult } from '../../metrics/metrics';

/** YCloud REST client for the calling endpoints: API key auth, timeouts, and typed errors. */
export class YCloudError extends Error {
  constructor(
    message: string,
    readonly httpStatus: number | null,
    readonly code: string | null,
    readonly requestId: string | null,
    /** Meta's own error code (e.g. 138006), when YCloud passes it through. */
    readonly whatsappCode: number | null,
    /** No HTTP answer: the request timed out (true) or the network failed (false). */
    readonly timedOut = false,
  ) {
    super(message);
    this.name = 'YCloudError';
  }
}

export interface YCloudClientOptions {
  baseUrl: string;
  apiKey: string;
  timeoutMs: number;
}

export interface SdpRequest { phoneId: string; wacid: string; sdp: string }
export interface CallRef { phoneId: string; wacid: string }

export class YCloudClient {
  /** `metrics`: each request is counted and timed by its endpoint's fixed name (never its URL). */
  constructor(private readonly opts: YCloudClientOptions, private readonly metrics?: Metrics) {}

  preAccept(r: SdpRequest): Promise<unknown> {
    return this.post('preAccept', '/whatsapp/calls/preAccept', { phoneId: r.phoneId, wacid: r.wacid, sdpType: 'answer', sdp: r.sdp });
  }

  accept(r: SdpRequest): Promise<unknown> {
    return this.post('accept', '/whatsapp/calls/accept', { phoneId: r.phoneId, wacid: r.wacid, sdpType: 'answer', sdp: r.sdp });
  }

  reject(r: CallRef): Promise<unknown> {
    return this.post('reject', '/whatsapp/calls/reject', { phoneId: r.phoneId, wacid: r.wacid });
  }

  terminate(r: CallRef): Promise<unknown> {
    return this.post('terminate', '/whatsapp/calls/terminate', { phoneId: r.phoneId, wacid: r.wacid });
  }

  /** Places a business-initiated call. The wacid comes back here when YCloud returns it, else in the connect webhook. */
  async connect(r: { from: string; to: string; sdp: string }): Promise<{ wacid: string | null }> {
    const res = await this.post('connect', '/whatsapp/calls/connect', { from: r.from, to: r.to, sdpType: 'offer', sdp: r.sdp });
    const wacid = isRecord(res) && typeof res.wacid === 'string' ? res.wacid : null;
    return { wacid };
  }

  /** A call-permission request, as a free-form interactive message or as a template that carries one. */
  async sendPermissionRequest(
    from: string,
    to: string,
    body: { kind: 'interactive'; text: string } | { kind: 'template'; name: string; language: string; components?: unknown[] },
  ): Promise<{ id: string | null }> {
    const message = body.kind === 'interactive'
      ? { type: 'interactive', interactive: { type: 'call_permission_request', action: { name: 'call_permission_request' }, body: { text: body.text } } }
      : { type: 'template', template: { name: body.name, language: { code: body.language, policy: 'deterministic' }, components: body.components ?? [] } };
    const res = await this.post('send_message', '/whatsapp/messages/sendDirectly', { from, to, ...message });
    return { id: isRecord(res) && typeof res.id === 'string' ? res.id : null };
  }

  getSettings(wabaId: string, phoneNumber: string): Promise<unknown> {
    return this.request('settings_get', 'GET', `/whatsapp/phoneNumbers/${encodeURIComponent(wabaId)}/${encodeURIComponent(phoneNumber)}/settings`);
  }

  updateSettings(wabaId: string, phoneNumber: string, settings: Record<string, unknown>): Promise<unknown> {
    return this.request('settings_update', 'POST', `/whatsapp/phoneNumbers/${encodeURIComponent(wabaId)}/${encodeURIComponent(phoneNumber)}/settings`, settings);
  }

  private post(endpoint: YCloudEndpoint, path: string, body: Record<string, unknown>): Promise<unknown> {
    return this.request(endpoint, 'POST', path, body);
  }

  private async request(endpoint: YCloudEndpoint, method: 'GET' | 'POST', path: string, body?: Record<string, unknown>): Promise<unknown> {
    const start = performance.now();
    const done = (result: YCloudResult) => this.metrics?.ycloudRequest(endpoint, result, (performance.now() - start) / 1000);
    try {
      const out = await this.send(method, path, body);
      done('ok');
      return out;
    } catch (err) {
      done(resultOf(err));
      throw err;
    }
  }

  private async send(method: 'GET' | 'POST', path: string, body?: Record<string, unknown>): Promise<unknown> {
    let res: Response;
    try {
      res = await fetch(this.opts.baseUrl + path, {
        method,
        headers: { 'Content-Type': 'application/json', 'X-API-Key': this.opts.apiKey },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.opts.timeoutMs),
      });
    } catch (err) {
      const e = err as Error;
      const timedOut = e.name === 'TimeoutError';
      const what = timedOut ? `timed out after ${this.opts.timeoutMs} ms` : e.message;
      throw new YCloudError(`${method} ${path}: ${what}`, null, null, null, null, timedOut);
    }
    const text = await res.text();
    let json: unknown = undefined;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      /* not JSON: keep the text for the error */
    }
    if (res.ok) return json;
    const err = isRecord(json) && isRecord(json.error) ? json.error : {};
    const wa = isRecord(err.whatsappApiError) ? err.whatsappApiError : {};
    throw new YCloudError(
      `${method} ${path}: ${res.status} ${typeof err.message === 'string' ? err.message : text.slice(0, 200)}`,
      res.status,
      err.code === undefined ? null : String(err.code),
      res.headers.get('YCloud-Request-ID') ?? (typeof err.requestId === 'string' ? err.requestId : null),
      typeof wa.code === 'number' ? wa.code : null,
    );
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A failed request as a metrics result (a body that stopped coming is not a YCloudError). */
function resultOf(err: unknown): YCloudResult {
  if (!(err instanceof YCloudError)) return (err as Error)?.name === 'TimeoutError' ? 'timeout' : 'network_error';
  if (err.httpStatus === null) return err.timedOut ? 'timeout' : 'network_error';
  return err.httpStatus >= 500 ? 'http_5xx' : 'http_4xx';
}
