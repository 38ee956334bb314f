import { pbxOfferToWa, waAnswerToPbx } from './profiles';
import { NgAddress, RtpEngine } from './rtpengine';
import { answerDirectionFor, audioDirection, plainRtpSdp, withAudioDirection } from './sdp';
import { releaseMedia, summarizeMediaStats, MediaStats } from './stats';

/**
 * One call's media on its rtpengine: the WhatsApp leg (`waTag`) and the PBX leg (`pbxTag`).
 * Everything the PBX changes mid-call is negotiated here on the PBX leg alone; the WhatsApp leg's
 * SDP (ports, ICE credentials, DTLS fingerprint) stays what WhatsApp accepted.
 */
export class CallMedia {
  constructor(
    private readonly rtp: RtpEngine,
    readonly ng: NgAddress,
    readonly callId: string,
    readonly waTag: string,
    readonly pbxTag: string,
  ) {}

  /**
   * The PBX offered new media (re-INVITE, UPDATE, a transferred leg's answer): rtpengine takes it as an
   * offer from the PBX leg and WhatsApp's unchanged SDP as the answer. Returns the answer for the PBX,
   * with the direction RFC 3264 requires (recvonly to a hold with sendonly, inactive to inactive).
   */
  async repointPbx(pbxOffer: string, waSdp: string): Promise<string> {
    const ids = { 'call-id': this.callId, 'from-tag': this.pbxTag, 'to-tag': this.waTag };
    await this.rtp.offer(this.ng, { ...ids, sdp: pbxOffer, ...pbxOfferToWa() });
    const res = await this.rtp.answer(this.ng, { ...ids, sdp: waSdp, ...waAnswerToPbx() });
    return plainRtpSdp(withAudioDirection(String(res.sdp ?? ''), answerDirectionFor(audioDirection(pbxOffer))));
  }

  /** Plays a file (as rtpengine's host sees it) to the WhatsApp user, over and over. */
  async playToWhatsApp(file: string): Promise<void> {
    await this.rtp.playMedia(this.ng, { 'call-id': this.callId, 'from-tag': this.waTag, file, 'repeat-times': 100000 });
  }

  async stopPlayingToWhatsApp(): Promise<void> {
    await this.rtp.stopMedia(this.ng, { 'call-id': this.callId, 'from-tag': this.waTag });
  }

  /** Stops RFC 4733 events from the WhatsApp leg reaching the PBX (digits go by SIP INFO instead). */
  async blockDigitsFromWhatsApp(): Promise<void> {
    await this.rtp.blockDTMF(this.ng, { 'call-id': this.callId, 'from-tag': this.waTag, flags: ['directional'] });
  }

  async stats(): Promise<MediaStats> {
    return summarizeMediaStats(await this.rtp.query(this.ng, { 'call-id': this.callId }), this.labels());
  }

  /** Packets received from the PBX so far (RTP and RTCP of its leg). */
  async packetsFromPbx(): Promise<number> {
    return (await this.stats()).legs.pbx?.packets ?? 0;
  }

  release(warn: (what: string, err: unknown) => void): Promise<MediaStats | null> {
    return releaseMedia(this.rtp, this.ng, this.callId, this.labels(), warn);
  }

  private labels(): Record<string, string> {
    return { [this.waTag]: 'whatsapp', [this.pbxTag]: 'pbx' };
  }
}
