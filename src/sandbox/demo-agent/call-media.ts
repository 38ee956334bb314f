import dgram from 'node:dgram';
import { randomInt } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../../log';
import { TypedEmitter } from '../../util/typed-emitter';
import { SILENCE_BYTE } from './g711';
import { FRAME_SAMPLES, type PromptSet } from './prompts';
import { eventDigit, parseRtp } from '../../media/rtp-packets';
import { buildRtp, parseTelephoneEvent } from './rtp';
import type { ChosenMedia } from './sdp';

const PACKET_MS = 20;
/** Caller audio waiting to be echoed, at most (older frames are dropped: the echo stays close to live). */
const ECHO_MAX_FRAMES = 10;
/** Frames gathered before echoing restarts after running dry, so network jitter does not chop it. */
const ECHO_PRIME_FRAMES = 2;
/** Silence sent after a digit's name, so "four" "two" do not run together. */
const DIGIT_GAP_FRAMES = 4;
/** A stall longer than this (a blocked event loop) re-anchors the clock instead of bursting to catch up. */
const MAX_LAG_MS = 200;

export interface RemoteAddress {
  address: string;
  port: number;
}

export interface CallMediaEvents {
  /** A key from RFC 4733 telephone-events (counted once per event). */
  digit: [digit: string];
  /** The greeting's last packet went out; the echo starts. */
  'greeting-done': [];
  /** Nothing came from the caller for `silentMs`. */
  'media-timeout': [silentMs: number];
}

export interface CallMediaOptions {
  host: string;
  media: ChosenMedia;
  /** From the offer's c=/m= lines; replaced by the source of the caller's RTP once some arrives. */
  remote: RemoteAddress | null;
  prompts: PromptSet;
  log: Logger;
  /** 0: never. */
  mediaTimeoutMs: number;
}

/**
 * One call's audio: a UDP socket sending 20 ms G.711 packets on a drift-corrected clock. It plays the
 * greeting, then echoes what the caller sends; a digit's spoken name interrupts the echo until it is done.
 */
export class CallMedia extends TypedEmitter<CallMediaEvents> {
  private readonly socket = dgram.createSocket('udp4');
  private remote: RemoteAddress | null;
  private readonly ssrc = randomInt(1, 0xffffffff);
  private sequence = randomInt(0, 0xffff);
  private readonly firstTimestamp = randomInt(0, 0xffffffff);
  private packetsSent = 0;
  private clockStart = 0;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private sending = true;

  /** Prompt frames still to play (the greeting first, then digits' names). */
  private readonly promptQueue: Buffer[] = [];
  private greetingFramesLeft = 0;
  private echo: Buffer = Buffer.alloc(0);
  private echoPrimed = false;
  private lastEventKey: string | null = null;
  private lastHeardAt = 0;
  private timedOut = false;
  private readonly silence: Buffer;

  /** Packets received from the caller / sent to it. */
  readonly counts = { received: 0, sent: 0 };

  constructor(private readonly opts: CallMediaOptions) {
    super();
    this.remote = opts.remote;
    this.silence = Buffer.alloc(FRAME_SAMPLES, SILENCE_BYTE[opts.media.codec]);
    this.socket.on('message', (b, rinfo) => this.onPacket(b, { address: rinfo.address, port: rinfo.port }));
    this.socket.on('error', (err) => opts.log.warn({ err }, 'demo agent: RTP socket error'));
  }

  /** Binds the socket; returns its port (for the SDP). */
  open(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.socket.once('error', reject);
      this.socket.bind(0, this.opts.host, () => {
        this.socket.off('error', reject);
        resolve(this.socket.address().port);
      });
    });
  }

  /** Starts sending: the greeting first. */
  start(): void {
    if (this.closed || this.timer) return;
    const greeting = this.opts.prompts.greeting(this.opts.media.codec);
    this.promptQueue.unshift(...greeting);
    this.greetingFramesLeft = greeting.length;
    this.clockStart = performance.now();
    this.lastHeardAt = this.clockStart;
    this.tick();
  }

  /** A new address from a re-INVITE's SDP (symmetric RTP will correct it again when packets arrive). */
  setRemote(remote: RemoteAddress | null): void {
    if (remote) this.remote = remote;
  }

  /** False while the call is on hold from our side (answered recvonly/inactive). */
  setSending(sending: boolean): void {
    this.sending = sending;
  }

  /** Queues a digit's spoken name (the echo pauses while it plays). */
  say(digit: string): void {
    const frames = this.opts.prompts.digit(digit, this.opts.media.codec);
    if (frames.length === 0 || this.closed) return;
    this.promptQueue.push(...frames, ...Array.from({ length: DIGIT_GAP_FRAMES }, () => this.silence));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    try {
      this.socket.close();
    } catch {
      // already closed
    }
  }

  private tick = (): void => {
    this.timer = null;
    if (this.closed) return;
    const now = performance.now();
    // Due times come from the start, not from the last timer, so timer lateness never accumulates.
    if (now - (this.clockStart + this.packetsSent * PACKET_MS) > MAX_LAG_MS) {
      this.clockStart = now - this.packetsSent * PACKET_MS;
    }
    while (!this.closed && this.clockStart + this.packetsSent * PACKET_MS <= now) this.sendNext();
    if (this.closed) return;
    if (this.opts.mediaTimeoutMs > 0 && !this.timedOut && now - this.lastHeardAt > this.opts.mediaTimeoutMs) {
      this.timedOut = true;
      this.emit('media-timeout', Math.round(now - this.lastHeardAt));
      if (this.closed) return;
    }
    const next = this.clockStart + this.packetsSent * PACKET_MS;
    this.timer = setTimeout(this.tick, Math.max(1, next - performance.now()));
  };

  private sendNext(): void {
    let frame: Buffer;
    let greetingJustEnded = false;
    const prompt = this.promptQueue.shift();
    if (prompt) {
      frame = prompt;
      if (this.greetingFramesLeft > 0 && --this.greetingFramesLeft === 0) greetingJustEnded = true;
      if (this.promptQueue.length === 0) this.dropEcho(); // resume with what the caller says from now on
    } else if (this.echoPrimed && this.echo.length >= FRAME_SAMPLES) {
      frame = this.echo.subarray(0, FRAME_SAMPLES);
      this.echo = this.echo.subarray(FRAME_SAMPLES);
      if (this.echo.length < FRAME_SAMPLES) this.echoPrimed = false;
    } else {
      frame = this.silence;
    }
    const packet = buildRtp({
      payloadType: this.opts.media.pt,
      marker: this.packetsSent === 0,
      sequence: this.sequence,
      timestamp: (this.firstTimestamp + this.packetsSent * FRAME_SAMPLES) >>> 0,
      ssrc: this.ssrc,
      payload: frame,
    });
    this.sequence = (this.sequence + 1) & 0xffff;
    this.packetsSent++;
    if (this.sending && this.remote) {
      this.counts.sent++;
      this.socket.send(packet, this.remote.port, this.remote.address, (err) => {
        if (err && !this.closed) this.opts.log.debug({ err }, 'demo agent: RTP send failed');
      });
    }
    if (greetingJustEnded) this.emit('greeting-done');
  }

  private dropEcho(): void {
    this.echo = Buffer.alloc(0);
    this.echoPrimed = false;
  }

  private onPacket(b: Buffer, from: RemoteAddress): void {
    if (this.closed) return;
    const rtp = parseRtp(b);
    if (!rtp) return;
    const { pt, eventPt } = this.opts.media;
    if (rtp.payloadType !== pt && rtp.payloadType !== eventPt) return;
    this.counts.received++;
    this.lastHeardAt = performance.now();
    this.remote = from; // symmetric RTP: answer where the caller's packets come from
    if (rtp.payloadType === eventPt) {
      this.onTelephoneEvent(rtp.ssrc, rtp.timestamp, rtp.payload);
      return;
    }
    if (this.promptQueue.length > 0) return; // the echo pauses while a prompt plays
    let echo = Buffer.concat([this.echo, rtp.payload]);
    const max = ECHO_MAX_FRAMES * FRAME_SAMPLES;
    if (echo.length > max) echo = echo.subarray(echo.length - max);
    this.echo = echo;
    if (echo.length >= ECHO_PRIME_FRAMES * FRAME_SAMPLES) this.echoPrimed = true;
  }

  /**
   * RFC 4733: a sender repeats an event's packets (updates, then three end packets) all with the
   * event's start timestamp; so one digit per (SSRC, timestamp), counted at its first packet seen.
   */
  private onTelephoneEvent(ssrc: number, timestamp: number, payload: Buffer): void {
    const event = parseTelephoneEvent(payload);
    if (!event) return;
    const key = `${ssrc}:${timestamp}`;
    if (key === this.lastEventKey) return;
    this.lastEventKey = key;
    const digit = eventDigit(event.event);
    if (digit) this.emit('digit', digit);
  }
}
