import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { BridgeTimings } from './bridge-metrics';
import { CdrCheck } from './cdr-check';
import { CallResult } from './drivers';
import { LoadOptions } from './options';
import { ProcSampler } from './proc-stats';
import { RtpSource } from './rtp-source';
import { describe, mean, tally } from './stats';

export interface SummaryInput {
  o: LoadOptions;
  elapsedS: number;
  results: CallResult[];
  agentLog: Map<string, { inviteAt?: number; answeredAt?: number }>;
  agentsExit: number | null;
  sampler: ProcSampler;
  baseRss: Record<string, number>;
  cdr: CdrCheck;
  source: RtpSource;
  timings: BridgeTimings | null;
}

const LOAD_GENERATOR = ['load generator (node)', 'rtpengine (WhatsApp side)', 'SIPp (PBX)', 'SIPp (agents)'];
const SUT = ['bridge', 'rtpengine (bridge)', 'drachtio-server', 'Postgres (bridge\'s database)'];

/** Prints the run's summary; returns how many calls failed. */
export function printSummary(s: SummaryInput): number {
  const { o, results, cdr } = s;
  const epoch = (t: number) => performance.timeOrigin + t;
  const inbound = results.filter((r) => r.direction === 'inbound');
  const outbound = results.filter((r) => r.direction === 'outbound');
  const failed = results.filter((r) => r.failure);
  const line = (name: string, xs: number[]) => console.log(`  ${name.padEnd(50)} ${describe(xs)}`);

  console.log('');
  console.log(`machine: ${os.cpus().length} cores, load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')} (1/5/15 min) at the end; other processes share it`);
  console.log(`load: ${o.calls} calls (${o.direction}), ${o.rate}/s, at most ${o.concurrency} at once, ${o.holdS} s hold, WhatsApp side ${o.waCodec}${o.waCodec === 'opus' ? ` (made by the ${o.waOpusBy})` : ''}, bridge MEDIA_CODEC_POLICY=${o.codecPolicy} (SIP_INVITE_RATE* limits raised to 1000/s)${o.waOpusOptions ? `, WhatsApp-side opus ${o.waOpusOptions}` : ''}; ${s.elapsedS.toFixed(1)} s`);

  // Setup throughput: from the first call's start to the last call's answer.
  const spans: Array<[number, number]> = [];
  for (const r of inbound) if (r.startedAt !== undefined && r.acceptAt !== undefined) spans.push([epoch(r.startedAt), epoch(r.acceptAt)]);
  for (const r of outbound) {
    const a = s.agentLog.get(r.customer);
    if (a?.inviteAt !== undefined && a.answeredAt !== undefined) spans.push([a.inviteAt, a.answeredAt]);
  }
  if (spans.length) {
    const first = Math.min(...spans.map((x) => x[0]));
    const last = Math.max(...spans.map((x) => x[1]));
    const perSecond = tally(spans.map((x) => String(Math.floor((x[1] - first) / 1000))));
    console.log(`call setups: ${spans.length} answered in ${((last - first) / 1000).toFixed(1)} s = ${(spans.length / ((last - first) / 1000)).toFixed(1)}/s sustained (busiest second: ${Math.max(...perSecond.values())})`);
  } else console.log('call setups: none answered');

  if (inbound.length) {
    console.log(`inbound setup latency (ms; sim and load-generator clocks, CDR times for the PBX's answer):`);
    const ok = inbound.filter((r) => r.acceptAt !== undefined && r.preAcceptAt !== undefined && r.startedAt !== undefined);
    line('connect webhook sent -> preAccept at the sim', ok.map((r) => r.preAcceptAt! - r.startedAt!));
    const offered = ok.map((r) => ({ r, at: cdr.byWacid.get(r.wacid!)?.offered_at?.getTime() })).filter((x) => x.at !== undefined);
    line('  of which: webhook sent -> CDR opened (offered_at)', offered.map((x) => x.at! - epoch(x.r.startedAt!)));
    line('  of which: CDR opened -> preAccept at the sim', offered.map((x) => epoch(x.r.preAcceptAt!) - x.at!));
    const answered = ok.map((r) => ({ r, at: cdr.byWacid.get(r.wacid!)?.pbx_answered_at?.getTime() })).filter((x) => x.at !== undefined);
    line('preAccept at the sim -> PBX 200 OK (CDR)', answered.map((x) => x.at! - epoch(x.r.preAcceptAt!)));
    line('PBX 200 OK (CDR) -> accept at the sim', answered.map((x) => epoch(x.r.acceptAt!) - x.at!));
    line('connect webhook sent -> accept at the sim (total)', ok.map((r) => r.acceptAt! - r.startedAt!));
  }
  if (outbound.length) {
    console.log(`outbound setup latency (ms; SIPp's clock for the agent's INVITE and 200 OK):`);
    const rows = outbound.map((r) => ({ r, a: s.agentLog.get(r.customer) }));
    const withInvite = rows.filter((x) => x.a?.inviteAt !== undefined && x.r.startedAt !== undefined);
    line('agent INVITE sent -> calls/connect at the sim', withInvite.map((x) => epoch(x.r.startedAt!) - x.a!.inviteAt!));
    line('calls/connect -> ACCEPTED webhook sent (WA side)', rows.filter((x) => x.r.acceptedSentAt !== undefined && x.r.startedAt !== undefined).map((x) => x.r.acceptedSentAt! - x.r.startedAt!));
    line('ACCEPTED webhook sent -> 200 OK at the agent', rows.filter((x) => x.r.acceptedSentAt !== undefined && x.a?.answeredAt !== undefined).map((x) => x.a!.answeredAt! - epoch(x.r.acceptedSentAt!)));
    line('agent INVITE sent -> 200 OK at the agent (total)', rows.filter((x) => x.a?.inviteAt !== undefined && x.a.answeredAt !== undefined).map((x) => x.a!.answeredAt! - x.a!.inviteAt!));
    if (s.agentsExit !== 0) console.log(`  SIPp (agents) exited with ${s.agentsExit}`);
  }

  if (s.timings) {
    console.log('the bridge\'s own timings (its /metrics, means over the run):');
    for (const t of s.timings.rows) console.log(`  ${t.what.padEnd(50)} n=${String(t.count).padEnd(5)} mean=${t.meanMs.toFixed(1).padStart(7)} ms`);
    console.log(`  counters: ${s.timings.counts.join('; ')}`);
  }
  console.log(`failures: ${failed.length} of ${results.length}`);
  // Causes are grouped with their numbers replaced by N (e.g. packet counts).
  for (const [cause, n] of [...tally(failed.map((r) => `${r.direction}: ${r.failure!.replace(/\d+(\.\d+)?/g, 'N')}`))].sort((a, b) => b[1] - a[1])) console.log(`  ${String(n).padStart(5)}  ${cause}`);
  const audio = results.filter((r) => r.packetsFromBridge !== undefined).map((r) => r.packetsFromBridge!);
  console.log(`audio: packets from the bridge per call by the hold's end ${describe(audio).replace(/ ms$/, '')}; RTP source sent ${s.source.packetsOut}, got back ${s.source.packetsIn} (${((s.source.packetsIn / Math.max(1, s.source.packetsOut)) * 100).toFixed(1)} %, media is blocked until accept)`);

  // CPU and memory on the plateau: samples with at least 95 % of the most calls up at once.
  const samples = s.sampler.samples.filter((x) => x.dt > 0.5);
  const peak = Math.max(0, ...samples.map((x) => x.active));
  const plateau = samples.filter((x) => peak > 0 && x.active >= 0.95 * peak);
  const activeMean = mean(plateau.map((x) => x.active));
  console.log(`CPU (% of one core) on the plateau: ${plateau.length} one-second samples with ${activeMean.toFixed(0)} calls up on average (peak ${peak}); 2 cores = 200 %`);
  const names = [...SUT, ...LOAD_GENERATOR].filter((n) => samples.some((x) => x.cpu[n] !== undefined));
  let sut = 0;
  let gen = 0;
  for (const n of names) {
    const cpu = mean(plateau.map((x) => x.cpu[n] ?? 0));
    if (SUT.includes(n)) sut += cpu;
    else gen += cpu;
    console.log(`  ${n.padEnd(28)} ${cpu.toFixed(1).padStart(6)} %   ${activeMean ? (cpu / activeMean).toFixed(3) : '-'} % per call up`);
  }
  console.log(`  ${'system under test'.padEnd(28)} ${sut.toFixed(1).padStart(6)} %   load generator ${gen.toFixed(1)} %`);
  const totals = s.sampler.totals();
  const calls = results.length;
  console.log(`CPU per call over the whole run (set-up, hold and tear-down; ms of CPU):`);
  for (const n of SUT) if (totals[n] !== undefined) console.log(`  ${n.padEnd(28)} ${((totals[n]! * 1000) / calls).toFixed(1).padStart(7)} ms per call (${totals[n]!.toFixed(1)} s in all)`);
  const rss = Math.max(0, ...plateau.map((x) => x.rss.bridge ?? 0));
  const base = s.baseRss.bridge ?? 0;
  if (peak > 0) console.log(`bridge RSS: ${base.toFixed(0)} MiB idle, ${rss.toFixed(0)} MiB on the plateau = ${(((rss - base) * 1024) / peak).toFixed(0)} KiB per call up`);

  console.log(`CDRs: ${cdr.rows} rows for ${calls} calls; codecs (WhatsApp <-> PBX): ${[...cdr.codecs].map(([c, n]) => `${c} x${n}`).join(', ') || 'none'}`);
  if (cdr.ok) console.log('  every call left exactly one complete CDR (ended, outcome answered, media on both legs, no duplicate wacid)');
  for (const [p, n] of cdr.problems) console.log(`  PROBLEM: ${p} (${n})`);
  console.log(failed.length || !cdr.ok ? 'RESULT: FAILED' : 'RESULT: OK');
  return failed.length;
}
