import { NgParams } from 'rtpengine-client';
import { NgAddress, RtpEngine } from '../../../media/rtpengine';
import { summarizeMediaStats } from '../../../media/stats';
import { SDES_SUITES_BUT_META } from '../../../media/profiles';
import { onlyMetaCrypto, OPUS_TRANSCODE, phoneSdp, toMetaShape } from './sdp-shapes';
import type { MetaSrtp, RtpAddress } from './types';

/**
 * Meta's media, on the sim's own rtpengine: SRTP (DTLS with ICE-lite, or SDES) and opus on the leg
 * toward the bridge, plain RTP PCMU with telephone-event 101 toward the WhatsApp user's phone. Each
 * call is one rtpengine call with two tags: USER (the phone) and BUSINESS (the bridge).
 */

export const USER_TAG = 'wa-user';
export const BUSINESS_TAG = 'business';


/** ng flags for the SDP going toward the bridge (Meta's leg). `lite`: which way rtpengine plays ICE-lite. */
function metaLeg(mode: MetaSrtp, lite: 'forward' | 'backward'): NgParams {
  return mode === 'dtls'
    ? { 'transport-protocol': 'UDP/TLS/RTP/SAVPF', ICE: 'force', 'ICE-lite': lite, SDES: ['off'], 'rtcp-mux': ['require'] }
    // One AES_CM_128_HMAC_SHA1_80 key, as Meta offers (rtpengine would list twelve suites).
    : { 'transport-protocol': 'RTP/SAVP', ICE: 'remove', DTLS: 'off', SDES: SDES_SUITES_BUT_META.map((s) => `no-${s}`) };
}

/** The user's leg as a WebRTC peer sees it (the sandbox's browser phone): ICE, DTLS-SRTP, rtcp-mux. */
const WEBRTC_USER_LEG: NgParams = { 'transport-protocol': 'UDP/TLS/RTP/SAVPF', ICE: 'force', SDES: ['off'], 'rtcp-mux': ['require'] };

/** The WhatsApp user's media: a plain RTP phone, or a WebRTC peer's own SDP (offer or answer). */
export type UserMedia = { phone: RtpAddress } | { webrtcSdp: string };

export class SimMedia {
  constructor(private readonly ng: RtpEngine, private readonly at: NgAddress) {}

  /**
   * User-initiated: the user's offer -> Meta's offer to the bridge. A plain phone's PCMU gets opus (and
   * PCMA) added by transcoding; a WebRTC peer's opus and telephone-event/8000 pass as they are (G.711
   * added by transcoding with the option). The phone's own PCMU and telephone-event/8000 pass through.
   */
  async userOffer(callId: string, user: UserMedia, o: { mode: MetaSrtp; g711: boolean }): Promise<string> {
    const webrtc = 'webrtcSdp' in user;
    const leg = metaLeg(o.mode, 'forward');
    const res = await this.ng.offer(this.at, {
      'call-id': callId, 'from-tag': USER_TAG, sdp: webrtc ? user.webrtcSdp : phoneSdp(user.phone), replace: ['origin', 'session-connection'],
      ...leg,
      // A WebRTC peer offers rtcp-mux only: rtpengine accepts it on the user's leg, whatever Meta's leg does.
      ...(webrtc ? { 'rtcp-mux': [...((leg['rtcp-mux'] as string[] | undefined) ?? ['demux']), 'accept'] } : {}),
      codec: { transcode: webrtc ? (o.g711 ? ['PCMA', 'PCMU'] : []) : [OPUS_TRANSCODE, ...(o.g711 ? ['PCMA'] : [])] },
    });
    return toMetaShape(String(res.sdp), { g711: o.g711 });
  }

  /**
   * User-initiated: the bridge's answer (18x or 200) -> the SDP for the user: where a plain phone must
   * send, or a WebRTC peer's answer (ICE and DTLS-SRTP on the user's leg, as its offer asked).
   */
  async userAnswer(callId: string, bridgeSdp: string, o: { webrtc: boolean } = { webrtc: false }): Promise<string> {
    const res = await this.ng.answer(this.at, {
      'call-id': callId, 'from-tag': USER_TAG, 'to-tag': BUSINESS_TAG, sdp: bridgeSdp, replace: ['origin', 'session-connection'],
      ...(o.webrtc ? { ICE: 'force' } : {}),
    });
    return String(res.sdp);
  }

  /**
   * Business-initiated: the bridge's offer -> the offer for the user: plain RTP PCMU for a phone (where
   * it must send), or a WebRTC offer (ICE, DTLS-SRTP, rtcp-mux, the bridge's opus untouched) for a peer.
   */
  async businessOffer(callId: string, bridgeSdp: string, o: { mode: MetaSrtp; g711: boolean; webrtc?: boolean }): Promise<string> {
    const res = await this.ng.offer(this.at, {
      'call-id': callId, 'from-tag': BUSINESS_TAG, sdp: o.mode === 'sdes' ? onlyMetaCrypto(bridgeSdp) : bridgeSdp, replace: ['origin', 'session-connection'],
      ...(o.webrtc ? WEBRTC_USER_LEG : { 'transport-protocol': 'RTP/AVP', ICE: 'remove', DTLS: 'off', SDES: ['off'], 'rtcp-mux': ['demux'] }),
      // Meta plays ICE-lite toward the business, which therefore controls ICE.
      ...(o.mode === 'dtls' ? { 'ICE-lite': 'backward' } : {}),
      // Without the G.711 option Meta takes only opus from the business: its G.711 is left out.
      codec: { ...(o.g711 ? {} : { strip: ['PCMA', 'PCMU'] }), ...(o.webrtc ? {} : { mask: ['opus'], transcode: ['PCMU'] }) },
    });
    return String(res.sdp);
  }

  /** Business-initiated: the user's answer (a phone's plain one, or a WebRTC peer's) -> Meta's SDP answer to the bridge. */
  async businessAnswer(callId: string, user: UserMedia, o: { g711: boolean }): Promise<string> {
    const sdp = 'webrtcSdp' in user ? user.webrtcSdp : phoneSdp(user.phone);
    const res = await this.ng.answer(this.at, { 'call-id': callId, 'from-tag': BUSINESS_TAG, 'to-tag': USER_TAG, sdp, replace: ['origin', 'session-connection'] });
    return toMetaShape(String(res.sdp), { g711: o.g711 });
  }

  /** Meta sends nothing toward the business until the business's first packet: the user's media is held back. */
  async holdUserMedia(callId: string): Promise<void> {
    await this.ng.blockMedia(this.at, { 'call-id': callId, 'from-tag': USER_TAG });
  }

  async releaseUserMedia(callId: string): Promise<void> {
    await this.ng.unblockMedia(this.at, { 'call-id': callId, 'from-tag': USER_TAG });
  }

  /** RTP packets rtpengine received from each side so far. */
  async packets(callId: string): Promise<{ user: number; business: number }> {
    const stats = summarizeMediaStats(await this.ng.query(this.at, { 'call-id': callId }), {});
    return { user: stats.legs[USER_TAG]?.packets ?? 0, business: stats.legs[BUSINESS_TAG]?.packets ?? 0 };
  }

  /** Ends the call's media; never throws. */
  async release(callId: string): Promise<void> {
    await this.ng.delete(this.at, { 'call-id': callId }).catch(() => undefined);
  }
}
