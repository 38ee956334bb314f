import Srf from 'drachtio-srf';
import { SipMethod, SIP_METHODS } from '../metrics/metrics';
import { SipMetrics, sipResultOf, sipTimer } from '../metrics/sip';

/** A request sent inside a dialog; drachtio-srf's own typings describe this poorly. */
export interface InDialogRequest { method: string; headers?: Record<string, string>; body?: string }

/** Sends a request in a dialog and resolves with the response, or rejects after `timeoutMs`; counted in `metrics`. */
export function requestInDialog(dialog: Srf.Dialog, req: InDialogRequest, timeoutMs: number, metrics: SipMetrics): Promise<Srf.SrfResponse> {
  const send = dialog.request as unknown as (o: InDialogRequest) => Promise<Srf.SrfResponse>;
  const method = req.method.toUpperCase() === 'INVITE' ? 'reINVITE' : req.method.toUpperCase();
  const done = (SIP_METHODS as readonly string[]).includes(method) ? sipTimer(metrics, method as SipMethod) : () => undefined;
  return withTimeout(send.call(dialog, req), timeoutMs, `${req.method} got no response within ${timeoutMs} ms`).then(
    (res) => {
      done(sipResultOf(res?.status));
      return res;
    },
    (err: unknown) => {
      done(err instanceof TimeoutError ? 'timeout' : 'error');
      throw err;
    },
  );
}

/** Sends a re-INVITE with `sdp` and resolves with the answer SDP, or rejects (non-2xx, or nothing within `timeoutMs`). */
export function reinviteWithin(dialog: Srf.Dialog, sdp: string, timeoutMs: number, metrics: SipMetrics, headers?: Record<string, string>): Promise<string> {
  const done = sipTimer(metrics, 'reINVITE');
  const modify = dialog.modify as unknown as (sdp: string, opts?: { headers: Record<string, string> }) => Promise<string>;
  const sent = headers ? modify.call(dialog, sdp, { headers: { ...headers, ...(localContact(dialog) ? { Contact: localContact(dialog)! } : {}) } }) : dialog.modify(sdp);
  return withTimeout(sent, timeoutMs, 're-INVITE unanswered').then(
    (answer) => {
      done('2xx');
      return answer;
    },
    (err: unknown) => {
      const status = (err as { status?: unknown }).status;
      done(err instanceof TimeoutError ? 'timeout' : typeof status === 'number' ? sipResultOf(status) : 'error');
      throw err;
    },
  );
}

/** Sends BYE and resolves once it is answered, or after `timeoutMs` (the dialog is gone either way). */
export function byeWithin(dialog: Srf.Dialog, timeoutMs: number, metrics: SipMetrics, headers?: Record<string, string>): Promise<void> {
  dialog.removeAllListeners('destroy');
  // drachtio-srf tells that the BYE was answered, not with what: the result is `answered`.
  const done = sipTimer(metrics, 'BYE');
  const bye = new Promise<void>((resolve) => dialog.destroy(headers ? { headers } : undefined, (err: unknown) => {
    done(err ? 'error' : 'answered');
    resolve();
  }));
  return withTimeout(bye, timeoutMs, 'BYE unanswered').catch(() => done('timeout'));
}

/** What withTimeout rejects with when the bound is reached. */
export class TimeoutError extends Error {}

export function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    t = setTimeout(() => reject(new TimeoutError(message)), ms);
  });
  return Promise.race([p, limit]).finally(() => clearTimeout(t));
}

/** The Contact the bridge puts in its own in-dialog responses. */
export function localContact(dialog: Srf.Dialog): string | undefined {
  return (dialog.local as { contact?: string }).contact;
}

/** The interval (s) a request's Session-Expires asks for (RFC 4028); null when it asks for none. */
export function sessionInterval(req: Srf.SrfRequest): number | null {
  const se = Number.parseInt(/^\s*(\d+)/.exec(req.get('Session-Expires') ?? '')?.[1] ?? '', 10);
  return se > 0 ? se : null;
}

/** Whether the sender said it supports session timers (Supported: timer). */
export function supportsTimer(req: Srf.SrfRequest): boolean {
  return /\btimer\b/i.test(req.get('Supported') ?? '');
}

/**
 * RFC 4028 headers for a 2xx to a session refresh (re-INVITE or UPDATE): the interval is echoed and
 * the refresher is the party that sent the request (uac), as the request asked (the bridge refreshing
 * its own sessions sends its refreshes itself: see SessionRefresher).
 */
export function sessionTimerHeaders(req: Srf.SrfRequest): Record<string, string> {
  const interval = sessionInterval(req);
  if (interval === null) return {};
  return { 'Session-Expires': `${interval};refresher=uac`, ...(supportsTimer(req) ? { Require: 'timer' } : {}) };
}
