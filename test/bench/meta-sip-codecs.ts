import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import Srf from 'drachtio-srf';
import { Client } from 'rtpengine-client';
import { offeredAudioCodecs } from '../../src/media/profiles';
import { MetaSipCall, MetaSrtp } from '../../src/sandbox/simulator/meta-sip';
import { infra, infraRtpengine, startInfra, runBench } from '../harness/infra';
import { MetaSipStack, SIP_DTLS, SIP_SDES, startMetaSipStack } from '../harness/meta-sip-stack';
import { RtpPhone } from '../harness/rtp-phone';
import { within } from '../harness/timeline';
import { whenEnded } from '../harness/watch';

/**
 * What Meta's G.711 option saves the bridge's rtpengine per call: M concurrent WhatsApp users' calls
 * through the Meta SIP simulator to the bridge to a PCMU PBX, held up S seconds with a tone each way,
 * once on a number with Meta's G.711 option (Meta offers opus, PCMA, PCMU; the bridge answers PCMU:
 * pass-through) and once on one without (opus only: the bridge's rtpengine transcodes opus<->PCMU),
 * passes interleaved (g711, opus, g711, opus), one SRTP mode for both numbers. Reads the CPU time
 * (utime+stime from /proc) of the bridge's rtpengine over the steady part of each pass and prints
 * it per call-second, with the sim's own rtpengine (Meta's side, not the bridge's cost) and this
 * process (the bridge, both sims' signalling, the phones) beside it.
 *
 * Usage: node dist/test/bench/meta-sip-codecs.js [calls=10] [seconds=20] [sdes|dtls|both (default sdes)]
 */

const USER_TONE = 440;
const AGENT_TONE = 1000;
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

type Kind = 'g711' | 'opus';

/** CPU time (utime+stime, all threads) of a process so far, in ms. */
function cpuMs(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after "pid (comm) ": state is field 3, utime 14, stime 15.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
}

/**
 * A G.711 PBX: a drachtio-srf app on the run's drachtio-server that answers every INVITE with PCMU
 * (and telephone-event) toward a fresh agent phone, which sends its tone as soon as the INVITE says
 * where, as desk phones do; the bridge's BYE stops the phone.
 */
class PcmuPbx {
  readonly srf = new Srf();
  phones: RtpPhone[] = [];
  /** Each answered call's INVITE SDP (what the bridge offered the PBX). */
  offers: string[] = [];
  private readonly dialogs = new Set<Srf.Dialog>();

  async connect(server: { adminPort: number; secret: string }): Promise<void> {
    this.srf.invite((req, res) => void this.answer(req, res));
    await new Promise<void>((resolve, reject) => {
      this.srf.connect({ host: '127.0.0.1', port: server.adminPort, secret: server.secret });
      this.srf.once('connect', (err: Error | null) => (err ? reject(err) : resolve()));
    });
  }

  close(): void {
    for (const d of this.dialogs) d.destroy();
    for (const p of this.phones) p.stop();
    this.srf.disconnect();
  }

  private async answer(req: Srf.SrfRequest, res: Srf.SrfResponse): Promise<void> {
    const c = /^c=IN IP4 (\S+)/m.exec(req.body);
    const m = /^m=audio (\d+) /m.exec(req.body);
    if (!c || !m) return void res.send(488);
    const phone = new RtpPhone(AGENT_TONE, USER_TONE);
    const port = await phone.start();
    phone.retarget(Number(m[1]), c[1]!);
    this.phones.push(phone);
    this.offers.push(req.body);
    const sdp = `v=0\r\no=agent 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio ${port} RTP/AVP 0 101\r\n`
      + 'a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n';
    try {
      const dialog = await this.srf.createUAS(req, res, { localSdp: sdp });
      this.dialogs.add(dialog);
      dialog.on('destroy', () => {
        this.dialogs.delete(dialog);
        phone.stop();
      });
    } catch {
      phone.stop();
    }
  }
}

interface Sample { bridgeRtp: number; simRtp: number; node: number; t: number }

function sample(bridgePid: number, simPid: number): Sample {
  const u = process.cpuUsage();
  return { bridgeRtp: cpuMs(bridgePid), simRtp: cpuMs(simPid), node: (u.user + u.system) / 1000, t: performance.now() };
}

interface PassResult {
  kind: Kind;
  srtp: MetaSrtp;
  calls: number;
  seconds: number;
  /** CPU ms per call-second over the steady window. */
  bridgeRtp: number;
  simRtp: number;
  node: number;
  /** The bridge's answer to Meta, first codec, per call (PCMU: pass-through; OPUS: transcoded). */
  answers: Record<string, number>;
  /** What the bridge offered the PBX (its audio codecs in order), per call; the PBX answers PCMU. */
  pbxOffers: Record<string, number>;
  /** rtpengine's own view: per call, the codec on the Meta leg and on the PBX leg. */
  ngView: Record<string, number>;
  /** Audio packets per second each phone received over the window: the lowest user and agent phone. */
  minPps: { user: number; agent: number };
}

function tally(xs: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
}

/**
 * The codec rtpengine uses on each leg of a call (`query`: per tag, per media, the payload types it
 * has, first one = the one in use for a two-party call), as "meta-leg/pbx-leg".
 */
async function ngCodecs(ng: Client, at: { host: string; port: number }): Promise<string[]> {
  const list = await ng.list(at.port, at.host, { limit: 100 }) as { calls?: string[] };
  const out: string[] = [];
  for (const callId of list.calls ?? []) {
    const q = await ng.query(at.port, at.host, { 'call-id': callId }) as Record<string, unknown>;
    if (process.env.BENCH_DUMP_QUERY) console.log(JSON.stringify(q, null, 1).slice(0, 6000));
    const tags = (q.tags ?? {}) as Record<string, { medias?: Array<{ codec?: string; protocol?: string }> }>;
    const legs = Object.values(tags).map((t) => {
      const media = t.medias?.[0];
      return `${media?.protocol ?? '?'}:${media?.codec ?? '?'}`;
    });
    out.push(legs.sort().join(' + '));
  }
  return out;
}

async function pass(stack: MetaSipStack, pbx: PcmuPbx, ng: Client, kind: Kind, srtp: MetaSrtp, n: number, seconds: number, pids: { bridge: number; sim: number }): Promise<PassResult> {
  const number = kind === 'g711' ? SIP_SDES : SIP_DTLS; // the stack gives the SDES-named number the G.711 option
  pbx.phones = [];
  pbx.offers = [];
  const users: RtpPhone[] = [];
  const calls: MetaSipCall[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const user = new RtpPhone(USER_TONE, AGENT_TONE);
      await user.start();
      users.push(user);
    }
    const placed = users.map((user, i) => stack.meta.sim.userCalls({
      from: `+628136190${String(5000 + i)}`, to: number.number, profileName: `Bench ${i}`, phone: { address: '127.0.0.1', port: user.port },
    }));
    calls.push(...placed);
    await within(Promise.all(placed.map((c) => c.answered)), 30000,
      () => `${n} calls answered (${placed.filter((c) => c.isAnswered).length} were; ended: ${JSON.stringify(placed.filter((c) => c.endedWith).map((c) => c.endedWith))})`);
    placed.forEach((c, i) => users[i]!.retarget(c.phoneTarget!.port, c.phoneTarget!.address));
    const phones = () => [...users, ...pbx.phones];
    await within(Promise.all(phones().map((p) => p.heard.whenHeard(50))), 20000,
      () => `tones both ways on every call (users hearing: ${users.filter((u) => u.heard.framesWithTone >= 50).length}/${n}, agents: ${pbx.phones.filter((p) => p.heard.framesWithTone >= 50).length}/${pbx.phones.length})`);
    if (pbx.phones.length !== n) throw new Error(`${pbx.phones.length} agent phones for ${n} calls`);
    await new Promise((r) => setTimeout(r, 1000)); // past the first second's set-up work
    const inBefore = phones().map((p) => p.packetsIn);
    const a = sample(pids.bridge, pids.sim);
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const b = sample(pids.bridge, pids.sim);
    const windowS = (b.t - a.t) / 1000;
    const pps = phones().map((p, i) => (p.packetsIn - inBefore[i]!) / windowS);
    const ngView = await ngCodecs(ng, infra.rtpengineNg!);
    const callSeconds = n * windowS;
    const result: PassResult = {
      kind, srtp, calls: n, seconds: windowS,
      bridgeRtp: (b.bridgeRtp - a.bridgeRtp) / callSeconds,
      simRtp: (b.simRtp - a.simRtp) / callSeconds,
      node: (b.node - a.node) / callSeconds,
      answers: tally(placed.map((c) => offeredAudioCodecs(c.remoteSdp ?? '')[0] ?? '?')),
      pbxOffers: tally(pbx.offers.map((o) => offeredAudioCodecs(o).join(','))),
      ngView: tally(ngView),
      minPps: { user: Math.min(...pps.slice(0, n)), agent: Math.min(...pps.slice(n)) },
    };
    await Promise.all(placed.map((c) => c.hangup()));
    await within(Promise.all(placed.map((c) => whenEnded(stack.bridge, c.wacid))), 20000, () => 'every call ended on the bridge');
    return result;
  } finally {
    for (const c of calls) if (!c.isEnded) await c.hangup().catch(() => undefined);
    for (const p of users) p.stop();
    for (const p of pbx.phones) p.stop();
  }
}

function fmt(x: number): string {
  return x.toFixed(2).padStart(7);
}

function show(r: PassResult): void {
  console.log(`  ${r.kind.padEnd(4)} ${r.srtp}  ${r.calls} calls x ${r.seconds.toFixed(1)} s  bridge rtpengine ${fmt(r.bridgeRtp)} ms/call-s  `
    + `sim rtpengine ${fmt(r.simRtp)}  this process ${fmt(r.node)}  | answer to Meta ${JSON.stringify(r.answers)}  offer to PBX ${JSON.stringify(r.pbxOffers)}  `
    + `rtpengine legs ${JSON.stringify(r.ngView)}  min pps in: user ${r.minPps.user.toFixed(1)}, agent ${r.minPps.agent.toFixed(1)}`);
}

async function runMode(srtp: MetaSrtp, n: number, seconds: number, pbx: PcmuPbx, ng: Client): Promise<PassResult[]> {
  const pbxUri = `sip:agents@127.0.0.1:${infra.drachtio!.sipPort}`;
  const stack = await startMetaSipStack({
    pbx: { dtls: pbxUri, sdes: pbxUri, graph: 'sip:127.0.0.1:9' },
    // Both SIP numbers in one SRTP mode; only Meta's G.711 option differs.
    media: { dtls: { srtp, g711: false }, sdes: { srtp, g711: true } },
    env: { RTPENGINE_DTMF_LOG: '' },
  });
  const results: PassResult[] = [];
  try {
    const pids = { bridge: infraRtpengine()!.child.pid!, sim: stack.meta.rtpengine.proc.child.pid! };
    const idleA = sample(pids.bridge, pids.sim);
    await new Promise((r) => setTimeout(r, 3000));
    const idleB = sample(pids.bridge, pids.sim);
    const idleS = (idleB.t - idleA.t) / 1000;
    console.log(`srtp=${srtp}: idle (no calls, ${idleS.toFixed(1)} s): bridge rtpengine ${((idleB.bridgeRtp - idleA.bridgeRtp) / idleS).toFixed(2)} ms/s, `
      + `sim rtpengine ${((idleB.simRtp - idleA.simRtp) / idleS).toFixed(2)} ms/s, this process ${((idleB.node - idleA.node) / idleS).toFixed(2)} ms/s`);
    for (const kind of ['g711', 'opus', 'g711', 'opus'] as const) {
      const r = await pass(stack, pbx, ng, kind, srtp, n, seconds, pids);
      show(r);
      results.push(r);
    }
  } finally {
    await stack.stop();
  }
  return results;
}

function summarize(results: PassResult[]): void {
  const modes = [...new Set(results.map((r) => r.srtp))];
  console.log(`\nsummary: CPU ms per call-second (mean of the passes), ${CLK_TCK} clock ticks/s, so one tick = ${(1000 / CLK_TCK).toFixed(0)} ms of a window's total`);
  for (const srtp of modes) {
    const mean = (kind: Kind, k: 'bridgeRtp' | 'simRtp' | 'node') => {
      const xs = results.filter((r) => r.srtp === srtp && r.kind === kind).map((r) => r[k]);
      return xs.reduce((s, x) => s + x, 0) / xs.length;
    };
    const g = mean('g711', 'bridgeRtp');
    const o = mean('opus', 'bridgeRtp');
    console.log(`  srtp=${srtp}: bridge rtpengine g711 pass-through ${g.toFixed(2)}, opus transcoding ${o.toFixed(2)}: `
      + `saves ${(o - g).toFixed(2)} ms/call-s (${((1 - g / o) * 100).toFixed(0)}%), opus/g711 ${(o / g).toFixed(2)}x; `
      + `extrapolated, one core of rtpengine would carry ~${Math.floor(1000 / g)} pass-through or ~${Math.floor(1000 / o)} transcoded calls`);
    console.log(`           sim rtpengine (Meta's side, not the bridge's cost): g711 ${mean('g711', 'simRtp').toFixed(2)}, opus ${mean('opus', 'simRtp').toFixed(2)}; `
      + `this process (bridge, sims' signalling, 2 phones per call): g711 ${mean('g711', 'node').toFixed(2)}, opus ${mean('opus', 'node').toFixed(2)}`);
  }
}

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 10);
  const seconds = Number(process.argv[3] ?? 20);
  const which = process.argv[4] ?? 'sdes';
  const modes: MetaSrtp[] = which === 'both' ? ['sdes', 'dtls'] : which === 'dtls' || which === 'sdes' ? [which] : [];
  if (!(n > 0) || !(seconds > 0) || modes.length === 0) throw new Error('usage: meta-sip-codecs.js [calls=10] [seconds=20] [sdes|dtls|both]');
  await startInfra();
  if (!infra.drachtio) throw new Error(infra.drachtioMissing ?? 'no drachtio');
  const v = spawnSync('rtpengine', ['--version'], { encoding: 'utf8', timeout: 5000 });
  const rtpengineVersion = `${v.stdout ?? ''}${v.stderr ?? ''}`.trim().split('\n')[0]?.replace(/^Version:\s*/, '') ?? '?';
  console.log(`Meta SIP: G.711 pass-through against opus transcoding, ${n} concurrent calls held ${seconds} s per pass, passes g711, opus, g711, opus`);
  console.log(`machine: ${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'}), load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}; rtpengine ${rtpengineVersion} (userspace)`);
  console.log('each call: WhatsApp user phone (PCMU tone) -> sim rtpengine (Meta: SRTP, opus or G.711) -> bridge rtpengine -> PCMU PBX agent phone (tone back)');
  const pbx = new PcmuPbx();
  await pbx.connect(infra.drachtio);
  const ng = new Client({ timeout: 5000, localAddress: '127.0.0.1' });
  const results: PassResult[] = [];
  try {
    for (const srtp of modes) results.push(...await runMode(srtp, n, seconds, pbx, ng));
  } finally {
    ng.close();
    pbx.close();
  }
  summarize(results);
  console.log(`load average after: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
}

runBench(main);
