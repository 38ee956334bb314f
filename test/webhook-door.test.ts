import assert from 'node:assert/strict';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { rows } from './harness/db-rows';
import { signWebhook } from '../src/providers/ycloud/signature';
import { startStack, TestStack } from './harness/bridge';
import { infra } from './harness/infra';
import { RtpPhone } from './harness/rtp-phone';
import { SippRun, startSippUas } from './harness/sipp';
import { WaUser } from './harness/wa-user';
import { newWacid } from './harness/ycloud-sim';
import { whenEnded } from './harness/watch';

/**
 * Issue 17, finding 1: slow webhook bodies sent without the secret must not shut the door. Attackers
 * hold connections that each declare a 60 KB body under a well-formed (forged) signature header and
 * send it one byte every 2 s, reopening any connection the bridge closes, while YCloud (the simulator)
 * delivers correctly signed webhooks and, with drachtio-server, a WhatsApp user calls in. Default
 * limits (32 reads in all, 8 per address, 10 s read timeout). Numbers are printed for the report.
 */

/** Declared body size and the trickle: one byte every `intervalMs`. */
const BODY_BYTES = 60_000;
const TRICKLE_MS = 2000;
/** How long the attack runs while signed webhooks are delivered, and how often one is. */
const ATTACK_MS = 8000;
const SIGNED_EVERY_MS = 400;

interface Attack {
  /** Connections opened in all, and how the bridge answered them (status, or 'closed' without an answer). */
  opened: number;
  answers: Map<string, number>;
  /** Resolves once every address holds `perAddress` connections with their headers sent. */
  ready: Promise<void>;
  stop(): void;
}

/**
 * Keeps `perAddress` connections open from each address in `from` to the webhook endpoint, each
 * trickling its body; a connection the bridge answers or closes is replaced 50 ms later. Raw sockets:
 * nothing is buffered or retried by an HTTP client.
 */
function trickleAttack(port: number, from: string[], perAddress: number): Attack {
  let running = true;
  const sockets = new Set<net.Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const attack: Attack = { opened: 0, answers: new Map(), ready: Promise.resolve(), stop: () => undefined };
  const later = (fn: () => void, ms: number) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };
  const open = (addr: string, onSent?: () => void) => {
    if (!running) return;
    attack.opened++;
    const s = net.connect({ host: '127.0.0.1', port, localAddress: addr });
    sockets.add(s);
    let answered = false;
    let trickle: NodeJS.Timeout | undefined;
    s.on('connect', () => {
      s.write([
        'POST /webhooks/ycloud HTTP/1.1', `Host: 127.0.0.1:${port}`, 'Content-Type: application/json',
        `Content-Length: ${BODY_BYTES}`, `YCloud-Signature: ${signWebhook('not-the-secret', '')}`, '', '{',
      ].join('\r\n'));
      onSent?.();
      trickle = setInterval(() => s.write('"'), TRICKLE_MS);
    });
    s.once('data', (d: Buffer) => {
      answered = true;
      const status = /^HTTP\/1\.1 (\d{3})/.exec(d.toString('latin1'))?.[1] ?? '?';
      attack.answers.set(status, (attack.answers.get(status) ?? 0) + 1);
      s.destroy();
    });
    s.on('error', () => undefined);
    s.once('close', () => {
      clearInterval(trickle);
      sockets.delete(s);
      if (!answered) attack.answers.set('closed', (attack.answers.get('closed') ?? 0) + 1);
      later(() => open(addr), 50);
    });
  };
  attack.ready = Promise.all(from.flatMap((addr) => Array.from({ length: perAddress }, () => new Promise<void>((resolve) => open(addr, resolve))))).then(() => undefined);
  attack.stop = () => {
    running = false;
    for (const t of timers) clearTimeout(t);
    for (const s of sockets) s.destroy();
  };
  return attack;
}

interface Delivery { status: number; ms: number }

/** Signed status webhooks from the simulator (127.0.0.1), one every SIGNED_EVERY_MS for ATTACK_MS; each one's status and time to answer. */
async function signedStream(stack: TestStack): Promise<Delivery[]> {
  const sent: Array<Promise<Delivery>> = [];
  const end = performance.now() + ATTACK_MS;
  while (performance.now() < end) {
    const ev = stack.sim.event('whatsapp.call.status.updated', { callingStatusUpdated: { wacid: newWacid(), status: 'RINGING' } });
    const t0 = performance.now();
    sent.push(stack.sim.deliver(ev).then((status) => ({ status, ms: performance.now() - t0 }), () => ({ status: 0, ms: performance.now() - t0 })));
    await new Promise((r) => setTimeout(r, SIGNED_EVERY_MS));
  }
  return Promise.all(sent);
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)]! : NaN;
};

interface CallSetup { sipp: SippRun; phone: RtpPhone; user: WaUser | null }

/** With drachtio-server: a WhatsApp user calls in during the attack; whether the bridge accepted it (the call connected). */
async function callDuringAttack(stack: TestStack, setup: CallSetup): Promise<boolean> {
  const user = setup.user = new WaUser(440, 1000);
  const { wacid, status } = await stack.sim.userCalls(user);
  if (status !== 200) return false;
  const accepted = await Promise.race([
    stack.sim.waitForRequest('/calls/accept', wacid).then(() => true, () => false),
    new Promise<boolean>((r) => setTimeout(() => r(false), 15000)),
  ]);
  if (!accepted) return false;
  await stack.sim.userHangsUp(wacid).catch(() => 0);
  const id = await whenEnded(stack.bridge, wacid);
  return (await rows().CallRecord.findByPk(id))?.outcome === 'answered';
}

function report(label: string, deliveries: Delivery[], attack: Attack, stack: TestStack, call: boolean | null): void {
  const ok = deliveries.filter((d) => d.status === 200);
  const refused = deliveries.filter((d) => d.status !== 200);
  const statuses = [...new Set(refused.map((d) => d.status))].join(', ');
  const answers = [...attack.answers].map(([k, v]) => `${k}: ${v}`).join(', ');
  console.log(`      (${label}: signed webhooks answered 200: ${ok.length} of ${deliveries.length}, refused: ${refused.length}${statuses ? ` [${statuses}]` : ''}; `
    + `latency median ${median(deliveries.map((d) => d.ms)).toFixed(1)} ms, max ${Math.max(...deliveries.map((d) => d.ms)).toFixed(1)} ms; `
    + `call during the attack: ${call === null ? 'not tried (no drachtio-server)' : call ? 'connected' : 'FAILED'}; `
    + `attack connections opened ${attack.opened}, answered ${answers}; reads made to give way ${(stack.bridge.webhookIngress.slots as { evictions?: number }).evictions ?? 'n/a'})`);
}

describe('webhook door under slow bodies without the secret (issue 17, finding 1)', function () {
  this.timeout(60000);
  let stack: TestStack | null = null;
  let attack: Attack | null = null;
  let setup: CallSetup | null = null;

  /** A stack with default webhook limits; with drachtio-server, SIPp answering as the PBX. */
  async function start(env: Record<string, string> = {}): Promise<TestStack> {
    if (infra.drachtio) {
      const phone = new RtpPhone(1000, 440);
      const rtpPort = await phone.start();
      setup = { phone, sipp: await startSippUas('uas-answer.xml', { rtpPort }), user: null };
    }
    stack = await startStack({ ...env, ...(setup ? { PBX_TARGET: setup.sipp.uri } : {}) });
    return stack;
  }

  afterEach(async () => {
    attack?.stop();
    attack = null;
    setup?.user?.close();
    setup?.phone.stop();
    await setup?.sipp.proc.stop();
    setup = null;
    await stack?.stop();
    stack = null;
  });

  it('one body trickling slower than the minimum rate is cut about a second after it starts (408), long before the read timeout', async () => {
    const s = await start();
    const sock = net.connect({ host: '127.0.0.1', port: s.bridge.httpPort, localAddress: '127.0.0.2' });
    const t0 = performance.now();
    const answer = new Promise<string>((resolve, reject) => {
      let text = '';
      sock.on('data', (d: Buffer) => (text += d.toString('utf8')));
      sock.once('close', () => resolve(text));
      sock.once('error', reject);
    });
    sock.write(`POST /webhooks/ycloud HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\nYCloud-Signature: ${signWebhook('not-the-secret', '')}\r\n\r\n{`);
    const trickle = setInterval(() => sock.write('"'), 200);
    const text = await answer.finally(() => clearInterval(trickle));
    const ms = performance.now() - t0;
    assert.match(text, /^HTTP\/1\.1 408/);
    assert.match(text, /slower than 4096 bytes\/s/);
    console.log(`      (a trickle of 5 bytes/s cut after ${Math.round(ms)} ms; read timeout 10000 ms)`);
  });

  it('48 trickling connections from 6 other addresses: every signed webhook is answered 200, and a call connects', async () => {
    const s = await start();
    const from = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6', '127.0.0.7'];
    attack = trickleAttack(s.bridge.httpPort, from, 8);
    await attack.ready;
    const [deliveries, call] = await Promise.all([signedStream(s), setup ? callDuringAttack(s, setup) : Promise.resolve(null)]);
    report('6 addresses x 8', deliveries, attack, s, call);
    assert.deepEqual(deliveries.filter((d) => d.status !== 200).map((d) => d.status), [], 'every signed webhook was answered 200');
    if (call !== null) assert.equal(call, true, 'the call connected during the attack');
  });

  it('40 trickling connections from the address YCloud uses too (all behind one proxy): every signed webhook is answered 200, and a call connects', async () => {
    const s = await start();
    attack = trickleAttack(s.bridge.httpPort, ['127.0.0.1'], 40);
    await attack.ready;
    const [deliveries, call] = await Promise.all([signedStream(s), setup ? callDuringAttack(s, setup) : Promise.resolve(null)]);
    report('one address x 40', deliveries, attack, s, call);
    assert.deepEqual(deliveries.filter((d) => d.status !== 200).map((d) => d.status), [], 'every signed webhook was answered 200');
    if (call !== null) assert.equal(call, true, 'the call connected during the attack');
  });
});
