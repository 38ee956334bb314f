import Srf from 'drachtio-srf';
import { Outcome } from '../cdr/models';
import { setCallLogFields } from '../log';
import { assertUsableAudioSdp, firstAudioCodec, SdpError } from '../media/sdp';
import { assertUsableCodec, NoUsableCodecError } from '../media/usable-codecs';
import { byeWithin, sessionInterval, supportsTimer, withTimeout } from '../sip/dialog-requests';
import { allowsUpdate, parseSessionExpires } from '../sip/session-timer';
import { BridgedCall, EndOptions, Refusal, SipFinal } from './bridged-call';
import { CallDeps } from './call-deps';
import { CallAnswered, CallEnded, CallStatus } from './call-events';
import { providerEndFields, routeFields } from './cdr-fields';
import { pbxLeg, whatsAppLeg } from './legs';
import { BusinessLine, ProviderError } from './provider-port';
import { NumberRoute } from './numbers-port';
import { BSUID } from './call-events';

export interface OutboundRequest {
  businessNumber: string;
  /** The WhatsApp user's address: E.164, or the BSUID a caller without a number was known by. */
  customerNumber: string;
  agent: string | null;
  phoneId: string | null;
  /** The agent's X-WhatsApp-Context, when the INVITE gave one. */
  context: string | null;
}


const REFUSALS = {
  noPermission: { status: 403, reason: 'Forbidden', cause: 21, text: 'no WhatsApp call permission from this customer' },
  declined: { status: 603, reason: 'Decline', cause: 21, text: 'declined by the WhatsApp user' },
  noAnswer: { status: 480, reason: 'Temporarily Unavailable', cause: 19, text: 'no answer from the WhatsApp user' },
  unavailable: { status: 480, reason: 'Temporarily Unavailable', cause: 20, text: 'WhatsApp user unavailable' },
  notOnWhatsApp: { status: 404, reason: 'Not Found', cause: 1, text: 'number cannot take WhatsApp calls' },
  limited: { status: 486, reason: 'Busy Here', cause: 17, text: 'WhatsApp call limit reached' },
  unknownNumber: { status: 404, reason: 'Not Found', cause: 1, text: 'business number not served by this bridge' },
  badSdp: { status: 488, reason: 'Not Acceptable Here', cause: 65, text: 'unusable SDP offer' },
  // Q.850 88: incompatible destination (what FreeSWITCH itself says for a 488); RFC 3261's warn-code 305.
  noCodec: { status: 488, reason: 'Not Acceptable Here', cause: 88, text: 'no codec the bridge can use', warning: 305 },
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
    const route = deps.numbers.byNumber(call.businessNumber);
    super(deps, deps.log.child({ direction: 'outbound' }), whatsAppLeg('placing'), pbxLeg('invited'), undefined, route);
    setCallLogFields(this.log, { sipCallId: req.get('Call-ID') });
    this.phoneId = call.phoneId ?? route?.line.phoneId ?? null;
    this.rec.create({
      direction: 'outbound',
      wacid: null,
      phone_id: this.phoneId,
      business_number: call.businessNumber,
      customer_number: call.customerNumber,
      ...routeFields(route),
      user_id: BSUID.test(call.customerNumber) ? call.customerNumber : null,
      context: call.context,
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
      const route = this.route;
      if (!route) {
        return await this.end('failed', 'bridge', { refusal: REFUSALS.unknownNumber, error: `business number ${c.businessNumber} is not served by this bridge` });
      }
      const perm = await permissions.checkBeforeCall(this.lineOf(route), route.provider, c.customerNumber);
      if (!perm.allowed) {
        this.rec.event('no_permission', { reason: perm.reason, ...(perm.detail ? { detail: perm.detail } : {}) });
        if (perm.canRequest !== false) await this.requestPermissionIfConfigured();
        const refusal = perm.detail ? { ...REFUSALS.noPermission, text: `${REFUSALS.noPermission.text}: ${perm.detail}` } : REFUSALS.noPermission;
        return await this.end('rejected', 'bridge', { refusal, error: `no call permission (${perm.reason}${perm.detail ? `: ${perm.detail}` : ''})` });
      }
      const tooShort = sessionIntervalTooShort(this.req, config.pbx.minSessionExpiresS);
      if (tooShort) return await this.end('failed', 'bridge', { refusal: tooShort, error: 'session interval too small' });
      assertUsableAudioSdp(this.req.body);
      // Checked before WhatsApp is called: rtpengine would otherwise answer the PBX with opus on a payload
      // type it never offered (FreeSWITCH's loopback channels offer only L16), once the customer accepted.
      assertUsableCodec(this.req.body, this.pbxCodecs);
      // No audio crosses in either direction before WhatsApp says ACCEPTED (see CallMedia.offerFromPbx).
      const media = this.allocateMedia();
      const waOffer = await media.offerFromPbx(this.req.body);
      // WhatsApp's digits reach the agent re-sent by the bridge with their real length where rtpengine cannot relay them so.
      this.relayDigits({ inject: config.pbx.dtmfMode === 'rfc4733' && !media.relaysDigitsAsTheyAre });
      this.checkWhatsAppAddresses(waOffer);
      if (this.isEnding) return;
      this.transition('connecting', {}, null);
      this.deps.marks.mark(this.id, 'connect_sent');
      const { wacid } = await route.provider.connect({ from: this.lineOf(route), to: c.customerNumber, sdpOffer: waOffer, context: callbackContext(this.id, c.context) });
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
    if (this.wacid !== null || this.inState('ended')) return false;
    // The provider echoes the context the connect gave it (Meta): it names this call exactly.
    const echoed = answer.context ? callIdOfContext(answer.context) : null;
    if (echoed) return echoed === this.id;
    return answer.from === this.call.businessNumber && answer.to === this.call.customerNumber;
  }

  /** How the provider names the business number: the route's line, with the phone id this call knows. */
  private lineOf(route: NumberRoute): BusinessLine {
    return { ...route.line, number: this.call.businessNumber, phoneId: this.phoneId ?? route.line.phoneId };
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
    this.openSession(uas, this.call.businessNumber, null, bridgeRefreshes(this.req, this.deps.config.pbx.minSessionExpiresS));
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
    const route = this.route;
    if (!auto || !route) return;
    try {
      await this.deps.permissions.request({ line: this.lineOf(route), provider: route.provider }, this.call.customerNumber, { kind: 'interactive', text: auto.text }, 'auto');
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
    if (err instanceof NoUsableCodecError) {
      this.deps.metrics.codecRefused('agent_offer');
      this.rec.event('codec_refused', { sdp: 'agent_offer', offered: err.offered });
      this.log.warn({ offered: err.offered, usable: err.usable }, 'agent\'s INVITE offers no codec the bridge can use: refused with 488, no WhatsApp call placed');
      return this.end('failed', 'bridge', { refusal: { ...REFUSALS.noCodec, text: `${REFUSALS.noCodec.text} (offered: ${err.offered.join(', ') || 'none'})` }, error: `bad SDP: ${message}` });
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
    const r: Refusal = opts.refusal ?? REFUSALS.failed;
    this.res.send(r.status, r.reason, {
      headers: {
        Reason: `Q.850;cause=${r.cause};text="${r.text}"`,
        ...(r.warning ? { Warning: `${r.warning} wa-sip-bridge "${r.text}"` } : {}),
        ...(r.status === 422 ? { 'Min-SE': String(this.deps.config.pbx.minSessionExpiresS) } : {}),
      },
    });
    return { sip_final_code: r.status, sip_final_reason: r.reason };
  }

  protected override endWhatsAppLeg(): Promise<void> {
    return this.wacid ? this.terminateWa() : Promise.resolve();
  }

  private async terminateWa(): Promise<void> {
    if (this.waEnded || !this.wacid) return;
    this.moveWa('ended');
    const wacid = this.wacid;
    const provider = this.route!.provider;
    await this.endWhatsAppWith(() => provider.terminate({ phoneId: this.phoneId ?? '', wacid }));
  }
}

/**
 * What the connect gives the provider to echo back in the call's webhooks (Meta's
 * biz_opaque_callback_data, at most 512 characters): the bridge's call id and the agent's context.
 */
export function callbackContext(callId: string, context: string | null): string {
  let ctx = context;
  for (;;) {
    const s = JSON.stringify(ctx === null ? { call: callId } : { call: callId, context: ctx });
    if (s.length <= MAX_CALLBACK_CONTEXT || ctx === null) return s;
    ctx = ctx.slice(0, Math.max(0, ctx.length - Math.ceil((s.length - MAX_CALLBACK_CONTEXT) / 2)));
  }
}

/** Meta's limit on biz_opaque_callback_data. */
const MAX_CALLBACK_CONTEXT = 512;

/** The bridge's call id in an echoed context (null: not one the bridge made). */
export function callIdOfContext(echoed: string): string | null {
  try {
    const v: unknown = JSON.parse(echoed);
    return typeof v === 'object' && v !== null && typeof (v as { call?: unknown }).call === 'string' ? (v as { call: string }).call : null;
  } catch {
    return null;
  }
}

/** RFC 4028: an INVITE asking for a session interval below ours gets 422 with our Min-SE. */
function sessionIntervalTooShort(req: Srf.SrfRequest, minSe: number): Refusal | null {
  const se = sessionInterval(req);
  if (se === null || se >= minSe) return null;
  return { status: 422, reason: 'Session Interval Too Small', cause: 127, text: `session interval below ${minSe} s` };
}

/**
 * The 200 OK's session timer headers: the PBX that asked for a session timer refreshes it, unless it
 * asked the bridge to (refresher=uas): then the bridge does (see bridgeRefreshes).
 */
function sessionTimerAnswer(req: Srf.SrfRequest, minSe: number): Record<string, string> {
  const se = sessionInterval(req);
  if (se === null || !supportsTimer(req)) return {};
  const refresher = parseSessionExpires(req.get('Session-Expires'))?.refresher === 'uas' ? 'uas' : 'uac';
  return { 'Session-Expires': `${Math.max(se, minSe)};refresher=${refresher}`, Require: 'timer' };
}

/** The session refresh the agent's INVITE leaves to the bridge (refresher=uas, with timer support), if any. */
function bridgeRefreshes(req: Srf.SrfRequest, minSe: number): { intervalS: number; allowsUpdate: boolean } | null {
  const timer = parseSessionExpires(req.get('Session-Expires'));
  if (!timer || timer.refresher !== 'uas' || !supportsTimer(req)) return null;
  return { intervalS: Math.max(timer.intervalS, minSe), allowsUpdate: allowsUpdate(req.get('Allow')) };
}
