import dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { AddressInfo } from 'node:net';
import { RtcpReporter } from './rtcp-reporter';
import { alawToLinear, linearToAlaw, linearToUlaw, sineFrame, ToneDetector, ulawToLinear } from './tone';

/** One RFC 4733 telephone-event received, counted once (at its first end packet). */
export interface ReceivedDigit {
  /** '0'-'9', '*', '#', 'A'-'D'; other event codes as `E<code>` (16 is flash: 'E16'). */
  digit: string;
  /** The duration the sender put in its end packet, in ms (8 kHz clock). */
  durationMs: number;
  pt: number;
  /** performance.now() when the first end packet arrived. */
  at: number;
  /** performance.now() when the first packet of this event arrived (end packet only: same as `at`). */
  startedAt: number;
}

export interface RtpPhoneOptions {
  /** Payload types decoded as RFC 4733 telephone-events (default [101]). */
  dtmfPayloadTypes?: number[];
  /** Payload type of the outgoing audio: 0 PCMU (default) or 8 PCMA. */
  payloadType?: 0 | 8;
  /** Symmetric RTP (comedia): always send back to where the latest audio came from. */
  followSource?: boolean;
  /** Send RTCP receiver reports from RTP port + 1, as real phones and PBXs do (default off). */
  rtcp?: boolean;
}

const EVENT_CODES = '0123456789*#ABCD';
const SAMPLES_PER_FRAME = 160; // 20 ms at 8 kHz
const END_PACKETS = 3;
const EVENT_VOLUME = 10; // -10 dBm0, as most phones send

export function digitToEventCode(digit: string): number {
  const i = EVENT_CODES.indexOf(digit.toUpperCase());
  if (digit.length !== 1 || i < 0) throw new Error(`not a DTMF digit: ${JSON.stringify(digit)}`);
  return i;
}

export function eventCodeToDigit(code: number): string {
  return code < EVENT_CODES.length ? EVENT_CODES[code]! : `E${code}`;
}

/** G.711 A-law encoder (the demo agent's; the inverse of tone.ts's alawToLinear). */
export { linearToAlaw } from '../../src/sandbox/demo-agent/g711';

interface OutgoingEvent {
  code: number;
  pt: number;
  /** Duration in samples (8 kHz). */
  samples: number;
  resolve: () => void;
  reject: (err: Error) => void;
  /** Set once the first packet is sent. */
  startTs?: number;
  sentPackets?: number;
  endPackets?: number;
}

/**
 * The agent's desk phone media: a plain RTP endpoint on loopback that sends a G.711 tone and listens
 * for another. Symmetric RTP: it answers toward wherever the bridge's media comes from (or toward the
 * port given to `retarget`).
 *
 * It also speaks RFC 4733: received telephone-events on `dtmfPayloadTypes` land in `digits`, and
 * `sendDigit` puts an event into the outgoing stream (same SSRC and clock) in place of the tone.
 */
export class RtpPhone {
  private readonly socket = dgram.createSocket('udp4');
  private remote: { address: string; port: number } | null = null;
  private timer: NodeJS.Timeout | null = null;
  private seq = Math.floor(Math.random() * 0x10000);
  private ts = Math.floor(Math.random() * 0x100000000);
  private readonly ssrc = Math.floor(Math.random() * 0xffffffff);
  private payloadType: 0 | 8;
  private muted = false;
  /** Marker bit on the next packet: the start of a talkspurt (after a mute) or of an event. */
  private markNext = false;
  private stopped = false;
  private readonly outgoing: OutgoingEvent[] = [];
  /** Received events by `ssrc:timestamp:pt`: first arrival, and whether its end has been counted. */
  private readonly rxEvents = new Map<string, { startedAt: number; ended: boolean }>();
  private packetWaiters: Array<{ pt: number; n: number; resolve: () => void; reject: (e: Error) => void; timer: NodeJS.Timeout }> = [];
  private digitWaiters: Array<{ n: number; resolve: (d: ReceivedDigit[]) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }> = [];
  private dtmfPts: Set<number>;

  readonly heard: ToneDetector;
  /** Audio (PCMU/PCMA) packets received. */
  packetsIn = 0;
  /** Packets sent, audio and telephone-event alike. */
  packetsOut = 0;
  /** Every RTP packet received, by payload type. */
  readonly packetsByPt: Record<number, number> = {};
  /** Audio packets received, by sender (`address:port`): shows whose media reaches the phone after a move. */
  readonly packetsBySource = new Map<string, number>();
  /** Telephone-events received, one entry per event, in arrival order. */
  readonly digits: ReceivedDigit[] = [];

  constructor(private readonly sendFreq: number, listenFreq: number, opts: RtpPhoneOptions = {}) {
    this.heard = new ToneDetector(listenFreq);
    this.dtmfPts = new Set(opts.dtmfPayloadTypes ?? [101]);
    this.payloadType = opts.payloadType ?? 0;
    this.followSource = opts.followSource ?? false;
    this.rtcp = opts.rtcp ? new RtcpReporter(this.ssrc) : null;
  }

  /** The RTCP side (opts.rtcp), with its counts of sender reports in and receiver reports out. */
  readonly rtcp: RtcpReporter | null;

  private readonly followSource: boolean;

  get dtmfPayloadTypes(): number[] {
    return [...this.dtmfPts];
  }

  /** Which payload types are decoded as telephone-events. */
  setDtmfPayloadTypes(pts: number[]): void {
    this.dtmfPts = new Set(pts);
  }

  async start(): Promise<number> {
    this.socket.on('message', (msg, rinfo) => this.onPacket(msg, rinfo));
    await new Promise<void>((resolve) => this.socket.bind(0, '127.0.0.1', resolve));
    // RTCP on the next port up (RFC 3550); the SDP names only the RTP port.
    if (this.rtcp) await this.rtcp.bind(this.port + 1);
    this.timer = setInterval(() => this.sendFrame(), 20);
    return this.port;
  }

  get port(): number {
    return (this.socket.address() as AddressInfo).port;
  }

  /** Where packets go now (null until something was heard or `retarget` was called). */
  get remoteAddress(): { address: string; port: number } | null {
    return this.remote ? { ...this.remote } : null;
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.socket.close();
    this.rtcp?.close();
    for (const e of this.outgoing.splice(0)) e.reject(new Error('RtpPhone stopped before the digit was sent'));
    for (const w of this.packetWaiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(new Error(`RtpPhone stopped while waiting for ${w.n} packets of PT ${w.pt}`));
    }
    for (const w of this.digitWaiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(new Error(`RtpPhone stopped while waiting for ${w.n} digits (got ${this.digitString()})`));
    }
  }

  /**
   * Sends toward `port` (on `address`) from now on instead of waiting to hear the far end first.
   * Not needed with symmetric RTP; useful to start a stream toward a peer that waits to hear first.
   */
  retarget(port: number, address = '127.0.0.1'): void {
    this.remote = { address, port };
  }

  /** Outgoing audio codec: 0 PCMU or 8 PCMA. */
  setPayloadType(pt: 0 | 8): void {
    if (pt !== 0 && pt !== 8) throw new Error(`RtpPhone sends PCMU (0) or PCMA (8), not ${pt}`);
    this.payloadType = pt;
  }

  /**
   * Muted: no audio RTP at all (a held phone, or one with silence suppression). The RTP clock keeps
   * running and the first packet after unmuting carries the marker bit. Digits asked for with
   * `sendDigit` still go out while muted.
   */
  mute(on: boolean): void {
    if (this.muted && !on) this.markNext = true;
    this.muted = on;
  }

  get isMuted(): boolean {
    return this.muted;
  }

  /**
   * Sends one RFC 4733 event in the outgoing stream in place of the tone: one packet per 20 ms with
   * the event's start timestamp and a growing duration (marker on the first), then 3 end packets.
   * Resolves when the last end packet has gone out; calls queue up behind each other.
   */
  sendDigit(digit: string, durationMs = 100, pt = 101): Promise<void> {
    let code: number;
    try {
      code = digitToEventCode(digit);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.stopped) return Promise.reject(new Error('RtpPhone stopped'));
    if (!this.remote) return Promise.reject(new Error('RtpPhone has no remote yet: nothing heard and no retarget()'));
    const samples = Math.max(1, Math.round(durationMs * 8));
    if (samples > 0xffff) return Promise.reject(new Error(`digit too long for one event: ${durationMs} ms`));
    return new Promise((resolve, reject) => this.outgoing.push({ code, pt, samples, resolve, reject }));
  }

  /** Sends each digit of `digits` in turn, `gapMs` of tone between them. */
  async sendDigits(digits: string, durationMs = 100, pt = 101, gapMs = 60): Promise<void> {
    for (let i = 0; i < digits.length; i++) {
      if (i > 0 && gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
      await this.sendDigit(digits[i]!, durationMs, pt);
    }
  }

  /** Resolves with the received digits once at least `n` events have ended. */
  waitDigits(n: number, timeoutMs = 5000): Promise<ReceivedDigit[]> {
    if (this.digits.length >= n) return Promise.resolve(this.digits.slice());
    if (this.stopped) return Promise.reject(new Error('RtpPhone stopped'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.digitWaiters = this.digitWaiters.filter((w) => w.timer !== timer);
        reject(new Error(`RtpPhone: ${n} digits not received within ${timeoutMs} ms (got ${JSON.stringify(this.digitString())}; packets by PT ${JSON.stringify(this.packetsByPt)})`));
      }, timeoutMs);
      this.digitWaiters.push({ n, resolve, reject, timer });
    });
  }

  /** Resolves once `n` packets of payload type `pt` have been received in all. */
  whenPackets(pt: number, n: number, timeoutMs = 5000): Promise<void> {
    if ((this.packetsByPt[pt] ?? 0) >= n) return Promise.resolve();
    if (this.stopped) return Promise.reject(new Error('RtpPhone stopped'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.packetWaiters = this.packetWaiters.filter((w) => w.timer !== timer);
        reject(new Error(`RtpPhone: ${n} packets of PT ${pt} not received within ${timeoutMs} ms (packets by PT ${JSON.stringify(this.packetsByPt)})`));
      }, timeoutMs);
      this.packetWaiters.push({ pt, n, resolve, reject, timer });
    });
  }

  /** The received digits as one string, e.g. '159#'. */
  digitString(): string {
    return this.digits.map((d) => d.digit).join('');
  }

  private onPacket(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (msg.length < 12 || (msg[0]! & 0xc0) !== 0x80) return;
    const pt = msg[1]! & 0x7f;
    if (pt >= 72 && pt <= 76) return; // RTCP (SR/RR/SDES/BYE/APP) multiplexed on this port
    const count = (this.packetsByPt[pt] = (this.packetsByPt[pt] ?? 0) + 1);
    if (this.packetWaiters.length) {
      this.packetWaiters = this.packetWaiters.filter((w) => (w.pt === pt && count >= w.n ? (clearTimeout(w.timer), w.resolve(), false) : true));
    }
    const cc = msg[0]! & 0x0f;
    let end = msg.length;
    if (msg[0]! & 0x20) end -= msg[msg.length - 1]!; // padding
    let offset = 12 + cc * 4;
    if (msg[0]! & 0x10) {
      if (msg.length < offset + 4) return;
      offset += 4 + msg.readUInt16BE(offset + 2) * 4; // header extension
    }
    if (offset > end) return;
    const payload = msg.subarray(offset, end);

    if (this.dtmfPts.has(pt)) {
      this.remote ??= { address: rinfo.address, port: rinfo.port };
      this.onEvent(msg.readUInt32BE(8), msg.readUInt32BE(4), pt, payload);
      return;
    }
    if (pt !== 0 && pt !== 8) return;
    if (this.followSource) this.remote = { address: rinfo.address, port: rinfo.port };
    else this.remote ??= { address: rinfo.address, port: rinfo.port };
    this.packetsIn++;
    const source = `${rinfo.address}:${rinfo.port}`;
    this.packetsBySource.set(source, (this.packetsBySource.get(source) ?? 0) + 1);
    this.rtcp?.onRtp(msg.readUInt32BE(8), msg.readUInt16BE(2), msg.readUInt32BE(4), performance.now());
    const pcm = new Int16Array(payload.length);
    for (let i = 0; i < payload.length; i++) pcm[i] = pt === 0 ? ulawToLinear(payload[i]!) : alawToLinear(payload[i]!);
    this.heard.feed(pcm, 8000, performance.now());
  }

  private onEvent(ssrc: number, ts: number, pt: number, payload: Buffer): void {
    if (payload.length < 4) return;
    const now = performance.now();
    const key = `${ssrc}:${ts}:${pt}`;
    let ev = this.rxEvents.get(key);
    if (!ev) {
      ev = { startedAt: now, ended: false };
      this.rxEvents.set(key, ev);
      if (this.rxEvents.size > 1000) this.rxEvents.delete(this.rxEvents.keys().next().value!);
    }
    const isEnd = (payload[1]! & 0x80) !== 0;
    if (!isEnd || ev.ended) return; // still going, or a retransmitted end packet
    ev.ended = true;
    this.digits.push({ digit: eventCodeToDigit(payload[0]!), durationMs: payload.readUInt16BE(2) / 8, pt, at: now, startedAt: ev.startedAt });
    this.digitWaiters = this.digitWaiters.filter((w) => {
      if (this.digits.length < w.n) return true;
      clearTimeout(w.timer);
      w.resolve(this.digits.slice());
      return false;
    });
  }

  private header(pt: number, marker: boolean, ts: number, payloadLength: number): Buffer {
    const pkt = Buffer.alloc(12 + payloadLength);
    pkt[0] = 0x80;
    pkt[1] = (marker ? 0x80 : 0) | pt;
    pkt.writeUInt16BE(this.seq & 0xffff, 2);
    this.seq = (this.seq + 1) & 0xffff;
    pkt.writeUInt32BE(ts >>> 0, 4);
    pkt.writeUInt32BE(this.ssrc >>> 0, 8);
    return pkt;
  }

  private sendFrame(): void {
    if (!this.remote || this.stopped) return;
    const ev = this.outgoing[0];
    if (ev) {
      this.sendEventPacket(ev);
    } else if (!this.muted) {
      const pcm = sineFrame(this.sendFreq, 8000, SAMPLES_PER_FRAME, this.ts);
      const pkt = this.header(this.payloadType, this.markNext, this.ts, SAMPLES_PER_FRAME);
      this.markNext = false;
      for (let i = 0; i < SAMPLES_PER_FRAME; i++) pkt[12 + i] = this.payloadType === 0 ? linearToUlaw(pcm[i]!) : linearToAlaw(pcm[i]!);
      this.packetsOut++;
      this.socket.send(pkt, this.remote.port, this.remote.address);
    }
    // The RTP clock runs on whether or not anything was sent.
    this.ts = (this.ts + SAMPLES_PER_FRAME) >>> 0;
  }

  private sendEventPacket(ev: OutgoingEvent): void {
    let marker = false;
    if (ev.startTs === undefined) {
      ev.startTs = this.ts;
      ev.sentPackets = 0;
      ev.endPackets = 0;
      marker = true;
    }
    let end = false;
    let duration: number;
    if (ev.sentPackets! * SAMPLES_PER_FRAME < ev.samples) {
      ev.sentPackets!++;
      duration = Math.min(ev.sentPackets! * SAMPLES_PER_FRAME, ev.samples);
      // The packet that reaches the full duration is already the first end packet.
      if (duration >= ev.samples) {
        end = true;
        ev.endPackets!++;
      }
    } else {
      duration = ev.samples;
      end = true;
      ev.endPackets!++;
    }
    const pkt = this.header(ev.pt, marker, ev.startTs, 4);
    pkt[12] = ev.code;
    pkt[13] = (end ? 0x80 : 0) | EVENT_VOLUME;
    pkt.writeUInt16BE(duration, 14);
    this.packetsOut++;
    this.socket.send(pkt, this.remote!.port, this.remote!.address);
    if (ev.endPackets! >= END_PACKETS) {
      this.outgoing.shift();
      // Audio after the event starts a new talkspurt only if it was muted; otherwise it just goes on.
      ev.resolve();
    }
  }
}
