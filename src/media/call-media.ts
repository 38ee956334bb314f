import { MediaPlan } from './profiles';
import { NgAddress, RtpEngine } from './rtpengine';
import { answerDirectionFor, audioDirection, plainRtpSdp, withAudioDirection } from './sdp';
import { releaseMedia, summarizeMediaStats, MediaStats } from './stats';

/**
 * One call's media on its rtpengine: the WhatsApp leg (`waTag`) and the PBX leg (`pbxTag`).
 * Everything the PBX changes mid-call is negotiated here on the PBX leg alone; the WhatsApp leg's
 * SDP (ports, ICE credentials, DTLS fingerprint) stays what WhatsApp accepted.
 */
export class CallMedia {
  /** Every tag the PBX leg has had in rtpengine (see repointPbx); the last one is current. */
  private readonly pbxTags: string[];
  /** rtpengine has played a file to the WhatsApp user since the PBX leg last got a fresh tag. */
  private playedSinceFreshLeg = false;

  constructor(
    private readonly rtp: RtpEngine,
    private readonly plan: MediaPlan,
    readonly ng: NgAddress,
    readonly callId: string,
    readonly waTag: string,
    pbxTag: string,
  ) {
    this.pbxTags = [pbxTag];
  }

  /** True when the PBX's audio must get a fresh stream toward WhatsApp at the next negotiation. */
  get needsFreshLeg(): boolean {
    return this.playedSinceFreshLeg;
  }

  get pbxTag(): string {
    return this.pbxTags[this.pbxTags.length - 1]!;
  }

  /**
   * The PBX offered new media (re-INVITE, UPDATE, a transferred leg's answer): rtpengine takes it as an
   * offer from the PBX leg and WhatsApp's unchanged SDP as the answer. Returns the answer for the PBX,
   * with the direction RFC 3264 requires (recvonly to a hold with sendonly, inactive to inactive).
   */
  async repointPbx(pbxOffer: string, waSdp: string, opts: { mayMovePort: boolean } = { mayMovePort: false }): Promise<string> {
    // After rtpengine has played a file to the WhatsApp user, that user's WebRTC stack stays bound to
    // the player's SSRC and ignores the PBX's stream when it returns on its old SSRC (seen with
    // libwebrtc). A fresh PBX-leg tag gives the PBX's audio a new SSRC toward WhatsApp; it also gives
    // the PBX a new port, so it is only done where the PBX takes it from this answer.
    if (this.playedSinceFreshLeg && opts.mayMovePort) {
      this.pbxTags.push(`${this.pbxTags[0]}-${this.pbxTags.length}`);
      this.playedSinceFreshLeg = false;
    }
    const ids = { 'call-id': this.callId, 'from-tag': this.pbxTag, 'to-tag': this.waTag };
    await this.rtp.offer(this.ng, { ...ids, ...this.plan.pbxOfferToWa(pbxOffer) });
    const res = await this.rtp.answer(this.ng, { ...ids, sdp: waSdp, ...this.plan.waAnswerToPbx() });
    return plainRtpSdp(withAudioDirection(String(res.sdp ?? ''), answerDirectionFor(audioDirection(pbxOffer))));
  }

  /** Plays a file (as rtpengine's host sees it) to the WhatsApp user, over and over. */
  async playToWhatsApp(file: string): Promise<void> {
    await this.rtp.playMedia(this.ng, { 'call-id': this.callId, 'from-tag': this.waTag, file, 'repeat-times': 100000 });
    this.playedSinceFreshLeg = true;
  }

  /** Plays a file to the WhatsApp user once; resolves with its length in ms (as rtpengine reports it). */
  async playOnceToWhatsApp(file: string): Promise<number> {
    const res = await this.rtp.playMedia(this.ng, { 'call-id': this.callId, 'from-tag': this.waTag, file, 'repeat-times': 1 });
    this.playedSinceFreshLeg = true;
    const ms = Number(res.duration);
    return Number.isFinite(ms) && ms > 0 ? Math.min(ms, 60_000) : 0;
  }

  async stopPlayingToWhatsApp(): Promise<void> {
    await this.rtp.stopMedia(this.ng, { 'call-id': this.callId, 'from-tag': this.waTag });
  }

  /** Stops RFC 4733 events from the WhatsApp leg reaching the PBX (digits go by SIP INFO instead). */
  async blockDigitsFromWhatsApp(): Promise<void> {
    await this.rtp.blockDTMF(this.ng, { 'call-id': this.callId, 'from-tag': this.waTag, flags: ['directional'] });
  }

  /** Sends a digit to the PBX as if the WhatsApp user had sent it (RFC 4733 on the PBX's payload type). */
  async injectDigitFromWhatsApp(digit: string, durationMs: number): Promise<void> {
    await this.injectDigit(this.waTag, digit, durationMs);
  }

  /** Sends a digit to the WhatsApp user as if the PBX had sent it in its media (RFC 4733 where negotiated). */
  async injectDigitFromPbx(digit: string, durationMs: number): Promise<void> {
    await this.injectDigit(this.pbxTag, digit, durationMs);
  }

  /** rtpengine's play DTMF, from the party `fromTag`, within the 100-5000 ms it accepts. */
  private async injectDigit(fromTag: string, digit: string, durationMs: number): Promise<void> {
    await this.rtp.playDTMF(this.ng, { 'call-id': this.callId, 'from-tag': fromTag, digit, duration: Math.min(5000, Math.max(100, Math.round(durationMs))) });
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
    return { [this.waTag]: 'whatsapp', ...Object.fromEntries(this.pbxTags.map((t) => [t, 'pbx'])) };
  }
}
