import dgram from 'node:dgram';
import { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { digitToEventCode, eventCodeToDigit } from './rtp-phone';

/**
 * One RFC 4733 event as the WhatsApp side received it on the wire, all its packets counted.
 * `durationField` is the end packet's duration as sent; `clock` the telephone-event clock this peer
 * agreed to (its SDP), so `durationMs` is what a receiver that trusts the SDP plays.
 */
export interface WireEvent {
  digit: string;
  pt: number;
  ts: number;
  clock: number;
  durationField: number;
  durationMs: number;
  packets: number;
  /** ms from the event's first packet to its first end packet, as they arrived. */
  wallMs: number;
  /** The event's timestamp minus that of the last audio packet before it, in ms of the audio clock (a few 20 ms frames at most when in step). */
  tsLeadMs: number | null;
}

interface Codec { pt: number; name: string; clock: number }

const OPUS_SILENCE = Buffer.from([0xf8, 0xff, 0xfe]); // a 20 ms opus frame of silence (CELT, code 0)

/**
 * A test-only stand-in for the WhatsApp user's media that can be read on the wire: plain RTP (no ICE,
 * no DTLS), offering what WhatsApp offers (opus/48000/2, telephone-event/8000, ptime 20; with `g711`
 * also PCMA and PCMU, as Meta's SIP G.711 option does). It sends 20 ms silence frames, records every
 * telephone-event it receives with its duration field and timing, and sends events as WhatsApp does:
 * durations in 8 kHz units, timestamps in the audio stream's clock.
 */
export class PlainWaUser {
  private readonly socket = dgram.createSocket('udp4');
  private remote: { address: string; port: number } | null = null;
  private timer: NodeJS.Timeout | null = null;
  private seq = Math.floor(Math.random() * 0x10000);
  private ts = Math.floor(Math.random() * 0x10000000);
  private readonly ssrc = Math.floor(Math.random() * 0xffffffff);
  /** What this peer sends and how it reads what it gets (from its own SDP: offer, or answer). */
  private audio: Codec = { pt: 111, name: 'opus', clock: 48000 };
  private events: Codec = { pt: 126, name: 'telephone-event', clock: 8000 };
  private readonly outgoing: Array<{ code: number; samples: number; resolve: () => void; sent?: number; ends?: number; startTs?: number }> = [];
  private readonly rx = new Map<string, { ev: WireEvent; firstAt: number; ended: boolean; lastAudioTs: number | null }>();
  private lastAudioTs: number | null = null;
  private waiters: Array<{ n: number; resolve: () => void }> = [];
  readonly received: WireEvent[] = [];
  readonly packetsByPt: Record<number, number> = {};

  constructor(private readonly o: { g711?: boolean } = {}) {}

  private started: Promise<number> | null = null;

  /** Binds its RTP port on loopback (once). */
  start(): Promise<number> {
    this.started ??= new Promise<void>((r) => {
      this.socket.on('message', (m) => this.onPacket(m));
      this.socket.bind(0, '127.0.0.1', r);
    }).then(() => (this.socket.address() as AddressInfo).port);
    return this.started;
  }

  private get port(): number {
    return (this.socket.address() as AddressInfo).port;
  }

  /** Inbound: the offer, shaped like WhatsApp's (for the simulator's userCalls). */
  async createOffer(): Promise<string> {
    await this.start();
    const g711 = this.o.g711 ? [8, 0] : [];
    return sdp(this.port, [111, ...g711, 126], [
      'a=rtpmap:111 opus/48000/2', 'a=fmtp:111 minptime=20;useinbandfec=1',
      ...(this.o.g711 ? ['a=rtpmap:8 PCMA/8000', 'a=rtpmap:0 PCMU/8000'] : []),
      'a=rtpmap:126 telephone-event/8000', 'a=fmtp:126 0-16',
    ]);
  }

  /** Inbound: the bridge's answer (pre-accept, then accept): where to send, and which codec it chose. */
  async applyAnswer(answer: string): Promise<void> {
    this.target(answer);
    const codecs = audioCodecs(answer);
    const first = codecs.find((c) => c.name !== 'telephone-event');
    if (first) this.audio = first;
    const te = codecs.find((c) => c.name === 'telephone-event');
    if (te) this.events = { ...te, clock: 8000 }; // what this peer offered: it reads events at 8 kHz
    this.begin();
  }

  /** Outbound: answers the bridge's offer (for the simulator's answeredBy) with plain RTP, opus and its events as offered. */
  async answer(offer: string): Promise<string> {
    await this.start();
    this.target(offer);
    const codecs = audioCodecs(offer);
    const opus = codecs.find((c) => c.name === 'opus');
    const te = codecs.find((c) => c.name === 'telephone-event' && c.clock === 8000) ?? codecs.find((c) => c.name === 'telephone-event');
    if (!opus) throw new Error(`PlainWaUser: no opus in the offer:\n${offer}`);
    this.audio = opus;
    if (te) this.events = te;
    this.begin();
    return sdp(this.port, [opus.pt, ...(te ? [te.pt] : [])], [
      `a=rtpmap:${opus.pt} opus/48000/2`, `a=fmtp:${opus.pt} minptime=20;useinbandfec=1`,
      ...(te ? [`a=rtpmap:${te.pt} telephone-event/${te.clock}`, `a=fmtp:${te.pt} 0-16`] : []),
    ]);
  }

  /** The telephone-event clock this peer agreed to. */
  get eventClock(): number {
    return this.events.clock;
  }

  /** Sends one event as WhatsApp would: in place of the audio, one packet per 20 ms, then 3 end packets. */
  sendDigit(digit: string, durationMs: number): Promise<void> {
    const samples = Math.round(durationMs * this.events.clock / 1000);
    return new Promise((resolve) => this.outgoing.push({ code: digitToEventCode(digit), samples, resolve }));
  }

  /** Resolves once `n` events have ended (bounded by the caller's `within`). */
  whenEvents(n: number): Promise<void> {
    if (this.received.length >= n) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ n, resolve }));
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    try {
      this.socket.close();
    } catch {
      // closed
    }
  }

  private target(theirs: string): void {
    const m = /^m=audio (\d+) /m.exec(theirs);
    const c = /^c=IN IP4 (\S+)/m.exec(theirs);
    if (!m || !c) throw new Error(`PlainWaUser: no audio address in:\n${theirs}`);
    this.remote = { address: c[1]!, port: Number(m[1]) };
  }

  private begin(): void {
    this.timer ??= setInterval(() => this.tick(), 20);
  }

  private tick(): void {
    if (!this.remote) return;
    const frame = Math.round(this.audio.clock / 50);
    const ev = this.outgoing[0];
    if (ev) {
      ev.startTs ??= this.ts;
      ev.sent = (ev.sent ?? 0) + 1;
      const perPacket = Math.round(this.events.clock / 50);
      const done = ev.sent * perPacket >= ev.samples;
      const duration = Math.min(ev.samples, ev.sent * perPacket);
      if (done) ev.ends = (ev.ends ?? 0) + 1;
      const payload = Buffer.from([ev.code, (done ? 0x80 : 0) | 10, duration >> 8, duration & 0xff]);
      this.send(this.events.pt, ev.sent === 1, ev.startTs, payload);
      if (done && ev.ends! >= 3) {
        this.outgoing.shift();
        this.ts = ev.startTs + Math.round(ev.samples * this.audio.clock / this.events.clock);
        ev.resolve();
      }
      return;
    }
    const payload = this.audio.name === 'opus' ? OPUS_SILENCE : Buffer.alloc(160, this.audio.name === 'PCMU' ? 0xff : 0xd5);
    this.send(this.audio.pt, false, this.ts, payload);
    this.ts = (this.ts + frame) >>> 0;
  }

  private send(pt: number, marker: boolean, ts: number, payload: Buffer): void {
    const h = Buffer.alloc(12);
    h[0] = 0x80;
    h[1] = (marker ? 0x80 : 0) | pt;
    h.writeUInt16BE(this.seq, 2);
    this.seq = (this.seq + 1) & 0xffff;
    h.writeUInt32BE(ts >>> 0, 4);
    h.writeUInt32BE(this.ssrc >>> 0, 8);
    this.socket.send(Buffer.concat([h, payload]), this.remote!.port, this.remote!.address);
  }

  private onPacket(msg: Buffer): void {
    if (msg.length < 12 || (msg[0]! & 0xc0) !== 0x80) return;
    const pt = msg[1]! & 0x7f;
    if (pt >= 72 && pt <= 76) return; // RTCP
    this.packetsByPt[pt] = (this.packetsByPt[pt] ?? 0) + 1;
    const ts = msg.readUInt32BE(4);
    const payload = msg.subarray(12 + (msg[0]! & 0x0f) * 4);
    const now = performance.now();
    if (pt !== this.events.pt) {
      this.lastAudioTs = ts;
      return;
    }
    if (payload.length < 4) return;
    const key = `${msg.readUInt32BE(8)}:${ts}`;
    let r = this.rx.get(key);
    if (!r) {
      const ev: WireEvent = {
        digit: eventCodeToDigit(payload[0]!), pt, ts, clock: this.events.clock, durationField: 0, durationMs: 0, packets: 0, wallMs: 0,
        tsLeadMs: this.lastAudioTs === null ? null : (((ts - this.lastAudioTs) | 0) * 1000) / this.audio.clock,
      };
      r = { ev, firstAt: now, ended: false, lastAudioTs: this.lastAudioTs };
      this.rx.set(key, r);
    }
    r.ev.packets++;
    const duration = payload.readUInt16BE(2);
    r.ev.durationField = Math.max(r.ev.durationField, duration);
    r.ev.durationMs = (r.ev.durationField * 1000) / r.ev.clock;
    if ((payload[1]! & 0x80) === 0 || r.ended) return;
    r.ended = true;
    r.ev.wallMs = Math.round(now - r.firstAt);
    this.received.push(r.ev);
    this.waiters = this.waiters.filter((w) => (this.received.length >= w.n ? (w.resolve(), false) : true));
  }
}

function sdp(port: number, pts: number[], attrs: string[]): string {
  return [
    'v=0', `o=- ${Date.now()} 1 IN IP4 127.0.0.1`, 's=-', 'c=IN IP4 127.0.0.1', 't=0 0',
    `m=audio ${port} RTP/AVP ${pts.join(' ')}`, ...attrs, 'a=ptime:20', 'a=sendrecv', '',
  ].join('\r\n');
}

function audioCodecs(s: string): Codec[] {
  const lines = s.split(/\r?\n/);
  const m = lines.find((l) => l.startsWith('m=audio '));
  if (!m) return [];
  const statics: Record<string, [string, number]> = { 0: ['PCMU', 8000], 8: ['PCMA', 8000], 9: ['G722', 8000] };
  return m.split(' ').slice(3).map((p) => {
    const r = lines.find((l) => l.startsWith(`a=rtpmap:${p} `));
    if (!r) return { pt: Number(p), name: statics[p]?.[0] ?? p, clock: statics[p]?.[1] ?? 0 };
    const [name = '', clock = '0'] = r.slice(`a=rtpmap:${p} `.length).trim().split('/');
    return { pt: Number(p), name: name.toLowerCase() === 'opus' ? 'opus' : name.toLowerCase() === 'telephone-event' ? 'telephone-event' : name.toUpperCase(), clock: Number(clock) };
  });
}
