import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import Srf from 'drachtio-srf';
import { Config } from '../config';
import { CallRecorder, CdrStore } from '../cdr/store';
import { HangupBy, Outcome } from '../cdr/models';
import { Logger } from '../log';
import { MediaError, NgAddress, RtpEngine } from '../media/rtpengine';
import { pbxAnswerToWa, waOfferToPbx } from '../media/profiles';
import { assertUsableAudioSdp, firstAudioCodec, provisionalPbxAnswer, SdpError } from '../media/sdp';
import { releaseMedia } from '../media/stats';
import { CallingConnect, CallingTerminate } from '../providers/ycloud/events';
import { YCloudClient, YCloudError } from '../providers/ycloud/client';
import { PbxFailure, PbxLeg } from '../sip/pbx-leg';
import { providerEndFields, talkSeconds } from './cdr-fields';
import { Marks } from './marks';
import { outcomeOfPbxFailure, shouldFailover } from './outcome';

export interface CallDeps {
  config: Pick<Config, 'pbx' | 'nodeId'>;
  ycloud: YCloudClient;
  rtp: RtpEngine;
  srf: Srf;
  cdr: CdrStore;
  log: Logger;
  marks: Marks;
  /** False while drachtio-server is unreachable: new calls are refused rather than left hanging. */
  canDial: () => boolean;
}

export class NotReadyError extends Error {}

type Phase = 'offered' | 'pre_accepted' | 'ringing' | 'answered' | 'accepted' | 'ended';

/**
 * A WhatsApp user's call to the business, bridged to the PBX:
 * offer -> rtpengine -> pre-accept -> INVITE -> 200 -> rtpengine answer -> accept -> unblock media.
 * Emits 'ended' once both legs are down and the CDR is written.
 */
export class InboundCall extends EventEmitter {
  readonly id = crypto.randomUUID();
  private readonly rec: CallRecorder;
  private readonly log: Logger;
  private readonly waTag = `wa-${crypto.randomBytes(6).toString('hex')}`;
  private readonly pbxTag = `pbx-${crypto.randomBytes(6).toString('hex')}`;
  private phase: Phase = 'offered';
  private ng: NgAddress | null = null;
  private leg: PbxLeg | null = null;
  private waEnded = false;
  private noAnswer = false;
  private noAnswerTimer: NodeJS.Timeout | null = null;
  private acceptedAt: Date | null = null;
  private ending: Promise<void> | null = null;

  constructor(private readonly deps: CallDeps, readonly connect: CallingConnect) {
    super();
    this.log = deps.log.child({ wacid: connect.wacid, callId: this.id });
    this.rec = new CallRecorder(deps.cdr, this.id, this.log);
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
      if (this.ending) return;
      await this.dialPbx();
    } catch (err) {
      await this.fail(err);
    }
  }

  /** Turns the call away without bridging it (not ready, shutting down). */
  refuse(reason: string): Promise<void> {
    return this.end('failed', 'bridge', reason);
  }

  /** The WhatsApp side ended the call (terminate webhook). */
  onTerminate(t: CallingTerminate): void {
    this.rec.update(providerEndFields(t));
    if (this.waEnded || this.phase === 'ended') return;
    this.waEnded = true;
    this.rec.event('whatsapp_terminated', { status: t.status ?? null, duration: t.duration ?? null });
    if (this.leg && !this.leg.established) {
      this.leg.cancelInvite('cancelled'); // dialPbx() sees the cancellation and ends the call
    } else if (this.phase === 'accepted' || this.phase === 'answered') {
      void this.end('answered', 'whatsapp');
    } else if (!this.leg) {
      void this.end('caller_hangup', 'whatsapp');
    }
  }

  /** Ends the call from the bridge's side (shutdown, operator). */
  hangup(): Promise<void> {
    return this.end(this.phase === 'accepted' ? 'answered' : 'failed', 'bridge', 'bridge shutdown');
  }

  private get mediaCallId(): string {
    return this.id;
  }

  private async setUpMedia(): Promise<void> {
    const c = this.connect;
    if (c.sdpType !== 'offer') throw new SdpError(`a user-initiated call must carry an SDP offer, got ${c.sdpType}`);
    assertUsableAudioSdp(c.sdp);
    if (!this.deps.canDial()) throw new NotReadyError('bridge not ready: SIP core (drachtio-server) unavailable');
    const { rtp, config } = this.deps;
    const ng = (this.ng = rtp.pick());
    const base = { 'call-id': this.mediaCallId, 'from-tag': this.waTag };
    const offered = await rtp.offer(ng, { ...base, sdp: c.sdp, ...waOfferToPbx(config.pbx.codecs) });
    this.pbxOffer = String(offered.sdp ?? '');
    const answered = await rtp.answer(ng, { ...base, 'to-tag': this.pbxTag, sdp: provisionalPbxAnswer(config.pbx.codecs), ...pbxAnswerToWa() });
    // Nothing from the PBX leg may reach the WhatsApp user before accept has returned 200.
    await rtp.blockMedia(ng, { 'call-id': this.mediaCallId, 'from-tag': this.pbxTag });
    if (this.ending || this.waEnded) return;
    this.deps.marks.mark(c.wacid, 'preaccept_sent');
    await this.deps.ycloud.preAccept({ phoneId: c.phoneId, wacid: c.wacid, sdp: String(answered.sdp ?? '') });
    if (this.phase === 'ended') return;
    this.phase = 'pre_accepted';
    this.rec.update({ state: 'pre_accepted', pre_accepted_at: new Date(), wa_codec: firstAudioCodec(c.sdp) });
    this.rec.event('pre_accepted');
  }

  private pbxOffer = '';

  private async dialPbx(): Promise<void> {
    const { config, srf } = this.deps;
    const targets = config.pbx.targets;
    this.noAnswerTimer = setTimeout(() => {
      this.noAnswer = true;
      this.rec.event('no_answer_timeout', { afterMs: config.pbx.noAnswerTimeoutMs });
      this.leg?.cancelInvite('cancelled');
    }, config.pbx.noAnswerTimeoutMs);

    for (let i = 0; i < targets.length; i++) {
      const target = requestUri(targets[i]!, this.connect.to);
      const leg = (this.leg = new PbxLeg(srf));
      if (this.waEnded) return this.end('caller_hangup', 'whatsapp');
      leg.on('progress', (status: number) => this.onProgress(status));
      leg.on('bye', () => void this.end('answered', 'pbx'));
      this.rec.update({ pbx_target: target });
      this.rec.event('invite_sent', { target });
      let answer: { sdp: string; agent: string | null };
      try {
        const p = leg.invite({
          target,
          fromNumber: this.connect.from,
          fromHost: hostOf(target),
          sdp: this.pbxOffer,
          responseTimeoutMs: config.pbx.responseTimeoutMs,
          headers: {
            'X-WhatsApp-Call-Id': this.connect.wacid,
            'X-WhatsApp-Business-Number': this.connect.to,
            'X-WhatsApp-Phone-Id': this.connect.phoneId,
            'X-WhatsApp-Caller': this.connect.from,
            'X-Bridge-Call-Id': this.id,
          },
        });
        answer = await p;
      } catch (err) {
        const f = err as PbxFailure;
        if (leg.sipCallId) this.rec.update({ sip_call_id: leg.sipCallId });
        this.rec.event('pbx_failed', { ...f, target });
        if (f.kind === 'cancelled' || this.waEnded || this.noAnswer) {
          return this.end(this.noAnswer && !this.waEnded ? 'no_answer' : 'caller_hangup', this.noAnswer && !this.waEnded ? 'bridge' : 'whatsapp', undefined, f);
        }
        if (shouldFailover(f) && i + 1 < targets.length) continue;
        return this.end(outcomeOfPbxFailure(f), 'pbx', undefined, f);
      }
      this.clearNoAnswer();
      return this.onPbxAnswered(leg, answer);
    }
  }

  private onProgress(status: number): void {
    if (this.phase !== 'pre_accepted') return;
    if (status === 180 || status === 183) {
      this.phase = 'ringing';
      this.deps.marks.mark(this.connect.wacid, 'pbx_ringing');
      this.rec.update({ state: 'ringing', pbx_ringing_at: new Date(), sip_call_id: this.leg?.sipCallId ?? null });
    }
    this.rec.event('pbx_progress', { status });
  }

  private async onPbxAnswered(leg: PbxLeg, answer: { sdp: string; agent: string | null }): Promise<void> {
    const c = this.connect;
    this.deps.marks.mark(c.wacid, 'pbx_answered');
    this.phase = 'answered';
    this.rec.update({
      state: 'answered', pbx_answered_at: new Date(), agent: answer.agent, sip_call_id: leg.sipCallId,
      sip_final_code: 200, sip_final_reason: 'OK', pbx_codec: firstAudioCodec(answer.sdp),
    });
    this.rec.event('pbx_answered', { agent: answer.agent });
    if (this.waEnded) return this.end('answered', 'whatsapp');
    try {
      assertUsableAudioSdp(answer.sdp);
      const { rtp } = this.deps;
      const ng = this.ng!;
      const res = await rtp.answer(ng, {
        'call-id': this.mediaCallId, 'from-tag': this.waTag, 'to-tag': this.pbxTag, sdp: answer.sdp, ...pbxAnswerToWa(),
      });
      if (this.ending) return;
      this.deps.marks.mark(c.wacid, 'accept_sent');
      await this.deps.ycloud.accept({ phoneId: c.phoneId, wacid: c.wacid, sdp: String(res.sdp ?? '') });
      await rtp.unblockMedia(ng, { 'call-id': this.mediaCallId, 'from-tag': this.pbxTag });
      if (this.ending) return;
      this.phase = 'accepted';
      this.acceptedAt = new Date();
      this.rec.update({ state: 'accepted', accepted_at: this.acceptedAt });
      this.rec.event('accepted');
    } catch (err) {
      await this.fail(err);
    }
  }

  private async fail(err: unknown): Promise<void> {
    const message = err instanceof Error ? err.message : String(err);
    const kind = err instanceof SdpError ? 'bad SDP' : err instanceof NotReadyError ? 'not ready' : err instanceof MediaError ? 'media' : err instanceof YCloudError ? 'YCloud' : 'internal';
    this.log.warn({ err: message, kind }, 'inbound call failed');
    await this.end('failed', 'bridge', `${kind}: ${message}`);
  }

  /** Tears down whatever exists, once, and writes the final CDR fields. */
  private end(outcome: Outcome, hangupBy: HangupBy, error?: string, pbx?: PbxFailure): Promise<void> {
    if (!this.ending) this.ending = this.teardown(outcome, hangupBy, error, pbx);
    return this.ending;
  }

  private async teardown(outcome: Outcome, hangupBy: HangupBy, error?: string, pbx?: PbxFailure): Promise<void> {
    const c = this.connect;
    const wasAccepted = this.phase === 'accepted';
    this.phase = 'ended';
    this.clearNoAnswer();
    const { ycloud, rtp } = this.deps;
    const tasks: Array<Promise<unknown>> = [];
    if (this.leg?.established) tasks.push(this.leg.hangup());
    else this.leg?.cancelInvite('cancelled');
    if (!this.waEnded) {
      const ref = { phoneId: c.phoneId, wacid: c.wacid };
      tasks.push((wasAccepted ? ycloud.terminate(ref) : ycloud.reject(ref)).catch((e: unknown) => {
        this.log.warn({ err: (e as Error).message }, 'could not end the WhatsApp leg');
        this.rec.event('whatsapp_end_failed', { message: (e as Error).message });
      }));
    }
    let mediaStats: object | null = null;
    if (this.ng) {
      const warn = (what: string, e: unknown) => this.log.warn({ err: (e as Error)?.message ?? String(e) }, what);
      tasks.push(releaseMedia(rtp, this.ng, this.mediaCallId, { [this.waTag]: 'whatsapp', [this.pbxTag]: 'pbx' }, warn).then((s) => { mediaStats = s; }));
    }
    await Promise.all(tasks);
    const endedAt = new Date();
    const sip = pbx?.kind === 'status' ? { sip_final_code: pbx.status, sip_final_reason: pbx.reason } : {};
    this.rec.update({
      state: 'ended',
      outcome,
      hangup_by: hangupBy,
      ended_at: endedAt,
      talk_seconds: talkSeconds(this.acceptedAt, endedAt),
      media_stats: mediaStats,
      error: error ?? null,
      ...sip,
    });
    this.rec.event('ended', { outcome, hangupBy, error: error ?? null });
    this.deps.marks.mark(c.wacid, 'ended');
    await this.rec.flushed();
    this.log.info({ outcome, hangupBy }, 'call ended');
    this.emit('ended');
  }

  private clearNoAnswer(): void {
    if (this.noAnswerTimer) clearTimeout(this.noAnswerTimer);
    this.noAnswerTimer = null;
  }
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
