import { Outcome } from '../cdr/models';
import { setCallLogFields } from '../log';
import { MediaError } from '../media/rtpengine';
import { assertUsableAudioSdp, eventClockFor, firstAudioCodec, plainRtpSdp, provisionalPbxAnswer, RELABELLED_EVENT_DURATION_FACTOR, SdpError, telephoneEvent8k } from '../media/sdp';
import { CallingConnect, CallingTerminate } from '../providers/ycloud/events';
import { YCloudError } from '../providers/ycloud/client';
import { failureOf, PbxAnswer, PbxFailure, PbxLeg } from '../sip/pbx-leg';
import { BridgedCall, CallDeps, EndOptions, SipFinal } from './bridged-call';
import { providerEndFields } from './cdr-fields';
import { outcomeOfPbxFailure, shouldFailover } from './outcome';

export interface InboundDeps extends CallDeps {
  /** False while drachtio-server is unreachable: new calls are refused rather than left hanging. */
  canDial: () => boolean;
  /** PBX targets in the order to try them now (targets that fail OPTIONS pings go last). */
  targets: () => string[];
}

/**
 * Whether a connect may be bridged (decided in parallel with its media set-up, before anything reaches
 * YCloud): 'go'; 'duplicate' (already bridged: nothing of it is kept); 'ended' (its terminate came
 * first: the call is recorded as hung up by the caller); `unchecked` (Postgres could not say, even
 * retried: the call is rejected at WhatsApp and its CDR says why, rather than dropped unseen).
 */
export type Admission = 'go' | 'duplicate' | 'ended' | { unchecked: string };

export class NotReadyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NotReadyError';
  }
}

/**
 * A WhatsApp user's call to the business, bridged to the PBX:
 * offer -> rtpengine -> pre-accept -> INVITE -> 200 -> rtpengine answer -> accept -> unblock media.
 * With PBX_EARLY_MEDIA=accept, a 183 with SDP is accepted at once so the caller hears the PBX's
 * announcements. Emits 'ended' once both legs are down and the CDR is written.
 */
export class InboundCall extends BridgedCall {
  private leg: PbxLeg | null = null;
  private pbxOffer = '';
  private noAnswer = false;
  /** The WhatsApp leg was accepted on the PBX's early media, before the agent answered. */
  private earlyAccepted: Promise<void> | null = null;
  /** calls/accept timed out or never got an answer: WhatsApp may have taken it (see endWhatsAppLeg). */
  private acceptUnknown = false;

  constructor(private readonly deps: InboundDeps, readonly connect: CallingConnect, private readonly admission: Promise<Admission> = Promise.resolve('go')) {
    // Its CDR is written only once the connect is known to be this call's first (see Admission).
    super(deps, deps.log, admission.then((a) => a !== 'duplicate'));
    setCallLogFields(this.log, { wacid: connect.wacid });
    // The row exists before anything else is queued for it, so no later write can miss it.
    this.rec.create({
      direction: 'inbound',
      wacid: connect.wacid,
      phone_id: connect.phoneId,
      business_number: connect.to,
      customer_number: connect.from,
      state: 'offered',
      offered_at: new Date(),
      node_id: deps.config.nodeId,
    });
    this.rec.event('offered', { dialTime: connect.dialTime ?? null, from: connect.from, to: connect.to });
  }

  /** Runs the call to its end; never throws. */
  async run(): Promise<void> {
    try {
      await this.setUpMedia();
      if (this.isEnding) return;
      await this.dialPbx();
    } catch (err) {
      if (await this.admitted()) await this.fail(err);
    }
  }

  /** Turns the call away without bridging it (not ready, shutting down, too old at replay). */
  async refuse(reason: string): Promise<void> {
    if (await this.admitted()) await this.end('failed', 'bridge', { error: reason });
  }

  /**
   * Waits for the admission (see Admission): true for a call that is this node's to bridge; otherwise
   * the call is dropped without a word to YCloud (a duplicate), recorded as hung up when its terminate
   * came first, or rejected at WhatsApp with a CDR saying why when its admission could not be checked.
   */
  private async admitted(): Promise<boolean> {
    const a = await this.admission;
    if (a === 'duplicate') await this.discard('a repeated connect for a call already taken');
    else if (a === 'ended') this.onTerminate({ wacid: this.connect.wacid });
    else if (typeof a === 'object') await this.end('failed', 'bridge', { error: a.unchecked });
    return a === 'go';
  }

  /** The WhatsApp side ended the call (terminate webhook). */
  onTerminate(t: CallingTerminate): void {
    this.rec.update(providerEndFields(t));
    if (this.waEnded || this.inState('ended')) return;
    this.waEnded = true;
    this.rec.event('whatsapp_terminated', { status: t.status ?? null, duration: t.duration ?? null });
    if (this.leg && !this.leg.established) {
      this.leg.cancelInvite('cancelled'); // dialPbx() sees the cancellation and ends the call
    } else if (this.leg) {
      void this.end('answered', 'whatsapp');
    } else {
      void this.end('caller_hangup', 'whatsapp');
    }
  }

  private async setUpMedia(): Promise<void> {
    const c = this.connect;
    if (c.sdpType !== 'offer') throw new SdpError(`a user-initiated call must carry an SDP offer, got ${c.sdpType}`);
    assertUsableAudioSdp(c.sdp);
    if (!this.deps.canDial()) throw new NotReadyError('bridge not ready: SIP core (drachtio-server) unavailable');
    const { rtp, config } = this.deps;
    const media = this.allocateMedia(rtp.pick());
    const base = { 'call-id': media.callId, 'from-tag': this.waTag };
    const offered = await rtp.offer(media.ng, { ...base, sdp: this.waSdpForRtpengine, ...this.deps.plan.waOfferToPbx() });
    this.pbxOffer = plainRtpSdp(String(offered.sdp ?? ''));
    const provisional = provisionalPbxAnswer(config.pbx.codecs, telephoneEvent8k(this.pbxOffer)?.pt ?? null);
    const answered = await rtp.answer(media.ng, { ...base, 'to-tag': this.pbxTag, sdp: provisional, ...this.deps.plan.pbxAnswerToWa() });
    this.checkWhatsAppAddresses(String(answered.sdp ?? ''));
    // Nothing from the PBX leg may reach the WhatsApp user before accept has returned 200. And
    // rtpengine would pass on the caller's digits with a sixth of their length: the bridge sends each
    // one itself, with its real length (RFC 4733) or by INFO, from rtpengine's DTMF log.
    await Promise.all([
      rtp.blockMedia(media.ng, { 'call-id': media.callId, 'from-tag': this.pbxTag }),
      media.blockDigitsFromWhatsApp(),
    ]);
    this.relayDigits({ inject: this.deps.config.pbx.dtmfMode === 'rfc4733', durationFactor: RELABELLED_EVENT_DURATION_FACTOR });
    if (!(await this.admitted()) || this.isEnding || this.waEnded) return;
    this.deps.marks.mark(c.wacid, 'preaccept_sent');
    await this.deps.ycloud.preAccept({ phoneId: c.phoneId, wacid: c.wacid, sdp: this.waAnswer(String(answered.sdp ?? '')) });
    if (this.isEnding) return;
    this.transition('pre_accepted', { pre_accepted_at: new Date(), wa_codec: firstAudioCodec(c.sdp) });
  }

  /** WhatsApp's offer as rtpengine is told it: events at 48 kHz, so it keeps and decodes them (see sdp.ts). */
  private get waSdpForRtpengine(): string {
    return eventClockFor.toRtpengine(this.connect.sdp);
  }

  /** The WhatsApp-side answer rtpengine wrote, with the event clock WhatsApp offered (see sdp.ts). */
  private waAnswer(sdp: string): string {
    return eventClockFor.toWhatsApp(sdp);
  }

  private async dialPbx(): Promise<void> {
    const { config, srf } = this.deps;
    const targets = this.deps.targets();
    this.timer(config.pbx.noAnswerTimeoutMs, () => {
      if (this.inCall || this.inState('answered', 'early_media')) return;
      this.noAnswer = true;
      this.rec.event('no_answer_timeout', { afterMs: config.pbx.noAnswerTimeoutMs });
      this.leg?.cancelInvite('cancelled');
    });

    for (let i = 0; i < targets.length; i++) {
      const target = requestUri(targets[i]!, this.connect.to);
      const leg = (this.leg = new PbxLeg(srf, this.deps.metrics));
      if (this.waEnded) return this.end('caller_hangup', 'whatsapp');
      leg.on('progress', (status: number, sdp: string | null) => this.onProgress(status, sdp));
      leg.on('sip-call-id', (sipCallId: string) => setCallLogFields(this.log, { sipCallId }));
      this.rec.update({ pbx_target: target });
      this.rec.event('invite_sent', { target });
      let answer: PbxAnswer;
      try {
        answer = await leg.invite({
          target,
          fromNumber: this.connect.from,
          fromHost: hostOf(target),
          sdp: this.pbxOffer,
          responseTimeoutMs: config.pbx.responseTimeoutMs,
          auth: config.pbx.auth,
          headers: {
            'X-WhatsApp-Call-Id': this.connect.wacid,
            'X-WhatsApp-Business-Number': this.connect.to,
            'X-WhatsApp-Phone-Id': this.connect.phoneId,
            'X-WhatsApp-Caller': this.connect.from,
            'X-Bridge-Call-Id': this.id,
          },
        });
      } catch (err) {
        const f = failureOf(err);
        if (leg.sipCallId) this.rec.update({ sip_call_id: leg.sipCallId });
        this.rec.event('pbx_failed', { ...f, target });
        if (f.kind === 'cancelled' || this.waEnded || this.noAnswer) {
          const byUs = this.noAnswer && !this.waEnded;
          return this.end(byUs ? 'no_answer' : 'caller_hangup', byUs ? 'bridge' : 'whatsapp', { sip: sipOf(f) });
        }
        // Failover only before any early media was heard (the caller would hear two PBXs).
        if (shouldFailover(f) && i + 1 < targets.length && !this.earlyAccepted) continue;
        const outcome: Outcome = outcomeOfPbxFailure(f);
        return this.end(outcome, 'pbx', { sip: sipOf(f) });
      }
      return this.onPbxAnswered(leg, answer);
    }
  }

  private onProgress(status: number, sdp: string | null): void {
    if (this.inState('pre_accepted') && (status === 180 || status === 183)) {
      this.deps.marks.mark(this.connect.wacid, 'pbx_ringing');
      this.transition('ringing', { pbx_ringing_at: new Date(), sip_call_id: this.leg?.sipCallId ?? null }, null);
    }
    this.rec.event('pbx_progress', { status, sdp: sdp !== null });
    if (status === 183 && sdp && this.deps.config.pbx.earlyMedia && !this.earlyAccepted && !this.isEnding) {
      this.earlyAccepted = this.acceptOnEarlyMedia(sdp).catch((err: unknown) => this.fail(err));
    }
  }

  /**
   * PBX_EARLY_MEDIA=accept: the PBX's announcements (queue position, "your call is important") are
   * worth hearing, so the WhatsApp call is accepted on the 183 and the PBX's early media let through.
   */
  private async acceptOnEarlyMedia(sdp: string): Promise<void> {
    assertUsableAudioSdp(sdp);
    const media = this.media!;
    const res = await this.deps.rtp.answer(media.ng, {
      'call-id': media.callId, 'from-tag': this.waTag, 'to-tag': this.pbxTag, sdp, ...this.deps.plan.pbxAnswerToWa(),
    });
    if (this.isEnding) return;
    await this.acceptWhatsApp(this.waAnswer(String(res.sdp ?? '')));
    await this.deps.rtp.unblockMedia(media.ng, { 'call-id': media.callId, 'from-tag': this.pbxTag });
    if (this.isEnding) return;
    this.acceptedAt = new Date();
    this.transition('early_media', { accepted_at: this.acceptedAt, early_media_at: this.acceptedAt, pbx_codec: firstAudioCodec(sdp) }, 'early_media_accepted');
  }

  private async onPbxAnswered(leg: PbxLeg, answer: PbxAnswer): Promise<void> {
    const c = this.connect;
    this.deps.marks.mark(c.wacid, 'pbx_answered');
    this.openSession(answer.dialog, this.waSdpForRtpengine, c.from);
    this.transition('answered', {
      pbx_answered_at: new Date(), agent: answer.agent, sip_call_id: leg.sipCallId,
      sip_final_code: 200, sip_final_reason: 'OK', pbx_codec: firstAudioCodec(answer.sdp),
    }, 'pbx_answered', { agent: answer.agent });
    if (this.waEnded) return this.end('answered', 'whatsapp');
    try {
      assertUsableAudioSdp(answer.sdp);
      if (this.earlyAccepted) {
        // Accepted on early media already: the 200 may move the media (repoint the PBX leg only).
        await this.earlyAccepted;
        if (this.isEnding) return;
        await this.media!.repointPbx(answer.sdp, this.waSdpForRtpengine);
        this.markAccepted();
        return;
      }
      const { rtp } = this.deps;
      const media = this.media!;
      const res = await rtp.answer(media.ng, {
        'call-id': media.callId, 'from-tag': this.waTag, 'to-tag': this.pbxTag, sdp: answer.sdp, ...this.deps.plan.pbxAnswerToWa(),
      });
      if (this.isEnding) return;
      this.deps.marks.mark(c.wacid, 'accept_sent');
      await this.acceptWhatsApp(this.waAnswer(String(res.sdp ?? '')));
      const announcement = this.deps.config.recording.announcementFile;
      if (announcement) {
        // Recorded from acceptance, so the announcement's time is in the recording (its audio is not:
        // rtpengine records what it receives); the agent is heard once it has played.
        this.markAccepted();
        return await this.announce(announcement);
      }
      await rtp.unblockMedia(media.ng, { 'call-id': media.callId, 'from-tag': this.pbxTag });
      if (this.isEnding) return;
      this.markAccepted();
    } catch (err) {
      await this.fail(err);
    }
  }

  private async fail(err: unknown): Promise<void> {
    const message = err instanceof Error ? err.message : String(err);
    const kind = err instanceof SdpError ? 'bad SDP' : err instanceof NotReadyError ? 'not ready' : err instanceof MediaError ? 'media' : err instanceof YCloudError ? 'YCloud' : 'internal';
    this.log.warn({ err, kind }, 'inbound call failed');
    // The PBX answered with SDP the bridge cannot use (e.g. too many streams): its leg ends with 488's cause.
    const byeReason = err instanceof SdpError && this.session ? 'SIP;cause=488;text="unusable SDP answer"' : undefined;
    await this.end('failed', 'bridge', { error: `${kind}: ${message}`, ...(byeReason ? { byeReason } : {}) });
  }

  protected override async endPbxLeg(opts: EndOptions): Promise<SipFinal> {
    if (this.session) await this.session.hangup(opts.byeReason);
    else this.leg?.cancelInvite('cancelled');
    return opts.sip ?? {};
  }

  protected override endWhatsAppLeg(wasAccepted: boolean): Promise<void> {
    const ref = { phoneId: this.connect.phoneId, wacid: this.connect.wacid };
    if (wasAccepted) return this.endWhatsAppWith(() => this.deps.ycloud.terminate(ref));
    if (!this.acceptUnknown) return this.endWhatsAppWith(() => this.deps.ycloud.reject(ref));
    // accept got no answer and may have been applied: end it as an accepted call, and reject it
    // should YCloud say it is not one.
    return this.endWhatsAppWith(() => this.deps.ycloud.terminate(ref).catch((err: unknown) => {
      if (err instanceof YCloudError && err.httpStatus !== null && err.httpStatus < 500) return this.deps.ycloud.reject(ref);
      throw err;
    }));
  }

  /** calls/accept, sent once (see the client's RETRY): one that got no answer leaves the call's state unknown. */
  private async acceptWhatsApp(sdp: string): Promise<void> {
    const c = this.connect;
    try {
      await this.deps.ycloud.accept({ phoneId: c.phoneId, wacid: c.wacid, sdp });
    } catch (err) {
      if (err instanceof YCloudError && err.httpStatus === null) this.acceptUnknown = true;
      throw err;
    }
  }

  protected override onEnded(): void {
    this.deps.marks.mark(this.connect.wacid, 'ended');
  }
}

function sipOf(f: PbxFailure): SipFinal {
  return f.kind === 'status' ? { sip_final_code: f.status, sip_final_reason: f.reason } : {};
}

/** A target without a user part gets the business number, so the PBX can route on the dialled number. */
function requestUri(target: string, businessNumber: string): string {
  if (/^sips?:[^@]+@/.test(target)) return target;
  return target.replace(/^(sips?:)/, `$1${businessNumber.replace(/^\+/, '')}@`);
}

function hostOf(uri: string): string {
  const m = /^sips?:(?:[^@]+@)?([^:;>]+)/.exec(uri);
  return m?.[1] ?? 'localhost';
}
