import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { createLogger } from '../src/log';
import { DemoAgent, type DemoAgentEvent } from '../src/sandbox/demo-agent';
import { linearToUlaw, sineFrame, toneShare, ulawToLinear } from './harness/tone';

/*
 * The sandbox's demo agent driven directly: a raw UDP SIP client and an RTP socket on loopback stand in
 * for drachtio-server and rtpengine. Needs neither Postgres nor drachtio.
 */

const HOST = '127.0.0.1';
const TONE_HZ = 1000;
const log = createLogger(process.env.DEMO_AGENT_LOG ?? 'silent');

// ---- a SIP client ----

interface Received {
  start: string;
  status: number | null;
  method: string | null;
  uri: string | null;
  headers: Map<string, string[]>;
  body: string;
}

function parse(b: Buffer): Received | null {
  const text = b.toString('utf8');
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const [start = '', ...lines] = text.slice(0, end).split('\r\n');
  const headers = new Map<string, string[]>();
  for (const line of lines) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim().toLowerCase();
    headers.set(name, [...(headers.get(name) ?? []), line.slice(colon + 1).trim()]);
  }
  const status = /^SIP\/2\.0 (\d{3})/.exec(start);
  const request = /^([A-Z]+) (\S+) SIP\/2\.0$/.exec(start);
  return {
    start, status: status ? Number(status[1]) : null, method: request?.[1] ?? null, uri: request?.[2] ?? null, headers,
    body: text.slice(end + 4),
  };
}

function h(m: Received, name: string): string {
  return m.headers.get(name)?.[0] ?? '';
}

class SipClient {
  readonly socket = dgram.createSocket('udp4');
  readonly received: Received[] = [];
  private waiters: Array<{ match: (m: Received) => boolean; resolve: (m: Received) => void }> = [];

  async open(): Promise<this> {
    this.socket.on('message', (b) => {
      const m = parse(b);
      if (!m) return;
      this.received.push(m);
      this.waiters = this.waiters.filter((w) => (w.match(m) ? (w.resolve(m), false) : true));
    });
    await new Promise<void>((r) => this.socket.bind(0, HOST, r));
    return this;
  }

  get port(): number {
    return this.socket.address().port;
  }

  send(agent: DemoAgent, text: string | Buffer): void {
    this.socket.send(typeof text === 'string' ? Buffer.from(text) : text, agent.port, HOST);
  }

  /** The first message (already received or still to come) that matches, within `ms`. */
  waitFor(match: (m: Received) => boolean, what: string, ms = 3000): Promise<Received> {
    const seen = this.received.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
      this.waiters.push({ match, resolve: (m) => { clearTimeout(timer); resolve(m); } });
    });
  }

  response(callId: string, status: number, method: string, ms?: number): Promise<Received> {
    return this.waitFor((m) => m.status === status && h(m, 'call-id') === callId && h(m, 'cseq').endsWith(` ${method}`), `${status} to ${method}`, ms);
  }

  close(): void {
    this.socket.close();
  }
}

interface Dialog {
  callId: string;
  fromTag: string;
  branch: string;
  toTag?: string;
}

function newDialog(): Dialog {
  return { callId: `${randomBytes(6).toString('hex')}@test`, fromTag: randomBytes(4).toString('hex'), branch: branch() };
}

function branch(): string {
  return `z9hG4bK${randomBytes(6).toString('hex')}`;
}

function request(agent: DemoAgent, client: SipClient, d: Dialog, method: string, seq: number, opts: {
  body?: string; contentType?: string; via?: string; extra?: string[]; compact?: boolean;
} = {}): string {
  const body = opts.body ?? '';
  const compact = opts.compact ?? false;
  const lines = [
    `${method} ${agent.uri} SIP/2.0`,
    `${compact ? 'v' : 'Via'}: SIP/2.0/UDP ${HOST}:${client.port};branch=${opts.via ?? branch()};rport`,
    'Via: SIP/2.0/UDP 127.0.0.2:5080;branch=z9hG4bKupstream;received=127.0.0.2',
    'Max-Forwards: 70',
    `${compact ? 'f' : 'From'}: <sip:caller@${HOST}>;tag=${d.fromTag}`,
    `${compact ? 't' : 'To'}: <sip:demo@${HOST}>${d.toTag ? `;tag=${d.toTag}` : ''}`,
    `${compact ? 'i' : 'Call-ID'}: ${d.callId}`,
    `CSeq: ${seq} ${method}`,
    `${compact ? 'm' : 'Contact'}: <sip:caller@${HOST}:${client.port}>`,
    ...(opts.extra ?? []),
    ...(body ? [`${compact ? 'c' : 'Content-Type'}: ${opts.contentType ?? 'application/sdp'}`] : []),
    `${compact ? 'l' : 'Content-Length'}: ${Buffer.byteLength(body)}`,
  ];
  return `${lines.join('\r\n')}\r\n\r\n${body}`;
}

function offer(rtpPort: number, payloads: string[]): string {
  const rtpmaps: Record<string, string> = { '0': 'PCMU/8000', '8': 'PCMA/8000', '18': 'G729/8000', '101': 'telephone-event/8000' };
  return [
    'v=0', `o=test 1 1 IN IP4 ${HOST}`, 's=-', `c=IN IP4 ${HOST}`, 't=0 0', `m=audio ${rtpPort} RTP/AVP ${payloads.join(' ')}`,
    ...payloads.map((pt) => `a=rtpmap:${pt} ${rtpmaps[pt]}`), 'a=fmtp:101 0-16', 'a=sendrecv', 'a=ptime:20', '',
  ].join('\r\n');
}

// ---- an RTP endpoint ----

interface Frame {
  at: number;
  pt: number;
  samples: Int16Array;
}

class RtpEndpoint {
  readonly socket = dgram.createSocket('udp4');
  readonly frames: Frame[] = [];
  private remote: { address: string; port: number } | null = null;
  private seq = 1;
  private timestamp = 1000;
  private toneSample = 0;
  private toneTimer: NodeJS.Timeout | null = null;
  private tonePaused = false;
  private waiters: Array<{ check: () => boolean; resolve: () => void }> = [];

  async open(): Promise<this> {
    this.socket.on('message', (b, rinfo) => {
      if (b.length < 12) return;
      this.remote ??= { address: rinfo.address, port: rinfo.port };
      const payload = b.subarray(12);
      this.frames.push({ at: performance.now(), pt: b[1]! & 0x7f, samples: Int16Array.from(payload, ulawToLinear) });
      this.waiters = this.waiters.filter((w) => (w.check() ? (w.resolve(), false) : true));
    });
    await new Promise<void>((r) => this.socket.bind(0, HOST, r));
    return this;
  }

  get port(): number {
    return this.socket.address().port;
  }

  /** Resolves when `check` (run after every packet) holds, within `ms`. */
  until(check: () => boolean, what: string, ms = 5000): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${what} not within ${ms} ms`)), ms);
      this.waiters.push({ check, resolve: () => { clearTimeout(timer); resolve(); } });
    });
  }

  private send(pt: number, marker: boolean, timestamp: number, payload: Buffer): void {
    if (!this.remote) return;
    const b = Buffer.alloc(12 + payload.length);
    b[0] = 0x80;
    b[1] = (marker ? 0x80 : 0) | pt;
    b.writeUInt16BE(this.seq++ & 0xffff, 2);
    b.writeUInt32BE(timestamp >>> 0, 4);
    b.writeUInt32BE(0x1234abcd, 8);
    payload.copy(b, 12);
    this.socket.send(b, this.remote.port, this.remote.address);
  }

  /** A 1000 Hz PCMU tone, 20 ms a packet on a drift-corrected clock, to the agent's SDP address. */
  startTone(to: { address: string; port: number }): void {
    this.remote = to;
    const start = performance.now();
    let sent = 0;
    const tick = (): void => {
      while (start + sent * 20 <= performance.now()) {
        sent++;
        this.timestamp += 160;
        if (this.tonePaused) continue;
        const pcm = sineFrame(TONE_HZ, 8000, 160, this.toneSample);
        this.toneSample += 160;
        this.send(0, false, this.timestamp, Buffer.from(Array.from(pcm, linearToUlaw)));
      }
      this.toneTimer = setTimeout(tick, Math.max(1, start + sent * 20 - performance.now()));
    };
    tick();
  }

  stopTone(): void {
    if (this.toneTimer) clearTimeout(this.toneTimer);
    this.toneTimer = null;
  }

  /**
   * One key as a real phone sends it (RFC 4733): the tone pauses, three updates with growing duration
   * (the first marked), then three end packets, all with the event's start timestamp.
   */
  async sendDigit(digit: string): Promise<void> {
    const code = '0123456789*#ABCD'.indexOf(digit);
    this.tonePaused = true;
    const start = this.timestamp;
    const packet = (duration: number, end: boolean): Buffer => Buffer.from([code, (end ? 0x80 : 0) | 10, duration >> 8, duration & 0xff]);
    for (let i = 1; i <= 3; i++) {
      this.send(101, i === 1, start, packet(160 * i, false));
      await pause(20);
    }
    for (let i = 0; i < 3; i++) this.send(101, false, start, packet(640, true));
    this.tonePaused = false;
  }

  close(): void {
    this.stopTone();
    this.socket.close();
  }
}

/** Only for pacing what the test sends (a sender's clock), never to wait for the agent. */
function pause(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function rms(frames: Frame[]): number {
  let energy = 0;
  let n = 0;
  for (const f of frames) for (const s of f.samples) { energy += s * s; n++; }
  return n ? Math.sqrt(energy / n) : 0;
}

const isTone = (f: Frame): boolean => { const t = toneShare(f.samples, TONE_HZ, 8000); return t.rms > 1000 && t.share > 0.8; };
const isSpeech = (f: Frame): boolean => { const t = toneShare(f.samples, TONE_HZ, 8000); return t.rms > 500 && t.share < 0.3; };

// ---- the agent's events ----

class EventLog {
  readonly events: DemoAgentEvent[] = [];
  private waiters: Array<{ match: (e: DemoAgentEvent) => boolean; resolve: (e: DemoAgentEvent) => void }> = [];

  constructor(agent: DemoAgent) {
    agent.on('event', (e) => {
      this.events.push(e);
      this.waiters = this.waiters.filter((w) => (w.match(e) ? (w.resolve(e), false) : true));
    });
  }

  of(callId: string, type: DemoAgentEvent['type']): DemoAgentEvent[] {
    return this.events.filter((e) => e.callId === callId && e.type === type);
  }

  wait(callId: string, type: DemoAgentEvent['type'], ms = 5000, nth = 1): Promise<DemoAgentEvent> {
    const seen = this.of(callId, type)[nth - 1];
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no '${type}' event #${nth} within ${ms} ms`)), ms);
      this.waiters.push({
        match: (e) => e.callId === callId && e.type === type && this.of(callId, type).length >= nth,
        resolve: (e) => { clearTimeout(timer); resolve(e); },
      });
    });
  }
}

function sdpAddress(sdp: string): { address: string; port: number } {
  return { address: /^c=IN IP4 (\S+)/m.exec(sdp)![1]!, port: Number(/^m=audio (\d+)/m.exec(sdp)![1]) };
}

function tagOf(value: string): string {
  return /;tag=([^;>\s]+)/.exec(value)![1]!;
}

describe('demo agent', function () {
  let agent: DemoAgent;
  let events: EventLog;
  let sip: SipClient;

  before(async () => {
    agent = new DemoAgent({ log, ringMs: 100 });
    events = new EventLog(agent);
    await agent.start();
    sip = await new SipClient().open();
  });

  after(async () => {
    sip?.close();
    await agent?.stop();
  });

  describe('a call: greeting, echo, digits, INFO, BYE', function () {
    const d = newDialog();
    let rtp: RtpEndpoint;
    let answeredAt = 0;
    let agentMedia: { address: string; port: number };

    before(async () => {
      rtp = await new RtpEndpoint().open();
    });
    after(() => rtp?.close());

    it('answers an INVITE with 100, 180 and a PCMU 200 OK; the ACK stops the 200', async () => {
      const inviteBranch = branch();
      sip.send(agent, request(agent, sip, d, 'INVITE', 1, { body: offer(rtp.port, ['0', '101']), via: inviteBranch, extra: [`Record-Route: <sip:${HOST}:${sip.port};lr>`] }));
      const trying = await sip.response(d.callId, 100, 'INVITE');
      const ringing = await sip.response(d.callId, 180, 'INVITE');
      const ok = await sip.response(d.callId, 200, 'INVITE');
      answeredAt = performance.now();
      // Every Via copied, in order; To tagged from the 180 on; Contact is the agent.
      assert.equal(trying.headers.get('via')?.length, 2);
      assert.match(h(ok, 'via'), new RegExp(`branch=${inviteBranch}`));
      assert.match(ok.headers.get('via')![1]!, /z9hG4bKupstream/);
      assert.doesNotMatch(h(trying, 'to'), /tag=/);
      d.toTag = tagOf(h(ringing, 'to'));
      assert.equal(tagOf(h(ok, 'to')), d.toTag);
      assert.equal(h(ok, 'contact'), `<${agent.uri}>`);
      assert.equal(h(ok, 'record-route'), `<sip:${HOST}:${sip.port};lr>`);
      assert.equal(h(ok, 'content-type'), 'application/sdp');
      assert.match(ok.body, /^m=audio \d+ RTP\/AVP 0 101\r$/m);
      assert.match(ok.body, /^a=rtpmap:0 PCMU\/8000\r$/m);
      assert.match(ok.body, /^a=rtpmap:101 telephone-event\/8000\r$/m);
      assert.match(ok.body, /^a=sendrecv\r$/m);
      assert.match(ok.body, /^a=ptime:20\r$/m);
      assert.match(ok.body, new RegExp(`^c=IN IP4 ${HOST.replace(/\./g, '\\.')}\\r$`, 'm'));
      agentMedia = sdpAddress(ok.body);
      sip.send(agent, request(agent, sip, d, 'ACK', 1));
      await events.wait(d.callId, 'answered');
      assert.deepEqual(events.events.filter((e) => e.callId === d.callId).map((e) => e.type), ['invite', 'ringing', 'answered']);
      assert.equal(agent.activeCalls, 1);
    });

    it('plays a loud spoken greeting first', async () => {
      await rtp.until(() => rtp.frames.length >= 50, 'a second of greeting');
      const first = rtp.frames.slice(0, 50);
      assert.ok(first.every((f) => f.pt === 0 && f.samples.length === 160), 'PCMU 20 ms packets');
      const level = rms(first);
      assert.ok(level > 500, `greeting RMS ${level.toFixed(0)}`);
      assert.ok(first.filter((f) => rms([f]) > 1000).length >= 10, 'loud frames in the first second');
      // Paced at 20 ms: 50 packets take about a second, not a burst.
      const span = first[49]!.at - answeredAt;
      assert.ok(span > 800 && span < 1600, `50 packets over ${span.toFixed(0)} ms`);
    });

    it('echoes the caller once the greeting is done', async () => {
      await events.wait(d.callId, 'greeting-done', 10_000);
      const from = rtp.frames.length;
      rtp.startTone(agentMedia);
      await rtp.until(() => rtp.frames.slice(from).filter(isTone).length >= 25, 'the 1000 Hz tone echoed back');
    });

    it('reads back RFC 4733 digits, then echoes again', async () => {
      await rtp.sendDigit('4');
      await pause(100);
      await rtp.sendDigit('2');
      const four = await events.wait(d.callId, 'digit');
      const two = await events.wait(d.callId, 'digit', 3000, 2);
      assert.equal(four.detail?.digit, '4');
      assert.equal(two.detail?.digit, '2');
      assert.equal(four.text, 'heard digit 4 (RFC 4733), reading it back');
      const afterDigits = rtp.frames.length;
      // "four" and "two" are spoken (loud, not the tone) and the tone comes back after them.
      await rtp.until(() => rtp.frames.slice(afterDigits).filter(isSpeech).length >= 15, 'the digits spoken back');
      const spoken = rtp.frames.length;
      await rtp.until(() => rtp.frames.slice(spoken).filter(isTone).length >= 10, 'the echo after the digits');
      assert.equal(agent.digits(d.callId), '42', 'each event counted once');
    });

    it('takes a digit from SIP INFO (compact headers)', async () => {
      sip.send(agent, request(agent, sip, d, 'INFO', 2, { compact: true, body: 'Signal=7\r\nDuration=160\r\n', contentType: 'application/dtmf-relay' }));
      await sip.response(d.callId, 200, 'INFO');
      const seven = await events.wait(d.callId, 'digit', 3000, 3);
      assert.equal(seven.detail?.digit, '7');
      assert.match(seven.text, /SIP INFO/);
      assert.equal(agent.digits(d.callId), '427');
    });

    it('answers a re-INVITE with the same SDP, a new o= version', async () => {
      sip.send(agent, request(agent, sip, d, 'INVITE', 3, { body: offer(rtp.port, ['0', '101']) }));
      const again = await sip.waitFor((m) => m.status === 200 && h(m, 'call-id') === d.callId && h(m, 'cseq') === '3 INVITE', 'the 200 to the re-INVITE');
      const first = sip.received.find((m) => m.status === 200 && h(m, 'call-id') === d.callId && h(m, 'cseq') === '1 INVITE')!;
      assert.equal(tagOf(h(again, 'to')), d.toTag);
      assert.deepEqual(sdpAddress(again.body), agentMedia);
      const version = (sdp: string): number => Number(/^o=\S+ \d+ (\d+)/m.exec(sdp)![1]);
      assert.equal(version(again.body), version(first.body) + 1);
      sip.send(agent, request(agent, sip, d, 'ACK', 3));
      await events.wait(d.callId, 'reinvite');
    });

    it('ends on BYE: 200, a hangup event, media stops', async () => {
      // The ACK stopped the 200's retransmissions (seconds ago; without it there would be several).
      assert.equal(sip.received.filter((m) => h(m, 'call-id') === d.callId && h(m, 'cseq') === '1 INVITE' && m.status === 200).length, 1);
      sip.send(agent, request(agent, sip, d, 'BYE', 4));
      await sip.response(d.callId, 200, 'BYE');
      const hangup = await events.wait(d.callId, 'hangup');
      assert.equal(hangup.detail?.by, 'caller');
      assert.equal(agent.activeCalls, 0);
      const count = rtp.frames.length;
      await pause(300); // proving an absence takes a bounded wait
      assert.ok(rtp.frames.length - count <= 1, `${rtp.frames.length - count} packets after the BYE`);
    });
  });

  it('hangs up itself with a BYE in the dialog (Route from Record-Route, tags swapped)', async () => {
    const d = newDialog();
    const rtp = await new RtpEndpoint().open();
    try {
      sip.send(agent, request(agent, sip, d, 'INVITE', 1, {
        body: offer(rtp.port, ['8', '0']),
        extra: [`Record-Route: <sip:${HOST}:${sip.port};lr;r=1>`, `Record-Route: <sip:${HOST}:${sip.port};lr;r=2>`],
      }));
      const ok = await sip.response(d.callId, 200, 'INVITE');
      assert.match(ok.body, /^m=audio \d+ RTP\/AVP 8\r$/m, 'PCMA, the first G.711 offered; no telephone-event');
      sip.send(agent, request(agent, sip, d, 'ACK', 1));
      await events.wait(d.callId, 'answered');
      const hungUp = agent.hangup(d.callId, 'test hangup');
      const bye = await sip.waitFor((m) => m.method === 'BYE' && h(m, 'call-id') === d.callId, 'the agent\'s BYE');
      assert.equal(bye.uri, `sip:caller@${HOST}:${sip.port}`);
      assert.deepEqual(bye.headers.get('route'), [`<sip:${HOST}:${sip.port};lr;r=1>`, `<sip:${HOST}:${sip.port};lr;r=2>`]);
      assert.equal(tagOf(h(bye, 'from')), tagOf(h(ok, 'to')));
      assert.equal(tagOf(h(bye, 'to')), d.fromTag);
      assert.match(h(bye, 'cseq'), /^\d+ BYE$/);
      sip.socket.send(Buffer.from([
        'SIP/2.0 200 OK', ...bye.headers.get('via')!.map((v) => `Via: ${v}`), `From: ${h(bye, 'from')}`, `To: ${h(bye, 'to')}`,
        `Call-ID: ${d.callId}`, `CSeq: ${h(bye, 'cseq')}`, 'Content-Length: 0', '', '',
      ].join('\r\n')), agent.port, HOST);
      assert.equal(await hungUp, true, 'the BYE was answered');
      assert.equal((await events.wait(d.callId, 'hangup')).detail?.by, 'agent');
      assert.equal(agent.activeCalls, 0);
    } finally {
      rtp.close();
    }
  });

  it('CANCEL before the answer: 200 to the CANCEL and 487 to the INVITE', async () => {
    const slow = new DemoAgent({ log, ringMs: 60_000 });
    const slowEvents = new EventLog(slow);
    await slow.start();
    try {
      const d = newDialog();
      const inviteBranch = branch();
      sip.send(slow, request(slow, sip, d, 'INVITE', 1, { body: offer(40000, ['0', '101']), via: inviteBranch }));
      await sip.response(d.callId, 180, 'INVITE');
      sip.send(slow, request(slow, sip, d, 'CANCEL', 1, { via: inviteBranch }));
      await sip.response(d.callId, 200, 'CANCEL');
      const terminated = await sip.response(d.callId, 487, 'INVITE');
      assert.ok(tagOf(h(terminated, 'to')));
      sip.send(slow, request(slow, sip, { ...d, toTag: tagOf(h(terminated, 'to')) }, 'ACK', 1, { via: inviteBranch }));
      await slowEvents.wait(d.callId, 'cancelled');
      assert.equal(slow.activeCalls, 0);
    } finally {
      await slow.stop();
    }
  });

  it('answers 486 Busy Here beyond maxCalls, and takes calls again once one ends', async () => {
    const one = new DemoAgent({ log, ringMs: 60_000, maxCalls: 1 });
    await one.start();
    try {
      const first = newDialog();
      sip.send(one, request(one, sip, first, 'INVITE', 1, { body: offer(40010, ['0']) }));
      await sip.response(first.callId, 180, 'INVITE');
      const second = newDialog();
      sip.send(one, request(one, sip, second, 'INVITE', 1, { body: offer(40012, ['0']) }));
      await sip.response(second.callId, 486, 'INVITE');
      assert.equal(one.activeCalls, 1);
      sip.send(one, request(one, sip, first, 'CANCEL', 1));
      await sip.response(first.callId, 487, 'INVITE');
      const third = newDialog();
      sip.send(one, request(one, sip, third, 'INVITE', 1, { body: offer(40014, ['0']) }));
      await sip.response(third.callId, 180, 'INVITE');
    } finally {
      await one.stop();
    }
  });

  it('rejects an offer without PCMU or PCMA with 488', async () => {
    const d = newDialog();
    sip.send(agent, request(agent, sip, d, 'INVITE', 1, { body: offer(40002, ['18', '101']) }));
    const rejected = await sip.response(d.callId, 488, 'INVITE');
    assert.ok(tagOf(h(rejected, 'to')));
    sip.send(agent, request(agent, sip, { ...d, toTag: tagOf(h(rejected, 'to')) }, 'ACK', 1));
    const e = await events.wait(d.callId, 'rejected');
    assert.match(e.text, /G729/);
    assert.equal(agent.activeCalls, 0);
  });

  it('answers OPTIONS, 481 for unknown dialogs, 501 for unknown methods', async () => {
    const d = newDialog();
    sip.send(agent, request(agent, sip, d, 'OPTIONS', 1));
    assert.match(h(await sip.response(d.callId, 200, 'OPTIONS'), 'allow'), /INVITE/);
    sip.send(agent, request(agent, sip, { ...d, toTag: 'nope' }, 'BYE', 2));
    await sip.response(d.callId, 481, 'BYE');
    sip.send(agent, request(agent, sip, d, 'SUBSCRIBE', 3));
    await sip.response(d.callId, 501, 'SUBSCRIBE');
  });

  it('drops garbage silently and still takes the next call', async () => {
    const d = newDialog();
    sip.send(agent, randomBytes(300));
    sip.send(agent, '\r\n\r\n');
    sip.send(agent, 'INVITE nothing\r\nno colon here\r\n\r\n');
    sip.send(agent, request(agent, sip, newDialog(), 'INVITE', 1, { body: 'v=0' }).replace('Content-Length: 3', 'Content-Length: 9999'));
    sip.send(agent, Buffer.alloc(0));
    sip.send(agent, request(agent, sip, d, 'INVITE', 1, { body: offer(40004, ['0']) }));
    const ok = await sip.response(d.callId, 200, 'INVITE');
    // No ACK yet: the 200 is sent again (T1 = 500 ms).
    await sip.waitFor((m) => m.status === 200 && h(m, 'call-id') === d.callId && m !== ok, 'the 200 retransmitted', 2000);
    sip.send(agent, request(agent, sip, { ...d, toTag: tagOf(h(ok, 'to')) }, 'ACK', 1));
    sip.send(agent, request(agent, sip, { ...d, toTag: tagOf(h(ok, 'to')) }, 'BYE', 2));
    await sip.response(d.callId, 200, 'BYE');
    await events.wait(d.callId, 'hangup');
  });

  it('hangs up after maxCallMs, and stop() does not wait long for unanswered BYEs', async () => {
    const short = new DemoAgent({ log, ringMs: 0, maxCallMs: 400 });
    const shortEvents = new EventLog(short);
    await short.start();
    const a = newDialog();
    const b = newDialog();
    try {
      sip.send(short, request(short, sip, a, 'INVITE', 1, { body: offer(40006, ['0']) }));
      const okA = await sip.response(a.callId, 200, 'INVITE');
      sip.send(short, request(short, sip, { ...a, toTag: tagOf(h(okA, 'to')) }, 'ACK', 1));
      await sip.waitFor((m) => m.method === 'BYE' && h(m, 'call-id') === a.callId, 'the BYE after maxCallMs', 3000);
      assert.match((await shortEvents.wait(a.callId, 'hangup')).text, /hung up after/);

      sip.send(short, request(short, sip, b, 'INVITE', 1, { body: offer(40008, ['0']) }));
      const okB = await sip.response(b.callId, 200, 'INVITE');
      sip.send(short, request(short, sip, { ...b, toTag: tagOf(h(okB, 'to')) }, 'ACK', 1));
    } finally {
      const started = performance.now();
      await short.stop();
      const took = performance.now() - started;
      assert.ok(took < 1500, `stop() took ${took.toFixed(0)} ms`);
    }
    await sip.waitFor((m) => m.method === 'BYE' && h(m, 'call-id') === b.callId, 'the BYE sent by stop()');
    assert.equal(short.activeCalls, 0);
  });

  it('fails start() clearly when the prompts are missing', async () => {
    const broken = new DemoAgent({ log, promptsDir: '/nonexistent/prompts' });
    await assert.rejects(broken.start(), /prompt \/nonexistent\/prompts\/greeting\.wav is missing/);
  });
});
