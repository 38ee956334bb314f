import crypto from 'node:crypto';
import { MediaPlan } from './profiles';
import { NgAddress, RtpEngine } from './rtpengine';
import { answerDirectionFor, audioDirection, eventClockFor, plainRtpSdp, provisionalPbxAnswer, telephoneEvent8k, withAudioDirection } from './sdp';
import { releaseMedia, summarizeMediaStats, MediaStats } from './stats';

/**
 * One call's media on its rtpengine, from the first offer to the delete: the WhatsApp leg (`waTag`)
 * and the PBX leg (`pbxTag`), under one rtpengine call-id (the bridge's call id). Each set-up step is
 * a named method; the call classes say when, this class says which ng commands that takes.
 * Everything the PBX changes mid-call is negotiated on the PBX leg alone; the WhatsApp leg's SDP
 * (ports, ICE credentials, DTLS fingerprint) stays what WhatsApp accepted.
 */
export class CallMedia {
  readonly waTag = `wa-${crypto.randomBytes(6).toString('hex')}`;
  /** Every tag the PBX leg has had in rtpengine (see repointPbx); the last one is current. */
  private readonly pbxTags = [`pbx-${crypto.randomBytes(6).toString('hex')}`];
  /** rtpengine has played a file to the WhatsApp user since the PBX leg last got a fresh tag. */
  private playedSinceFreshLeg = false;
  /** WhatsApp's SDP as rtpengine was given it: the answer side of every PBX re-negotiation. */
  private waSdp = '';

  /** `callId`: the bridge's call id, which is rtpengine's call-id too (its DTMF log names calls by it). */
  constructor(private readonly rtp: RtpEngine, private readonly plan: MediaPlan, readonly ng: NgAddress, readonly callId: string) {}

  /** WhatsApp's SDP as rtpengine holds it (see repointPbx). */
  get whatsAppSdp(): string {
    return this.waSdp;
  }

  // --- A WhatsApp user's call (inbound) ---

  /**
   * WhatsApp's offer: rtpengine takes it (its telephone-event clock relabelled 48 kHz, so rtpengine
   * keeps and decodes the events: see sdp.ts; not when the offer also carries G.711, whose 8 kHz clock
   * the events then share) and makes the plain-RTP offer for the PBX; a provisional
   * answer with the PBX's codecs gives WhatsApp its answer now (pre-accept), before any PBX answers.
   * Nothing from the PBX leg reaches WhatsApp, and no WhatsApp digit reaches the PBX as RFC 4733
   * events, until unblocked (the bridge sends digits itself, with their real length, from the DTMF log).
   */
  async offerFromWhatsApp(waOffer: string, pbxCodecs: string[], o: { relabelEvents: boolean } = { relabelEvents: true }): Promise<{ pbxOffer: string; waAnswer: string }> {
    this.waSdp = o.relabelEvents ? eventClockFor.toRtpengine(waOffer) : waOffer;
    const base = { 'call-id': this.callId, 'from-tag': this.waTag };
    const offered = await this.rtp.offer(this.ng, { ...base, sdp: this.waSdp, ...this.plan.waOfferToPbx() });
    const pbxOffer = plainRtpSdp(String(offered.sdp ?? ''));
    const provisional = provisionalPbxAnswer(pbxCodecs, telephoneEvent8k(pbxOffer)?.pt ?? null);
    const answered = await this.rtp.answer(this.ng, { ...base, 'to-tag': this.pbxTag, sdp: provisional, ...this.plan.pbxAnswerToWa() });
    await Promise.all([
      this.rtp.blockMedia(this.ng, { 'call-id': this.callId, 'from-tag': this.pbxTag }),
      this.blockDigitsFromWhatsApp(),
    ]);
    return { pbxOffer, waAnswer: eventClockFor.toWhatsApp(String(answered.sdp ?? '')) };
  }

  /** The PBX's answer (a 183's or the 200's) to the offer from WhatsApp: the answer for WhatsApp's accept. */
  async answerFromPbx(pbxAnswer: string): Promise<string> {
    const res = await this.rtp.answer(this.ng, {
      'call-id': this.callId, 'from-tag': this.waTag, 'to-tag': this.pbxTag, sdp: pbxAnswer, ...this.plan.pbxAnswerToWa(),
    });
    return eventClockFor.toWhatsApp(String(res.sdp ?? ''));
  }

  /** The PBX's audio may reach WhatsApp (WhatsApp has accepted). */
  async letPbxThrough(): Promise<void> {
    await this.rtp.unblockMedia(this.ng, { 'call-id': this.callId, 'from-tag': this.pbxTag });
  }

  // --- An agent's call (outbound) ---

  /**
   * The agent's offer: rtpengine makes the WebRTC offer for WhatsApp. No audio crosses in either
   * direction until `letAllThrough`: WhatsApp's media can arrive before its SDP answer (ICE and DTLS
   * complete first) and would otherwise reach the agent while the customer's phone still rings.
   */
  async offerFromPbx(pbxOffer: string): Promise<string> {
    const offered = await this.rtp.offer(this.ng, { 'call-id': this.callId, 'from-tag': this.pbxTag, ...this.plan.pbxOfferToWa(pbxOffer) });
    await this.rtp.blockMedia(this.ng, { 'call-id': this.callId });
    return String(offered.sdp ?? '');
  }

  /** WhatsApp's answer to the offer from the PBX: the plain-RTP answer for the agent's 200. */
  async answerFromWhatsApp(waAnswer: string): Promise<string> {
    const res = await this.rtp.answer(this.ng, { 'call-id': this.callId, 'from-tag': this.pbxTag, 'to-tag': this.waTag, sdp: waAnswer, ...this.plan.waAnswerToPbx() });
    this.waSdp = waAnswer;
    return plainRtpSdp(String(res.sdp ?? ''));
  }

  /** Audio both ways (the WhatsApp user accepted). */
  async letAllThrough(): Promise<void> {
    await this.rtp.unblockMedia(this.ng, { 'call-id': this.callId, flags: ['all'] });
  }

  // --- Either call, once both legs are up ---

  /** Nothing the WhatsApp user says reaches the agent (while an announcement plays to them). */
  async holdBackWhatsApp(): Promise<void> {
    await this.rtp.blockMedia(this.ng, { 'call-id': this.callId, 'from-tag': this.waTag });
  }

  /** Both directions through (after an announcement). */
  async letBothThrough(): Promise<void> {
    await Promise.all([this.waTag, this.pbxTag].map((tag) => this.rtp.unblockMedia(this.ng, { 'call-id': this.callId, 'from-tag': tag })));
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
  async repointPbx(pbxOffer: string, opts: { mayMovePort: boolean } = { mayMovePort: false }): Promise<string> {
    const waSdp = this.waSdp;
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

  /**
   * Stops RFC 4733 events from the WhatsApp leg reaching the PBX (digits go by SIP INFO instead). With a
   * from-tag, rtpengine blocks only what that party sends ("Blocking directional DTMF"); it knows no
   * `directional` flag for this (rtpengine 10.5 warned "Unknown flag" on every call).
   */
  async blockDigitsFromWhatsApp(): Promise<void> {
    await this.rtp.blockDTMF(this.ng, { 'call-id': this.callId, 'from-tag': this.waTag });
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
