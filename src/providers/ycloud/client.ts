/** YCloud REST client for the calling endpoints: API key auth, timeouts, and typed errors. */
export class YCloudError extends Error {
  constructor(
    message: string,
    readonly httpStatus: number | null,
    readonly code: string | null,
    readonly requestId: string | null,
    /** Meta's own error code (e.g. 138006), when YCloud passes it through. */
    readonly whatsappCode: number | null,
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
  constructor(private readonly opts: YCloudClientOptions) {}

  preAccept(r: SdpRequest): Promise<unknown> {
    return this.post('/whatsapp/calls/preAccept', { phoneId: r.phoneId, wacid: r.wacid, sdpType: 'answer', sdp: r.sdp });
  }

  accept(r: SdpRequest): Promise<unknown> {
    return this.post('/whatsapp/calls/accept', { phoneId: r.phoneId, wacid: r.wacid, sdpType: 'answer', sdp: r.sdp });
  }

  reject(r: CallRef): Promise<unknown> {
    return this.post('/whatsapp/calls/reject', { phoneId: r.phoneId, wacid: r.wacid });
  }

  terminate(r: CallRef): Promise<unknown> {
    return this.post('/whatsapp/calls/terminate', { phoneId: r.phoneId, wacid: r.wacid });
  }

  private async post(path: string, body: Record<string, unknown>): Promise<unknown> {
    let res: Response;
    try {
      res = await fetch(this.opts.baseUrl + path, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-API-Key': this.opts.apiKey },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(this.opts.timeoutMs),
      });
    } catch (err) {
      const e = err as Error;
      const what = e.name === 'TimeoutError' ? `timed out after ${this.opts.timeoutMs} ms` : e.message;
      throw new YCloudError(`POST ${path}: ${what}`, null, null, null, null);
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
      `POST ${path}: ${res.status} ${typeof err.message === 'string' ? err.message : text.slice(0, 200)}`,
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
