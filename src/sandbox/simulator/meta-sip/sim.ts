import crypto from 'node:crypto';
import Srf from 'drachtio-srf';
import { RtpEngine } from '../../../media/rtpengine';
import { srfStop } from '../../../sip/srf-connection';
import { TypedEmitter } from '../../../util/typed-emitter';
import { MetaSipCall } from './call';
import { META_REALM, MetaDigest } from './digest';
import { countryCodeOf, digitsOf, newWacid } from './ids';
import { SimMedia } from './media';
import { businessOfferProblem, rtpTarget } from './sdp-shapes';
import { checkBridgeCertificate } from './tls-check';
import type {
  BusinessCallAction, BusinessCallInfo, BusinessCallPolicy, CallEnd, MetaSipNumber, MetaSipSimOptions, SimCounters, TlsRefusal, UserCallRequest, WebRtcReply, WebRtcUser,
} from './types';

export const META_USER_AGENT = 'Facebook SipGateway';

export interface MetaSipSimEvents {
  /** A user-initiated call was not placed: the bridge's certificate failed Meta's check. */
  tlsRefused: [refusal: TlsRefusal];
  /** A user-initiated call began (its TLS check is still to come). */
  userCall: [call: MetaSipCall];
  /** A business-initiated INVITE passed the From check and digest, and reached the policy. */
  businessCall: [call: MetaSipCall];
  /** A business-initiated INVITE refused before it became a call (status and reason as sent). */
  refused: [r: { status: number; reason: string; requestUri: string; from: string }];
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** drachtio-srf's request and response for an INVITE, with the parts its typings leave out. */
type Req = Srf.SrfRequest & { cancel(cb?: (err: unknown) => void): void };
type Res = Srf.SrfResponse;

interface SipErrorLike { status?: number; reason?: string; message?: string }

/**
 * Meta's SIP gateway (`wa.meta.vc`) as a real SIP-over-TLS peer, on its own drachtio-server and
 * rtpengine. It places WhatsApp users' calls to the bridge (after checking the bridge's certificate
 * as Meta does) and takes the bridge's calls to WhatsApp users (R-URI and From-domain checks, a 407
 * digest challenge in realm wa.meta.vc), with Meta's headers and SDP shapes, SRTP (DTLS with ICE-lite,
 * or SDES) toward the bridge and plain RTP toward the user's phone. Meta holds its media back until
 * the business's first packet, and takes no re-INVITE or UPDATE from the business: each is answered
 * `488 Not Acceptable Here` (Meta does not support them; 488 rather than 405, which would say the
 * method is unknown to it, and a 488 leaves the dialog as it was) and counted.
 */
export class MetaSipSim extends TypedEmitter<MetaSipSimEvents> {
  readonly srf = new Srf();
  readonly counters: SimCounters = {
    reinvitesRefused: 0, updatesRefused: 0, options: 0, userCalls: 0, businessCalls: 0,
    challenges: 0, authFailures: 0, fromMismatches: 0, tlsRefusals: 0, outOfDialogOptions: 0,
  };
  /** Every call, in order of creation. */
  readonly calls: MetaSipCall[] = [];

  private readonly ng: RtpEngine;
  private readonly media: SimMedia;
  private readonly digest = new MetaDigest();
  private readonly timeoutMs: number;
  private readonly firstPacketWaitMs: number;
  private policy: BusinessCallPolicy = () => ({ action: 'decline' });
  /** Per call: the dialog once there is one, the outgoing INVITE, the incoming INVITE's response. */
  private readonly dialogs = new Map<MetaSipCall, Srf.Dialog>();
  private readonly uacRequests = new Map<MetaSipCall, Req>();
  private readonly pendingCancel = new Set<MetaSipCall>();
  private readonly uasResponses = new Map<MetaSipCall, Res>();
  /** User-initiated calls whose user is a WebRTC peer (the sandbox's browser phone). */
  private readonly webrtcUsers = new Map<MetaSipCall, WebRtcUser>();
  private started = false;
  private stopping = false;

  constructor(private readonly o: MetaSipSimOptions) {
    super();
    this.timeoutMs = o.timeoutMs ?? 5000;
    this.firstPacketWaitMs = o.firstPacketWaitMs ?? 60_000;
    this.ng = new RtpEngine([{ host: o.rtpengine.address, port: o.rtpengine.port }], this.timeoutMs);
    this.media = new SimMedia(this.ng, { host: o.rtpengine.address, port: o.rtpengine.port });
  }

  /** How the WhatsApp user handles the business's calls from now on (default: decline, 603). */
  onBusinessCall(policy: BusinessCallPolicy): void {
    this.policy = policy;
  }

  /** Connects to the sim's drachtio-server (bounded) and takes requests. */
  async start(): Promise<void> {
    if (this.started) return;
    this.srf.invite((req, res) => void this.onInvite(req as Req, res));
    this.srf.use('options', (req: Srf.SrfRequest, res: Srf.SrfResponse) => {
      this.counters.outOfDialogOptions++;
      res.send(200, { headers: { 'User-Agent': META_USER_AGENT } });
    });
    this.srf.on('error', (err: Error) => this.o.log?.debug({ err: err.message }, 'meta-sip sim: drachtio connection error'));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`meta-sip sim: drachtio at ${this.o.drachtio.host}:${this.o.drachtio.port} not connected within ${this.timeoutMs} ms`)), this.timeoutMs);
      this.srf.once('connect', (err: Error | null) => {
        clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      });
      this.srf.connect({ host: this.o.drachtio.host, port: this.o.drachtio.port, secret: this.o.drachtio.secret });
    }).catch((err: unknown) => {
      srfStop(this.srf);
      throw err;
    });
    this.started = true;
  }

  /** Ends every call (BYE, CANCEL or a final response), deletes their media and disconnects; bounded. */
  async stop(): Promise<void> {
    this.stopping = true;
    const live = this.calls.filter((c) => !c.isEnded);
    await Promise.all(live.map((c) => this.bounded(c.isAnswered ? c.hangup() : this.abandon(c), 'stop').catch(() => undefined)));
    for (const c of live) c.markEnded({ by: 'sim', status: null, reason: 'simulator stopped' });
    await Promise.all(live.map((c) => this.media.release(c.callId)));
    srfStop(this.srf);
    await this.ng.close();
  }

  /** The configured number, by E.164. */
  number(e164: string): MetaSipNumber | undefined {
    return this.o.numbers.find((n) => n.number === e164);
  }

  /** RTP packets the sim's rtpengine has received so far from the call's user (phone) and business (bridge) sides. */
  mediaPackets(call: MetaSipCall): Promise<{ user: number; business: number }> {
    return this.media.packets(call.callId);
  }

  // ---- user-initiated calls -------------------------------------------------------------------

  /** A WhatsApp user calls a business number: Meta's INVITE to the number's SIP server (the bridge). */
  userCalls(r: UserCallRequest): MetaSipCall {
    const num = this.number(r.to);
    if (!num) throw new Error(`meta-sip sim: ${r.to} is not one of the sim's numbers`);
    if (!r.phone === !r.webrtc) throw new Error('meta-sip sim: a user call needs either a phone (plain RTP) or a WebRTC peer');
    const call = new MetaSipCall('user-initiated', newWacid(), `meta-${crypto.randomBytes(12).toString('hex')}`, num.number, r.from, {
      hangup: (c) => this.hangupCall(c),
      cancel: (c) => this.abandon(c),
    });
    this.calls.push(call);
    if (r.webrtc) this.webrtcUsers.set(call, r.webrtc);
    void call.ended.then(() => this.webrtcUsers.delete(call));
    this.counters.userCalls++;
    this.emit('userCall', call);
    void this.placeUserCall(call, num, r).catch((err: unknown) => {
      this.o.log?.warn({ err: String(err), wacid: call.wacid }, 'meta-sip sim: user call failed');
      void this.media.release(call.callId);
      call.markEnded({ by: 'sim', status: null, reason: `simulator: ${(err as Error)?.message ?? String(err)}` });
    });
    return call;
  }

  private async placeUserCall(call: MetaSipCall, num: MetaSipNumber, r: UserCallRequest): Promise<void> {
    const { bridge } = this.o;
    const problem = await checkBridgeCertificate({ host: bridge.host, port: bridge.port, hostname: num.hostname, ca: this.o.ca, timeoutMs: this.timeoutMs });
    if (problem) {
      this.counters.tlsRefusals++;
      const refusal: TlsRefusal = { number: num.number, hostname: num.hostname, host: bridge.host, port: bridge.port, reason: problem };
      this.o.log?.warn(refusal, 'meta-sip sim: the bridge\'s certificate fails Meta\'s check: call not placed');
      this.emit('tlsRefused', refusal);
      call.markEnded({ by: 'sim', status: null, reason: problem });
      return;
    }
    if (call.isEnded || this.pendingCancel.has(call)) {
      call.markEnded({ by: 'user', status: null, reason: 'cancelled before the INVITE' });
      return;
    }
    const user = r.webrtc ? { webrtcSdp: r.webrtc.offer } : { phone: r.phone! };
    const offer = await this.media.userOffer(call.callId, user, { mode: num.srtp, g711: num.g711 === true });
    await this.media.holdUserMedia(call.callId);
    call.localSdp = offer;
    const uri = `sip:+${digitsOf(num.number)}@${num.hostname}:${num.port ?? 5061};transport=tls`;
    const from = r.profileName ? `"${r.profileName.replace(/["\\]/g, '')}" <sip:+${digitsOf(r.from)}@${META_REALM}>` : `<sip:+${digitsOf(r.from)}@${META_REALM}>`;
    const headers: Record<string, string> = {
      'Call-ID': call.callId,
      From: from,
      'User-Agent': META_USER_AGENT,
      'x-wa-meta-wacid': call.wacid,
      'x-wa-meta-phone-number-id': num.phoneId,
      'x-wa-meta-country-code': countryCodeOf(r.from),
      ...(r.ctaPayload !== undefined ? { 'x-wa-meta-cta-payload': r.ctaPayload } : {}),
      ...(r.deeplinkPayload !== undefined ? { 'x-wa-meta-deeplink-payload': r.deeplinkPayload } : {}),
    };
    call.inviteHeaders = headers;
    let early = false;
    let dialog: Srf.Dialog;
    try {
      dialog = await this.srf.createUAC(uri, {
        proxy: `sip:${bridge.host}:${bridge.port};transport=tls`,
        localSdp: offer,
        headers,
        auth: { username: num.username ?? digitsOf(num.number), password: num.password },
      }, {
        // drachtio-srf 5 calls it as (err, req), whatever its typings say.
        cbRequest: ((err: unknown, req?: Req) => {
          if (err || !req) return;
          this.uacRequests.set(call, req);
          // cancel() came while the INVITE was being sent: CANCEL it now.
          if (this.pendingCancel.has(call)) req.cancel(() => undefined);
        }) as unknown as (req: Srf.SrfRequest) => void,
        cbProvisional: (res) => {
          call.markProvisional(res.status);
          if (res.body && /m=audio /.test(res.body) && !early) {
            early = true;
            // Early media (183 with SDP): the path opens now, still under the first-packet rule.
            void this.connectUserMedia(call, res.body, 'early').catch((err: unknown) => this.o.log?.warn({ err: String(err) }, 'meta-sip sim: early media answer failed'));
          }
        },
      });
    } catch (err) {
      const e = err as SipErrorLike;
      const cancelled = this.pendingCancel.has(call);
      await this.media.release(call.callId);
      if (typeof e.status === 'number') {
        call.markEnded({ by: cancelled && e.status === 487 ? 'user' : 'business', status: e.status, reason: `${e.status} ${e.reason ?? ''}`.trim() });
        return;
      }
      throw err;
    } finally {
      this.uacRequests.delete(call);
    }
    call.remoteSdp = dialog.remote.sdp;
    if (call.isEnded || this.pendingCancel.has(call)) {
      // stop(), or a CANCEL that crossed the 200: hang up what was answered.
      dialog.destroy({ headers: { 'x-wa-meta-wacid': call.wacid, 'x-wa-meta-call-duration': '0' } });
      await this.media.release(call.callId);
      call.markEnded({ by: 'user', status: 200, reason: 'answered after the user gave up: BYE' });
      return;
    }
    this.dialogs.set(call, dialog);
    this.watchDialog(call, dialog, 200);
    await this.connectUserMedia(call, dialog.remote.sdp, 'answer');
    call.markAnswered();
  }

  /**
   * Applies the bridge's SDP (18x or 200), tells the phone where to send (or hands a WebRTC peer its
   * answer), and waits for the business's first packet.
   */
  private async connectUserMedia(call: MetaSipCall, bridgeSdp: string, stage: 'early' | 'answer'): Promise<void> {
    const webrtc = this.webrtcUsers.get(call);
    const forUser = await this.media.userAnswer(call.callId, bridgeSdp, { webrtc: webrtc !== undefined });
    if (webrtc) webrtc.onAnswer(forUser, stage);
    else call.phoneTarget = rtpTarget(forUser);
    void this.releaseOnFirstPacket(call);
  }

  // ---- business-initiated calls ---------------------------------------------------------------

  private refuse(req: Req, res: Res, status: number, reason: string, headers: Record<string, string> = {}): void {
    res.send(status, reason, { headers: { 'User-Agent': META_USER_AGENT, ...headers } });
    this.emit('refused', { status, reason, requestUri: req.uri, from: req.get('From') });
  }

  private async onInvite(req: Req, res: Res): Promise<void> {
    if (this.stopping) return this.refuse(req, res, 503, 'Service Unavailable');
    // Meta takes SIP over TLS only.
    if (String(req.protocol).toLowerCase() !== 'tls') return this.refuse(req, res, 403, 'TLS required');
    const ruri = Srf.parseUri(req.uri);
    if (!ruri || ruri.host !== META_REALM || !/^\+\d{6,15}$/.test(ruri.user ?? '') || String(ruri.params.transport ?? '').toLowerCase() !== 'tls') {
      return this.refuse(req, res, 404, 'Not Found');
    }
    const fromUri = Srf.parseUri(req.getParsedHeader('From').uri);
    const num = this.o.numbers.find((n) => `+${digitsOf(n.number)}` === fromUri?.user);
    if (!num || !fromUri) return this.refuse(req, res, 403, 'Forbidden');
    if ((fromUri.host ?? '').toLowerCase() !== num.hostname.toLowerCase()) {
      this.counters.fromMismatches++;
      return this.refuse(req, res, 403, `SIP server ${fromUri.host ?? ''} does not match`);
    }
    const verdict = this.digest.verify('INVITE', req.uri, req.has('Proxy-Authorization') ? req.get('Proxy-Authorization') : undefined, {
      username: num.username ?? digitsOf(num.number), password: num.password,
    });
    if (verdict === 'missing' || verdict === 'stale') {
      this.counters.challenges++;
      return this.refuse(req, res, 407, 'Proxy Authentication Required', { 'Proxy-Authenticate': this.digest.challenge(verdict === 'stale') });
    }
    if (verdict !== 'ok') {
      this.counters.authFailures++;
      return this.refuse(req, res, 403, 'Forbidden');
    }
    const problem = businessOfferProblem(req.body ?? '', num.srtp);
    if (problem) {
      this.o.log?.info({ problem }, 'meta-sip sim: business offer refused');
      return this.refuse(req, res, 488, 'Not Acceptable Here');
    }

    const headers = { ...(req.headers ?? {}) };
    const wacid = newWacid();
    const call = new MetaSipCall('business-initiated', wacid, req.get('Call-ID'), num.number, ruri.user!, {
      hangup: (c) => this.hangupCall(c),
      cancel: (c) => this.abandon(c),
    });
    call.inviteHeaders = headers;
    call.remoteSdp = req.body;
    this.calls.push(call);
    this.counters.businessCalls++;
    this.uasResponses.set(call, res);
    req.on('cancel', () => {
      // drachtio-server has already answered the INVITE with 487.
      this.uasResponses.delete(call);
      call.markEnded({ by: 'business', status: 487, reason: 'CANCEL from the business' });
      void this.media.release(call.callId);
    });
    this.emit('businessCall', call);
    try {
      await this.runBusinessCall(call, num, req, res);
    } catch (err) {
      this.o.log?.warn({ err: String(err), wacid }, 'meta-sip sim: business call failed');
      if (!res.finalResponseSent) res.send(500);
      await this.media.release(call.callId);
      call.markEnded({ by: 'sim', status: res.finalResponseSent ? null : 500, reason: `simulator: ${(err as Error)?.message ?? String(err)}` });
    }
  }

  private async runBusinessCall(call: MetaSipCall, num: MetaSipNumber, req: Req, res: Res): Promise<void> {
    const info: BusinessCallInfo = { wacid: call.wacid, to: call.user, from: call.business, headers: call.inviteHeaders, sdp: req.body };
    const action: BusinessCallAction = await this.policy(info);
    if (call.isEnded) return;
    const ring = () => {
      res.send(180, 'Ringing', { headers: { 'User-Agent': META_USER_AGENT, 'x-wa-meta-wacid': call.wacid } });
      call.markProvisional(180);
    };
    switch (action.action) {
      case 'decline':
        return this.finalRefusal(call, res, 603, 'Decline');
      case 'busy':
        return this.finalRefusal(call, res, 486, 'Busy Here');
      case 'no-answer':
        ring(); // rings until the business's CANCEL (or hangup()/stop())
        return;
      case 'answer':
        break;
      case 'webrtc':
        return this.runWebRtcBusinessCall(call, num, req, res, action.ring, ring);
    }
    const g711 = num.g711 === true;
    const forPhone = await this.media.businessOffer(call.callId, req.body, { mode: num.srtp, g711 });
    ring();
    if (action.afterMs) await sleep(action.afterMs);
    if (call.isEnded) return;
    const answer = await this.media.businessAnswer(call.callId, { phone: action.phone }, { g711 });
    call.phoneTarget = rtpTarget(forPhone);
    await this.answerBusiness(call, req, res, answer);
  }

  /**
   * A business's call to a WebRTC user (the sandbox's browser phone): the user is given a WebRTC offer
   * while the call rings (180), and its reply answers the INVITE with Meta's SDP or refuses it.
   */
  private async runWebRtcBusinessCall(call: MetaSipCall, num: MetaSipNumber, req: Req, res: Res, reply: (offer: string) => Promise<WebRtcReply>, ring: () => void): Promise<void> {
    const g711 = num.g711 === true;
    const forUser = await this.media.businessOffer(call.callId, req.body, { mode: num.srtp, g711, webrtc: true });
    if (call.isEnded) return;
    ring();
    const r = await reply(forUser);
    if (call.isEnded) return;
    if ('action' in r) return r.action === 'busy' ? this.finalRefusal(call, res, 486, 'Busy Here') : this.finalRefusal(call, res, 603, 'Decline');
    const answer = await this.media.businessAnswer(call.callId, { webrtcSdp: r.answer }, { g711 });
    await this.answerBusiness(call, req, res, answer);
  }

  /** Meta's 200 OK to the business's INVITE with its SDP answer; media toward the business held until its first packet. */
  private async answerBusiness(call: MetaSipCall, req: Req, res: Res, answer: string): Promise<void> {
    await this.media.holdUserMedia(call.callId);
    if (call.isEnded) return;
    call.localSdp = answer;
    this.uasResponses.delete(call);
    const dialog = await this.srf.createUAS(req, res, {
      localSdp: answer,
      headers: { 'User-Agent': META_USER_AGENT, 'x-wa-meta-wacid': call.wacid },
    });
    if (call.isEnded) {
      dialog.destroy();
      return;
    }
    this.dialogs.set(call, dialog);
    this.watchDialog(call, dialog, 200);
    call.markAnswered();
    void this.releaseOnFirstPacket(call);
  }

  private async finalRefusal(call: MetaSipCall, res: Res, status: number, reason: string): Promise<void> {
    this.uasResponses.delete(call);
    res.send(status, reason, { headers: { 'User-Agent': META_USER_AGENT, 'x-wa-meta-wacid': call.wacid } });
    call.markEnded({ by: 'user', status, reason: `${status} ${reason}` });
    await this.media.release(call.callId);
  }

  // ---- both directions ------------------------------------------------------------------------

  /** In-dialog requests as Meta takes them: BYE ends, re-INVITE and UPDATE get 488 (counted), OPTIONS 200. */
  private watchDialog(call: MetaSipCall, dialog: Srf.Dialog, status: number): void {
    dialog.on('destroy', () => {
      this.dialogs.delete(call);
      call.markEnded({ by: 'business', status, reason: 'BYE from the business' });
      void this.media.release(call.callId);
    });
    dialog.on('modify', (_req, res) => {
      this.counters.reinvitesRefused++;
      call.markRefused('INVITE');
      res.send(488, 'Not Acceptable Here', { headers: { 'User-Agent': META_USER_AGENT } });
    });
    dialog.on('update', (_req, res) => {
      this.counters.updatesRefused++;
      call.markRefused('UPDATE');
      res.send(488, 'Not Acceptable Here', { headers: { 'User-Agent': META_USER_AGENT } });
    });
    dialog.on('options', (_req, res) => {
      this.counters.options++;
      call.counters.options++;
      res.send(200, { headers: { 'User-Agent': META_USER_AGENT } });
    });
  }

  /**
   * Meta's media rule: nothing toward the business until its first packet arrives. rtpengine holds the
   * user's media; this polls rtpengine (every 50 ms, for at most firstPacketWaitMs) and lets it go once
   * packets from the business are counted.
   */
  private async releaseOnFirstPacket(call: MetaSipCall): Promise<void> {
    const deadline = Date.now() + this.firstPacketWaitMs;
    while (!call.isEnded && !call.firstPacketFrom() && Date.now() < deadline) {
      const packets = await this.media.packets(call.callId).catch(() => null);
      if (packets && packets.business > 0 && !call.firstPacketFrom()) {
        await this.media.releaseUserMedia(call.callId).catch((err: unknown) => this.o.log?.warn({ err: String(err) }, 'meta-sip sim: unblock failed'));
        call.markFirstMedia(packets);
        return;
      }
      await sleep(50);
    }
  }

  /** The user hangs up: BYE (answered), CANCEL (user-initiated, ringing), 603 (business-initiated, ringing). */
  private async hangupCall(call: MetaSipCall): Promise<void> {
    const dialog = this.dialogs.get(call);
    if (!dialog) return this.abandon(call);
    this.dialogs.delete(call);
    const duration = call.durationSeconds();
    await this.bounded(new Promise<void>((resolve) => dialog.destroy({
      headers: { 'User-Agent': META_USER_AGENT, 'x-wa-meta-wacid': call.wacid, 'x-wa-meta-call-duration': String(duration) },
    }, () => resolve())), 'BYE');
    call.markEnded({ by: 'user', status: 200, reason: 'BYE from Meta' });
    await this.media.release(call.callId);
  }

  /** Ends an unanswered call from the user's side. */
  private async abandon(call: MetaSipCall): Promise<void> {
    if (call.isEnded) return;
    if (call.direction === 'business-initiated') {
      const res = this.uasResponses.get(call);
      if (res && !res.finalResponseSent) return this.finalRefusal(call, res, this.stopping ? 480 : 603, this.stopping ? 'Temporarily Unavailable' : 'Decline');
      return;
    }
    this.pendingCancel.add(call);
    const req = this.uacRequests.get(call);
    if (req) {
      await this.bounded(new Promise<void>((resolve) => req.cancel(() => resolve())), 'CANCEL');
      // The INVITE's 487 ends the call (placeUserCall); bounded in case it never comes.
      await this.bounded(call.ended.then(() => undefined), 'the 487 after CANCEL').catch(() => undefined);
    }
  }

  private bounded<T>(p: Promise<T>, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`meta-sip sim: ${what} not done within ${this.timeoutMs} ms`)), this.timeoutMs);
      p.then((v) => { clearTimeout(t); resolve(v); }, (e: unknown) => { clearTimeout(t); reject(e); });
    });
  }
}

export type { CallEnd };
