import Srf from 'drachtio-srf';
import { Outcome } from '../cdr/models';
import { setCallLogFields } from '../log';
import { assertUsableAudioSdp, firstAudioCodec, SdpError } from '../media/sdp';
import { byeWithin, sessionInterval, supportsTimer, withTimeout } from '../sip/dialog-requests';
import { BridgedCall, EndOptions, Refusal, SipFinal } from './bridged-call';
import { CallDeps } from './call-deps';
import { CallAnswered, CallEnded, CallStatus } from './call-events';
import { providerEndFields } from './cdr-fields';
import { pbxLeg, whatsAppLeg } from './legs';
import { ProviderError } from './provider-port';

export interface OutboundRequest {
  businessNumber: string;
  customerNumber: string;
  agent: string | null;
  phoneId: string | null;
}


const REFUSALS = {
  noPermission: { status: 403, reason: 'Forbidden', cause: 21, text: 'no WhatsApp call permission from this customer' },
  declined: { status: 603, reason: 'Decline', cause: 21, text: 'declined by the WhatsApp user' },
  noAnswer: { status: 480, reason: 'Temporarily Unavailable', cause: 19, text: 'no answer from the WhatsApp user' },
  unavailable: { status: 480, reason: 'Temporarily Unavailable', cause: 20, text: 'WhatsApp user unavailable' },
  notOnWhatsApp: { status: 404, reason: 'Not Found', cause: 1, text: 'number cannot take WhatsApp calls' },
  limited: { status: 486, reason: 'Busy Here', cause: 17, text: 'WhatsApp call limit reached' },
  badSdp: { status: 488, reason: 'Not Acceptable Here', cause: 65, text: 'unusable SDP offer' },
  failed: { status: 503, reason: 'Service Unavailable', cause: 41, text: 'WhatsApp call could not be placed' },
} satisfies Record<string, Refusal>;

/** WhatsApp's error codes on connect (passed through by the provider) mapped to what the agent's phone is told. */
function refusalForConnectError(err: ProviderError): { refusal: Refusal; outcome: Outcome } {
  switch (err.whatsappCode) {
    case 138006: return { refusal: REFUSALS.noPermission, outcome: 'rejected' };
    case 138001: return { refusal: REFUSALS.notOnWhatsApp, outcome: 'unreachable' };
    case 138002: case 138005: case 138012: return { refusal: REFUSALS.limited, outcome: 'busy' };
    default: return { refusal: REFUSALS.failed, outcome: 'failed' };
  }
}

/**
 * An agent's call to a WhatsApp user: INVITE from the PBX -> permission check -> rtpengine offer
 * (WebRTC) -> calls/connect -> connect webhook (answer) -> RINGING: 180 -> ACCEPTED: 200 OK.
 * Webhooks may come in any order; each handler is safe to call in any state.
 */
export class OutboundCall extends BridgedCall {
  wacid: string | null = null;
  private phoneId: string | null;
  /** WhatsApp's SDP answer: being applied, then applied with the PBX's answer made from it. */
  private waAnswer: 'applying' | { pbxSdp: string } | null = null;
  /** The 200 OK to the PBX while it is being sent. */
  private answering: Promise<Srf.Dialog> | null = null;
  protected override readonly refusalOnHangup = REFUSALS.failed;

  constructor(private readonly deps: CallDeps, private readonly req: Srf.SrfRequest, private readonly res: Srf.SrfResponse, readonly call: OutboundRequest) {
    super(deps, deps.log.child({ direction: 'outbound' }), whatsAppLeg('placing'), pbxLeg('invited'));
    setCallLogFields(this.log, { sipCallId: req.get('Call-ID') });
    this.phoneId = call.phoneId;
    this.rec.create({
      direction: 'outbound',
      wacid: null,
      phone_id: call.phoneId,
      business_number: call.businessNumber,
      customer_number: call.customerNumber,
      agent: call.agent,
      sip_call_id: req.get('Call-ID'),
      state: 'offered',
      offered_at: new Date(),
      node_id: deps.config.nodeId,
    });
    this.rec.event('invite_received', { agent: call.agent, source: req.source_address });
    req.on('cancel', () => this.onPbxCancel());
  }

  /** Runs the call's set-up; never throws. */
  async run(): Promise<void> {
    const { permissions, config } = this.deps;
    const c = this.call;
    try {
      const perm = await permissions.check(c.businessNumber, c.customerNumber);
      if (!perm.allowed) {
        this.rec.event('no_permission', { reason: perm.reason });
        await this.requestPermissionIfConfigured();
        return await this.end('rejected', 'bridge', { refusal: REFUSALS.noPermission, error: `no call permission (${perm.reason})` });
      }
      const tooShort = sessionIntervalTooShort(this.req, config.pbx.minSessionExpiresS);
      if (tooShort) return await this.end('failed', 'bridge', { refusal: tooShort, error: 'session interval too small' });
      assertUsableAudioSdp(this.req.body);
      // No audio crosses in either direction before WhatsApp says ACCEPTED (see CallMedia.offerFromPbx).
      const waOffer = await this.allocateMedia().offerFromPbx(this.req.body);
      this.checkWhatsAppAddresses(waOffer);
      if (this.isEnding) return;
      this.transition('connecting', {}, null);
      this.deps.marks.mark(this.id, 'connect_sent');
      const { wacid } = await this.deps.provider.connect({ from: c.businessNumber, to: c.customerNumber, sdpOffer: waOffer });
      this.rec.event('connect_sent', { wacid });
      if (wacid) this.bindWacid(wacid);
      if (this.isEnding) return;
      this.timer(config.outbound.ringTimeoutMs, () => {
        if (this.acceptedAt || this.answering) return;
        this.rec.event('ring_timeout', { afterMs: config.outbound.ringTimeoutMs });
        void this.end('no_answer', 'bridge', { refusal: REFUSALS.noAnswer });
      });
      if (this.pbx.is('cancelled')) await this.end('caller_hangup', 'pbx');
    } catch (err) {
      await this.fail(err);
    }
  }

  /** Matches an answer that arrived before calls/connect returned a wacid. */
  matchesUnnamed(answer: CallAnswered): boolean {
    return this.wacid === null && !this.inState('ended') && answer.from === this.call.businessNumber && answer.to === this.call.customerNumber;
  }

  /** The provider named the call: webhooks can find it by its wacid (and early ones replay). */
  private bindWacid(wacid: string): void {
    if (this.wacid) return;
    this.wacid = wacid;
    setCallLogFields(this.log, { wacid });
    this.rec.update({ wacid });
    this.emit('named', wacid);
    // An agent who hung up while calls/connect was in flight: end the WhatsApp call now that it has a name.
    if (this.isEnding && !this.waEnded) void this.terminateWa();
  }

  /** The user's answer (the connect webhook) carries WhatsApp's SDP answer. */
  async onAnswer(c: CallAnswered): Promise<void> {
    // One answer per call: a repeat (another event id, or forwarded by another node) is ignored.
    if (this.inState('ended') || this.waAnswer) return;
    this.waAnswer = 'applying';
    this.bindWacid(c.wacid);
    this.phoneId ??= c.phoneId;
    this.rec.update({ phone_id: this.phoneId });
    try {
      if (c.sdpType !== 'answer') throw new SdpError(`a business-initiated call must be answered with SDP, got ${c.sdpType}`);
      assertUsableAudioSdp(c.sdp);
      const pbxSdp = await this.media!.answerFromWhatsApp(c.sdp);
      this.waAnswer = { pbxSdp };
      this.rec.update({ wa_codec: firstAudioCodec(c.sdp), pbx_codec: firstAudioCodec(pbxSdp) });
      this.rec.event('whatsapp_answer_sdp');
      if (this.wa.is('accepted')) await this.answerPbx();
    } catch (err) {
      await this.fail(err);
    }
  }

  /** Ringing, accepted or rejected at the WhatsApp user's end (the status webhook). */
  async onStatus(s: CallStatus, arrivedAt?: number): Promise<void> {
    if (this.inState('ended')) return;
    this.rec.event('provider_status', { status: s.status });
    if (s.progress === 'ringing') {
      if (this.wa.is('placing')) this.moveWa('ringing');
      // A RINGING overtaken by its ACCEPTED still rings the agent's phone until the 200 goes out.
      if (this.inState('connecting') && this.transition('ringing', { pbx_ringing_at: new Date() }, null) && !this.res.finalResponseSent) this.res.send(180);
    } else if (s.progress === 'accepted' && this.wa.is('placing', 'ringing', 'accepted')) {
      this.moveWa('accepted');
      this.deps.marks.mark(this.id, 'wa_accepted', arrivedAt);
      // The SDP answer may still be on its way: it answers the PBX when it comes.
      if (typeof this.waAnswer === 'object' && this.waAnswer) await this.answerPbx();
    } else if (s.progress === 'rejected' && this.wa.is('placing', 'ringing')) {
      this.moveWa('declined');
    }
  }

  /** WhatsApp ended the call (user hung up, declined, did not answer, or could not be reached). */
  onWhatsAppEnded(t: CallEnded): void {
    this.rec.update(providerEndFields(t));
    if (this.waEnded || this.inState('ended')) return;
    const wa = this.wa;
    const rang = wa.reached('ringing') || wa.reached('accepted');
    const declined = wa.is('declined');
    this.moveWa('ended');
    this.rec.event('whatsapp_terminated', { status: t.cause });
    if (this.acceptedAt || this.answering) void this.end('answered', 'whatsapp');
    else if (declined) void this.end('rejected', 'whatsapp', { refusal: REFUSALS.declined });
    else if (rang) void this.end('no_answer', 'whatsapp', { refusal: REFUSALS.noAnswer });
    else void this.end('unreachable', 'whatsapp', { refusal: REFUSALS.unavailable });
  }

  private async answerPbx(): Promise<void> {
    if (this.answering || this.isEnding || this.res.finalResponseSent || typeof this.waAnswer !== 'object' || !this.waAnswer) return;
    const media = this.media!;
    const { pbxSdp } = this.waAnswer;
    const timers = sessionTimerAnswer(this.req, this.deps.config.pbx.minSessionExpiresS);
    this.movePbx('answering');
    this.answering = (async () => {
      await media.letAllThrough();
      return this.deps.srf.createUAS(this.req, this.res, { localSdp: pbxSdp, headers: timers });
    })();
    let uas: Srf.Dialog;
    try {
      uas = await this.answering;
    } catch (err) {
      this.answering = null;
      this.movePbx('invited');
      return this.fail(err);
    }
    this.deps.marks.mark(this.id, 'pbx_200_sent');
    if (this.isEnding) return; // the teardown under way waits for this dialog and ends it
    this.movePbx('answered');
    this.openSession(uas, this.call.businessNumber);
    this.markAccepted({ pbx_answered_at: new Date(), sip_final_code: 200, sip_final_reason: 'OK' });
  }

  private onPbxCancel(): void {
    this.movePbx('cancelled');
    this.rec.event('pbx_cancelled');
    // drachtio-server has already answered the INVITE with 487.
    void this.end('caller_hangup', 'pbx');
  }

  private async requestPermissionIfConfigured(): Promise<void> {
    const auto = this.deps.config.outbound.autoPermissionRequest;
    if (!auto) return;
    try {
      await this.deps.permissions.request(this.call.businessNumber, this.call.customerNumber, { kind: 'interactive', text: auto.text }, 'auto');
      this.rec.event('permission_requested');
    } catch (err) {
      this.rec.event('permission_request_failed', { message: (err as Error).message });
    }
  }

  private async fail(err: unknown): Promise<void> {
    const message = err instanceof Error ? err.message : String(err);
    if (err instanceof ProviderError && this.inState('connecting') && !this.wacid) {
      const { refusal, outcome } = refusalForConnectError(err);
      if (err.whatsappCode === 138006) await this.requestPermissionIfConfigured();
      return this.end(outcome, 'bridge', { refusal, error: `${err.provider}: ${message}` });
    }
    const kind = err instanceof SdpError ? 'bad SDP' : err instanceof ProviderError ? err.provider : 'internal';
    this.log.warn({ err, kind }, 'outbound call failed');
    await this.end('failed', 'bridge', { refusal: err instanceof SdpError ? REFUSALS.badSdp : REFUSALS.failed, error: `${kind}: ${message}` });
  }

  protected override async endPbxLeg(opts: EndOptions): Promise<SipFinal> {
    const timeout = this.deps.config.pbx.requestTimeoutMs;
    if (this.session) {
      await this.session.hangup();
      return {};
    }
    if (this.answering) {
      // The 200 OK is on its way (WhatsApp may hang up at that very moment): BYE the new dialog.
      const d = await withTimeout(this.answering, timeout, '200 OK not sent').catch(() => null);
      if (d) await byeWithin(d, timeout, this.deps.metrics);
      return { sip_final_code: 200, sip_final_reason: 'OK' };
    }
    if (this.pbx.is('cancelled')) return { sip_final_code: 487, sip_final_reason: 'Request Terminated' };
    if (this.res.finalResponseSent) return {};
    const r = opts.refusal ?? REFUSALS.failed;
    this.res.send(r.status, r.reason, { headers: { Reason: `Q.850;cause=${r.cause};text="${r.text}"`, ...(r.status === 422 ? { 'Min-SE': String(this.deps.config.pbx.minSessionExpiresS) } : {}) } });
    return { sip_final_code: r.status, sip_final_reason: r.reason };
  }

  protected override endWhatsAppLeg(): Promise<void> {
    return this.wacid ? this.terminateWa() : Promise.resolve();
  }

  private async terminateWa(): Promise<void> {
    if (this.waEnded || !this.wacid) return;
    this.moveWa('ended');
    const wacid = this.wacid;
    await this.endWhatsAppWith(() => this.deps.provider.terminate({ phoneId: this.phoneId ?? '', wacid }));
  }
}

/** RFC 4028: an INVITE asking for a session interval below ours gets 422 with our Min-SE. */
function sessionIntervalTooShort(req: Srf.SrfRequest, minSe: number): Refusal | null {
  const se = sessionInterval(req);
  if (se === null || se >= minSe) return null;
  return { status: 422, reason: 'Session Interval Too Small', cause: 127, text: `session interval below ${minSe} s` };
}

/** The 200 OK's session timer headers: the PBX that asked for a session timer refreshes it. */
function sessionTimerAnswer(req: Srf.SrfRequest, minSe: number): Record<string, string> {
  const se = sessionInterval(req);
  if (se === null || !supportsTimer(req)) return {};
  return { 'Session-Expires': `${Math.max(se, minSe)};refresher=uac`, Require: 'timer' };
}
