import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { linearToAlaw, RtpPhone } from '../harness/rtp-phone';
import { alawToLinear } from '../harness/tone';

interface Pkt {
  pt: number;
  marker: boolean;
  seq: number;
  ts: number;
  ssrc: number;
  payload: Buffer;
}

/** A bare RTP receiver that keeps every packet, to look at what RtpPhone puts on the wire. */
class Capture {
  readonly socket = dgram.createSocket('udp4');
  readonly packets: Pkt[] = [];
  private waiters: Array<{ test: (p: Pkt[]) => boolean; resolve: () => void }> = [];

  async start(): Promise<number> {
    this.socket.on('message', (m) => {
      this.packets.push({
        pt: m[1]! & 0x7f, marker: (m[1]! & 0x80) !== 0, seq: m.readUInt16BE(2), ts: m.readUInt32BE(4), ssrc: m.readUInt32BE(8), payload: m.subarray(12),
      });
      this.waiters = this.waiters.filter((w) => (w.test(this.packets) ? (w.resolve(), false) : true));
    });
    await new Promise<void>((r) => this.socket.bind(0, '127.0.0.1', r));
    return this.socket.address().port;
  }

  waitFor(test: (p: Pkt[]) => boolean, what: string, timeoutMs = 3000): Promise<void> {
    if (test(this.packets)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`capture: ${what} not seen within ${timeoutMs} ms (${this.packets.length} packets)`)), timeoutMs);
      this.waiters.push({ test, resolve: () => (clearTimeout(t), resolve()) });
    });
  }

  stop(): void {
    this.socket.close();
  }
}

describe('RtpPhone RFC 4733 and stream controls', () => {
  const phones: RtpPhone[] = [];
  let capture: Capture | null = null;

  afterEach(() => {
    for (const p of phones.splice(0)) p.stop();
    capture?.stop();
    capture = null;
  });

  async function phone(send: number, listen: number, opts?: ConstructorParameters<typeof RtpPhone>[2]): Promise<RtpPhone> {
    const p = new RtpPhone(send, listen, opts);
    phones.push(p);
    await p.start();
    return p;
  }

  /** a starts toward b; b answers toward a as soon as it hears it (symmetric RTP). */
  async function pair(aOpts?: ConstructorParameters<typeof RtpPhone>[2], bOpts?: ConstructorParameters<typeof RtpPhone>[2]): Promise<[RtpPhone, RtpPhone]> {
    const a = await phone(1000, 440, aOpts);
    const b = await phone(440, 1000, bOpts);
    a.retarget(b.port);
    await b.heard.whenHeard(3);
    await a.heard.whenHeard(3);
    return [a, b];
  }

  it('digits sent by one phone are decoded by the other, once per event, with their duration and PT', async () => {
    const [a, b] = await pair();
    await a.sendDigits('11#59*D', 100);
    const got = await b.waitDigits(7, 5000);
    assert.equal(got.map((d) => d.digit).join(''), '11#59*D', 'repeated digits count twice, end retransmissions once');
    for (const d of got) {
      assert.equal(d.pt, 101);
      assert.equal(d.durationMs, 100);
      assert.ok(d.at >= d.startedAt);
    }
    // Each 100 ms event: 4 packets on the way plus 3 end packets; the last retransmissions may still be on their way.
    await b.whenPackets(101, 7 * 7);
    assert.equal(b.digits.length, 7);
    assert.ok(b.packetsByPt[0]! > 0, 'the tone went on around the digits');
    assert.equal(b.digitString(), '11#59*D');

    // The other way, with a different duration, as soon as the previous digits are in.
    await b.sendDigit('7', 250);
    const back = await a.waitDigits(1);
    assert.deepEqual(back.map((d) => [d.digit, d.durationMs, d.pt]), [['7', 250, 101]]);
  });

  it('decodes only the payload types it is told are telephone-events', async () => {
    const [a, b] = await pair({}, { dtmfPayloadTypes: [96] });
    await a.sendDigit('3', 60, 101); // 101 is not an event PT for b: counted, not decoded
    await a.sendDigit('4', 60, 96);
    const got = await b.waitDigits(1);
    assert.deepEqual(got.map((d) => [d.digit, d.durationMs, d.pt]), [['4', 60, 96]]);
    await b.whenPackets(96, 5); // 60 ms event: 2 packets plus 3 end packets
    assert.equal(b.packetsByPt[101], 5);
    assert.equal(b.digits.length, 1);
    b.setDtmfPayloadTypes([96, 101]);
    assert.deepEqual(b.dtmfPayloadTypes, [96, 101]);
    await a.sendDigit('5', 60, 101);
    assert.equal((await b.waitDigits(2)).map((d) => d.digit).join(''), '45');
  });

  it('an event sits in the audio stream: same SSRC and clock, marker first, tone paused, 3 end packets', async () => {
    const a = await phone(1000, 440);
    capture = new Capture();
    a.retarget(await capture.start());
    const cap = capture;
    await cap.waitFor((p) => p.length >= 3, '3 audio packets');
    await a.sendDigit('9', 100);
    await cap.waitFor((p) => p.filter((x) => x.pt === 101).length >= 7, 'the 7 event packets');
    const firstEvent = cap.packets.findIndex((p) => p.pt === 101);
    await cap.waitFor((p) => p.length >= firstEvent + 7 + 2, 'the event and 2 audio packets after it');

    const pk = cap.packets;
    const ev = pk.slice(firstEvent, firstEvent + 7);
    const before = pk[firstEvent - 1]!;
    const after = pk[firstEvent + 7]!;
    assert.ok(ev.every((p) => p.pt === 101), 'no audio packet in the middle of the event');
    assert.equal(before.pt, 0);
    assert.equal(after.pt, 0);
    assert.ok(pk.every((p) => p.ssrc === before.ssrc), 'one SSRC for audio and events');
    for (let i = 1; i < pk.length; i++) assert.equal(pk[i]!.seq, (pk[i - 1]!.seq + 1) & 0xffff, 'sequence numbers run on');
    assert.ok(ev[0]!.marker && ev.slice(1).every((p) => !p.marker), 'marker on the first event packet only');
    assert.ok(ev.every((p) => p.ts === before.ts + 160), 'all event packets carry the start timestamp, next on the 8 kHz clock');
    assert.equal(after.ts, ev[0]!.ts + 7 * 160, 'the clock ran on through the event');
    assert.deepEqual(ev.map((p) => p.payload[0]), [9, 9, 9, 9, 9, 9, 9]);
    assert.deepEqual(ev.map((p) => p.payload[1]! >> 7), [0, 0, 0, 0, 1, 1, 1], 'three end packets');
    assert.deepEqual(ev.map((p) => p.payload.readUInt16BE(2)), [160, 320, 480, 640, 800, 800, 800]);
  });

  it('mute stops audio entirely (digits still go out), unmuting starts a talkspurt with the marker', async () => {
    const a = await phone(1000, 440);
    capture = new Capture();
    a.retarget(await capture.start());
    const cap = capture;
    await cap.waitFor((p) => p.length >= 3, '3 audio packets');
    const firstSeq = cap.packets[0]!.seq;
    const idx = (p: Pkt) => (p.seq - firstSeq) & 0xffff; // order of sending
    a.mute(true);
    assert.equal(a.isMuted, true);
    const sentBeforeMute = a.packetsOut;
    await a.sendDigit('5', 40);
    a.mute(false);
    const sentBeforeUnmute = a.packetsOut;
    await cap.waitFor((p) => p.some((x) => idx(x) === sentBeforeUnmute), 'the first packet after unmuting');
    const whileMuted = cap.packets.filter((p) => idx(p) >= sentBeforeMute && idx(p) < sentBeforeUnmute);
    // 40 ms event: 160, then 320 three times with the end bit; and nothing else.
    assert.deepEqual(whileMuted.map((p) => [p.pt, p.payload.readUInt16BE(2), p.payload[1]! >> 7]), [[101, 160, 0], [101, 320, 1], [101, 320, 1], [101, 320, 1]]);
    assert.ok(whileMuted.every((p) => p.pt === 101));
    const resumed = cap.packets.find((p) => idx(p) === sentBeforeUnmute)!;
    assert.equal(resumed.pt, 0);
    assert.equal(resumed.marker, true);
    assert.ok(resumed.ts - whileMuted[0]!.ts >= 4 * 160, 'the clock ran while muted');
  });

  it('sends PCMA when asked, and the other phone hears the tone in it', async () => {
    const [a, b] = await pair({ payloadType: 8 });
    await b.heard.whenHeard(10);
    assert.ok(b.packetsByPt[8]! >= 10);
    assert.equal(b.packetsByPt[0], undefined);
    a.setPayloadType(0);
    assert.throws(() => a.setPayloadType(9 as 0));
    // A-law encoder against tone.ts's decoder: within one quantisation step.
    for (const x of [-32768, -20000, -1000, -100, -1, 0, 1, 15, 100, 1000, 4000, 20000, 32767]) {
      const y = alawToLinear(linearToAlaw(x));
      assert.ok(Math.abs(y - x) <= Math.max(16, Math.abs(x) / 16), `A-law ${x} -> ${y}`);
    }
  });

  it('waitDigits and sendDigit fail loudly instead of hanging', async () => {
    const a = await phone(1000, 440);
    await assert.rejects(a.sendDigit('5'), /no remote/);
    await assert.rejects(a.sendDigit('x'), /not a DTMF digit/);
    await assert.rejects(a.waitDigits(1, 50), /1 digits not received within 50 ms/);
  });
});
