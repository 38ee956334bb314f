import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import Srf from 'drachtio-srf';
import { Config } from '../config';
import { HangupBy, Outcome } from '../cdr/models';
import { CallRecorder, CdrStore } from '../cdr/store';
import { Logger } from '../log';
import { pbxOfferToWa, waAnswerToPbx } from '../media/profiles';
import { NgAddress, RtpEngine } from '../media/rtpengine';
import { assertUsableAudioSdp, firstAudioCodec, SdpError } from '../media/sdp';
import { releaseMedia } from '../media/stats';
import { YCloudClient, YCloudError } from '../providers/ycloud/client';
import { CallingConnect, CallingTerminate } from '../providers/ycloud/events';
import { providerEndFields, talkSeconds } from './cdr-fields';
import { Marks } from './marks';
import { PermissionStore } from './permissions';

export interface OutboundDeps {
  config: Pick<Config, 'outbound' | 'nodeId'>;
  ycloud: YCloudClient;
  rtp: RtpEngine;
  srf: Srf;
  cdr: CdrStore;
  permissions: PermissionStore;
  log: Logger;
  marks: Marks;
  /** Called once YCloud has named the call, so webhooks can find it (and buffered ones replay). */
  bind: (wacid: string, call: OutboundCall) => void;
}

export interface OutboundRequest {
  businessNumber: string;
  customerNumber: string;
  agent: string | null;
  phoneId: string | null;
}

/** A SIP final answer with a Reason a PBX can show or route on (Q.850 cause + text). */
interface Refusal { status: number; reason: string; cause: number; text: string }

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

type Phase = 'offered' | 'connecting' | 'ringing' | 'accepted' | 'ended';

/**
 * An agent's call to a WhatsApp user: INVITE from the PBX -> permission check -> rtpengine offer
 * (WebRTC) -> calls/connect -> connect webhook (answer) -> RINGING: 180 -> ACCEPTED: 200 OK.
 * Webhooks may come in any order; each handler is safe to call at any phase.
 */
export class OutboundCall extends EventEmitter {
  readonly id = crypto.randomUUID();
  private readonly rec: CallRecorder;
  private readonly log: Logger;
  private readonly waTag = `wa-${crypto.randomBytes(6).toString('hex')}`;
  private readonly pbxTag = `pbx-${crypto.randomBytes(6).toString('hex')}`;
  private phase: Phase = 'offered';
  private ng: NgAddress | null = null;
  wacid: string | null = null;
  private phoneId: string | null;
  private pbxSdp: string | null = null;
  private acceptedEarly = false;
  private declined = false;
  private rang = false;
  private waEnded = false;
  private pbxCancelled = false;
  private uas: Srf.Dialog | null = null;
  /** The 200 OK to the PBX while it is being sent. */
  private answering: Promise<Srf.Dialog> | null = null;
  private ringTimer: NodeJS.Timeout | null = null;
  private acceptedAt: Date | null = null;
  private ending: Promise<void> | null = null;

  constructor(private readonly deps: OutboundDeps, private readonly req: Srf.SrfRequest, private readonly res: Srf.SrfResponse, readonly call: OutboundRequest) {
    super();
    this.phoneId = call.phoneId;
    this.log = deps.log.child({ callId: this.id, direction: 'outbound' });
    this.rec = new CallRecorder(deps.cdr, this.id, this.log);
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
        return await this.end('rejected', 'bridge', REFUSALS.noPermission, `no call permission (${perm.reason})`);
      }
      assertUsableAudioSdp(this.req.body);
      const ng = (this.ng = this.deps.rtp.pick());
      const offered = await this.deps.rtp.offer(ng, { 'call-id': this.id, 'from-tag': this.pbxTag, sdp: this.req.body, ...pbxOfferToWa() });
      // No audio crosses in either direction before WhatsApp says ACCEPTED.
      await this.deps.rtp.blockMedia(ng, { 'call-id': this.id, 'from-tag': this.pbxTag });
      if (this.ending) return;
      this.phase = 'connecting';
      this.deps.marks.mark(this.id, 'connect_sent');
      const { wacid } = await this.deps.ycloud.connect({ from: c.businessNumber, to: c.customerNumber, sdp: String(offered.sdp ?? '') });
      this.rec.event('connect_sent', { wacid });
      if (wacid) this.bindWacid(wacid);
      if (this.ending) return;
      this.ringTimer = setTimeout(() => {
        this.rec.event('ring_timeout', { afterMs: config.outbound.ringTimeoutMs });
        void this.end('no_answer', 'bridge', REFUSALS.noAnswer);
      }, config.outbound.ringTimeoutMs);
      if (this.pbxCancelled) await this.end('caller_hangup', 'pbx');
    } catch (err) {
      await this.fail(err);
    }
  }

  /** Matches a connect webhook that arrived before calls/connect returned a wacid. */
  matchesUnbound(connect: CallingConnect): boolean {
    return this.wacid === null && this.phase !== 'ended' && connect.from === this.call.businessNumber && connect.to === this.call.customerNumber;
  }

  bindWacid(wacid: string): void {
    if (this.wacid) return;
    this.wacid = wacid;
    this.rec.update({ wacid });
    this.deps.bind(wacid, this);
    // An agent who hung up while calls/connect was in flight: end the WhatsApp call now that it has a name.
    if (this.ending && !this.waEnded) void this.terminateWa();
  }

  /** The connect webhook carries WhatsApp's SDP answer. */
  async onConnect(c: CallingConnect): Promise<void> {
    if (this.phase === 'ended' || this.pbxSdp) return;
    this.bindWacid(c.wacid);
    this.phoneId ??= c.phoneId;
    this.rec.update({ phone_id: this.phoneId });
    try {
      if (c.sdpType !== 'answer') throw new SdpError(`a business-initiated call must be answered with SDP, got ${c.sdpType}`);
      assertUsableAudioSdp(c.sdp);
      const res = await this.deps.rtp.answer(this.ng!, { 'call-id': this.id, 'from-tag': this.pbxTag, 'to-tag': this.waTag, sdp: c.sdp, ...waAnswerToPbx() });
      await this.deps.rtp.blockMedia(this.ng!, { 'call-id': this.id, 'from-tag': this.waTag });
      this.pbxSdp = String(res.sdp ?? '');
      this.rec.update({ wa_codec: firstAudioCodec(c.sdp), pbx_codec: firstAudioCodec(this.pbxSdp) });
      this.rec.event('whatsapp_answer_sdp');
      if (this.acceptedEarly) await this.answerPbx();
    } catch (err) {
      await this.fail(err);
    }
  }

  /** RINGING, ACCEPTED or REJECTED from the status webhook. */
  async onStatus(status: string, arrivedAt?: number): Promise<void> {
    if (this.phase === 'ended') return;
    this.rec.event('provider_status', { status });
    if (status === 'RINGING' && !this.rang) {
      this.rang = true;
      if (this.phase === 'connecting') {
        this.phase = 'ringing';
        this.rec.update({ state: 'ringing', pbx_ringing_at: new Date() });
        if (!this.res.finalResponseSent) this.res.send(180);
      }
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
    if (this.waEnded || this.phase === 'ended') return;
    this.waEnded = true;
    this.rec.event('whatsapp_terminated', { status: t.status ?? null });
    if (this.phase === 'accepted') void this.end('answered', 'whatsapp');
    else if (this.declined) void this.end('rejected', 'whatsapp', REFUSALS.declined);
    else if (this.rang) void this.end('no_answer', 'whatsapp', REFUSALS.noAnswer);
    else void this.end('unreachable', 'whatsapp', REFUSALS.unavailable);
  }

  hangup(): Promise<void> {
    return this.end(this.phase === 'accepted' ? 'answered' : 'failed', 'bridge', REFUSALS.failed, 'bridge shutdown');
  }

  private async answerPbx(): Promise<void> {
    if (this.answering || this.phase === 'ended' || this.res.finalResponseSent) return;
    this.phase = 'accepted';
    this.clearRingTimer();
    const ng = this.ng!;
    this.answering = (async () => {
      await Promise.all([this.pbxTag, this.waTag].map((tag) => this.deps.rtp.unblockMedia(ng, { 'call-id': this.id, 'from-tag': tag })));
      return this.deps.srf.createUAS(this.req, this.res, { localSdp: this.pbxSdp! });
    })();
    let uas: Srf.Dialog;
    try {
      uas = await this.answering;
    } catch (err) {
      this.answering = null;
      return this.fail(err);
    }
    this.deps.marks.mark(this.id, 'pbx_200_sent');
    if (this.ending) return; // the teardown under way waits for this dialog and ends it
    this.uas = uas;
    this.acceptedAt = new Date();
    this.rec.update({ state: 'accepted', accepted_at: this.acceptedAt, pbx_answered_at: this.acceptedAt, sip_final_code: 200, sip_final_reason: 'OK' });
    this.rec.event('accepted');
    uas.on('destroy', () => {
      this.uas = null;
      void this.end('answered', 'pbx');
    });
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
    if (err instanceof YCloudError && this.phase === 'connecting' && !this.wacid) {
      const { refusal, outcome } = refusalForConnectError(err);
      if (err.whatsappCode === 138006) await this.requestPermissionIfConfigured();
      return this.end(outcome, 'bridge', refusal, `YCloud: ${message}`);
    }
    const kind = err instanceof SdpError ? 'bad SDP' : err instanceof YCloudError ? 'YCloud' : 'internal';
    this.log.warn({ err: message, kind }, 'outbound call failed');
    await this.end('failed', 'bridge', err instanceof SdpError ? REFUSALS.badSdp : REFUSALS.failed, `${kind}: ${message}`);
  }

  private end(outcome: Outcome, hangupBy: HangupBy, refusal?: Refusal, error?: string): Promise<void> {
    if (!this.ending) this.ending = this.teardown(outcome, hangupBy, refusal, error);
    return this.ending;
  }

  private async teardown(outcome: Outcome, hangupBy: HangupBy, refusal?: Refusal, error?: string): Promise<void> {
    this.phase = 'ended';
    this.clearRingTimer();
    const tasks: Array<Promise<unknown>> = [];
    let sip: { sip_final_code?: number; sip_final_reason?: string } = {};
    if (this.uas || this.answering) {
      // Established, or the 200 OK is on its way (WhatsApp may hang up at that very moment): BYE.
      const pending = this.answering;
      const known = this.uas;
      this.uas = null;
      tasks.push((async () => {
        const d = known ?? (await pending!.catch(() => null));
        if (!d) return;
        d.removeAllListeners('destroy');
        await new Promise<void>((resolve) => d.destroy(undefined, () => resolve()));
      })());
      if (!known) sip = { sip_final_code: 200, sip_final_reason: 'OK' };
    } else if (this.pbxCancelled) {
      sip = { sip_final_code: 487, sip_final_reason: 'Request Terminated' };
    } else if (!this.res.finalResponseSent) {
      const r = refusal ?? REFUSALS.failed;
      this.res.send(r.status, r.reason, { headers: { Reason: `Q.850;cause=${r.cause};text="${r.text}"` } });
      sip = { sip_final_code: r.status, sip_final_reason: r.reason };
    }
    if (!this.waEnded && this.wacid) tasks.push(this.terminateWa());
    let mediaStats: object | null = null;
    if (this.ng) {
      const warn = (what: string, e: unknown) => this.log.warn({ err: (e as Error)?.message ?? String(e) }, what);
      tasks.push(releaseMedia(this.deps.rtp, this.ng, this.id, { [this.waTag]: 'whatsapp', [this.pbxTag]: 'pbx' }, warn).then((s) => { mediaStats = s; }));
    }
    await Promise.all(tasks);
    const endedAt = new Date();
    this.rec.update({
      state: 'ended', outcome, hangup_by: hangupBy, ended_at: endedAt, error: error ?? null, media_stats: mediaStats,
      talk_seconds: talkSeconds(this.acceptedAt, endedAt),
      ...sip,
    });
    this.rec.event('ended', { outcome, hangupBy, error: error ?? null });
    await this.rec.flushed();
    this.log.info({ outcome, hangupBy }, 'outbound call ended');
    this.emit('ended');
  }

  private async terminateWa(): Promise<void> {
    if (this.waEnded || !this.wacid) return;
    this.waEnded = true;
    try {
      await this.deps.ycloud.terminate({ phoneId: this.phoneId ?? '', wacid: this.wacid });
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not terminate the WhatsApp call');
      this.rec.event('whatsapp_end_failed', { message: (err as Error).message });
    }
  }

  private clearRingTimer(): void {
    if (this.ringTimer) clearTimeout(this.ringTimer);
    this.ringTimer = null;
  }
}
