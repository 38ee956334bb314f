import Srf from 'drachtio-srf';
import { Logger } from '../log';
import { CallMedia } from '../media/call-media';
import { KeepaliveOptions, MediaKeepalive } from '../media/keepalive';
import { assertUsableAudioSdp, isHoldOffer, SdpError } from '../media/sdp';
import { InDialogGuard, RefusedInDialog } from '../sip/dialog-guard';
import { LostDialogProbe } from '../sip/lost-dialog';
import { SipMetrics } from '../metrics/sip';
import { agentOf, failureOf, PbxLeg, PbxLegError } from '../sip/pbx-leg';
import { byeWithin, localContact, reinviteWithin, requestInDialog, sessionTimerHeaders, withTimeout } from '../sip/dialog-requests';
import { parseReferTo, ReferTarget } from '../sip/refer';
import { TransferPolicy } from '../sip/transfer-policy';
import { Periodic } from '../util/periodic';
import { TypedEmitter } from '../util/typed-emitter';
import { RefreshFailure, RefreshRefused, SessionRefresher } from '../sip/session-timer';

export interface PbxSessionOptions {
  srf: Srf;
  /** Where the requests the session sends are counted. */
  metrics: SipMetrics;
  /** Asks about and ends a dialog drachtio-server has lost (the bridge's one probe). */
  lostDialogs: LostDialogProbe;
  log: Logger;
  /** The WhatsApp user's number: the From of a transferred leg. */
  callerNumber: string;
  /** The caller's display name (the WhatsApp profile name) on INVITEs the bridge sends for a transfer. */
  callerName: string | null;
  keepalive: KeepaliveOptions;
  dtmfMode: 'rfc4733' | 'info';
  /** Transfer targets (the Refer-To user part) matching this are refused: no PSTN legs (Meta's terms). */
  transferRefusePattern: RegExp | null;
  /** Where a REFER may send the new INVITE at all (the configured PBX, TRANSFER_TARGET_PATTERN). */
  transfers: TransferPolicy;
  /** Who may send requests in the PBX dialogs (the dialog's peer, SIP_TRUSTED_SOURCES). */
  dialogGuard: InDialogGuard;
  noAnswerTimeoutMs: number;
  responseTimeoutMs: number;
  /** Bound on every request the session sends in the dialog (NOTIFY, INFO, BYE). */
  requestTimeoutMs: number;
  /** Credentials for a PBX that challenges the bridge (a transfer's new leg). */
  auth: { username: string; password: string } | null;
}

/** What a session tells its call; the call decides the state changes. */
export interface PbxSessionEvents {
  /** The PBX put the WhatsApp user on hold (true) or took them off it (false). */
  hold: [held: boolean];
  /** A transfer started (REFER accepted) ... */
  transferring: [target: string];
  /** ... and ended: `agent` answered on the new leg, or the transfer failed and the old leg stays. */
  transferred: [result: { ok: true; target: string; agent: string | null; sipCallId: string } | { ok: false; target: string; status: number }];
  /** The PBX hung up (BYE on the current leg, not one replaced by a transfer). */
  bye: [];
  /** The bridge's session refresh failed (RFC 4028: 408, 481, no answer): the session is over. */
  expired: [failure: RefreshFailure];
  /** Something for the call's timeline. */
  event: [type: string, detail: object | null];
}

/**
 * The PBX leg once it is up, whichever side sent the INVITE: answers everything the PBX does mid-call
 * on that leg alone (the WhatsApp leg never re-negotiates) — re-INVITEs and UPDATEs with or without
 * SDP (hold, resume, a new address or codec, session refreshes), REFER transfers, INFO — and keeps
 * media flowing to the WhatsApp user while the PBX sends none.
 */
export class PbxSession extends TypedEmitter<PbxSessionEvents> {
  private current: Srf.Dialog;
  private lastPbxSdp: string;
  private held = false;
  private transfer: Promise<void> | null = null;
  private closed = false;
  private renewing = false;
  /** The INVITE of a transfer under way (cancelled if the call ends meanwhile). */
  private transferLeg: PbxLeg | null = null;
  private readonly keepalive: MediaKeepalive;
  /** Looks for the dialog being lost to a drachtio-server restart, then asks the PBX whether it is up. */
  private readonly lostWatch: Periodic;
  private lostNoted = false;
  /** Requests refused in this call's dialogs so far (the first few go into the timeline). */
  private refusedInDialog = 0;
  /**
   * Dialogs drachtio-server has dropped although the bridge refused the BYE that named them:
   * drachtio-server forgets a dialog on any BYE it receives, before the bridge answers it.
   */
  private readonly forgotten = new WeakSet<Srf.Dialog>();
  private readonly log: Logger;
  /** The bridge refreshing the session itself, when it was made the refresher (see refreshSession). */
  private refresher: SessionRefresher | null = null;
  /** A refresh of the bridge's own is waiting for its answer (see attach's 'destroy'). */
  private refreshInFlight = false;

  constructor(dialog: Srf.Dialog, private readonly media: CallMedia, private readonly o: PbxSessionOptions) {
    super();
    this.log = o.log;
    this.current = dialog;
    this.lastPbxSdp = dialog.remote.sdp;
    this.keepalive = new MediaKeepalive(
      media,
      o.keepalive,
      (type, detail) => {
        this.emit('event', type, detail);
        // The PBX is sending again without having re-negotiated (a muted agent): give its audio a
        // fresh stream toward WhatsApp (see CallMedia.repointPbx) by re-INVITing the PBX leg.
        if (type === 'keepalive_stopped' && this.media.needsFreshLeg) void this.renewPbxLeg();
        // The PBX's stream came back on an SSRC the WhatsApp user has left (Asterisk's own music on
        // hold, direct_media moving back): no signalling says so; the same cure (see SsrcWatch).
        if (type === 'pbx_ssrc_returned' && !this.transfer && !this.renewing) {
          this.media.needFreshLeg();
          void this.renewPbxLeg();
        }
      },
      (what, err) => this.log.warn({ err }, what),
    );
    this.attach(dialog);
    this.lostWatch = new Periodic(() => this.watchDialog(), Math.max(1000, o.requestTimeoutMs));
    void this.lostWatch.start();
  }

  get isHeld(): boolean {
    return this.held;
  }

  /** From now on the WhatsApp user must never go without media (call accepted); `eager`: see MediaKeepalive.start. */
  startKeepalive(o: { eager?: boolean } = {}): void {
    this.keepalive.start(o);
  }

  /**
   * The bridge is the session's refresher as UAS (RFC 4028: the agent's INVITE asked refresher=uas;
   * as UAC, drachtio-server refreshes by itself): it refreshes at half the interval, by UPDATE without
   * SDP where the PBX allows UPDATE, else by re-INVITE with the current SDP. A refresh answered 408 or
   * 481, or not at all, ends the call ('expired'); the timer stops with the session.
   */
  refreshSession(o: { intervalS: number; allowsUpdate: boolean }): void {
    if (this.closed || this.refresher) return;
    const headers = { 'Session-Expires': `${o.intervalS};refresher=uac`, Supported: 'timer' };
    const method = o.allowsUpdate ? 'UPDATE' : 'INVITE';
    const send = async (): Promise<void> => {
      this.refreshInFlight = true;
      try {
        await sendOnce();
      } finally {
        this.refreshInFlight = false;
      }
    };
    const sendOnce = async (): Promise<void> => {
      const dialog = this.current;
      if (method === 'UPDATE') {
        const res = await requestInDialog(dialog, { method: 'UPDATE', headers }, this.o.requestTimeoutMs, this.o.metrics);
        if (res.status < 200 || res.status >= 300) throw new RefreshRefused(res.status, res.reason ?? '');
        return;
      }
      const answer = await reinviteWithin(dialog, dialog.local.sdp, this.o.requestTimeoutMs, this.o.metrics, headers);
      // The PBX may answer a refresh with other media (a new address): the PBX leg follows it.
      if (answer && !sameSession(answer, this.lastPbxSdp)) {
        assertUsableAudioSdp(answer);
        this.lastPbxSdp = answer;
        await this.media.repointPbx(answer);
      }
    };
    const refresher = (this.refresher = new SessionRefresher(o.intervalS, send));
    refresher.on('refreshed', (n) => this.emit('event', 'session_refresh_sent', { method, n }));
    refresher.on('retry', (f) => this.emit('event', 'session_refresh_refused', { method, status: f.status }));
    refresher.on('failed', (f) => {
      this.log.warn({ status: f.status, message: f.message }, 'session refresh failed: the call ends (RFC 4028)');
      this.emit('event', 'session_refresh_failed', { method, status: f.status });
      if (!this.closed) this.emit('expired', f);
    });
    this.emit('event', 'session_refresher', { intervalS: o.intervalS, method });
    refresher.start();
  }

  /** Sends a digit to the PBX as SIP INFO (application/dtmf-relay), when that is the PBX's DTMF mode. */
  async sendDigitInfo(digit: string, durationMs: number): Promise<void> {
    if (this.o.dtmfMode !== 'info' || this.closed) return;
    const body = `Signal=${digit}\r\nDuration=${Math.max(40, Math.round(durationMs))}\r\n`;
    await requestInDialog(this.current, { method: 'INFO', headers: { 'Content-Type': 'application/dtmf-relay' }, body }, this.o.requestTimeoutMs, this.o.metrics);
  }

  /**
   * Ends the PBX leg (BYE, bounded, with `reason` as its Reason header) and stops watching media. A
   * dialog drachtio-server has lost (it restarted mid-call) gets its BYE from outside the dialog, and
   * the timeline says so.
   */
  async hangup(reason?: string): Promise<void> {
    this.refresher?.stop();
    // The PBX hung up (its BYE closed the session): nothing to send, but the media watch must stop.
    if (this.closed) {
      await Promise.all([this.keepalive.stop(), this.lostWatch.stop()]);
      return;
    }
    this.closed = true;
    this.transferLeg?.cancelInvite('cancelled');
    const dialog = this.current;
    if (!this.lost(dialog)) {
      await Promise.all([this.keepalive.stop(), this.lostWatch.stop(), byeWithin(dialog, this.o.requestTimeoutMs, this.o.metrics, reason ? { Reason: reason } : undefined)]);
      return;
    }
    this.noteLost();
    const [, , bye] = await Promise.all([this.keepalive.stop(), this.lostWatch.stop(), this.o.lostDialogs.bye(dialog, this.o.requestTimeoutMs)]);
    this.log.info({ bye }, 'BYE sent to the PBX outside the lost dialog');
    this.emit('event', 'pbx_bye_outside_dialog', { result: bye });
  }

  /**
   * drachtio-server lost the dialog (it restarted, or the bridge's connection to it dropped): it now
   * answers the PBX's BYE with 481 itself and tells nobody. So the PBX is asked, until the call ends,
   * whether it still has the call; when it says it has not, the call ends as if its BYE had arrived.
   */
  private async watchDialog(): Promise<void> {
    if (this.closed || !this.lost(this.current)) return;
    this.noteLost();
    const state = await this.o.lostDialogs.stillUp(this.current, this.o.requestTimeoutMs);
    if (state !== 'gone' || this.closed) return;
    this.log.info('the PBX no longer has the call (481 for the lost dialog): ending it as hung up by the PBX');
    this.emit('event', 'pbx_dialog_gone', null);
    this.emitBye();
  }

  private noteLost(): void {
    if (this.lostNoted) return;
    this.lostNoted = true;
    this.log.warn('drachtio-server lost the PBX dialog (it restarted, the connection dropped mid-call, or a refused BYE made it drop the dialog): the PBX\'s requests in it no longer reach the bridge');
    this.emit('event', 'pbx_dialog_lost', null);
  }

  private attach(dialog: Srf.Dialog): void {
    this.o.dialogGuard.protect(dialog, (r) => this.onRefusedInDialog(dialog, r));
    dialog.on('destroy', (req?: Srf.SrfRequest, reason?: string) => {
      // drachtio-server ends a dialog whose re-INVITE was answered 481 itself (a BYE of its own): while
      // the bridge's refresh is in flight, that is the refresh failing, which ends the call as expired.
      if (this.refreshInFlight) return;
      // With a session timer drachtio-server (sofia-sip) also refreshes by itself, and ends the dialog when
      // its refresh fails: a BYE it made (meta.source 'application'), not the PBX's.
      const byStack = (req as { meta?: { source?: string } } | undefined)?.meta?.source === 'application';
      if (byStack && this.refresher && dialog === this.current && !this.closed) {
        const status = Number(/\b(408|481)\b/.exec(reason ?? '')?.[1] ?? '') || null;
        this.log.warn({ reason }, 'drachtio-server ended the dialog itself (its own session refresh failed): the call ends (RFC 4028)');
        this.emit('event', 'session_refresh_failed', { method: 'stack', status, reason: reason ?? null });
        this.refresher.stop();
        this.emit('expired', { status, message: `drachtio-server ended the dialog: ${reason ?? 'no reason given'}` });
        return;
      }
      if (dialog === this.current) this.emitBye(); // not a leg a transfer has replaced
    });
    dialog.on('modify', (req, res) => void this.onOffer(dialog, req, res, 'INVITE'));
    dialog.on('update', (req, res) => void this.onOffer(dialog, req, res, 'UPDATE'));
    dialog.on('refer', (req, res) => void this.onRefer(dialog, req, res));
    dialog.on('info', (req, res) => this.onInfo(req, res));
  }

  /**
   * A request from someone who is not the dialog's peer was answered 403: the timeline says so (the
   * first few). After a BYE, drachtio-server no longer knows the dialog (it drops it on any BYE): the
   * call goes on as for a dialog lost to a drachtio-server restart, the PBX asked whether it is still up.
   */
  private onRefusedInDialog(dialog: Srf.Dialog, r: RefusedInDialog): void {
    if (++this.refusedInDialog <= MAX_REFUSALS_IN_TIMELINE) this.emit('event', 'sip_request_refused', { method: r.method, source: r.source });
    if (r.method === 'BYE') this.forgotten.add(dialog);
  }

  /** Whether drachtio-server can no longer act in `dialog` (restarted, reconnected, or a BYE made it drop it). */
  private lost(dialog: Srf.Dialog): boolean {
    return this.o.lostDialogs.lost(dialog) || this.forgotten.has(dialog);
  }

  /**
   * A re-INVITE or UPDATE from the PBX. With SDP: rtpengine re-negotiates the PBX leg and answers it
   * (hold, resume, new address, new codec); a refresh carrying the same SDP gets the current answer.
   * A re-INVITE without SDP gets the current offer, and the PBX's answer arrives in the ACK.
   */
  private async onOffer(dialog: Srf.Dialog, req: Srf.SrfRequest, res: Srf.SrfResponse, method: 'INVITE' | 'UPDATE'): Promise<void> {
    const timers = sessionTimerHeaders(req);
    const sdp = req.body ?? '';
    const contact = localContact(dialog);
    const reply = (body?: string) => res.send(200, {
      headers: { ...(contact ? { Contact: contact } : {}), ...timers, ...(body ? { 'Content-Type': 'application/sdp' } : {}) },
      ...(body ? { body } : {}),
    });
    if (!sdp) {
      if (method === 'UPDATE') return reply(); // a session refresh by UPDATE
      this.emit('event', 'pbx_reinvite', { offer: false });
      reply(dialog.local.sdp);
      const ack = await this.nextAck(dialog);
      if (!ack?.body) return;
      try {
        assertUsableAudioSdp(ack.body);
        await this.applyPbxOffer(dialog, ack.body);
      } catch (err) {
        this.log.warn({ err }, 'could not apply the SDP answer from an ACK');
        this.emit('event', 'pbx_offer_refused', { method: 'ACK', message: (err as Error).message });
      }
      return;
    }
    if (sameSession(sdp, this.lastPbxSdp)) {
      this.emit('event', 'session_refresh', { method });
      return reply(dialog.local.sdp);
    }
    try {
      assertUsableAudioSdp(sdp);
      const answer = await this.applyPbxOffer(dialog, sdp, true);
      reply(answer);
    } catch (err) {
      const bad = err instanceof SdpError;
      this.log.warn({ err, method }, 'mid-call offer from the PBX refused');
      this.emit('event', 'pbx_offer_refused', { method, message: (err as Error).message });
      res.send(bad ? 488 : 500, bad ? 'Not Acceptable Here' : 'Server Internal Error', {});
    }
  }

  /** `answering`: the PBX takes the result as the answer to its offer (so rtpengine may change our port). */
  private async applyPbxOffer(dialog: Srf.Dialog, sdp: string, answering = false): Promise<string> {
    const answer = await this.media.repointPbx(sdp, { mayMovePort: answering });
    dialog.local.sdp = answer;
    this.lastPbxSdp = sdp;
    const held = isHoldOffer(sdp);
    this.emit('event', 'pbx_media_changed', { held });
    if (held !== this.held) {
      this.held = held;
      this.emit('hold', held);
      if (held) this.keepalive.pbxHeld();
      else this.keepalive.pbxResumed();
    }
    return answer;
  }

  /** A re-INVITE from the bridge to the PBX with a fresh rtpengine leg (new port), then its answer applied. */
  private async renewPbxLeg(): Promise<void> {
    if (this.closed || this.transfer || this.renewing) return;
    this.renewing = true;
    const dialog = this.current;
    try {
      const offer = await this.media.repointPbx(dialog.remote.sdp, { mayMovePort: true });
      const answer = await reinviteWithin(dialog, offer, this.o.requestTimeoutMs, this.o.metrics);
      dialog.local.sdp = offer;
      if (answer) {
        assertUsableAudioSdp(answer);
        this.lastPbxSdp = answer;
        await this.media.repointPbx(answer);
      }
      this.emit('event', 'pbx_leg_renewed', null);
    } catch (err) {
      this.log.warn({ err }, 'could not renew the PBX leg (after the keepalive, or a returning SSRC)');
      this.emit('event', 'pbx_leg_renew_failed', { message: (err as Error).message });
    } finally {
      this.renewing = false;
    }
  }

  private nextAck(dialog: Srf.Dialog): Promise<Srf.SrfRequest | null> {
    const ack = new Promise<Srf.SrfRequest>((resolve) => dialog.once('ack', resolve as unknown as (m: Srf.SrfResponse) => void));
    return withTimeout(ack, 32000, 'no ACK').catch(() => null);
  }

  /**
   * INFO from the PBX: acknowledged and recorded; a digit (application/dtmf-relay or application/dtmf)
   * goes on to the WhatsApp user in the media, as RFC 4733 where WhatsApp's answer allows it.
   */
  private onInfo(req: Srf.SrfRequest, res: Srf.SrfResponse): void {
    res.send(200);
    const type = req.get('Content-Type') ?? '';
    const body = req.body ?? '';
    const signal = /dtmf-relay/i.test(type) ? /Signal=\s*([0-9A-D*#])/i.exec(body)?.[1] : /^application\/dtmf\b/i.test(type) ? /^\s*([0-9A-D*#])/i.exec(body)?.[1] : undefined;
    const duration = Number(/Duration=\s*(\d+)/i.exec(body)?.[1] ?? 160);
    this.emit('event', 'pbx_info', { contentType: type, ...(signal ? { digit: signal, durationMs: duration } : {}) });
    if (signal && !this.closed) {
      this.media.injectDigitFromPbx(signal.toUpperCase(), duration).catch((err: unknown) => this.log.warn({ err }, 'could not pass a digit from INFO to the WhatsApp user'));
    }
  }

  /**
   * A transfer asked for by the PBX (REFER): the bridge dials the target itself, reports progress with
   * NOTIFY (message/sipfrag), moves the media to the new leg in rtpengine (the WhatsApp leg untouched)
   * and releases the old leg. `Replaces` in the Refer-To (attended transfer) goes into the new INVITE.
   */
  private async onRefer(dialog: Srf.Dialog, req: Srf.SrfRequest, res: Srf.SrfResponse): Promise<void> {
    const target = parseReferTo(req.get('Refer-To') ?? '');
    if (!target) {
      res.send(400, 'Bad Request', { headers: { Warning: '399 wa-sip-bridge "Refer-To is missing or not a SIP URI"' } });
      return;
    }
    if (this.transfer || dialog !== this.current) {
      res.send(491, 'Request Pending', {});
      return;
    }
    if (this.o.transferRefusePattern?.test(target.user ?? '')) {
      this.emit('event', 'transfer_refused', { target: target.uri, reason: 'matches TRANSFER_REFUSE_PATTERN' });
      res.send(403, 'Forbidden', { headers: { Warning: '399 wa-sip-bridge "transfers to this number are not allowed from WhatsApp calls"' } });
      return;
    }
    // Held until the target is checked (a host name is resolved): a second REFER meanwhile gets 491.
    const checked = this.o.transfers.check(target);
    this.transfer = checked.then(() => undefined, () => undefined);
    const verdict = await checked.catch((err: unknown) => ({ ok: false as const, reason: (err as Error).message }));
    this.transfer = null;
    if (!verdict.ok) {
      this.log.warn({ target: target.uri, reason: verdict.reason }, 'REFER refused: the target is not an allowed transfer target');
      this.emit('event', 'transfer_refused', { target: target.uri, reason: verdict.reason });
      res.send(403, 'Forbidden', { headers: { Warning: '399 wa-sip-bridge "not an allowed transfer target"' } });
      return;
    }
    if (this.closed || dialog !== this.current) {
      res.send(481, 'Call/Transaction Does Not Exist', {});
      return;
    }
    res.send(202, 'Accepted', {});
    this.transfer = this.runTransfer(dialog, target, req.get('Referred-By') ?? null).finally(() => {
      this.transfer = null;
      this.transferLeg = null;
    });
  }

  private async runTransfer(old: Srf.Dialog, target: ReferTarget, referredBy: string | null): Promise<void> {
    this.emit('transferring', target.uri);
    await this.notifyRefer(old, '100 Trying', false);
    const leg = (this.transferLeg = new PbxLeg(this.o.srf, this.o.metrics));
    const noAnswer = setTimeout(() => leg.cancelInvite('cancelled'), this.o.noAnswerTimeoutMs);
    try {
      const answer = await leg.invite({
        target: target.uri,
        fromNumber: this.o.callerNumber,
        fromHost: target.host,
        displayName: this.o.callerName,
        sdp: old.local.sdp,
        responseTimeoutMs: this.o.responseTimeoutMs,
        auth: this.o.auth,
        headers: { ...target.headers, ...(referredBy ? { 'Referred-By': referredBy } : {}) },
      });
      clearTimeout(noAnswer);
      // Guarded at once (attach() does it again, a no-op): the checks below take a moment.
      this.o.dialogGuard.protect(answer.dialog, (r) => this.onRefusedInDialog(answer.dialog, r));
      if (this.closed) {
        await byeWithin(answer.dialog, this.o.requestTimeoutMs, this.o.metrics);
        return;
      }
      try {
        assertUsableAudioSdp(answer.sdp);
      } catch {
        // The old leg stays; the new one, whose SDP never reaches rtpengine, is released.
        await byeWithin(answer.dialog, this.o.requestTimeoutMs, this.o.metrics, { Reason: 'SIP;cause=488;text="unusable SDP answer"' });
        throw new PbxLegError({ kind: 'status', status: 488, reason: 'Not Acceptable Here', hadProvisional: true });
      }
      // The new leg's answer is the PBX side's new media: point rtpengine there.
      await this.media.repointPbx(answer.sdp);
      this.current = answer.dialog;
      this.lastPbxSdp = answer.sdp;
      this.attach(answer.dialog);
      if (this.held) this.keepalive.pbxResumed();
      this.held = false;
      this.emit('transferred', { ok: true, target: target.uri, agent: agentOf(answer.dialog), sipCallId: leg.sipCallId ?? '' });
      await this.notifyRefer(old, '200 OK', true);
      await byeWithin(old, this.o.requestTimeoutMs, this.o.metrics);
    } catch (err) {
      clearTimeout(noAnswer);
      const f = failureOf(err);
      const status = f.kind === 'status' ? f.status : f.kind === 'no-response' ? 408 : f.kind === 'cancelled' ? 487 : 500;
      this.log.info({ target: target.uri, failure: f }, 'transfer failed; the call stays on the old leg');
      this.emit('transferred', { ok: false, target: target.uri, status });
      await this.notifyRefer(old, `${status} ${f.kind === 'status' ? f.reason || 'Failed' : 'Failed'}`, true);
      if (this.current === old && !isConnected(old)) this.emitBye();
    }
  }

  private emitBye(): void {
    if (this.closed) return;
    this.closed = true;
    this.refresher?.stop();
    this.emit('bye');
  }

  private async notifyRefer(dialog: Srf.Dialog, status: string, final: boolean): Promise<void> {
    try {
      await requestInDialog(dialog, {
        method: 'NOTIFY',
        headers: {
          Event: 'refer',
          'Subscription-State': final ? 'terminated;reason=noresource' : 'active;expires=60',
          'Content-Type': 'message/sipfrag;version=2.0',
        },
        body: `SIP/2.0 ${status}\r\n`,
      }, this.o.requestTimeoutMs, this.o.metrics);
    } catch (err) {
      this.log.info({ err, status }, 'NOTIFY for a transfer not answered');
    }
  }
}

/** How many requests refused in a call's dialogs are put in its timeline (a flood is only logged, rate-limited). */
const MAX_REFUSALS_IN_TIMELINE = 5;

/** A refresh carries the session's SDP unchanged (same o= session id and version, same body). */
function sameSession(a: string, b: string): boolean {
  return a.replace(/\r\n/g, '\n').trim() === b.replace(/\r\n/g, '\n').trim();
}

function isConnected(dialog: Srf.Dialog): boolean {
  return (dialog as unknown as { connected?: boolean }).connected !== false;
}
