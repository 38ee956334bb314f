import { Outcome } from '../cdr/models';
import { setCallLogFields } from '../log';
import { MediaError } from '../media/rtpengine';
import { assertUsableAudioSdp, firstAudioCodec, SdpError } from '../media/sdp';
import { failureOf, PbxAnswer, PbxFailure, PbxLeg } from '../sip/pbx-leg';
import { BridgedCall, EndOptions, SipFinal } from './bridged-call';
import { CallDeps } from './call-deps';
import { CallEnded, CallOffered, CallRef, endedBeforeOffer } from './call-events';
import { providerEndFields, routeFields, userFields } from './cdr-fields';
import { Admission } from './connect-admission';
import { pbxLeg, whatsAppLeg } from './legs';
import { outcomeOfPbxFailure, shouldFailover } from './outcome';
import { ProviderError, WhatsAppProvider } from './provider-port';
import { NumberRoute } from './numbers-port';
import { safeHeaderValue } from '../sip/pbx-leg';
import { offeredAudioCodecs } from '../media/profiles';
import { assertUsableCodec, NoUsableCodecError } from '../media/usable-codecs';

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
  /** The WhatsApp leg's acceptance on the PBX's early media (PBX_EARLY_MEDIA=accept), once started. */
  private earlyAcceptance: Promise<void> | null = null;
  /** How the provider names this call in every request about it. */
  readonly ref: CallRef;

  /**
   * `route`: the business number called (its PBX route, codecs, recording), null when no number on
   * this bridge has the phone id (the call is refused); `provider`: the account the offer came from.
   */
  constructor(
    private readonly deps: CallDeps,
    readonly connect: CallOffered,
    override readonly route: NumberRoute | null,
    private readonly provider: WhatsAppProvider,
    private readonly admission: Promise<Admission> = Promise.resolve('go'),
  ) {
    // Its CDR is written only once the connect is known to be this call's first (see Admission).
    super(deps, deps.log, whatsAppLeg('offered'), pbxLeg('idle'), admission.then((a) => a !== 'duplicate'), route);
    this.ref = { phoneId: connect.phoneId, wacid: connect.wacid };
    setCallLogFields(this.log, { wacid: connect.wacid });
    // The row exists before anything else is queued for it, so no later write can miss it.
    this.rec.create({
      direction: 'inbound',
      wacid: connect.wacid,
      phone_id: connect.phoneId,
      business_number: connect.to,
      customer_number: connect.from,
      ...routeFields(route),
      ...userFields(connect.user),
      cta_payload: connect.ctaPayload,
      deeplink_payload: connect.deeplinkPayload,
      country_code: connect.countryCode ?? null,
      state: 'offered',
      offered_at: new Date(),
      node_id: deps.config.nodeId,
    });
    this.rec.event('offered', { dialTime: connect.dialTime, from: connect.from, to: connect.to });
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
   * the call is dropped without a word to the provider (a duplicate), recorded as hung up when its
   * terminate came first, or rejected at WhatsApp with a CDR saying why when its admission could not be checked.
   */
  private async admitted(): Promise<boolean> {
    const a = await this.admission;
    if (a === 'duplicate' && this.viaSip) {
      // Meta's INVITE is this node's to answer even when the call is known: it is turned away, not left waiting.
      await this.provider.reject(this.ref).catch(() => undefined);
      await this.discard('a repeated INVITE for a call already taken');
    } else if (a === 'duplicate') await this.discard('a repeated connect for a call already taken');
    else if (a === 'ended') this.onWhatsAppEnded(endedBeforeOffer(this.ref));
    else if (typeof a === 'object') await this.end('failed', 'bridge', { error: a.unchecked });
    return a === 'go';
  }

  /** The WhatsApp side ended the call (terminate webhook). */
  onWhatsAppEnded(t: CallEnded): void {
    this.rec.update(providerEndFields(t));
    if (this.waEnded || this.inState('ended')) return;
    this.moveWa('ended');
    this.rec.event('whatsapp_terminated', { status: t.cause, duration: t.durationS });
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
    // Nothing from the PBX leg reaches the WhatsApp user before accept has returned 200.
    // An opus offer's 8 kHz events are seen by rtpengine at 48 kHz on both legs, and relayed unscaled
    // both ways (see eventClockFor). An offer with G.711 besides opus (Meta's SIP with its G.711 option)
    // keeps its 8 kHz event clock on both legs: rtpengine pairs the events with that G.711 and relays
    // them as they are too. Where it could not, the bridge blocks them and re-sends each from its log.
    const relabelEvents = !offeredAudioCodecs(c.sdp).some((codec) => codec === 'PCMU' || codec === 'PCMA');
    const media = this.allocateMedia();
    const { pbxOffer, waAnswer } = await media.offerFromWhatsApp(c.sdp, this.pbxCodecs, { relabelEvents });
    this.pbxOffer = pbxOffer;
    this.checkWhatsAppAddresses(waAnswer);
    this.relayDigits({ inject: this.deps.config.pbx.dtmfMode === 'rfc4733' && !media.relaysDigitsAsTheyAre });
    if (!(await this.admitted()) || this.isEnding || this.waEnded) return;
    this.deps.marks.mark(c.wacid, 'preaccept_sent');
    await this.provider.preAccept(this.ref, waAnswer);
    if (this.isEnding) return;
    this.moveWa('pre_accepted');
    this.transition('pre_accepted', { pre_accepted_at: new Date(), wa_codec: firstAudioCodec(c.sdp) });
  }

  private async dialPbx(): Promise<void> {
    const { config, srf } = this.deps;
    const route = this.route!;
    const targets = this.deps.orderTargets(route.pbx.targets);
    this.timer(config.pbx.noAnswerTimeoutMs, () => {
      if (this.inCall || this.inState('answered', 'early_media')) return;
      this.movePbx('no_answer');
      this.rec.event('no_answer_timeout', { afterMs: config.pbx.noAnswerTimeoutMs });
      this.leg?.cancelInvite('cancelled');
    });

    for (let i = 0; i < targets.length; i++) {
      const target = requestUri(targets[i]!, route.pbx.requestUser ?? this.connect.to);
      const leg = (this.leg = new PbxLeg(srf, this.deps.metrics));
      if (this.waEnded) return this.end('caller_hangup', 'whatsapp');
      this.movePbx('inviting');
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
          displayName: this.connect.user.profileName ?? this.connect.user.username,
          sdp: this.pbxOffer,
          responseTimeoutMs: config.pbx.responseTimeoutMs,
          auth: route.pbx.auth,
          headers: {
            'X-WhatsApp-Call-Id': this.connect.wacid,
            'X-WhatsApp-Business-Number': this.connect.to,
            'X-WhatsApp-Phone-Id': this.connect.phoneId,
            'X-WhatsApp-Caller': this.connect.from,
            'X-Bridge-Call-Id': this.id,
            ...whatsAppUserHeaders(this.connect, route),
          },
        });
      } catch (err) {
        const f = failureOf(err);
        if (leg.sipCallId) this.rec.update({ sip_call_id: leg.sipCallId });
        this.rec.event('pbx_failed', { ...f, target });
        const noAnswer = this.pbx.is('no_answer');
        if (f.kind === 'cancelled' || this.waEnded || noAnswer) {
          const byUs = noAnswer && !this.waEnded;
          return this.end(byUs ? 'no_answer' : 'caller_hangup', byUs ? 'bridge' : 'whatsapp', { sip: sipOf(f) });
        }
        // Failover only before any early media was heard (the caller would hear two PBXs).
        if (shouldFailover(f) && i + 1 < targets.length && !this.earlyAcceptance) continue;
        const outcome: Outcome = outcomeOfPbxFailure(f);
        return this.end(outcome, 'pbx', { sip: sipOf(f) });
      }
      return this.onPbxAnswered(leg, answer);
    }
  }

  private onProgress(status: number, sdp: string | null): void {
    if ((status === 180 || status === 183) && this.pbx.is('inviting')) this.movePbx('early');
    if (this.inState('pre_accepted') && (status === 180 || status === 183)) {
      this.deps.marks.mark(this.connect.wacid, 'pbx_ringing');
      this.transition('ringing', { pbx_ringing_at: new Date(), sip_call_id: this.leg?.sipCallId ?? null }, null);
    }
    this.rec.event('pbx_progress', { status, sdp: sdp !== null });
    if (status === 183 && sdp && this.deps.config.pbx.earlyMedia && !this.earlyAcceptance && !this.isEnding) {
      this.earlyAcceptance = this.acceptOnEarlyMedia(sdp).catch((err: unknown) => this.fail(err));
    }
  }

  /**
   * PBX_EARLY_MEDIA=accept: the PBX's announcements (queue position, "your call is important") are
   * worth hearing, so the WhatsApp call is accepted on the 183 and the PBX's early media let through.
   */
  private async acceptOnEarlyMedia(sdp: string): Promise<void> {
    assertUsableAudioSdp(sdp);
    assertUsableCodec(sdp, this.pbxCodecs);
    const media = this.media!;
    const waAnswer = await media.answerFromPbx(sdp);
    if (this.isEnding) return;
    await this.acceptWhatsApp(waAnswer);
    await media.letPbxThrough();
    if (this.isEnding) return;
    this.acceptedAt = new Date();
    this.transition('early_media', { accepted_at: this.acceptedAt, early_media_at: this.acceptedAt, pbx_codec: firstAudioCodec(sdp) }, 'early_media_accepted');
  }

  private async onPbxAnswered(leg: PbxLeg, answer: PbxAnswer): Promise<void> {
    const c = this.connect;
    this.deps.marks.mark(c.wacid, 'pbx_answered');
    this.movePbx('answered');
    // A 200 saying `refresher=uac` makes the bridge the refresher: drachtio-server (sofia-sip) then sends
    // the refresh re-INVITEs itself, every half interval (seen on the wire: test/session-refresher.test.ts).
    this.openSession(answer.dialog, c.from, c.user.profileName ?? c.user.username);
    this.transition('answered', {
      pbx_answered_at: new Date(), agent: answer.agent, sip_call_id: leg.sipCallId,
      sip_final_code: 200, sip_final_reason: 'OK', pbx_codec: firstAudioCodec(answer.sdp),
    }, 'pbx_answered', { agent: answer.agent });
    if (this.waEnded) return this.end('answered', 'whatsapp');
    try {
      assertUsableAudioSdp(answer.sdp);
      // A PBX answering with a codec the bridge cannot use (not one it offered) would leave both sides silent.
      assertUsableCodec(answer.sdp, this.pbxCodecs);
      const media = this.media!;
      if (this.earlyAcceptance) {
        // Accepted on early media already: the 200 may move the media (repoint the PBX leg only).
        await this.earlyAcceptance;
        if (this.isEnding) return;
        await media.repointPbx(answer.sdp);
        this.markAccepted();
        return;
      }
      const waAnswer = await media.answerFromPbx(answer.sdp);
      if (this.isEnding) return;
      this.deps.marks.mark(c.wacid, 'accept_sent');
      await this.acceptWhatsApp(waAnswer);
      const announcement = this.deps.config.recording.announcementFile;
      if (announcement) {
        // Recorded from acceptance, so the announcement's time is in the recording (its audio is not:
        // rtpengine records what it receives); the agent is heard once it has played.
        this.markAccepted();
        return await this.announce(announcement);
      }
      await media.letPbxThrough();
      if (this.isEnding) return;
      this.markAccepted();
    } catch (err) {
      await this.fail(err);
    }
  }

  private async fail(err: unknown): Promise<void> {
    const message = err instanceof Error ? err.message : String(err);
    const kind = err instanceof SdpError ? 'bad SDP' : err instanceof NotReadyError ? 'not ready' : err instanceof MediaError ? 'media' : err instanceof ProviderError ? err.provider : 'internal';
    this.log.warn({ err, kind }, 'inbound call failed');
    if (err instanceof NoUsableCodecError) {
      this.deps.metrics.codecRefused('pbx_answer');
      this.rec.event('codec_refused', { sdp: 'pbx_answer', offered: err.offered });
    }
    // The PBX answered with SDP the bridge cannot use (e.g. too many streams): its leg ends with 488's cause.
    const byeText = err instanceof NoUsableCodecError ? 'no codec the bridge can use' : 'unusable SDP answer';
    const byeReason = err instanceof SdpError && this.session ? `SIP;cause=488;text="${byeText}"` : undefined;
    await this.end('failed', 'bridge', { error: `${kind}: ${message}`, ...(byeReason ? { byeReason } : {}) });
  }

  protected override async endPbxLeg(opts: EndOptions): Promise<SipFinal> {
    if (this.session) await this.session.hangup(opts.byeReason);
    else this.leg?.cancelInvite('cancelled');
    return opts.sip ?? {};
  }

  protected override async endWhatsAppLeg(wasAccepted: boolean): Promise<void> {
    const { provider } = this;
    const ref = this.ref;
    if (wasAccepted) await this.endWhatsAppWith(() => provider.terminate(ref));
    else if (!this.wa.is('accept_unknown')) await this.endWhatsAppWith(() => provider.reject(ref));
    else {
      // accept got no answer and may have been applied: end it as an accepted call, and reject it
      // should the provider say it is not one.
      await this.endWhatsAppWith(() => provider.terminate(ref).catch((err: unknown) => {
        if (err instanceof ProviderError && err.httpStatus !== null && err.httpStatus < 500) return provider.reject(ref);
        throw err;
      }));
    }
    this.moveWa('ended');
  }

  /** The accept, sent once (see the client's RETRY): one that got no answer leaves the call's state unknown. */
  private async acceptWhatsApp(sdp: string): Promise<void> {
    this.moveWa('accepting');
    try {
      await this.provider.accept(this.ref, sdp);
      this.moveWa('accepted');
    } catch (err) {
      this.moveWa(err instanceof ProviderError && err.unanswered ? 'accept_unknown' : 'pre_accepted');
      throw err;
    }
  }

  protected override onEnded(): void {
    this.deps.marks.mark(this.connect.wacid, 'ended');
  }
}

/**
 * What the PBX may route or show on besides the numbers: who the caller is when WhatsApp hides their
 * number (X-WhatsApp-User-Id, the BSUID; the From user is then the BSUID too), their profile name and
 * username, the call button or link they called from, and which configured number and provider took
 * the call. A value that is not safe in a SIP header is left out (logged by nobody: it is optional).
 */
function whatsAppUserHeaders(c: CallOffered, route: NumberRoute): Record<string, string> {
  const h: Record<string, string | null> = {
    'X-WhatsApp-User-Id': c.user.userId,
    'X-WhatsApp-Profile-Name': c.user.profileName,
    'X-WhatsApp-Username': c.user.username,
    'X-WhatsApp-Cta-Payload': c.ctaPayload,
    'X-WhatsApp-Deeplink-Payload': c.deeplinkPayload,
    'X-WhatsApp-Country-Code': c.countryCode ?? null,
    'X-WhatsApp-Number-Name': route.name,
    'X-WhatsApp-Provider': route.providerName,
  };
  return Object.fromEntries(Object.entries(h).filter((e): e is [string, string] => typeof e[1] === 'string' && safeHeaderValue(e[1])));
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
