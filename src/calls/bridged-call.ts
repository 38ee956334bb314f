import crypto from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import Srf from 'drachtio-srf';
import { HangupBy, Outcome } from '../cdr/models';
import { CallFields, CallRecorder } from '../cdr/store';
import { gatedWrites } from '../cdr/gated-writes';
import { dialogIds } from '../sip/out-of-dialog';
import { callLogger, Logger, setCallLogFields } from '../log';
import { CallMedia } from '../media/call-media';
import { mediaAddresses } from '../media/sdp';
import { callQuality } from '../media/quality';
import { MediaStats } from '../media/stats';
import { ngAddressText } from '../media/rtpengine';
import { TypedEmitter } from '../util/typed-emitter';
import { CallDeps } from './call-deps';
import { talkSeconds } from './cdr-fields';
import { CallState, IN_CALL, Lifecycle } from './lifecycle';
import { LegState, PbxLegState, WhatsAppLegState } from './legs';
import { LiveCall } from './live';
import { RecoveryInfo } from './recovery-info';
import { PbxSession } from './pbx-session';
import { NumberRoute } from './numbers-port';
import { MediaPlan } from '../media/profiles';

export interface CallEvents {
  /** The provider named the call (an agent's call: calls/connect answered, or its first webhook). */
  named: [wacid: string];
  /** Both legs are down and the CDR is written. */
  ended: [];
}

/** How the PBX leg ended, for the CDR. */
export interface SipFinal { sip_final_code?: number; sip_final_reason?: string }

/** A digit the WhatsApp user pressed, as rtpengine saw it. */
export interface Digit { digit: string; durationMs: number }

/**
 * What inbound and outbound calls share: the CDR recorder and logger, the media tags, the one place
 * where the state changes (and the CDR's `state` with it), timers, the PBX session once the PBX leg is
 * up, and the teardown that ends both legs and releases media exactly once. Subclasses add their own
 * set-up steps and say how each leg is ended.
 */
export abstract class BridgedCall extends TypedEmitter<CallEvents> {
  readonly id = crypto.randomUUID();
  protected readonly rec: CallRecorder;
  protected log: Logger;
  private readonly life = new Lifecycle();
  protected media: CallMedia | null = null;
  protected session: PbxSession | null = null;
  protected acceptedAt: Date | null = null;
  private readonly timers = new Set<NodeJS.Timeout>();
  private digits = { inject: false, blocked: false, injected: [] as string[] };
  private ending: Promise<void> | null = null;

  /** A duplicate that was set up in parallel with its admission and dropped: it leaves no trace. */
  private discarded = false;
  private readonly recovery: RecoveryInfo = {};

  /**
   * `wa`, `pbx`: the legs' states (legs.ts), each starting where its direction starts.
   * `keep`: when given, the CDR is written only if it resolves true (else every write is dropped).
   */
  protected constructor(
    protected readonly base: CallDeps,
    log: Logger,
    protected readonly wa: LegState<WhatsAppLegState>,
    protected readonly pbx: LegState<PbxLegState>,
    keep?: Promise<boolean>,
    /** The business number's route, when known at the start (an agent's call finds it in run()). */
    protected route: NumberRoute | null = null,
  ) {
    super();
    // Every line of the call carries callId, and wacid / sipCallId once known (setCallLogFields).
    this.log = callLogger(log, this.id);
    const { cdrRetryMs, timeoutMs } = base.config.database;
    // Each attempt is bounded by the pool's own waits (acquire, connect, query); the recorder's bound is a backstop.
    this.rec = new CallRecorder(keep ? gatedWrites(base.cdr, keep) : base.cdr, this.id, this.log, {
      retryForMs: cdrRetryMs, attemptTimeoutMs: 3 * timeoutMs + 1000, onGiveUp: (n) => base.metrics.cdrWritesDropped(n),
    });
  }

  /** Drops a call that must not be bridged (see InboundCall's Admission): media released, no CDR, YCloud untouched. */
  protected discard(why: string): Promise<void> {
    this.log.info({ why }, 'connect dropped');
    this.discarded = true;
    this.moveWa('ended');
    return this.end('failed', 'bridge', { error: why });
  }

  /** What a survivor (or this node after a restart) needs to end the call if this process dies. */
  private noteRecovery(part: RecoveryInfo): void {
    Object.assign(this.recovery, part);
    this.rec.update({ recovery: { ...this.recovery } });
  }

  /** CDR writes given up or refused so far (0 when the whole record reached Postgres). */
  get lostCdrWrites(): number {
    return this.rec.lostWrites;
  }

  get state(): CallState {
    return this.life.state;
  }

  /** True once the call is being (or has been) torn down. */
  get isEnding(): boolean {
    return this.ending !== null;
  }

  /**
   * The one place a call changes state: checks the move against the lifecycle table, writes the CDR's
   * `state` (with `fields`) and appends the timeline event (`event`, default the state's name).
   * A move the table does not allow changes nothing, returns false, is counted
   * (wasb_call_state_refused_total) and logged at error: a defect to report. Once the call has ended
   * late news (a hold answered as the BYE crosses) is expected, and logged at info.
   */
  protected transition(to: CallState, fields: CallFields = {}, event: string | null = to, detail: object | null = null): boolean {
    if (!this.life.can(to)) {
      this.refused('call', this.life.state, to, event);
      return false;
    }
    this.log.debug({ from: this.life.state, to }, 'call state');
    this.life.to(to);
    this.rec.update({ state: to, ...fields });
    if (event) this.rec.event(event, detail);
    return true;
  }

  /** Moves the WhatsApp leg (legs.ts); a move its table forbids is refused like a call's. */
  protected moveWa(to: WhatsAppLegState): boolean {
    const from = this.wa.state;
    if (this.wa.to(to)) return true;
    this.refused('whatsapp_leg', from, to, null);
    return false;
  }

  /** Moves the PBX leg (legs.ts); a move its table forbids is refused like a call's. */
  protected movePbx(to: PbxLegState): boolean {
    const from = this.pbx.state;
    if (this.pbx.to(to)) return true;
    this.refused('pbx_leg', from, to, null);
    return false;
  }

  private refused(machine: 'call' | 'whatsapp_leg' | 'pbx_leg', from: string, to: string, event: string | null): void {
    this.base.metrics.stateRefused(machine);
    const late = this.life.state === 'ended';
    this.log[late ? 'info' : 'error']({ machine, from, to, event }, late ? 'state change after the call ended: ignored' : 'state change refused: not in the table');
  }

  /** The call's WhatsApp leg is Meta's SIP (a SIP-mode number): only SIP drives it, webhooks only add to its CDR. */
  get viaSip(): boolean {
    return this.route?.sip != null;
  }

  /** What the provider says of a call it does not drive (a SIP call's webhooks): into its CDR and timeline. */
  noteProviderView(event: string, detail: Record<string, unknown>, fields: CallFields = {}): void {
    if (Object.keys(fields).length) this.rec.update(fields);
    this.rec.event(event, detail);
  }

  /** The WhatsApp leg is over: nothing more is sent to WhatsApp for it. */
  protected get waEnded(): boolean {
    return this.wa.is('ended');
  }

  protected inState(...states: CallState[]): boolean {
    return this.life.is(...states);
  }

  protected get inCall(): boolean {
    return IN_CALL.has(this.life.state);
  }

  /** A timer that the teardown clears. */
  protected timer(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  /** The rtpengine parameters of this call: its number's (codecs, policy), else the bridge's. */
  protected get plan(): MediaPlan {
    return this.route?.plan ?? this.base.plan;
  }

  /** The codecs this call's PBX leg may use. */
  protected get pbxCodecs(): string[] {
    return this.plan.pbxCodecs;
  }

  /** The call's media, on the rtpengine that has the fewest calls (see RtpEngine.pick). */
  protected allocateMedia(): CallMedia {
    const ng = this.base.rtp.pick();
    this.media = new CallMedia(this.base.rtp, this.plan, ng, this.id);
    this.noteRecovery({ rtpengine: ngAddressText(ng) });
    return this.media;
  }

  /**
   * The PBX leg is up: from now on a PbxSession answers whatever the PBX does in its dialog. `refresh`:
   * the bridge, as UAS, was made the session's refresher (RFC 4028), with the interval and whether UPDATE
   * may be used (as UAC, drachtio-server refreshes by itself).
   */
  protected openSession(dialog: Srf.Dialog, callerNumber: string, callerName: string | null, refresh: { intervalS: number; allowsUpdate: boolean } | null = null): void {
    const { pbx, media } = this.base.config;
    const sip = dialogIds(dialog);
    if (sip) this.noteRecovery({ sip });
    const session = new PbxSession(dialog, this.media!, {
      srf: this.base.srf,
      metrics: this.base.metrics,
      lostDialogs: this.base.sipPolicy.lostDialogs,
      log: this.log,
      callerNumber,
      callerName,
      keepalive: { file: media.holdFile, pollMs: media.keepalivePollMs, quietPolls: Math.max(1, Math.ceil(media.keepaliveAfterMs / media.keepalivePollMs)) },
      dtmfMode: pbx.dtmfMode,
      transferRefusePattern: pbx.transferRefusePattern,
      transfers: this.base.sipPolicy.transfers,
      dialogGuard: this.base.sipPolicy.dialogs,
      noAnswerTimeoutMs: pbx.noAnswerTimeoutMs,
      responseTimeoutMs: pbx.responseTimeoutMs,
      requestTimeoutMs: pbx.requestTimeoutMs,
      // The number's PBX credentials (NUMBERS_FILE), else PBX_AUTH_*.
      auth: this.route?.pbx.auth ?? pbx.auth,
    });
    session.on('event', (type, detail) => this.rec.event(type, detail));
    session.on('bye', () => void this.end('answered', 'pbx'));
    session.on('expired', (f) => void this.end(this.acceptedAt ? 'answered' : 'failed', 'bridge', {
      error: `session refresh failed (${f.status ?? 'no answer'}): ${f.message}`,
      byeReason: `SIP;cause=${f.status ?? 408};text="session refresh failed"`,
    }));
    session.on('hold', (held) => {
      if (held) this.transition('held', {}, 'pbx_hold');
      else this.transition('accepted', {}, 'pbx_resume');
    });
    session.on('transferring', (target) => this.transition('transferring', {}, 'transfer_started', { target }));
    session.on('transferred', (r) => {
      const back: CallState = session.isHeld ? 'held' : 'accepted';
      if (r.ok) setCallLogFields(this.log, { sipCallId: r.sipCallId });
      if (r.ok) this.transition(back, { agent: r.agent, pbx_target: r.target, sip_call_id: r.sipCallId }, 'transferred', { target: r.target, agent: r.agent });
      else this.transition(back, {}, 'transfer_failed', { target: r.target, status: r.status });
    });
    this.session = session;
    if (refresh) session.refreshSession(refresh);
    if (pbx.dtmfMode === 'info' && !this.digits.blocked) {
      // The PBX wants digits by INFO only: keep WhatsApp's RFC 4733 events out of its media (rtpengine
      // still logs them, and the log drives the INFO requests).
      this.digits.blocked = true;
      this.media!.blockDigitsFromWhatsApp().catch((err: unknown) => this.log.warn({ err }, 'could not block RFC 4733 digits toward the PBX'));
    }
  }

  /**
   * The SDP WhatsApp is about to get must name only PUBLIC_IP: another address (rtpengine's
   * WhatsApp-facing interface advertising a private one) means a call that connects with no audio and
   * drops after 20 s. Logged loudly and put in the timeline; the call goes on.
   */
  protected checkWhatsAppAddresses(sdp: string): void {
    const expected = this.base.config.publicIp.toLowerCase();
    const wrong = mediaAddresses(sdp).filter((a) => a !== expected);
    if (wrong.length === 0) return;
    this.log.error({ advertised: wrong, publicIp: expected },
      'rtpengine gives WhatsApp an address other than PUBLIC_IP: check its WhatsApp-facing --interface (NAME/LOCAL!PUBLIC_IP) and RTPENGINE_WA_INTERFACE');
    this.rec.event('media_address_mismatch', { advertised: wrong, publicIp: expected });
  }

  /** Both legs are bridged and audio flows: the call is accepted (and, with RECORDING=all, recorded from here). */
  protected markAccepted(fields: CallFields = {}): void {
    this.acceptedAt = new Date();
    if (!this.transition('accepted', { accepted_at: this.acceptedAt, ...fields })) return;
    // Meta's SIP waits for the business's first packet: a PBX that waits too must not leave both silent.
    this.session?.startKeepalive({ eager: this.viaSip });
    this.startRecording();
  }

  private recording: Promise<boolean> | null = null;

  private startRecording(): void {
    const { recorder } = this.base;
    if (!recorder || !this.media || this.recording || this.route?.recording === false) return;
    const ng = this.media.ng;
    this.recording = recorder.begin(ng, this.id).then(() => {
      this.rec.event('recording_started');
      return true;
    }, (err: unknown) => {
      this.log.error({ err }, 'could not start recording the call');
      this.rec.event('recording_failed', { message: (err as Error).message });
      return false;
    });
  }

  /**
   * Closes rtpengine's recording of the call (before its media is released) and returns a function
   * that turns it into the call's audio file once the CDR is written; null when nothing was recorded.
   */
  private async closeRecording(): Promise<(() => Promise<unknown>) | null> {
    const { recorder } = this.base;
    if (!recorder || !this.recording || !this.media || !(await this.recording)) {
      recorder?.forget(this.id);
      return null;
    }
    try {
      await recorder.close(this.media.ng, this.id);
    } catch (err) {
      this.log.warn({ err }, 'could not close the call\'s recording');
    }
    return () => recorder.finish(this.id, this.log);
  }

  /**
   * Plays RECORDING_ANNOUNCEMENT_FILE once to the WhatsApp user while nothing else crosses (the PBX's
   * media, blocked until now, stays blocked, and the user's is held back from the agent), then lets
   * both directions through.
   */
  protected async announce(file: string): Promise<void> {
    const media = this.media!;
    await media.holdBackWhatsApp();
    try {
      const ms = await media.playOnceToWhatsApp(file);
      this.rec.event('announcement_played', { file, durationMs: ms });
      // Not a call timer: the teardown clears those, and this wait must end either way (at most 60 s).
      await delay(ms);
    } catch (err) {
      // A missing or unreadable file must not cost the caller the call: they are connected unannounced.
      this.log.error({ err, file }, 'could not play the recording announcement');
      this.rec.event('announcement_failed', { file, message: (err as Error).message });
    }
    if (this.isEnding) return;
    await media.letBothThrough();
  }

  /**
   * A digit rtpengine saw in this call's media (its DTMF log): into the timeline; from the WhatsApp
   * user, also to the PBX by SIP INFO where the PBX wants that.
   */
  onMediaDigit(sourceTag: string, d: Digit): void {
    // rtpengine's log reads a relabelled 8 kHz digit in 48 kHz units: scaled back to its real length.
    const factor = this.media?.eventDurationFactor(sourceTag) ?? 1;
    if (sourceTag !== this.media?.waTag) {
      this.rec.event('dtmf', { digit: d.digit, durationMs: Math.round(d.durationMs * factor), from: 'pbx' });
      return;
    }
    // A digit the bridge injected itself shows up in the log too: it is not the caller's.
    const echo = this.digits.injected.indexOf(d.digit);
    if (echo >= 0) {
      this.digits.injected.splice(echo, 1);
      return;
    }
    const durationMs = Math.round(d.durationMs * factor);
    this.rec.event('dtmf', { digit: d.digit, durationMs, from: 'whatsapp' });
    if (this.base.config.pbx.dtmfMode === 'info') {
      this.session?.sendDigitInfo(d.digit, durationMs).catch((err: unknown) => {
        this.log.warn({ err }, 'could not send a digit to the PBX by INFO');
        this.rec.event('dtmf_info_failed', { digit: d.digit, message: (err as Error).message });
      });
    } else if (this.digits.inject && this.media) {
      this.digits.injected.push(d.digit);
      this.media.injectDigitFromWhatsApp(d.digit, durationMs).catch((err: unknown) => {
        this.digits.injected.splice(this.digits.injected.indexOf(d.digit), 1);
        this.log.warn({ err }, 'could not send a digit to the PBX');
        this.rec.event('dtmf_failed', { digit: d.digit, message: (err as Error).message });
      });
    }
  }

  /**
   * How this call's WhatsApp digits reach the PBX besides INFO: relayed by rtpengine as they are
   * (`inject` false: rtpengine forwards them unscaled), or blocked in the media and re-sent by the
   * bridge from rtpengine's log with their real length (`inject` true), when rtpengine cannot relay
   * them faithfully.
   */
  protected relayDigits(how: { inject: boolean }): void {
    this.digits = { ...this.digits, inject: how.inject, blocked: how.inject };
  }

  /** Ends the call from the bridge's side: shutdown, or an operator through the API (`reason`). */
  hangup(reason = 'bridge shutdown'): Promise<void> {
    if (!this.ending) this.log.info({ reason }, 'call ended by the bridge');
    return this.end(this.acceptedAt ? 'answered' : 'failed', 'bridge', { error: reason, refusal: this.refusalOnHangup });
  }

  /** The SIP answer for a PBX leg still waiting for one when the bridge ends the call (an agent's INVITE). */
  protected readonly refusalOnHangup: Refusal | undefined = undefined;

  /** The call as the live-calls view shows it: what its CDR says so far, and how long it has lasted. */
  toLive(now = Date.now()): LiveCall {
    const f = this.rec.fields;
    const offered = f.offered_at ?? new Date(now);
    return {
      id: this.id,
      direction: f.direction ?? 'inbound',
      wacid: f.wacid ?? null,
      state: this.state,
      customerNumber: f.customer_number ?? null,
      businessNumber: f.business_number ?? null,
      agent: f.agent ?? null,
      sipCallId: f.sip_call_id ?? null,
      startedAt: offered.toISOString(),
      durationSeconds: secondsSince(offered, now),
      talkSeconds: this.acceptedAt ? secondsSince(this.acceptedAt, now) : null,
    };
  }

  /** Tears down whatever exists, once, and writes the final CDR fields. */
  protected end(outcome: Outcome, hangupBy: HangupBy, opts: EndOptions = {}): Promise<void> {
    if (!this.ending) this.ending = this.teardown(outcome, hangupBy, opts);
    return this.ending;
  }

  /** Ends the PBX leg as this call kind must (BYE, CANCEL, a final response); returns the SIP outcome. */
  protected abstract endPbxLeg(opts: EndOptions): Promise<SipFinal>;
  /** Ends the WhatsApp leg (reject, terminate) unless it is already over; the leg says 'ended' once nothing more will be sent. */
  protected abstract endWhatsAppLeg(wasAccepted: boolean): Promise<void>;

  /** Runs a provider request that ends the WhatsApp leg; a failure is logged and recorded, never thrown. */
  protected async endWhatsAppWith(request: () => Promise<unknown>): Promise<void> {
    try {
      await request();
    } catch (err) {
      this.log.warn({ err }, 'could not end the WhatsApp leg');
      this.rec.event('whatsapp_end_failed', { message: (err as Error).message });
    }
  }

  private async teardown(outcome: Outcome, hangupBy: HangupBy, opts: EndOptions): Promise<void> {
    const wasAccepted = this.acceptedAt !== null;
    const waStillUp = !this.waEnded;
    this.life.to('ended');
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    const [sip, , released] = await Promise.all([
      this.endPbxLeg(opts).finally(() => this.pbx.to('ended')),
      waStillUp ? this.endWhatsAppLeg(wasAccepted) : Promise.resolve(),
      this.media ? this.releaseMedia(this.media) : Promise.resolve(null),
    ]);
    const mediaStats = released?.stats ?? null;
    // A call whose rtpengine died says so, unless something else already ended it with a reason.
    const error = opts.error ?? (released?.failure ? `media: ${released.failure}` : null);
    const endedAt = new Date();
    const quality = callQuality(mediaStats?.quality ?? {});
    this.rec.update({
      state: 'ended', outcome, hangup_by: hangupBy, ended_at: endedAt,
      talk_seconds: talkSeconds(this.acceptedAt, endedAt), media_stats: mediaStats, error,
      mos: quality ? String(quality.mos) : null,
      packet_loss_pct: quality ? String(quality.packetLossPct) : null,
      jitter_ms: quality ? String(quality.jitterMs) : null,
      rtt_ms: quality?.rttMs != null ? String(quality.rttMs) : null,
      ...sip,
    });
    this.rec.event('ended', { outcome, hangupBy, error });
    if (!this.discarded) this.base.metrics.callEnded(this.rec.fields.direction ?? 'inbound', outcome);
    for (const [leg, q] of Object.entries(mediaStats?.quality ?? {})) {
      if (leg === 'whatsapp' || leg === 'pbx') this.base.metrics.observeQuality(leg, q.mos);
    }
    this.onEnded();
    await this.rec.flushed();
    this.log.info({ outcome, hangupBy, mos: quality?.mos ?? null }, 'call ended');
    this.emit('ended');
    // The audio file comes after the CDR (the recorder adds its path, size and length, and says when).
    if (released?.finishRecording) void released.finishRecording();
  }

  /** Closes the call's recording, then ends its media on rtpengine with the statistics read first. */
  private async releaseMedia(media: CallMedia): Promise<{ stats: MediaStats | null; finishRecording: (() => Promise<unknown>) | null; failure: string | null }> {
    const finishRecording = await this.closeRecording();
    let failure: string | null = null;
    const stats = await media.release((what, err) => {
      this.log.warn({ err }, what);
      failure ??= (err as Error).message;
    });
    return { stats, finishRecording, failure };
  }

  /** Hook for what a call kind does right after its legs are down (marks, bookkeeping). */
  protected onEnded(): void {}
}

export interface EndOptions {
  error?: string;
  /** The SIP answer for a PBX leg that is still waiting for one (outbound calls). */
  refusal?: Refusal;
  /** How an INVITE toward the PBX failed (inbound calls). */
  sip?: SipFinal;
  /** The Reason header of the BYE that ends an answered PBX leg (e.g. its SDP answer was unusable). */
  byeReason?: string;
}

/**
 * A SIP final answer with a Reason a PBX can show or route on (Q.850 cause + text), and where it helps
 * a Warning (RFC 3261 warn-code, e.g. 305 incompatible media format) with the same text.
 */
export interface Refusal { status: number; reason: string; cause: number; text: string; warning?: number }

/** Seconds from `t` to `now`, to a tenth. */
function secondsSince(t: Date, now: number): number {
  return Math.max(0, Math.round((now - t.getTime()) / 100) / 10);
}
