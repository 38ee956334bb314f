import { performance } from 'node:perf_hooks';
import { CallRef } from '../../calls/call-events';
import { PermissionRequestBody, ProviderError, WhatsAppProvider } from '../../calls/provider-port';
import { Metrics, YCloudEndpoint, YCloudResult } from '../../metrics/metrics';

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
}

export interface YCloudClientOptions {
  baseUrl: string;
  apiKey: string;
  timeoutMs: number;
}

/** YCloud's REST API for calls (the provider port's YCloud adapter): API key auth, timeouts, typed errors. */
export class YCloudClient implements WhatsAppProvider {
  readonly name = 'YCloud';

  /** `metrics`: each request is counted and timed by its endpoint's fixed name (never its URL). */
  constructor(private readonly opts: YCloudClientOptions, private readonly metrics?: Metrics) {}

  async preAccept(call: CallRef, sdpAnswer: string): Promise<void> {
    await this.post('preAccept', '/whatsapp/calls/preAccept', { phoneId: call.phoneId, wacid: call.wacid, sdpType: 'answer', sdp: sdpAnswer });
  }

  async accept(call: CallRef, sdpAnswer: string): Promise<void> {
    await this.post('accept', '/whatsapp/calls/accept', { phoneId: call.phoneId, wacid: call.wacid, sdpType: 'answer', sdp: sdpAnswer });
  }

  /** Retried within the timeout (see RETRY): rejecting a call twice rejects it once. */
  async reject(call: CallRef): Promise<void> {
    await this.request('reject', 'POST', '/whatsapp/calls/reject', { phoneId: call.phoneId, wacid: call.wacid }, RETRY);
  }

  /** Retried within the timeout (see RETRY): ending a call twice ends it once. */
  async terminate(call: CallRef): Promise<void> {
    await this.request('terminate', 'POST', '/whatsapp/calls/terminate', { phoneId: call.phoneId, wacid: call.wacid }, RETRY);
  }

  /** Places a business-initiated call. The wacid comes back here when YCloud returns it, else in the connect webhook. */
  async connect(call: { from: string; to: string; sdpOffer: string }): Promise<{ wacid: string | null }> {
    const res = await this.post('connect', '/whatsapp/calls/connect', { from: call.from, to: call.to, sdpType: 'offer', sdp: call.sdpOffer });
    const wacid = isRecord(res) && typeof res.wacid === 'string' ? res.wacid : null;
    return { wacid };
  }

  /** A call-permission request, as a free-form interactive message or as a template that carries one. */
  async requestPermission(from: string, to: string, body: PermissionRequestBody): Promise<{ messageId: string | null }> {
    const message = body.kind === 'interactive'
      ? { type: 'interactive', interactive: { type: 'call_permission_request', action: { name: 'call_permission_request' }, body: { text: body.text } } }
      : { type: 'template', template: { name: body.name, language: { code: body.language, policy: 'deterministic' }, components: body.components ?? [] } };
    const res = await this.post('send_message', '/whatsapp/messages/sendDirectly', { from, to, ...message });
    return { messageId: isRecord(res) && typeof res.id === 'string' ? res.id : null };
  }

  /** A read: retried within the timeout (see RETRY). `account` is the WABA id. */
  getCallingSettings(account: string, phoneNumber: string): Promise<unknown> {
    return this.request('settings_get', 'GET', `/whatsapp/phoneNumbers/${encodeURIComponent(account)}/${encodeURIComponent(phoneNumber)}/settings`, undefined, RETRY);
  }

  updateCallingSettings(wabaId: string, phoneNumber: string, settings: Record<string, unknown>): Promise<unknown> {
    return this.request('settings_update', 'POST', `/whatsapp/phoneNumbers/${encodeURIComponent(wabaId)}/${encodeURIComponent(phoneNumber)}/settings`, settings);
  }

  private post(endpoint: YCloudEndpoint, path: string, body: Record<string, unknown>): Promise<unknown> {
    return this.request(endpoint, 'POST', path, body);
  }

  /**
   * One request, bounded as a whole by the timeout. With `retry`, a network error, a 429 or a 5xx is
   * tried again while the time left allows (a timeout is not: the time is spent).
   */
  private async request(endpoint: YCloudEndpoint, method: 'GET' | 'POST', path: string, body?: Record<string, unknown>, retry?: RetryPolicy): Promise<unknown> {
    const start = performance.now();
    const deadline = start + this.opts.timeoutMs;
    const done = (result: YCloudResult) => this.metrics?.ycloudRequest(endpoint, result, (performance.now() - start) / 1000);
    for (let attempt = 1; ; attempt++) {
      try {
        const out = await this.send(method, path, body, deadline);
        done('ok');
        return out;
      } catch (err) {
        const waitMs = retry && attempt < retry.attempts ? retryDelayMs(err, retry, attempt) : null;
        if (waitMs === null || performance.now() + waitMs >= deadline - MIN_ATTEMPT_MS) {
          done(resultOf(err));
          throw err;
        }
        await new Promise((r) => setTimeout(r, waitMs));
      }
    }
  }

  private async send(method: 'GET' | 'POST', path: string, body: Record<string, unknown> | undefined, deadline: number): Promise<unknown> {
    let res: Response;
    const signal = AbortSignal.timeout(Math.max(1, Math.round(deadline - performance.now())));
    try {
      res = await fetch(this.opts.baseUrl + path, {
        method,
        headers: { 'Content-Type': 'application/json', 'X-API-Key': this.opts.apiKey },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
        // A redirect is never followed: it would carry X-API-Key to wherever the Location points.
        redirect: 'manual',
      });
    } catch (err) {
      const e = err as Error;
      const timedOut = e.name === 'TimeoutError';
      const what = timedOut ? `timed out after ${this.opts.timeoutMs} ms` : e.message;
      throw new YCloudError(`${method} ${path}: ${what}`, null, null, null, null, timedOut);
    }
    if (res.status >= 300 && res.status < 400) {
      await res.body?.cancel();
      throw new YCloudError(
        `${method} ${path}: YCloud answered ${res.status} redirecting to ${redirectTarget(res.headers.get('Location'))}; `
          + 'not followed (the API key goes to YCLOUD_API_BASE_URL only): check YCLOUD_API_BASE_URL',
        res.status, null, res.headers.get('YCloud-Request-ID'), null,
      );
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

/** How a request that is safe to repeat is retried. */
interface RetryPolicy { attempts: number; backoffMs: number }

/**
 * Only requests whose repetition changes nothing are retried: reads (GET settings) and the ends of a
 * call (reject, terminate: YCloud answers a second one "already ended"). preAccept, accept and
 * connect are not: the reference documents no idempotency for them, a repeated connect can place a
 * second call (Meta's 138003 "duplicate call"), and an accept that timed out may have been applied.
 */
const RETRY: RetryPolicy = { attempts: 3, backoffMs: 200 };
/** No new attempt starts with less time than this left before the deadline. */
const MIN_ATTEMPT_MS = 100;

/** The wait before the next attempt after `err`, or null when it is not worth repeating. */
function retryDelayMs(err: unknown, policy: RetryPolicy, attempt: number): number | null {
  if (!(err instanceof YCloudError) || err.timedOut) return null;
  const status = err.httpStatus;
  if (status !== null && status !== 429 && status < 500) return null;
  return policy.backoffMs * 2 ** (attempt - 1);
}

/** Where a redirect pointed, as scheme://host[:port] (never a path or query that could carry secrets). */
function redirectTarget(location: string | null): string {
  if (!location) return '(no Location)';
  try {
    return new URL(location).origin;
  } catch {
    return '(a relative or unreadable Location)';
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A failed request as a metrics result (a body that stopped coming is not a YCloudError). */
function resultOf(err: unknown): YCloudResult {
  if (!(err instanceof YCloudError)) return (err as Error)?.name === 'TimeoutError' ? 'timeout' : 'network_error';
  // A redirect that is not followed never reached the API: counted with the network errors.
  if (err.httpStatus === null || err.httpStatus < 400) return err.timedOut ? 'timeout' : 'network_error';
  return err.httpStatus >= 500 ? 'http_5xx' : 'http_4xx';
}
