import { Bridge } from '../../src/app';
import { PROVIDERS, ProviderName, startStack } from '../harness/bridge';
import { infra, startInfra, runBench } from '../harness/infra';
import { RtpPhone } from '../harness/rtp-phone';
import { runSippUac, startSippUas } from '../harness/sipp';
import { WaUser } from '../harness/wa-user';
import { whenEnded } from '../harness/watch';

/**
 * Latency benchmark over real parts on loopback: N inbound calls, then N outbound calls, one after
 * another, for the bridge as built and for a minimal one that writes nothing to Postgres per call
 * (two passes each, interleaved). Prints, in ms (median, p95, max), and the durable/minimal ratio:
 * connect webhook arrival -> preAccept sent, PBX 200 OK -> accept sent (inbound); PBX INVITE ->
 * calls/connect sent, ACCEPTED webhook -> 200 OK to the PBX (outbound).
 * Usage: node dist/test/bench/latency.js [calls=50] [minimal|durable (default: both)]
 * BENCH_PROVIDER=meta: the same calls through Meta's Cloud API (the simulator's Meta face) instead of YCloud.
 */
const provider = (process.env.BENCH_PROVIDER ?? 'ycloud') as ProviderName;

async function main(): Promise<void> {
  const calls = Number(process.argv[2] ?? 50);
  if (!PROVIDERS.includes(provider)) throw new Error(`BENCH_PROVIDER must be one of ${PROVIDERS.join(', ')}`);
  await startInfra();
  if (!infra.drachtio) throw new Error(infra.drachtioMissing ?? 'no drachtio');
  // The same bridge twice over: as built (every event stored, every CDR written), and a minimal one
  // that stores and writes nothing, the floor the durable path is measured against.
  const results: Record<Mode, { inbound: Awaited<ReturnType<typeof benchInbound>>; outbound: Awaited<ReturnType<typeof benchOutbound>> }> = {} as never;
  const only = process.argv[3] as Mode | undefined;
  const modes: Mode[] = only ? [only] : ['minimal', 'durable', 'minimal', 'durable'];
  for (const mode of modes) {
    const inbound = await benchInbound(calls, mode);
    const outbound = await benchOutbound(calls, mode);
    const r = (results[mode] ??= { inbound: { toPreAccept: [], toAccept: [] }, outbound: { toConnect: [], to200: [] } });
    r.inbound.toPreAccept.push(...inbound.toPreAccept);
    r.inbound.toAccept.push(...inbound.toAccept);
    r.outbound.toConnect.push(...outbound.toConnect);
    r.outbound.to200.push(...outbound.to200);
  }
  console.log(`call set-up latency, ${calls} calls per pass, two passes per mode, interleaved (rtpengine, drachtio-server, SIPp, libwebrtc users, ${provider === 'meta' ? 'Meta' : 'YCloud'} simulator on loopback)`);
  const steps: Array<[string, (m: Mode) => number[]]> = [
    ['connect webhook arrival -> preAccept sent', (m) => results[m].inbound.toPreAccept],
    ['PBX 200 OK (dialog up) -> accept sent', (m) => results[m].inbound.toAccept],
    ['PBX INVITE arrival -> calls/connect sent', (m) => results[m].outbound.toConnect],
    ['ACCEPTED webhook arrival -> 200 OK sent to the PBX', (m) => results[m].outbound.to200],
  ];
  for (const [name, xs] of steps) {
    console.log(name);
    if (results.minimal) line('  minimal (nothing stored)', xs('minimal'));
    if (results.durable) line('  durable (as built)', xs('durable'));
    if (results.minimal && results.durable) console.log(`  durable / minimal median: ${(median(xs('durable')) / median(xs('minimal'))).toFixed(2)}x`);
  }
}

type Mode = 'minimal' | 'durable';

/** How long each WhatsApp user's phone rings before they answer (people take seconds). */
const RING_MS = 300;

/** Turns a bridge into the minimal one: events and CDRs are not written (Postgres is not touched per call). */
function makeMinimal(bridge: Bridge): void {
  const events = bridge.db.webhookEvents;
  events.recordWebhooks = async (rows) => new Set(rows.map((r) => r.id));
  events.markWebhooksProcessed = async () => undefined;
  const cdr = bridge.cdr;
  cdr.wacidHistory = async () => ({ call: false, terminated: false });
  cdr.createCall = async () => undefined;
  cdr.updateCall = async () => undefined;
  cdr.addEvent = async () => undefined;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

/** N WhatsApp users' calls, one after another, each answered by SIPp and hung up once accepted. */
async function benchInbound(calls: number, mode: Mode): Promise<{ toPreAccept: number[]; toAccept: number[] }> {
  const phone = new RtpPhone(1000, 440);
  const sipp = await startSippUas('uas-answer.xml', { calls, rtpPort: await phone.start() });
  const stack = await startStack({ PBX_TARGET: sipp.uri, RTPENGINE_DTMF_LOG: '' }, { provider });
  if (mode === 'minimal') makeMinimal(stack.bridge);
  const toPreAccept: number[] = [];
  const toAccept: number[] = [];
  try {
    for (let i = 0; i < calls; i++) {
      const user = new WaUser(440, 1000);
      const { wacid } = await stack.sim.userCalls(user);
      const [arrived, preAccept, answered, accept] = await Promise.all([
        stack.marks.waitFor(wacid, 'webhook_received'),
        stack.marks.waitFor(wacid, 'preaccept_sent'),
        stack.marks.waitFor(wacid, 'pbx_answered'),
        stack.marks.waitFor(wacid, 'accept_sent'),
      ]);
      toPreAccept.push(preAccept.t - arrived.t);
      toAccept.push(accept.t - answered.t);
      await stack.sim.waitForRequest('/calls/accept', wacid);
      await stack.sim.userHangsUp(wacid);
      await whenEnded(stack.bridge, wacid);
      user.close();
    }
    await sipp.done;
  } finally {
    phone.stop();
    await sipp.proc.stop();
    await stack.stop();
  }
  return { toPreAccept, toAccept };
}

function line(name: string, xs: number[]): void {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)]!;
  console.log(`${name.padEnd(30)} n=${s.length}  median=${q(0.5).toFixed(2)} ms  p95=${q(0.95).toFixed(2)} ms  max=${s[s.length - 1]!.toFixed(2)} ms`);
}

/** N agent calls from one SIPp (one at a time); each WhatsApp user answers at once and hangs up once accepted. */
async function benchOutbound(calls: number, mode: Mode): Promise<{ toConnect: number[]; to200: number[] }> {
  await startInfraIfNeeded();
  const phone = new RtpPhone(1000, 440);
  const rtpPort = await phone.start();
  const business = '+6283138205150';
  const customer = '+6281361905133';
  const stack = await startStack({ SIP_TRUSTED_SOURCES: '127.0.0.0/8', WA_BUSINESS_NUMBER: business, WA_PHONE_ID: '461269257068831', RTPENGINE_DTMF_LOG: '' }, { provider });
  await stack.bridge.permissions.recordReply({
    businessNumber: business, customerNumber: customer, response: 'accept', isPermanent: true, expiresAt: null,
    responseSource: 'user_action', repliedAt: new Date(), wamid: null, eventId: null,
  });
  if (mode === 'minimal') makeMinimal(stack.bridge);
  const users: WaUser[] = [];
  stack.sim.outboundScript = async (call) => {
    const user = new WaUser(440, 1000);
    users.push(user);
    await stack.sim.deliver(stack.sim.outboundConnect(call, await user.answer(call.offer)));
    await stack.sim.deliver(stack.sim.outboundStatus(call, 'RINGING'));
    // The phone rings before anyone answers: ACCEPTED back-to-back with RINGING would measure the
    // previous webhooks' writes (their CDR and processed marks) rather than this step.
    await new Promise((r) => setTimeout(r, RING_MS));
    await stack.sim.deliverAccepted(call);
    // The user hangs up once the agent's phone has its 200 OK (not while the bridge is still applying
    // WhatsApp's answer: that would be a call nobody answered).
    const id = stack.bridge.calls.list().find((c) => c.wacid === call.wacid)?.id;
    if (id) await stack.marks.waitFor(id, 'pbx_200_sent');
    await stack.sim.deliver(stack.sim.outboundTerminate(call, 'COMPLETED'));
    user.close();
  };
  const sipp = await runSippUac('uac-call.xml', { target: `127.0.0.1:${infra.drachtio!.sipPort}`, number: customer, rtpPort, calls });
  const code = await sipp.done;
  phone.stop();
  await stack.stop();
  for (const u of users) u.close();
  if (code !== 0) throw new Error(`SIPp failed (${code}):\n${sipp.proc.output.slice(-2000)}`);
  const by = (name: string) => new Map(stack.marks.marks.filter((m) => m.name === name).map((m) => [m.wacid, m.t]));
  const invites = by('invite_received');
  const connects = by('connect_sent');
  const accepted = by('wa_accepted');
  const answered = by('pbx_200_sent');
  const toConnect: number[] = [];
  const to200: number[] = [];
  for (const [id, t] of invites) {
    if (connects.has(id)) toConnect.push(connects.get(id)! - t);
    if (accepted.has(id) && answered.has(id)) to200.push(answered.get(id)! - accepted.get(id)!);
  }
  return { toConnect, to200 };
}

async function startInfraIfNeeded(): Promise<void> {
  if (!infra.databaseUrl) await startInfra();
}

runBench(main);
