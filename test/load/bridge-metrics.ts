import { parsePromText, Sample } from '../harness/prom-text';

/** The bridge's own view of the run, from its /metrics: mean time per rtpengine command, YCloud request and set-up step. */
export interface BridgeTimings { rows: Array<{ what: string; count: number; meanMs: number }>; counts: string[] }

export async function bridgeTimings(httpPort: number): Promise<BridgeTimings> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/metrics`, { signal: AbortSignal.timeout(5000) });
  const samples = parsePromText(await res.text());
  const rows: BridgeTimings['rows'] = [];
  const add = (metric: string, label: string, prefix: string) => {
    const by = (suffix: string) => new Map(samples.filter((s: Sample) => s.name === `${metric}_${suffix}`).map((s) => [s.labels[label] ?? '', s.value]));
    const sums = by('sum');
    for (const [key, count] of by('count')) if (count > 0) rows.push({ what: `${prefix} ${key}`, count, meanMs: ((sums.get(key) ?? 0) / count) * 1000 });
  };
  add('wasb_call_setup_seconds', 'step', 'set-up step');
  add('wasb_rtpengine_command_seconds', 'command', 'rtpengine');
  add('wasb_ycloud_request_seconds', 'endpoint', 'YCloud');
  const counts = samples.filter((s) => (s.name === 'wasb_sip_invites_received_total' || s.name === 'wasb_webhook_events_total') && s.value > 0)
    .map((s) => `${s.name.replace(/^wasb_|_total$/g, '')}{${Object.entries(s.labels).map(([k, v]) => `${k}=${v}`).join(',')}} ${s.value}`);
  return { rows, counts };
}
