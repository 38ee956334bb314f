import { performance } from 'node:perf_hooks';
import { Metrics, SipMethod, SipResult } from './metrics';

/**
 * Where the SIP requests the bridge sends are counted and timed: the bridge's own Metrics, handed to
 * each piece of SIP code that sends requests (two bridges in one process count apart).
 */
export type SipMetrics = Pick<Metrics, 'sipRequest'>;

/** A final status as a result label: 2xx .. 6xx; anything else is an error. */
export function sipResultOf(status: unknown): SipResult {
  if (typeof status !== 'number' || status < 200 || status >= 700) return 'error';
  return `${Math.floor(status / 100)}xx` as SipResult;
}

/** A request's timer: done() records it once in `metrics` (later calls are ignored). */
export function sipTimer(metrics: SipMetrics, method: SipMethod): (result: SipResult, timed?: boolean) => void {
  const start = performance.now();
  let recorded = false;
  return (result, timed = true) => {
    if (recorded) return;
    recorded = true;
    metrics.sipRequest(method, result, timed ? (performance.now() - start) / 1000 : null);
  };
}
