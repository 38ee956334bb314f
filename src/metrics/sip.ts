import { performance } from 'node:perf_hooks';
import { Metrics, SipMethod, SipResult } from './metrics';

/**
 * The metrics of the bridge that owns an Srf. SIP code reaches them through the Srf (or a dialog's
 * `srf`) it already holds, so PbxLeg, PbxSession and the in-dialog helpers need no extra wiring; an
 * Srf without metrics (unit tests) records nothing.
 */
const bySrf = new WeakMap<object, Metrics>();

export function attachSipMetrics(srf: object, metrics: Metrics): void {
  bySrf.set(srf, metrics);
}

/** The metrics for an Srf, or for a dialog (drachtio-srf dialogs keep their Srf as `srf`). */
export function sipMetricsOf(srfOrDialog: object | null | undefined): Metrics | undefined {
  if (!srfOrDialog) return undefined;
  return bySrf.get(srfOrDialog) ?? bySrf.get((srfOrDialog as { srf?: object }).srf ?? {});
}

/** A final status as a result label: 2xx .. 6xx; anything else is an error. */
export function sipResultOf(status: unknown): SipResult {
  if (typeof status !== 'number' || status < 200 || status >= 700) return 'error';
  return `${Math.floor(status / 100)}xx` as SipResult;
}

/** A request's timer: done() records it once (later calls are ignored). */
export function sipTimer(srfOrDialog: object | null | undefined, method: SipMethod): (result: SipResult, timed?: boolean) => void {
  const start = performance.now();
  let recorded = false;
  return (result, timed = true) => {
    if (recorded) return;
    recorded = true;
    sipMetricsOf(srfOrDialog)?.sipRequest(method, result, timed ? (performance.now() - start) / 1000 : null);
  };
}
