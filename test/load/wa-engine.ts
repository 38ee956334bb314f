import { NgParams } from 'rtpengine-client';
import { offeredAudioCodecs } from '../../src/media/profiles';
import { NgAddress, RtpEngine } from '../../src/media/rtpengine';
import { summarizeMediaStats } from '../../src/media/stats';
import { LoadOptions } from './options';
import { OPUS_PT, SourceCodec } from './rtp-source';

/** Tags of the two sides of a call in the WhatsApp-side rtpengine. */
const USER = 'user';
const META = 'meta';

/** What the load generator's RTP source offers: PCMU, PCMU and PCMA, or opus (as WhatsApp's apps send it). */
export type PlainKind = 'pcmu' | 'g711' | 'opus';

/**
 * A plain RTP SDP for the load generator's RTP source. `events`: with telephone-event/8000. An answer to
 * the bridge's offer goes without: that offer pairs the events with opus at 48 kHz, and a different
 * telephone-event in the answer makes rtpengine transcode opus in the load generator's engine.
 */
export function plainSdp(port: number, kind: PlainKind, events = true): string {
  const codecs = kind === 'opus'
    ? [`m=audio ${port} RTP/AVP ${OPUS_PT}${events ? ' 126' : ''}`, `a=rtpmap:${OPUS_PT} opus/48000/2`, `a=fmtp:${OPUS_PT} minptime=10;useinbandfec=1`, ...(events ? ['a=rtpmap:126 telephone-event/8000'] : [])]
    : [`m=audio ${port} RTP/AVP 0${kind === 'g711' ? ' 8' : ''} 101`, 'a=rtpmap:0 PCMU/8000', ...(kind === 'g711' ? ['a=rtpmap:8 PCMA/8000'] : []), 'a=rtpmap:101 telephone-event/8000'];
  return ['v=0', 'o=- 1 1 IN IP4 127.0.0.1', 's=-', 'c=IN IP4 127.0.0.1', 't=0 0', ...codecs, 'a=sendrecv', ''].join('\r\n');
}

export function audioPort(sdp: string): number {
  const m = /^m=audio (\d+) /m.exec(sdp);
  if (!m) throw new Error('SDP without an audio line');
  return Number(m[1]);
}

/**
 * The WhatsApp side of the load test: a second rtpengine that turns the load generator's plain RTP into
 * a WebRTC endpoint (ICE, DTLS-SRTP, rtcp-mux; opus, or G.711 with `waCodec` pcmu), so the bridge's
 * rtpengine talks DTLS and SRTP to a real peer without a libwebrtc stack per call.
 */
export class WaEngine {
  constructor(private readonly rtp: RtpEngine, private readonly ng: NgAddress, private readonly o: Pick<LoadOptions, 'waCodec' | 'waOpusBy' | 'waOpusOptions'>) {}

  /** What the RTP source must send. */
  get sourceCodec(): SourceCodec {
    return this.o.waCodec === 'opus' && this.o.waOpusBy === 'source' ? 'opus' : 'pcmu';
  }

  /** rtpengine transcodes the source's PCMU to opus itself. */
  private get transcodes(): boolean {
    return this.o.waCodec === 'opus' && this.o.waOpusBy === 'rtpengine';
  }

  private get opus(): string {
    return this.o.waOpusOptions ? `opus/48000/2////${this.o.waOpusOptions}` : 'opus/48000/2';
  }

  /** Inbound: the WhatsApp user's WebRTC offer for the connect webhook, made from the source's plain SDP. */
  async userOffer(callId: string, sourcePort: number): Promise<string> {
    const res = await this.rtp.offer(this.ng, {
      'call-id': callId, 'from-tag': USER, sdp: plainSdp(sourcePort, this.o.waCodec === 'pcmu' ? 'g711' : this.sourceCodec),
      'transport-protocol': 'UDP/TLS/RTP/SAVPF', ICE: 'force', SDES: ['off'], 'rtcp-mux': ['offer'],
      replace: ['origin', 'session-connection'], flags: ['generate-mid', 'full-rtcp-attribute'],
      // An opus-only WhatsApp offer as ever (from the source's opus, or transcoded from its PCMU), or G.711 only.
      ...(this.transcodes ? { codec: { mask: ['PCMU'], transcode: [this.opus] } } : {}),
    });
    return String(res.sdp ?? '');
  }

  /** Inbound: the bridge's answer (preAccept/accept) reaches the user; returns the port the source sends to. */
  async userGetsAnswer(callId: string, answerSdp: string): Promise<number> {
    const res = await this.rtp.answer(this.ng, { 'call-id': callId, 'from-tag': USER, 'to-tag': META, sdp: answerSdp, replace: ['origin', 'session-connection'] });
    return audioPort(String(res.sdp ?? ''));
  }

  /**
   * Outbound: the user's phone answers the bridge's WebRTC offer (from calls/connect). Returns the WebRTC
   * answer for the connect webhook and the port the source sends to.
   */
  async userAnswers(callId: string, bridgeOffer: string, sourcePort: number): Promise<{ answer: string; port: number }> {
    const offered = new Set(offeredAudioCodecs(bridgeOffer));
    const codec: NgParams = this.o.waCodec === 'pcmu'
      ? (offered.has('PCMU') ? {} : { mask: ['opus'], transcode: ['PCMU'] }) // G.711 end to end where the bridge offers it
      : this.transcodes
        ? { strip: ['PCMU', 'PCMA', 'G722'], mask: ['opus'], transcode: ['PCMU'] } // (opus encoder options apply to inbound offers only)
        : { strip: ['PCMU', 'PCMA', 'G722'] }; // WhatsApp answers opus
    const toSource = await this.rtp.offer(this.ng, {
      'call-id': callId, 'from-tag': META, sdp: bridgeOffer, 'transport-protocol': 'RTP/AVP', ICE: 'remove', DTLS: 'off', SDES: ['off'],
      'rtcp-mux': ['demux'], replace: ['origin', 'session-connection'], ...(Object.keys(codec).length ? { codec } : {}),
    });
    const port = audioPort(String(toSource.sdp ?? ''));
    const res = await this.rtp.answer(this.ng, {
      'call-id': callId, 'from-tag': META, 'to-tag': USER, sdp: plainSdp(sourcePort, this.sourceCodec, false), replace: ['origin', 'session-connection'],
      flags: ['full-rtcp-attribute'],
    });
    return { answer: String(res.sdp ?? ''), port };
  }

  /** Packets the WhatsApp-side rtpengine received from the bridge (`fromBridge`) and from the source. */
  async packets(callId: string): Promise<{ fromBridge: number; fromSource: number; bridgeCodec: string | null }> {
    const stats = summarizeMediaStats(await this.rtp.query(this.ng, { 'call-id': callId }), { [USER]: 'user', [META]: 'meta' });
    return { fromBridge: stats.legs.meta?.packets ?? 0, fromSource: stats.legs.user?.packets ?? 0, bridgeCodec: stats.legs.meta?.codec ?? null };
  }

  async delete(callId: string): Promise<void> {
    await this.rtp.delete(this.ng, { 'call-id': callId }).catch(() => undefined);
  }
}
