import { performance } from 'node:perf_hooks';
import { sineFrame, ToneDetector } from './tone';

/* Minimal typings for the parts of @roamhq/wrtc (libwebrtc) the WhatsApp-user simulator uses. */
interface Track { stop(): void }
interface SessionDescription { type: 'offer' | 'answer'; sdp: string }
interface PeerConnection {
  addTrack(track: Track, ...streams: unknown[]): unknown;
  createOffer(): Promise<SessionDescription>;
  createAnswer(): Promise<SessionDescription>;
  setLocalDescription(d: SessionDescription): Promise<void>;
  setRemoteDescription(d: SessionDescription): Promise<void>;
  readonly localDescription: SessionDescription | null;
  readonly iceGatheringState: string;
  readonly connectionState: string;
  onicegatheringstatechange: (() => void) | null;
  onconnectionstatechange: (() => void) | null;
  ontrack: ((e: { track: Track }) => void) | null;
  close(): void;
  getStats(): Promise<{ forEach(cb: (stat: Record<string, unknown>) => void): void }>;
}
interface AudioData { samples: Int16Array; sampleRate: number; channelCount?: number }
interface Wrtc {
  RTCPeerConnection: new (cfg: { iceServers: unknown[] }) => PeerConnection;
  nonstandard: {
    RTCAudioSource: new () => { createTrack(): Track; onData(d: AudioData & { bitsPerSample: number; channelCount: number; numberOfFrames: number }): void };
    RTCAudioSink: new (t: Track) => { stop(): void; ondata: ((d: AudioData) => void) | null };
  };
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const wrtc = require('@roamhq/wrtc') as Wrtc;

/**
 * A WhatsApp user's phone: a real libwebrtc peer that offers opus only (as Meta's media servers do),
 * sends a tone once connected, and records when it first hears the other side's tone.
 */
export class WaUser {
  private readonly pc = new wrtc.RTCPeerConnection({ iceServers: [] });
  private readonly source = new wrtc.nonstandard.RTCAudioSource();
  private readonly track = this.source.createTrack();
  private sink: { stop(): void; ondata: ((d: AudioData) => void) | null } | null = null;
  private timer: NodeJS.Timeout | null = null;
  private sample = 0;
  readonly heard: ToneDetector;
  /** Extra detectors (see `listen`), fed the same received audio as `heard`. */
  private readonly detectors: ToneDetector[] = [];
  connectedAt: number | null = null;
  private connectedWaiters: Array<() => void> = [];

  constructor(private readonly sendFreq: number, listenFreq: number) {
    this.heard = new ToneDetector(listenFreq);
    this.pc.addTrack(this.track);
    this.pc.ontrack = (e) => {
      this.sink = new wrtc.nonstandard.RTCAudioSink(e.track);
      this.sink.ondata = (d) => {
        const mono = (d.channelCount ?? 1) === 1 ? d.samples : d.samples.filter((_, i) => i % (d.channelCount ?? 1) === 0);
        const at = performance.now();
        this.heard.feed(mono, d.sampleRate, at);
        for (const det of this.detectors) det.feed(mono, d.sampleRate, at);
      };
    };
    this.pc.onconnectionstatechange = () => {
      if (this.pc.connectionState === 'connected') {
        this.connectedAt ??= performance.now();
        for (const w of this.connectedWaiters.splice(0)) w();
      }
    };
  }

  /** An SDP offer shaped like WhatsApp's: opus/48000/2 and telephone-event only, candidates inline. */
  async createOffer(): Promise<string> {
    const offer = await this.pc.createOffer();
    await this.pc.setLocalDescription(offer);
    await this.gathered();
    return opusOnly(loopbackOnly(this.pc.localDescription!.sdp));
  }

  /** As the called party (business-initiated call): answers the bridge's WebRTC offer. */
  async answer(offer: string): Promise<string> {
    await this.pc.setRemoteDescription({ type: 'offer', sdp: offer });
    const answer = await this.pc.createAnswer();
    await this.pc.setLocalDescription(answer);
    await this.gathered();
    this.startTone();
    return loopbackOnly(this.pc.localDescription!.sdp);
  }

  private gathered(): Promise<void> {
    return new Promise<void>((resolve) => {
      if (this.pc.iceGatheringState === 'complete') return resolve();
      this.pc.onicegatheringstatechange = () => {
        if (this.pc.iceGatheringState === 'complete') resolve();
      };
    });
  }

  async applyAnswer(sdp: string): Promise<void> {
    await this.pc.setRemoteDescription({ type: 'answer', sdp });
    this.startTone();
  }

  /** Listens for another tone in what the user receives (e.g. a second agent, music on hold). */
  listen(freq: number, minShare?: number): ToneDetector {
    const det = new ToneDetector(freq, undefined, minShare);
    this.detectors.push(det);
    return det;
  }

  /**
   * Packets received so far on the media transport (libwebrtc's transport stats: SRTP and SRTCP),
   * falling back to the inbound-rtp stats. The transport count survives a change of the sender's SSRC,
   * which replaces libwebrtc's inbound-rtp entry (and its count) for an unsignalled stream.
   */
  async packetsReceived(): Promise<number> {
    let transport: number | null = null;
    let rtp = 0;
    (await this.pc.getStats()).forEach((s) => {
      if (s.type === 'transport') transport = (transport ?? 0) + Number(s.packetsReceived ?? 0);
      if (s.type === 'inbound-rtp' && (s.kind ?? s.mediaType) === 'audio') rtp += Number(s.packetsReceived ?? 0);
    });
    return transport ?? rtp;
  }

  connected(): Promise<void> {
    if (this.connectedAt !== null) return Promise.resolve();
    return new Promise((resolve) => this.connectedWaiters.push(resolve));
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.sink?.stop();
    this.track.stop();
    this.pc.close();
  }

  private startTone(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      const samples = sineFrame(this.sendFreq, 48000, 480, this.sample);
      this.sample += 480;
      this.source.onData({ samples, sampleRate: 48000, bitsPerSample: 16, channelCount: 1, numberOfFrames: 480 });
    }, 10);
  }
}

/** Keeps only opus and telephone-event in the audio m-line, as WhatsApp's offers do. */
export function opusOnly(sdp: string): string {
  const lines = sdp.split('\r\n');
  const keep = new Set<string>();
  for (const l of lines) {
    const m = /^a=rtpmap:(\d+) (opus\/48000|telephone-event\/8000)/i.exec(l);
    if (m) keep.add(m[1]!);
  }
  const out: string[] = [];
  for (const l of lines) {
    if (l.startsWith('m=audio ')) {
      const parts = l.split(' ');
      out.push([...parts.slice(0, 3), ...parts.slice(3).filter((p) => keep.has(p))].join(' '));
      continue;
    }
    const pt = /^a=(?:rtpmap|fmtp|rtcp-fb):(\d+)/.exec(l);
    if (pt && !keep.has(pt[1]!)) continue;
    out.push(l);
  }
  return out.join('\r\n');
}

/** Tests send traffic to loopback only: keep the UDP candidate on 127.0.0.1 and point c=/m= at it. */
export function loopbackOnly(sdp: string): string {
  const lines = sdp.split('\r\n').filter((l) => !l.startsWith('a=candidate:') || / udp \d+ 127\.0\.0\.1 \d+ typ host/.test(l));
  const cand = lines.find((l) => l.startsWith('a=candidate:'));
  const port = cand ? / 127\.0\.0\.1 (\d+) /.exec(cand)?.[1] : undefined;
  if (!port) throw new Error('libwebrtc gathered no UDP candidate on 127.0.0.1');
  return lines
    .map((l) => (l.startsWith('c=IN IP4 ') ? 'c=IN IP4 127.0.0.1' : l))
    .map((l) => (l.startsWith('m=audio ') ? l.replace(/^m=audio \d+/, `m=audio ${port}`) : l))
    .join('\r\n');
}
