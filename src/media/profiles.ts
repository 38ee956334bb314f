import { NgParams } from 'rtpengine-client';
import { CodecPolicy } from '../config/codec-policy';
import { hasSdesKeys, withoutDtls } from './sdp';

export type { CodecPolicy } from '../config/codec-policy';

/** rtpengine ng flags for each direction of the bridge (see DESIGN.md, verified with rtpengine 10.5). */

export interface MediaPlanOptions {
  /** rtpengine's logical interfaces facing each side (--interface=NAME/LOCAL[!ADVERTISED]). */
  interfaces: { whatsapp: string; pbx: string };
  /** The codecs the PBX leg may use (rtpengine transcodes opus to them). */
  pbxCodecs: string[];
  /** SRTP keyed in the SDP (RFC 4568) on the PBX leg, or plain RTP. */
  pbxSrtp: 'off' | 'sdes';
  /** What the bridge offers WhatsApp on an agent's call (see CodecPolicy); default 'transcode'. */
  codecPolicy?: CodecPolicy;
  /**
   * How SRTP is keyed on the WhatsApp leg: DTLS with ICE (WebRTC: the providers' APIs, and Meta's SIP by
   * default) or SDES keys in the SDP, no ICE (Meta's SIP with srtp_key_exchange_protocol SDES). Default 'dtls'.
   */
  waSrtp?: 'dtls' | 'sdes';
}

/** The SDES suites other than AES_CM_128_HMAC_SHA1_80, the one Meta offers and takes: left out of offers to it. */
export const SDES_SUITES_BUT_META = [
  'AEAD_AES_256_GCM', 'AEAD_AES_128_GCM', 'AES_256_CM_HMAC_SHA1_80', 'AES_256_CM_HMAC_SHA1_32', 'AES_192_CM_HMAC_SHA1_80',
  'AES_192_CM_HMAC_SHA1_32', 'AES_CM_128_HMAC_SHA1_32', 'F8_128_HMAC_SHA1_80', 'F8_128_HMAC_SHA1_32', 'NULL_HMAC_SHA1_80', 'NULL_HMAC_SHA1_32',
];

const G711 = ['PCMU', 'PCMA'];

/**
 * The ng parameters of every offer and answer, by who sends the SDP. Each names rtpengine's
 * interfaces in `direction`: first the side the SDP comes from, then the side it goes to (so WhatsApp
 * is given the WhatsApp-facing interface's advertised public address, and the PBX the PBX-facing
 * one's). rtpengine 10.5 keeps an answer on the offer's interfaces only when the answer's direction is
 * given this way round too.
 */
export class MediaPlan {
  private readonly toPbx: [string, string];
  private readonly toWa: [string, string];

  constructor(private readonly o: MediaPlanOptions) {
    this.toPbx = [o.interfaces.whatsapp, o.interfaces.pbx];
    this.toWa = [o.interfaces.pbx, o.interfaces.whatsapp];
  }

  /** The codecs the PBX leg may use, in order of preference. */
  get pbxCodecs(): string[] {
    return this.o.pbxCodecs;
  }

  /** The same plan with another number's PBX codecs and codec policy (interfaces and SRTP are the bridge's). */
  withCodecs(pbxCodecs: string[], codecPolicy: CodecPolicy | undefined): MediaPlan {
    return new MediaPlan({ ...this.o, pbxCodecs, codecPolicy });
  }

  /** How the WhatsApp leg is keyed (see MediaPlanOptions.waSrtp). */
  get waSrtp(): 'dtls' | 'sdes' {
    return this.o.waSrtp ?? 'dtls';
  }

  /**
   * WhatsApp offer (WebRTC, opus) -> plain RTP (or SDES-SRTP) toward the PBX, transcoding to its codecs
   * (a codec WhatsApp offered itself is passed through by rtpengine, not transcoded).
   */
  waOfferToPbx(): NgParams {
    return {
      direction: this.toPbx,
      'transport-protocol': this.o.pbxSrtp === 'sdes' ? 'RTP/SAVP' : 'RTP/AVP',
      ICE: 'remove',
      DTLS: 'off',
      // RTP/SAVP: rtpengine offers its SDES crypto suites; otherwise none.
      ...(this.o.pbxSrtp === 'sdes' ? {} : { SDES: ['off'] }),
      'rtcp-mux': ['demux'],
      replace: ['origin', 'session-connection'],
      // Lets the bridge inject the WhatsApp user's digits toward the PBX (see CallMedia.injectDigit).
      flags: ['inject-DTMF'],
      // rtpengine answers each side's RTCP itself, so every receiver report yields quality figures.
      'generate RTCP': 'on',
      codec: { mask: ['opus'], transcode: this.o.pbxCodecs },
    };
  }

  /** The G.711 codecs both PBX_CODECS and the PBX's `offer` have, in PBX_CODECS order; none unless `prefer-g711`. */
  g711InCommon(offer: string): string[] {
    if (this.o.codecPolicy !== 'prefer-g711') return [];
    const offered = new Set(offeredAudioCodecs(offer));
    return this.o.pbxCodecs.filter((c) => G711.includes(c) && offered.has(c));
  }

  /** The PBX's answer (plain RTP or SDES-SRTP) -> the WebRTC answer for WhatsApp. */
  pbxAnswerToWa(): NgParams {
    return {
      direction: this.toWa,
      replace: ['origin', 'session-connection'],
      flags: ['full-rtcp-attribute', 'inject-DTMF'],
    };
  }

  /**
   * The PBX's offer (RTP or SRTP, G.711/G.722) -> a WebRTC offer for WhatsApp: ICE, DTLS-SRTP,
   * rtcp-mux, opus. The PBX's SDP goes with it as rtpengine is to see it (see pbxOfferSdp). Under
   * `prefer-g711`, the PBX's G.711 codecs are offered to WhatsApp as they are, ahead of a transcoded opus:
   * a WhatsApp that answers G.711 costs rtpengine no transcoding.
   */
  pbxOfferToWa(pbxSdp: string): NgParams {
    const g711 = this.g711InCommon(pbxSdp);
    return {
      sdp: this.pbxOfferSdp(pbxSdp),
      direction: this.toWa,
      ...this.waKeying(),
      replace: ['origin', 'session-connection'],
      flags: ['generate-mid', 'full-rtcp-attribute', 'inject-DTMF'],
      'generate RTCP': 'on',
      codec: g711.length > 0
        ? { transcode: ['opus/48000/2'], mask: ['G722', ...G711.filter((c) => !g711.includes(c))] }
        : { transcode: ['opus/48000/2'], mask: ['G722', 'PCMU', 'PCMA'] },
    };
  }

  /**
   * The WhatsApp leg's transport in an offer to it: WebRTC (ICE, DTLS-SRTP, rtcp-mux), or for a Meta SIP
   * number keyed by SDES, RTP/SAVP with the one suite Meta takes and no ICE.
   */
  private waKeying(): NgParams {
    return this.waSrtp === 'sdes'
      ? { 'transport-protocol': 'RTP/SAVP', ICE: 'remove', DTLS: 'off', SDES: SDES_SUITES_BUT_META.map((s) => `no-${s}`) }
      : { 'transport-protocol': 'UDP/TLS/RTP/SAVPF', ICE: 'force', SDES: ['off'], 'rtcp-mux': ['require'] };
  }

  /** WhatsApp's answer (WebRTC) -> the answer for the PBX (SRTP where the PBX offered it). */
  waAnswerToPbx(): NgParams {
    return { direction: this.toPbx, replace: ['origin', 'session-connection'], flags: ['inject-DTMF'] };
  }

  /**
   * A PBX offer as rtpengine is to see it. With SDES configured, a PBX offering both DTLS-SRTP and SDES
   * keys (as rtpengine itself does for RTP/SAVP) is answered with SDES: rtpengine 10.5 picks DTLS when
   * the fingerprint is there, so the DTLS attributes are taken out.
   */
  private pbxOfferSdp(sdp: string): string {
    return this.o.pbxSrtp === 'sdes' && hasSdesKeys(sdp) ? withoutDtls(sdp) : sdp;
  }
}

const STATIC_AUDIO: Record<string, string> = { '0': 'PCMU', '8': 'PCMA', '9': 'G722' };

/** The encoding names on an SDP's audio line (rtpmap, else the static payload types), upper case. */
export function offeredAudioCodecs(sdp: string): string[] {
  const lines = sdp.split(/\r?\n/);
  const audio = lines.find((l) => l.startsWith('m=audio '));
  if (!audio) return [];
  return audio.split(' ').slice(3).map((pt) => {
    const rtpmap = lines.find((l) => l.startsWith(`a=rtpmap:${pt} `));
    return (rtpmap ? rtpmap.slice(`a=rtpmap:${pt} `.length).split('/')[0]! : STATIC_AUDIO[pt] ?? pt).toUpperCase();
  });
}
