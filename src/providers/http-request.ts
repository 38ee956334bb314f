import { performance } from 'node:perf_hooks';
import { ProviderError } from '../calls/provider-port';
import { networkFailure } from './error-text';

/** How a provider request ended, as the metrics count it. */
export type RequestResult = 'ok' | 'http_4xx' | 'http_5xx' | 'timeout' | 'network_error';

/** A failed request as the adapter turns it into its own ProviderError. */
export interface RequestFailure {
  /** "<METHOD> <path>: what happened". */
  message: string;
  /** null: no HTTP answer (timeout or network error). */
  httpStatus: number | null;
  /** The answer's body as JSON, when it was JSON. */
  json: unknown;
  /** The answer's headers (null without an answer). */
  headers: Headers | null;
  timedOut: boolean;
}

/** What one provider's JSON API needs: where, how to authenticate, how long, how its errors read. */
export interface JsonApi<Endpoint extends string> {
  baseUrl: string;
  /** The setting that holds baseUrl (named when a redirect is refused). */
  baseUrlSetting: string;
  /** Sent with every request (the credential: never logged, never sent to a redirect's target). */
  headers: Record<string, string>;
  timeoutMs: number;
  /** The provider's error for a failure. */
  error(f: RequestFailure): ProviderError;
  /** Each request, counted and timed by its endpoint's fixed name (never its URL). */
  record?(endpoint: Endpoint, result: RequestResult, seconds: number): void;
}

/** How a request that is safe to repeat is retried. */
export interface RetryPolicy { attempts: number; backoffMs: number }

/**
 * Only requests whose repetition changes nothing are retried: reads and the ends of a call (reject,
 * terminate: a second one is answered "already ended"). Accepts and connects are not: a repeated
 * connect can place a second call (Meta's 138003 "duplicate call"), and an accept that timed out may
 * have been applied.
 */
export const RETRY: RetryPolicy = { attempts: 3, backoffMs: 200 };
/** No new attempt starts with less time than this left before the deadline. */
const MIN_ATTEMPT_MS = 100;

/**
 * A provider's JSON API over fetch: one request bounded as a whole by the timeout, redirects never
 * followed (they would carry the credential to wherever the Location points), errors as the
 * provider's ProviderError. With a retry policy, a network error, a 429 or a 5xx is tried again while
 * the time left allows (a timeout is not: the time is spent).
 */
export class JsonHttp<Endpoint extends string> {
  constructor(private readonly api: JsonApi<Endpoint>) {}

  /** `path` is appended to the base URL. */
  async request(endpoint: Endpoint, method: 'GET' | 'POST', path: string, body?: Record<string, unknown>, retry?: RetryPolicy): Promise<unknown> {
    const start = performance.now();
    const deadline = start + this.api.timeoutMs;
    const done = (result: RequestResult) => this.api.record?.(endpoint, result, (performance.now() - start) / 1000);
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

  /**
   * The answer to one request, within `signal`: the Response for a 2xx, else the provider's error. The
   * caller reads (or cancels) the body, within the same signal.
   */
  private async open(
    method: 'GET' | 'POST', url: string, path: string, body: Record<string, unknown> | undefined, signal: AbortSignal,
    withCredential = true, timeoutMs = this.api.timeoutMs,
  ): Promise<Response> {
    let res: Response;
    const headers = withCredential ? this.api.headers : {};
    try {
      res = await fetch(url, {
        method,
        headers: body === undefined ? headers : { 'Content-Type': 'application/json', ...headers },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
        redirect: 'manual',
      });
    } catch (err) {
      throw this.unanswered(method, path, err, timeoutMs);
    }
    if (res.status >= 300 && res.status < 400) {
      await res.body?.cancel();
      throw this.api.error({
        message: `${method} ${path}: the API answered ${res.status} redirecting to ${redirectTarget(res.headers.get('Location'))}; `
          + `not followed (the credential goes to ${this.api.baseUrlSetting} only): check ${this.api.baseUrlSetting}`,
        httpStatus: res.status, json: undefined, headers: res.headers, timedOut: false,
      });
    }
    if (res.ok) return res;
    const text = await res.text().catch((err: unknown) => {
      throw this.unanswered(method, path, err, timeoutMs);
    });
    const json = parseJson(text);
    throw this.api.error({ message: `${method} ${path}: ${res.status} ${errorMessage(json) ?? text.slice(0, 200)}`, httpStatus: res.status, json, headers: res.headers, timedOut: false });
  }

  /**
   * A file at `url` (absolute), with the credential only when `withCredential`, bounded by `timeoutMs`
   * as a whole and by `maxBytes` (announced or received). Not retried: a media download is repeated
   * by its caller if it wants.
   */
  async download(
    endpoint: Endpoint, url: string, what: string, opts: { withCredential: boolean; timeoutMs: number; maxBytes: number },
  ): Promise<{ body: Buffer; mimeType: string }> {
    const start = performance.now();
    const signal = AbortSignal.timeout(opts.timeoutMs);
    try {
      const res = await this.open('GET', url, what, undefined, signal, opts.withCredential, opts.timeoutMs);
      const announced = Number(res.headers.get('Content-Length') ?? NaN);
      if (announced > opts.maxBytes) {
        await res.body?.cancel();
        throw this.api.error({ message: `GET ${what}: ${announced} bytes announced; at most ${opts.maxBytes}`, httpStatus: res.status, json: undefined, headers: res.headers, timedOut: false });
      }
      const chunks: Buffer[] = [];
      let size = 0;
      try {
        for await (const chunk of res.body ?? []) {
          size += chunk.length;
          if (size > opts.maxBytes) {
            await res.body?.cancel().catch(() => undefined);
            throw this.api.error({ message: `GET ${what}: more than ${opts.maxBytes} bytes`, httpStatus: res.status, json: undefined, headers: res.headers, timedOut: false });
          }
          chunks.push(Buffer.from(chunk));
        }
      } catch (err) {
        throw err instanceof ProviderError ? err : this.unanswered('GET', what, err, opts.timeoutMs);
      }
      this.api.record?.(endpoint, 'ok', (performance.now() - start) / 1000);
      return { body: Buffer.concat(chunks), mimeType: res.headers.get('Content-Type') ?? 'application/octet-stream' };
    } catch (err) {
      this.api.record?.(endpoint, resultOf(err), (performance.now() - start) / 1000);
      throw err;
    }
  }

  /** The timeout as an AbortSignal for what is left of it. */
  static signal(deadline: number): AbortSignal {
    return AbortSignal.timeout(Math.max(1, Math.round(deadline - performance.now())));
  }

  /** A request that got no answer (timeout, network error, body cut off) as the provider's error. */
  unanswered(method: string, path: string, err: unknown, timeoutMs = this.api.timeoutMs): ProviderError {
    const e = err as Error;
    const timedOut = e?.name === 'TimeoutError';
    const what = timedOut ? `timed out after ${timeoutMs} ms` : networkFailure(err);
    return this.api.error({ message: `${method} ${path}: ${what}`, httpStatus: null, json: undefined, headers: null, timedOut });
  }

  private async send(method: 'GET' | 'POST', path: string, body: Record<string, unknown> | undefined, deadline: number): Promise<unknown> {
    const signal = JsonHttp.signal(deadline);
    const res = await this.open(method, this.api.baseUrl + path, path, body, signal);
    const text = await res.text().catch((err: unknown) => {
      throw this.unanswered(method, path, err);
    });
    return parseJson(text);
  }
}

function parseJson(text: string): unknown {
  try {
    return text ? JSON.parse(text) : undefined;
  } catch {
    return undefined; // not JSON: the error keeps the text
  }
}

/** `error.message` of a JSON error body (both YCloud and the Graph API put it there). */
function errorMessage(json: unknown): string | null {
  const err = isObject(json) && isObject(json.error) ? json.error : null;
  return err && typeof err.message === 'string' ? err.message.slice(0, 500) : null;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The wait before the next attempt after `err`, or null when it is not worth repeating. */
function retryDelayMs(err: unknown, policy: RetryPolicy, attempt: number): number | null {
  if (!(err instanceof ProviderError) || err.timedOut) return null;
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

/** A failed request as a metrics result. */
function resultOf(err: unknown): RequestResult {
  if (!(err instanceof ProviderError)) return (err as Error)?.name === 'TimeoutError' ? 'timeout' : 'network_error';
  // A redirect that is not followed never reached the API: counted with the network errors.
  if (err.httpStatus === null || err.httpStatus < 400) return err.timedOut ? 'timeout' : 'network_error';
  return err.httpStatus >= 500 ? 'http_5xx' : 'http_4xx';
}
