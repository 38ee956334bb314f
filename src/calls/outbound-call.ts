import Srf from 'drachtio-srf';
import { Config } from '../config';
import { Outcome } from '../cdr/models';
import { setCallLogFields } from '../log';
import { assertUsableAudioSdp, firstAudioCodec, plainRtpSdp, SdpError } from '../media/sdp';
import { YCloudError } from '../providers/ycloud/client';
import { CallingConnect, CallingTerminate } from '../providers/ycloud/events';
import { byeWithin, sessionInterval, supportsTimer, withTimeout } from '../sip/dialog-requests';
import { BridgedCall, CallDeps, EndOptions, Refusal, SipFinal } from './bridged-call';
import { providerEndFields } from './cdr-fields';
import { PermissionStore } from './permissions';

export interface OutboundDeps extends CallDeps {
  config: CallDeps['config'] & Pick<Config, 'outbound'>;
  permissions: PermissionStore;
  /** Called once YCloud has named the call, so webhooks can find it (and buffered ones replay). */
  bind: (wacid: string, call: OutboundCall) => void;
}

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

/** YCloud/Meta error codes on calls/connect mapped to what the agent's phone is told. */
function refusalForConnectError(err: YCloudError): { refusal: Refusal; outcome: Outcome } {
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
  /** WhatsApp's SDP answer has come (and is being applied). */
  private answerSeen = false;
  private waSdp: string | null = null;
  private pbxSdp: string | null = null;
  private acceptedEarly = false;
  private declined = false;
  private rang = false;
  private pbxCancelled = false;
  /** The 200 OK to the PBX while it is being sent. */
  private answering: Promise<Srf.Dialog> | null = null;

  constructor(private readonly deps: OutboundDeps, private readonly req: Srf.SrfRequest, private readonly res: Srf.SrfResponse, readonly call: OutboundRequest) {
    super(deps, deps.log.child({ direction: 'outbound' }));
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
      const media = this.allocateMedia(this.deps.rtp.pick());
      const offered = await this.deps.rtp.offer(media.ng, { 'call-id': this.id, 'from-tag': this.pbxTag, ...this.deps.plan.pbxOfferToWa(this.req.body) });
      this.checkWhatsAppAddresses(String(offered.sdp ?? ''));
      // No audio crosses in either direction before WhatsApp says ACCEPTED. The whole call is blocked,
      // not just the PBX leg: WhatsApp's media can arrive before its SDP answer (ICE and DTLS complete
      // first) and would otherwise reach the agent while the customer's phone still rings.
      await this.deps.rtp.blockMedia(media.ng, { 'call-id': this.id });
      if (this.isEnding) return;
      this.transition('connecting', {}, null);
      this.deps.marks.mark(this.id, 'connect_sent');
      const { wacid } = await this.deps.ycloud.connect({ from: c.businessNumber, to: c.customerNumber, sdp: String(offered.sdp ?? '') });
      this.rec.event('connect_sent', { wacid });
      if (wacid) this.bindWacid(wacid);
      if (this.isEnding) return;
      this.timer(config.outbound.ringTimeoutMs, () => {
        if (this.acceptedAt || this.answering) return;
        this.rec.event('ring_timeout', { afterMs: config.outbound.ringTimeoutMs });
        void this.end('no_answer', 'bridge', { refusal: REFUSALS.noAnswer });
      });
      if (this.pbxCancelled) await this.end('caller_hangup', 'pbx');
    } catch (err) {
      await this.fail(err);
    }
  }

  /** Matches a connect webhook that arrived before calls/connect returned a wacid. */
  matchesUnbound(connect: CallingConnect): boolean {
    return this.wacid === null && !this.inState('ended') && connect.from === this.call.businessNumber && connect.to === this.call.customerNumber;
  }

  bindWacid(wacid: string): void {
    if (this.wacid) return;
    this.wacid = wacid;
    setCallLogFields(this.log, { wacid });
    this.rec.update({ wacid });
    this.deps.bind(wacid, this);
    // An agent who hung up while calls/connect was in flight: end the WhatsApp call now that it has a name.
    if (this.isEnding && !this.waEnded) void this.terminateWa();
  }

  /** The connect webhook carries WhatsApp's SDP answer. */
  async onConnect(c: CallingConnect): Promise<void> {
    // One answer per call: a repeat (another event id, or forwarded by another node) is ignored.
    if (this.inState('ended') || this.pbxSdp || this.answerSeen) return;
    this.answerSeen = true;
    this.bindWacid(c.wacid);
    this.phoneId ??= c.phoneId;
    this.rec.update({ phone_id: this.phoneId });
    try {
      if (c.sdpType !== 'answer') throw new SdpError(`a business-initiated call must be answered with SDP, got ${c.sdpType}`);
      assertUsableAudioSdp(c.sdp);
      const ng = this.media!.ng;
      const res = await this.deps.rtp.answer(ng, { 'call-id': this.id, 'from-tag': this.pbxTag, 'to-tag': this.waTag, sdp: c.sdp, ...this.deps.plan.waAnswerToPbx() });
      this.waSdp = c.sdp;
      this.pbxSdp = plainRtpSdp(String(res.sdp ?? ''));
      this.rec.update({ wa_codec: firstAudioCodec(c.sdp), pbx_codec: firstAudioCodec(this.pbxSdp) });
      this.rec.event('whatsapp_answer_sdp');
      if (this.acceptedEarly) await this.answerPbx();
    } catch (err) {
      await this.fail(err);
    }
  }

  /** RINGING, ACCEPTED or REJECTED from the status webhook. */
  async onStatus(status: string, arrivedAt?: number): Promise<void> {
    if (this.inState('ended')) return;
    this.rec.event('provider_status', { status });
    if (status === 'RINGING' && !this.rang) {
      this.rang = true;
      if (this.transition('ringing', { pbx_ringing_at: new Date() }, null) && !this.res.finalResponseSent) this.res.send(180);
    } else if (status === 'ACCEPTED') {
      this.deps.marks.mark(this.id, 'wa_accepted', arrivedAt);
      if (this.pbxSdp) await this.answerPbx();
      else this.acceptedEarly = true; // the SDP answer is still on its way
    } else if (status === 'REJECTED') {
      this.declined = true;
    }
  }

  /** WhatsApp ended the call (user hung up, declined, did not answer, or could not be reached). */
  onTerminate(t: CallingTerminate): void {
    this.rec.update(providerEndFields(t));
    if (this.waEnded || this.inState('ended')) return;
    this.waEnded = true;
    this.rec.event('whatsapp_terminated', { status: t.status ?? null });
    if (this.acceptedAt || this.answering) void this.end('answered', 'whatsapp');
    else if (this.declined) void this.end('rejected', 'whatsapp', { refusal: REFUSALS.declined });
    else if (this.rang) void this.end('no_answer', 'whatsapp', { refusal: REFUSALS.noAnswer });
    else void this.end('unreachable', 'whatsapp', { refusal: REFUSALS.unavailable });
  }

  override hangup(): Promise<void> {
    return this.end(this.acceptedAt ? 'answered' : 'failed', 'bridge', { refusal: REFUSALS.failed, error: 'bridge shutdown' });
  }

  private async answerPbx(): Promise<void> {
    if (this.answering || this.isEnding || this.res.finalResponseSent) return;
    const ng = this.media!.ng;
    const timers = sessionTimerAnswer(this.req, this.deps.config.pbx.minSessionExpiresS);
    this.answering = (async () => {
      await this.deps.rtp.unblockMedia(ng, { 'call-id': this.id, flags: ['all'] });
      return this.deps.srf.createUAS(this.req, this.res, { localSdp: this.pbxSdp!, headers: timers });
    })();
    let uas: Srf.Dialog;
    try {
      uas = await this.answering;
    } catch (err) {
      this.answering = null;
      return this.fail(err);
    }
    this.deps.marks.mark(this.id, 'pbx_200_sent');
    if (this.isEnding) return; // the teardown under way waits for this dialog and ends it
    this.openSession(uas, this.waSdp!, this.call.businessNumber);
    this.markAccepted({ pbx_answered_at: new Date(), sip_final_code: 200, sip_final_reason: 'OK' });
  }

  private onPbxCancel(): void {
    this.pbxCancelled = true;
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
    if (err instanceof YCloudError && this.inState('connecting') && !this.wacid) {
      const { refusal, outcome } = refusalForConnectError(err);
      if (err.whatsappCode === 138006) await this.requestPermissionIfConfigured();
      return this.end(outcome, 'bridge', { refusal, error: `YCloud: ${message}` });
    }
    const kind = err instanceof SdpError ? 'bad SDP' : err instanceof YCloudError ? 'YCloud' : 'internal';
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
    if (this.pbxCancelled) return { sip_final_code: 487, sip_final_reason: 'Request Terminated' };
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
    this.waEnded = true;
    const wacid = this.wacid;
    await this.endWhatsAppWith(() => this.deps.ycloud.terminate({ phoneId: this.phoneId ?? '', wacid }));
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
