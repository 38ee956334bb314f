import crypto from 'node:crypto';
import { MediaPlan } from './profiles';
import { NgAddress, RtpEngine } from './rtpengine';
import { answerDirectionFor, audioDirection, eventClockFor, plainRtpSdp, provisionalPbxAnswer, RELABELLED_EVENT_DURATION_FACTOR, telephoneEvent8k, withAudioDirection, withOfferedEvents } from './sdp';
import { releaseMedia, summarizeMediaStats, MediaStats } from './stats';
import { incomingSsrc } from './ssrc-watch';

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
  /** WhatsApp's offer as it came (a user's call): its telephone-event goes back into answers rtpengine leaves it out of. */
  private waOffer = '';
  /**
   * rtpengine sees the WhatsApp leg's telephone-events at 48 kHz (an opus leg: see eventClockFor): its SDP
   * going in is relabelled, SDP coming out says 8000 again. The PBX leg's events stay at 8 kHz.
   */
  private waEventsAt48k = false;

  /** `callId`: the bridge's call id, which is rtpengine's call-id too (its DTMF log names calls by it). */
  constructor(private readonly rtp: RtpEngine, private readonly plan: MediaPlan, readonly ng: NgAddress, readonly callId: string) {}

  /** WhatsApp's SDP as rtpengine holds it (see repointPbx). */
  get whatsAppSdp(): string {
    return this.waSdp;
  }

  // --- A WhatsApp user's call (inbound) ---

  /**
   * WhatsApp's offer: rtpengine takes it and makes the plain-RTP offer for the PBX; a provisional
   * answer with the PBX's codecs gives WhatsApp its answer now (pre-accept), before any PBX answers.
   * With `relabelEvents` (an opus offer) rtpengine sees WhatsApp's telephone-events at 48 kHz (see
   * eventClockFor), and WhatsApp's digits are blocked in the media for the bridge to re-send; without (an
   * offer with G.711, whose 8 kHz clock the events then share) nothing is relabelled and rtpengine relays
   * them as they are. Nothing from the PBX leg reaches WhatsApp until unblocked.
   */
  async offerFromWhatsApp(waOffer: string, pbxCodecs: string[], o: { relabelEvents: boolean } = { relabelEvents: true }): Promise<{ pbxOffer: string; waAnswer: string }> {
    this.waEventsAt48k = o.relabelEvents;
    this.waOffer = waOffer;
    this.waSdp = this.toRtpengine(waOffer);
    const base = { 'call-id': this.callId, 'from-tag': this.waTag };
    const offered = await this.rtp.offer(this.ng, { ...base, sdp: this.waSdp, ...this.plan.waOfferToPbx() });
    const pbxOffer = plainRtpSdp(String(offered.sdp ?? ''));
    const provisional = provisionalPbxAnswer(pbxCodecs, telephoneEvent8k(pbxOffer)?.pt ?? null);
    const answered = await this.rtp.answer(this.ng, { ...base, 'to-tag': this.pbxTag, sdp: provisional, ...this.plan.pbxAnswerToWa() });
    await Promise.all([
      this.rtp.blockMedia(this.ng, { 'call-id': this.callId, 'from-tag': this.pbxTag }),
      // Relayed by rtpengine as they are when both legs' events share a clock; else re-sent by the bridge.
      this.relaysDigitsAsTheyAre ? Promise.resolve() : this.blockDigitsFromWhatsApp(),
    ]);
    return { pbxOffer, waAnswer: this.answerForWhatsApp(String(answered.sdp ?? '')) };
  }

  /**
   * How much longer a digit from `sourceTag` really was than rtpengine's DTMF log says: 6 for the
   * WhatsApp leg when rtpengine sees its events at 48 kHz (it reads 8 kHz durations in 48 kHz units), else 1.
   */
  eventDurationFactor(sourceTag: string): number {
    return sourceTag === this.waTag && this.waEventsAt48k ? RELABELLED_EVENT_DURATION_FACTOR : 1;
  }

  /**
   * True when rtpengine relays the WhatsApp user's RFC 4733 digits to the PBX as they are: both legs'
   * events at one clock (8 kHz) in its eyes. Otherwise they are blocked in the media, for the bridge to re-send.
   */
  get relaysDigitsAsTheyAre(): boolean {
    return !this.waEventsAt48k;
  }

  /** WhatsApp's SDP as rtpengine is to see it. */
  private toRtpengine(sdp: string): string {
    return this.waEventsAt48k ? eventClockFor.toRtpengine(sdp) : sdp;
  }

  /** rtpengine's SDP for WhatsApp as WhatsApp is to see it. */
  private fromRtpengine(sdp: string): string {
    return this.waEventsAt48k ? eventClockFor.fromRtpengine(sdp) : sdp;
  }

  /** rtpengine's answer to WhatsApp's offer, as WhatsApp is to get it. */
  private answerForWhatsApp(sdp: string): string {
    return this.waEventsAt48k ? withOfferedEvents(this.fromRtpengine(sdp), this.waOffer) : sdp;
  }

  /** The PBX's answer (a 183's or the 200's) to the offer from WhatsApp: the answer for WhatsApp's accept. */
  async answerFromPbx(pbxAnswer: string): Promise<string> {
    const res = await this.rtp.answer(this.ng, {
      'call-id': this.callId, 'from-tag': this.waTag, 'to-tag': this.pbxTag, sdp: pbxAnswer, ...this.plan.pbxAnswerToWa(),
    });
    return this.answerForWhatsApp(String(res.sdp ?? ''));
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
    // An opus-only offer to WhatsApp carries telephone-event/8000, as WhatsApp's own offers do; rtpengine
    // sees WhatsApp's events at 48 kHz. The agent's stay at 8 kHz: an offerer's 48 kHz events beside its
    // 8 kHz audio are dropped from rtpengine's answer to it (and WhatsApp's digits with them), so the
    // WhatsApp user's digits are blocked in the media and re-sent by the bridge with their real length.
    // Under prefer-g711 the offer's G.711 brings its own 8 kHz events and nothing is relabelled.
    this.waEventsAt48k = this.plan.g711InCommon(pbxOffer).length === 0;
    const offered = await this.rtp.offer(this.ng, { 'call-id': this.callId, 'from-tag': this.pbxTag, ...this.plan.pbxOfferToWa(pbxOffer) });
    await this.rtp.blockMedia(this.ng, { 'call-id': this.callId });
    return this.fromRtpengine(String(offered.sdp ?? ''));
  }

  /** WhatsApp's answer to the offer from the PBX: the plain-RTP answer for the agent's 200. */
  async answerFromWhatsApp(waAnswer: string): Promise<string> {
    this.waSdp = this.toRtpengine(waAnswer);
    const res = await this.rtp.answer(this.ng, { 'call-id': this.callId, 'from-tag': this.pbxTag, 'to-tag': this.waTag, sdp: this.waSdp, ...this.plan.waAnswerToPbx() });
    // WhatsApp's party exists in rtpengine from its answer on: its digits are blocked before any can pass.
    if (!this.relaysDigitsAsTheyAre) await this.blockDigitsFromWhatsApp();
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

  /**
   * Sends a digit to the WhatsApp user as if the PBX had sent it in its media (RFC 4733 where negotiated).
   * rtpengine writes an injected event's duration in the clock it believes (48 kHz on an opus call): asked
   * for a sixth, it puts the real length on the wire, but never less than its 100 ms floor (600 ms there).
   */
  async injectDigitFromPbx(digit: string, durationMs: number): Promise<void> {
    await this.injectDigit(this.pbxTag, digit, durationMs / this.eventDurationFactor(this.waTag));
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
    return (await this.pbxLegReading()).packets;
  }

  /**
   * One `query`: the packets received from the PBX so far, the PBX leg's current tag and the SSRC
   * rtpengine last received on it (see SsrcWatch).
   */
  async pbxLegReading(): Promise<{ packets: number; tag: string; ssrc: number | null }> {
    const tag = this.pbxTag;
    const res = await this.rtp.query(this.ng, { 'call-id': this.callId });
    return { packets: summarizeMediaStats(res, this.labels()).legs.pbx?.packets ?? 0, tag, ssrc: incomingSsrc(res, tag) };
  }

  /**
   * The PBX's stream came back on an SSRC the WhatsApp user has left (see SsrcWatch): the next
   * negotiation that may move the port gives the PBX leg a fresh tag, as after a played file.
   */
  needFreshLeg(): void {
    this.playedSinceFreshLeg = true;
  }

  release(warn: (what: string, err: unknown) => void): Promise<MediaStats | null> {
    return releaseMedia(this.rtp, this.ng, this.callId, this.labels(), warn);
  }

  private labels(): Record<string, string> {
    return { [this.waTag]: 'whatsapp', ...Object.fromEntries(this.pbxTags.map((t) => [t, 'pbx'])) };
  }
}
