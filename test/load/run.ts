import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { PermissionStore } from '../../src/calls/permissions';
import { connectDatabase } from '../../src/cdr/db';
import { PermissionRecords } from '../../src/cdr/permission-records';
import { createLogger } from '../../src/log';
import { RtpEngine } from '../../src/media/rtpengine';
import { bridgeEnv } from '../harness/bridge';
import { BridgeProcess } from '../harness/bridge-process';
import { infra, startInfra, stopInfra } from '../harness/infra';
import { grantPermanentPermission } from '../harness/permissions';
import { freePort, ManagedProcess } from '../harness/processes';
import { startRtpengine } from '../harness/rtpengine';
import { YCloudSim } from '../harness/ycloud-sim';
import { bridgeTimings } from './bridge-metrics';
import { checkCdrs } from './cdr-check';
import { CallResult, inboundCall, LoadContext, outboundAnswer, paced } from './drivers';
import { LoadOptions, parseOptions, split } from './options';
import { pidsWithCmdline, ProcSampler } from './proc-stats';
import { printSummary } from './report';
import { RtpSource } from './rtp-source';
import { LoadSipp, readAgentLog, startAgents, startPbx } from './sipp-load';
import { WaEngine } from './wa-engine';

const BUSINESS = '+6283138205150';

/**
 * `npm run load`: many simultaneous calls through the real stack (the bridge as its own process, Postgres,
 * rtpengine, drachtio-server, SIPp as PBX and agents, the YCloud simulator, and a second rtpengine as the
 * WhatsApp side's WebRTC endpoints), then a summary: setups per second, setup latency per step, failures,
 * CPU and memory per call, and the CDRs. Exits 1 when any call failed. See docs/load.md.
 */
async function main(): Promise<number> {
  const o = parseOptions(process.argv.slice(2));
  await startInfra();
  if (!infra.drachtio) throw new Error(infra.drachtioMissing ?? 'no drachtio-server');
  const owned: Array<{ stop(): Promise<void> }> = [];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-load-'));
  try {
    return await run(o, owned, dir);
  } finally {
    for (const x of owned.reverse()) await x.stop().catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function run(o: LoadOptions, owned: Array<{ stop(): Promise<void> }>, dir: string): Promise<number> {
  const shares = split(o);
  const runS = o.calls / o.rate + o.holdS + o.setupTimeoutS + 60;
  const bridgeRtp = await startRtpengine({ portMin: 40000, portMax: 49999 });
  owned.push(bridgeRtp.proc);
  const waRtp = await startRtpengine({ portMin: 20000, portMax: 29999 });
  owned.push(waRtp.proc);
  const ng = new RtpEngine([waRtp.ng], 5000);
  owned.push({ stop: async () => ng.close() });
  const waEngine = new WaEngine(ng, waRtp.ng, o);
  const source = new RtpSource(waEngine.sourceCodec);
  const sourcePort = await source.start();
  owned.push({ stop: async () => source.stop() });
  const sim = new YCloudSim('load-api-key', 'load-webhook-secret');
  await sim.start();
  owned.push(sim);

  const pbx = shares.inbound.calls > 0 ? await startPbx(shares.inbound.calls, runS) : null;
  if (pbx) owned.push(pbx.proc);
  const httpPort = await freePort('tcp');
  const bridge = new BridgeProcess(bridgeEnv(sim, {
    HTTP_PORT: String(httpPort),
    LOG_LEVEL: o.logLevel,
    RTPENGINE_NG: `${bridgeRtp.ng.host}:${bridgeRtp.ng.port}`,
    RTPENGINE_DTMF_LOG: `${bridgeRtp.dtmfLog.host}:${bridgeRtp.dtmfLog.port}`,
    PBX_TARGET: pbx?.uri ?? 'sip:127.0.0.1:9',
    SIP_TRUSTED_SOURCES: '127.0.0.0/8',
    WA_BUSINESS_NUMBER: BUSINESS,
    WA_PHONE_ID: '461269257068831',
    MEDIA_CODEC_POLICY: o.codecPolicy,
    // As in production: the keepalive file only after 8 s without media from the PBX.
    MEDIA_KEEPALIVE_AFTER_MS: '8000',
    // All agents' INVITEs come from one SIPp, as from one PBX: the door's INVITE rate limits (10/s per
    // source, 30/s overall by default) would cap the run below its rate. Raised here, reported by the
    // summary (docs/load.md says what the defaults allow).
    SIP_INVITE_RATE_PER_SOURCE: '1000', SIP_INVITE_BURST_PER_SOURCE: '1000', SIP_INVITE_RATE: '1000', SIP_INVITE_BURST: '1000',
    ...(o.bridgeCpuProf ? { NODE_OPTIONS: `--require ${path.join(__dirname, 'cpu-prof-preload.js')}`, WASB_CPU_PROF_DIR: path.resolve(o.bridgeCpuProf) } : {}),
  }));
  owned.push(bridge);
  await waitReady(httpPort, bridge.proc, 20000);
  sim.webhookUrl = `http://127.0.0.1:${httpPort}/webhooks/ycloud`;

  const ctx = new LoadContext(sim, waEngine, source, sourcePort, o.holdS * 1000, o.setupTimeoutS * 1000);
  const outNumbers = Array.from({ length: shares.outbound.calls }, (_, i) => `+62812${String(i).padStart(7, '0')}`);
  if (outNumbers.length) await grantPermissions(outNumbers);
  const outResults = new Map<string, CallResult>(outNumbers.map((n) => [n, { direction: 'outbound', customer: n, wacid: null, failure: null }]));
  ctx.results.push(...outResults.values());
  sim.outboundScript = (call) => outboundAnswer(ctx, call, outResults.get(call.to) ?? { direction: 'outbound', customer: call.to, wacid: null, failure: 'unknown customer number' });

  const pids: Record<string, number> = {
    bridge: bridge.proc.child.pid!,
    'rtpengine (bridge)': bridgeRtp.proc.child.pid!,
    'drachtio-server': infra.drachtio!.proc.child.pid!,
    'rtpengine (WhatsApp side)': waRtp.proc.child.pid!,
    'load generator (node)': process.pid,
  };
  if (pbx) pids['SIPp (PBX)'] = pbx.proc.child.pid!;
  const sampler = new ProcSampler(pids, () => ctx.active);
  // The Postgres backends serving the bridge's database (this run's own), as one entry.
  const dbName = new URL(infra.databaseUrl).pathname.slice(1);
  sampler.addGroup('Postgres (bridge\'s database)', () => pidsWithCmdline(` ${dbName} `));
  const baseRss = sampler.snapshotRss();

  let agents: (LoadSipp & { logFile: string }) | null = null;
  sampler.start();
  const t0 = performance.now();
  const inbound = paced(shares.inbound.calls, shares.inbound.rate || 1, shares.inbound.concurrency || 1, (i) => inboundCall(ctx, i));
  if (outNumbers.length) {
    agents = await startAgents({ target: `127.0.0.1:${infra.drachtio!.sipPort}`, numbers: outNumbers, rate: shares.outbound.rate, concurrency: shares.outbound.concurrency, timeoutS: runS, dir });
    owned.push(agents.proc);
    sampler.add('SIPp (agents)', agents.proc.child.pid!);
  }
  await inbound;
  const agentsCode = agents ? await agents.done : null;
  if (agents && agentsCode !== 0) {
    const lines = agents.proc.output.split('\n').filter((l) => /error|warning|fail|unexpected|abort|timeout/i.test(l) && !/^\s*(Failed call|Timeout|Unexpected-Msg)/.test(l));
    const errors = fs.existsSync(path.join(dir, 'agents-errors.log')) ? fs.readFileSync(path.join(dir, 'agents-errors.log'), 'utf8').split('\n') : [];
    const kinds = [...new Set([...lines, ...errors].map((l) => l.replace(/^[\d\-:. \t]+/, '').replace(/\d+/g, 'N')).filter((l) => l.trim()))];
    console.log(`SIPp (agents) exited with ${agentsCode}; its complaints (numbers as N):\n  ${kinds.slice(0, 12).join('\n  ')}`);
  }
  const elapsedS = (performance.now() - t0) / 1000;
  sampler.stop();

  const agentLog = agents ? await readAgentLog(agents.logFile) : new Map();
  for (const r of outResults.values()) if (!r.failure && r.startedAt === undefined) r.failure = 'no calls/connect (the bridge did not place the call)';
  if (agentsCode !== null && agentsCode !== 0) {
    for (const [n, r] of outResults) if (!r.failure && agentLog.get(n)?.answeredAt === undefined) r.failure = 'agent got no 200 OK';
  }
  const cdr = await checkCdrs(infra.databaseUrl, ctx.results, { mediaOnBothLegs: o.holdS >= 3 });
  const timings = await bridgeTimings(httpPort).catch(() => null);
  const failed = printSummary({ o, elapsedS, results: ctx.results, agentLog, agentsExit: agentsCode, sampler, baseRss, cdr, source, timings });
  return failed > 0 || !cdr.ok ? 1 : 0;
}

async function grantPermissions(numbers: string[]): Promise<void> {
  const db = connectDatabase(infra.databaseUrl);
  const store = new PermissionStore(new PermissionRecords(db), createLogger('silent'));
  for (let i = 0; i < numbers.length; i += 20) await Promise.all(numbers.slice(i, i + 20).map((n) => grantPermanentPermission(store, BUSINESS, n)));
  await db.close();
}

/** Polls /readyz until the bridge says ready (Postgres, drachtio-server, rtpengine), within `ms`. */
async function waitReady(port: number, proc: ManagedProcess, ms: number): Promise<void> {
  const deadline = performance.now() + ms;
  for (;;) {
    if (proc.child.exitCode !== null) throw new Error(`bridge exited at start:\n${proc.output.slice(-3000)}`);
    const ok = await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.status === 200, () => false);
    if (ok) return;
    if (performance.now() > deadline) throw new Error(`bridge not ready within ${ms} ms:\n${proc.output.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// A bug in the load generator must not leave the stack running: report it and let the run finish.
process.on('unhandledRejection', (err) => console.error('load generator: unhandled rejection', err));

main().then(
  async (code) => {
    await stopInfra();
    process.exit(code);
  },
  async (err: unknown) => {
    console.error(err);
    await stopInfra().catch(() => undefined);
    process.exit(1);
  },
);
