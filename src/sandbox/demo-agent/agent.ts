import dgram from 'node:dgram';
import { randomBytes, randomInt } from 'node:crypto';
import net from 'node:net';
import type { Logger } from '../../log';
import { TypedEmitter } from '../../util/typed-emitter';
import { CallMedia, type RemoteAddress } from './call-media';
import { defaultPromptsDir, loadPrompts, type PromptSet } from './prompts';
import { answerDirection, buildSdp, type ChosenMedia, chooseMedia, type Direction, parseAudioOffer } from './sdp';
import {
  buildResponse, cseqOf, header, headerValues, parseSipMessage, type ResponseOptions, serialize, type SipRequest,
  type SipResponse, tagOf, topBranch, uriOf,
} from './sip-message';

export type DemoEventType =
  | 'invite' | 'ringing' | 'answered' | 'greeting-done' | 'digit' | 'reinvite' | 'hangup' | 'cancelled' | 'rejected'
  | 'media-timeout';

/** One line of a call's timeline (the sandbox page shows `text`). */
export interface DemoAgentEvent {
  callId: string;
  type: DemoEventType;
  /** Human-readable, e.g. 'heard digit 5 (RFC 4733), reading it back'. */
  text: string;
  /** Date.now() when it happened. */
  at: number;
  detail?: Record<string, unknown>;
}

export interface DemoAgentEvents {
  event: [DemoAgentEvent];
}

export interface DemoAgentOptions {
  /** Address the SIP and RTP sockets bind to and that goes into Contact and SDP (default 127.0.0.1). */
  host?: string;
  /** SIP port (default 0: any free port; see `uri`). */
  port?: number;
  log: Logger;
  /** Time between 180 Ringing and 200 OK (default 300 ms). */
  ringMs?: number;
  /** The agent hangs up a call after this long (default 10 minutes). */
  maxCallMs?: number;
  /** Where greeting.wav and the digits' WAVs are (default: src/sandbox/prompts). */
  promptsDir?: string;
  /** Hang up when nothing arrives from the caller for this long (default 60 s; 0: never). */
  mediaTimeoutMs?: number;
  /** Calls ringing or answered at once (default 50); more are answered 486 Busy Here. */
  maxCalls?: number;
}

// RFC 3261 timers: T1 (first retransmission), T2 (cap), 64*T1 (a transaction's life).
const T1 = 500;
const T2 = 4000;
const TRANSACTION_MS = 64 * T1;
/** How long stop() waits for the answers to its BYEs. */
const STOP_WAIT_MS = 1000;
const ALLOW = 'INVITE, ACK, CANCEL, BYE, OPTIONS, INFO';
const SERVER = 'wa-sip-bridge demo agent';
/** What an INVITE without SDP is offered: PCMU with telephone-event. */
const DELAYED_OFFER_MEDIA: ChosenMedia = { codec: 'PCMU', pt: 0, eventPt: 101 };

type CallState = 'ringing' | 'answered' | 'ended';

/** A final response to an INVITE, sent again until its ACK comes (RFC 3261 13.3.1.4 and 17.2.1). */
interface PendingFinal {
  seq: number;
  status: number;
  timer: NodeJS.Timeout;
}

interface Call {
  callId: string;
  state: CallState;
  invite: SipRequest;
  /** Where its requests come from and our responses and requests go (drachtio-server). */
  peer: RemoteAddress;
  localTag: string;
  /** The To header of our responses (with our tag): the From of our requests. */
  localParty: string;
  /** The caller's From: the To of our requests. */
  remoteParty: string;
  remoteTarget: string;
  routeSet: string[];
  localSeq: number;
  /** The last response per INVITE CSeq, resent when that INVITE is retransmitted. */
  inviteResponses: Map<number, Buffer>;
  pendingFinal: PendingFinal | null;
  media: CallMedia | null;
  chosen: ChosenMedia | null;
  /** Our RTP port (in every SDP we send). */
  rtpPort: number;
  sessionId: number;
  sdpVersion: number;
  /** Our offer went in the 200 (the INVITE had no SDP); the ACK carries the answer. */
  delayedOffer: boolean;
  digits: string[];
  timers: Set<NodeJS.Timeout>;
}

interface ClientTransaction {
  timer: NodeJS.Timeout;
  done: (answered: boolean) => void;
}

/**
 * The sandbox's stand-in for a PBX and its agent: a SIP UAS on UDP that answers, greets, echoes the
 * caller and reads back the keys pressed (RFC 4733 or SIP INFO). Everything it does is reported as
 * `event`s for the sandbox page's timeline.
 */
export class DemoAgent extends TypedEmitter<DemoAgentEvents> {
  private readonly host: string;
  private readonly requestedPort: number;
  private readonly log: Logger;
  private readonly ringMs: number;
  private readonly maxCallMs: number;
  private readonly mediaTimeoutMs: number;
  private readonly maxCalls: number;
  private readonly promptsDir: string;
  private socket: dgram.Socket | null = null;
  private prompts: PromptSet | null = null;
  private readonly calls = new Map<string, Call>();
  private readonly clientTransactions = new Map<string, ClientTransaction>();
  private boundPort = 0;

  constructor(opts: DemoAgentOptions) {
    super();
    this.host = opts.host ?? '127.0.0.1';
    if (!net.isIPv4(this.host)) throw new Error(`demo agent: host must be an IPv4 address, got ${this.host}`);
    this.requestedPort = opts.port ?? 0;
    this.log = opts.log.child({ component: 'demo-agent' });
    this.ringMs = opts.ringMs ?? 300;
    this.maxCallMs = opts.maxCallMs ?? 10 * 60_000;
    this.mediaTimeoutMs = opts.mediaTimeoutMs ?? 60_000;
    this.maxCalls = opts.maxCalls ?? 50;
    this.promptsDir = opts.promptsDir ?? defaultPromptsDir();
  }

  /** Loads the prompts and binds the SIP socket; rejects (with the path) when the prompts are missing. */
  async start(): Promise<void> {
    if (this.socket) return;
    this.prompts = await loadPrompts(this.promptsDir);
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(this.requestedPort, this.host, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    socket.on('error', (err) => this.log.warn({ err }, 'demo agent: SIP socket error'));
    socket.on('message', (b, rinfo) => this.onDatagram(b, { address: rinfo.address, port: rinfo.port }));
    this.socket = socket;
    this.boundPort = socket.address().port;
    this.log.info({ uri: this.uri }, 'demo agent listening');
  }

  /** Where to send INVITEs, e.g. sip:demo@127.0.0.1:5070. */
  get uri(): string {
    return `sip:demo@${this.host}:${this.boundPort}`;
  }

  get port(): number {
    return this.boundPort;
  }

  /** Calls ringing or answered. */
  get activeCalls(): number {
    let n = 0;
    for (const call of this.calls.values()) if (call.state !== 'ended') n++;
    return n;
  }

  /** The keys heard on a call so far ('' for an unknown call). */
  digits(callId: string): string {
    return this.calls.get(callId)?.digits.join('') ?? '';
  }

  /**
   * Ends a call from the agent's side: a BYE once answered (resolves when it is answered or given up
   * on), a 480 while it rings. False when there is no such live call.
   */
  hangup(callId: string, reason = 'the agent hung up'): Promise<boolean> {
    const call = this.calls.get(callId);
    if (!call || call.state === 'ended') return Promise.resolve(false);
    if (call.state === 'ringing') {
      this.finishWithFailure(call, 480);
      this.note(call, 'hangup', `${reason} before answering (480)`, { by: 'agent' });
      return Promise.resolve(true);
    }
    this.endCall(call);
    this.note(call, 'hangup', `${reason} (BYE)`, { by: 'agent' });
    return this.sendBye(call);
  }

  /** Hangs up every call (waiting at most ~1 s for the BYEs' answers) and closes the sockets. */
  async stop(): Promise<void> {
    const socket = this.socket;
    if (!socket) return;
    const byes = [...this.calls.values()].filter((c) => c.state !== 'ended').map((c) => this.hangup(c.callId, 'the demo agent is stopping'));
    let waited: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled(byes), new Promise<void>((r) => { waited = setTimeout(r, STOP_WAIT_MS); })]);
    clearTimeout(waited);
    for (const tx of this.clientTransactions.values()) {
      clearTimeout(tx.timer);
      tx.done(false);
    }
    this.clientTransactions.clear();
    for (const call of this.calls.values()) this.forget(call);
    this.calls.clear();
    this.socket = null;
    await new Promise<void>((resolve) => socket.close(() => resolve()));
  }

  // ---- SIP in ----

  private onDatagram(b: Buffer, from: RemoteAddress): void {
    try {
      const msg = parseSipMessage(b);
      if (!msg) return; // keep-alives, garbage: dropped without a word
      if (msg.kind === 'response') this.onResponse(msg);
      else this.onRequest(msg, from);
    } catch (err) {
      this.log.warn({ err }, 'demo agent: dropped a SIP message it could not handle');
    }
  }

  private onRequest(req: SipRequest, from: RemoteAddress): void {
    const callId = header(req, 'call-id');
    const cseq = cseqOf(req);
    if (headerValues(req, 'via').length === 0) return; // nowhere to answer
    if (!callId || !cseq || !header(req, 'from') || !header(req, 'to')) {
      this.respond(req, from, 400);
      return;
    }
    switch (req.method) {
      case 'INVITE': return this.onInvite(req, callId, cseq.seq, from);
      case 'ACK': return this.onAck(req, callId, cseq.seq);
      case 'CANCEL': return this.onCancel(req, callId, cseq.seq, from);
      case 'BYE': return this.onBye(req, callId, from);
      case 'INFO': return this.onInfo(req, callId, from);
      case 'OPTIONS': return this.respond(req, from, 200, { toTag: tag(), headers: [['accept', 'application/sdp'], ...this.ourHeaders()] });
      default: return this.respond(req, from, 501, { toTag: tag(), headers: this.ourHeaders() });
    }
  }

  /** The in-dialog call a request belongs to (its To tag is ours), or null. */
  private dialogOf(req: SipRequest, callId: string): Call | null {
    const call = this.calls.get(callId);
    const toTag = tagOf(header(req, 'to'));
    return call && toTag === call.localTag ? call : null;
  }

  private onInvite(req: SipRequest, callId: string, seq: number, from: RemoteAddress): void {
    const existing = this.calls.get(callId);
    const resent = existing?.inviteResponses.get(seq);
    if (resent) {
      this.send(resent, existing!.peer);
      return;
    }
    if (tagOf(header(req, 'to'))) {
      const call = this.dialogOf(req, callId);
      if (!call || call.state === 'ended') this.respond(req, from, 481, { toTag: tag() });
      else this.onReInvite(call, req, seq);
      return;
    }
    if (existing) return; // a second INVITE of a known call without a To tag: a stray; ignore
    if (this.activeCalls >= this.maxCalls) {
      // Each call holds a socket and a timer: a demo has no use for more, and a flood gets no more.
      this.respond(req, from, 486, { toTag: tag() });
      return;
    }

    const localTag = tag();
    const call: Call = {
      callId, state: 'ringing', invite: req, peer: from, localTag,
      localParty: `${header(req, 'to')};tag=${localTag}`,
      remoteParty: header(req, 'from')!,
      remoteTarget: uriOf(header(req, 'contact')) ?? req.uri,
      routeSet: headerValues(req, 'record-route'),
      localSeq: randomInt(1, 10_000),
      inviteResponses: new Map(), pendingFinal: null, media: null, chosen: null, rtpPort: 0,
      sessionId: randomInt(1, 2 ** 31), sdpVersion: 1, delayedOffer: false, digits: [], timers: new Set(),
    };
    this.calls.set(callId, call);
    this.note(call, 'invite', `incoming call from ${uriOf(call.remoteParty) ?? 'an unknown caller'}`, { from: call.remoteParty, to: header(req, 'to') });
    this.sendInviteResponse(call, seq, buildResponse(req, 100, { headers: this.ourHeaders() }));

    const offer = req.body.trim() ? parseAudioOffer(req.body) : null;
    if (req.body.trim() && (!offer || offer.port === 0)) {
      this.reject(call, 'the offer has no audio stream');
      return;
    }
    const chosen = offer ? chooseMedia(offer) : DELAYED_OFFER_MEDIA;
    if (!chosen) {
      const offered = offer ? offer.payloads.map((pt) => offer.names.get(pt) ?? String(pt)).join(', ') : '';
      this.reject(call, `no PCMU or PCMA in the offer (${offered})`);
      return;
    }
    call.chosen = chosen;
    call.delayedOffer = !offer;
    const media = new CallMedia({
      host: this.host, media: chosen, prompts: this.prompts!, log: this.log, mediaTimeoutMs: this.mediaTimeoutMs,
      remote: offer?.address && offer.port > 0 ? { address: offer.address, port: offer.port } : null,
    });
    call.media = media;
    media.on('digit', (d) => this.onDigit(call, d, 'RFC 4733'));
    media.on('greeting-done', () => this.note(call, 'greeting-done', 'greeting played; now echoing what you say'));
    media.on('media-timeout', (ms) => {
      this.note(call, 'media-timeout', `no audio from the caller for ${duration(ms)}; hanging up`, { silentMs: ms });
      void this.hangup(callId, 'the agent hung up (no audio)');
    });
    media.open().then(
      (port) => this.ring(call, seq, port, offer?.direction ?? 'sendrecv'),
      (err: unknown) => {
        this.log.warn({ err, callId }, 'demo agent: no RTP socket');
        if (call.state === 'ringing') this.finishWithFailure(call, 500);
      },
    );
  }

  private ring(call: Call, seq: number, rtpPort: number, offerDirection: Direction): void {
    if (call.state !== 'ringing') return; // cancelled while the socket was being bound
    call.rtpPort = rtpPort;
    this.sendInviteResponse(call, seq, buildResponse(call.invite, 180, { toTag: call.localTag, headers: this.dialogHeaders() }));
    this.note(call, 'ringing', `ringing (180) for ${this.ringMs} ms`);
    this.later(call, this.ringMs, () => this.answer(call, seq, rtpPort, offerDirection));
  }

  private answer(call: Call, seq: number, rtpPort: number, offerDirection: Direction): void {
    if (call.state !== 'ringing' || !call.media || !call.chosen) return;
    call.state = 'answered';
    const direction = answerDirection(offerDirection);
    call.media.setSending(direction === 'sendrecv' || direction === 'sendonly');
    const sdp = buildSdp({ host: this.host, port: rtpPort, media: call.chosen, sessionId: call.sessionId, version: call.sdpVersion, direction });
    this.sendFinal(call, seq, buildResponse(call.invite, 200, {
      toTag: call.localTag, headers: [...this.dialogHeaders(), ['content-type', 'application/sdp']], body: sdp,
    }), 200);
    call.media.start();
    const events = call.chosen.eventPt !== null ? `, telephone-event ${call.chosen.eventPt}` : '';
    this.note(call, 'answered', `answered with ${call.chosen.codec}${events}; playing the greeting`, {
      codec: call.chosen.codec, payloadType: call.chosen.pt, telephoneEvent: call.chosen.eventPt, rtpPort,
    });
    this.later(call, this.maxCallMs, () => void this.hangup(call.callId, `the agent hung up after ${duration(this.maxCallMs)}`));
  }

  private reject(call: Call, why: string): void {
    this.finishWithFailure(call, 488);
    this.note(call, 'rejected', `${why}: 488 Not Acceptable Here`);
  }

  private onReInvite(call: Call, req: SipRequest, seq: number): void {
    if (call.state !== 'answered' || !call.media || !call.chosen) {
      this.respond(req, call.peer, 500, { headers: [['retry-after', '1'], ...this.ourHeaders()] });
      return;
    }
    const offer = req.body.trim() ? parseAudioOffer(req.body) : null;
    if (offer?.address && offer.port > 0) call.media.setRemote({ address: offer.address, port: offer.port });
    const direction = answerDirection(offer?.direction ?? 'sendrecv');
    call.media.setSending(direction === 'sendrecv' || direction === 'sendonly');
    call.sdpVersion++;
    const sdp = buildSdp({
      host: this.host, port: call.rtpPort, media: call.chosen, sessionId: call.sessionId, version: call.sdpVersion, direction,
    });
    this.sendFinal(call, seq, buildResponse(req, 200, {
      toTag: call.localTag, headers: [...this.dialogHeaders(), ['content-type', 'application/sdp']], body: sdp,
    }), 200);
    const where = offer?.address ? `${offer.address}:${offer.port}` : 'unchanged';
    this.note(call, 'reinvite', `re-INVITE answered (${direction}); caller's media at ${where}`, { direction, remote: where });
  }

  private onAck(req: SipRequest, callId: string, seq: number): void {
    const call = this.calls.get(callId);
    if (!call || !call.pendingFinal || call.pendingFinal.seq !== seq) return; // absorbed
    clearTimeout(call.pendingFinal.timer);
    call.pendingFinal = null;
    if (call.delayedOffer && req.body.trim()) {
      call.delayedOffer = false;
      const answer = parseAudioOffer(req.body);
      if (answer?.address && answer.port > 0) call.media?.setRemote({ address: answer.address, port: answer.port });
    }
  }

  private onCancel(req: SipRequest, callId: string, seq: number, from: RemoteAddress): void {
    const call = this.calls.get(callId);
    if (!call || cseqOf(call.invite)?.seq !== seq) {
      this.respond(req, from, 481, { toTag: tag() });
      return;
    }
    this.respond(req, from, 200, { toTag: call.localTag, headers: this.ourHeaders() });
    if (call.state !== 'ringing') return; // answered already: the CANCEL has no effect
    this.finishWithFailure(call, 487);
    this.note(call, 'cancelled', 'the caller gave up before the answer (CANCEL); 487 Request Terminated');
  }

  private onBye(req: SipRequest, callId: string, from: RemoteAddress): void {
    const call = this.dialogOf(req, callId);
    if (!call) {
      this.respond(req, from, 481, { toTag: tag() });
      return;
    }
    this.respond(req, from, 200, { headers: this.ourHeaders() });
    if (call.state === 'ended') return; // a retransmission, or our BYEs crossed
    if (call.state === 'ringing') this.finishWithFailure(call, 487);
    else this.endCall(call);
    this.note(call, 'hangup', 'the caller hung up (BYE)', { by: 'caller', digits: call.digits.join('') });
  }

  private onInfo(req: SipRequest, callId: string, from: RemoteAddress): void {
    const call = this.dialogOf(req, callId);
    if (!call || call.state === 'ended') {
      this.respond(req, from, 481, { toTag: tag() });
      return;
    }
    this.respond(req, from, 200, { headers: this.ourHeaders() });
    const type = (header(req, 'content-type') ?? '').toLowerCase();
    // application/dtmf-relay: "Signal=5\r\nDuration=160"; application/dtmf: "5".
    const signal = type.startsWith('application/dtmf-relay')
      ? /^\s*signal\s*=\s*(\S)/im.exec(req.body)?.[1]
      : type.startsWith('application/dtmf') ? /^\s*(\S)/.exec(req.body)?.[1] : undefined;
    const digit = signal?.toUpperCase();
    if (digit && /^[0-9*#A-D]$/.test(digit)) this.onDigit(call, digit, 'SIP INFO');
  }

  private onDigit(call: Call, digit: string, how: 'RFC 4733' | 'SIP INFO'): void {
    if (call.state !== 'answered') return;
    call.digits.push(digit);
    call.media?.say(digit);
    this.note(call, 'digit', `heard digit ${digit} (${how}), reading it back`, { digit, via: how, digits: call.digits.join('') });
  }

  private onResponse(res: SipResponse): void {
    const branch = topBranch(res);
    const tx = branch ? this.clientTransactions.get(branch) : undefined;
    if (!tx || res.status < 200) return;
    clearTimeout(tx.timer);
    this.clientTransactions.delete(branch!);
    tx.done(true);
  }

  // ---- SIP out ----

  private respond(req: SipRequest, to: RemoteAddress, status: number, opts: ResponseOptions = {}): void {
    const headers = opts.headers ?? [];
    if (status === 501 || status === 200) headers.push(['allow', ALLOW]);
    this.send(buildResponse(req, status, { ...opts, headers }), to);
  }

  /** A provisional response to the call's INVITE, remembered for its retransmissions. */
  private sendInviteResponse(call: Call, seq: number, response: Buffer): void {
    call.inviteResponses.set(seq, response);
    this.send(response, call.peer);
  }

  /** A final response to an INVITE: sent every T1, doubling up to T2, until the ACK or 64*T1. */
  private sendFinal(call: Call, seq: number, response: Buffer, status: number): void {
    if (call.pendingFinal) clearTimeout(call.pendingFinal.timer);
    call.inviteResponses.set(seq, response);
    this.send(response, call.peer);
    const started = Date.now();
    let interval = T1;
    const again = (): void => {
      if (Date.now() - started + interval > TRANSACTION_MS) {
        call.pendingFinal = null;
        if (status >= 200 && status < 300 && call.state === 'answered') {
          this.endCall(call);
          this.note(call, 'hangup', 'no ACK for the 200 OK within 32 s; the agent hung up (BYE)', { by: 'agent' });
          void this.sendBye(call);
        }
        return;
      }
      this.send(response, call.peer);
      interval = Math.min(interval * 2, T2);
      if (call.pendingFinal) call.pendingFinal.timer = setTimeout(again, interval);
    };
    call.pendingFinal = { seq, status, timer: setTimeout(again, interval) };
  }

  /** Ends an unanswered call with a final error response (487 after CANCEL, 488, 480...). */
  private finishWithFailure(call: Call, status: number): void {
    const seq = cseqOf(call.invite)!.seq;
    this.endCall(call);
    this.sendFinal(call, seq, buildResponse(call.invite, status, { toTag: call.localTag, headers: this.ourHeaders() }), status);
  }

  /** Stops a call's media and timers; the record stays a while to answer retransmissions. */
  private endCall(call: Call): void {
    if (call.state === 'ended') return;
    call.state = 'ended';
    call.media?.close();
    for (const t of call.timers) clearTimeout(t);
    call.timers.clear();
    // A 200 still waiting for its ACK is not sent again once the call is over.
    if (call.pendingFinal && call.pendingFinal.status < 300) {
      clearTimeout(call.pendingFinal.timer);
      call.pendingFinal = null;
    }
    const forget = setTimeout(() => {
      this.forget(call);
      if (this.calls.get(call.callId) === call) this.calls.delete(call.callId);
    }, TRANSACTION_MS);
    forget.unref();
    call.timers.add(forget);
  }

  /** Every timer of a call cleared, its media closed. */
  private forget(call: Call): void {
    call.state = 'ended';
    call.media?.close();
    for (const t of call.timers) clearTimeout(t);
    call.timers.clear();
    if (call.pendingFinal) clearTimeout(call.pendingFinal.timer);
    call.pendingFinal = null;
  }

  /**
   * A BYE in the call's dialog (RFC 3261 12.2.1.1): Request-URI the caller's Contact, Route from its
   * Record-Route, our tag in From. Sent to where the INVITE came from: the next hop is drachtio-server
   * on this host, whatever addresses its Contact advertises. Retransmitted as a non-INVITE request.
   */
  private sendBye(call: Call): Promise<boolean> {
    const branch = `z9hG4bK${randomBytes(8).toString('hex')}`;
    const headers: Array<[string, string]> = [
      ['via', `SIP/2.0/UDP ${this.host}:${this.boundPort};branch=${branch};rport`],
      ['max-forwards', '70'],
      ...call.routeSet.map((r): [string, string] => ['route', r]),
      ['from', call.localParty],
      ['to', call.remoteParty],
      ['call-id', call.callId],
      ['cseq', `${++call.localSeq} BYE`],
      ['user-agent', SERVER],
    ];
    const bye = serialize(`BYE ${call.remoteTarget} SIP/2.0`, headers);
    return new Promise<boolean>((resolve) => {
      if (!this.socket) return resolve(false);
      const started = Date.now();
      let interval = T1;
      const again = (): void => {
        if (Date.now() - started + interval > TRANSACTION_MS) {
          this.clientTransactions.delete(branch);
          resolve(false);
          return;
        }
        this.send(bye, call.peer);
        interval = Math.min(interval * 2, T2);
        tx.timer = setTimeout(again, interval);
      };
      const tx: ClientTransaction = { timer: setTimeout(again, interval), done: resolve };
      this.clientTransactions.set(branch, tx);
      this.send(bye, call.peer);
    });
  }

  private send(b: Buffer, to: RemoteAddress): void {
    this.socket?.send(b, to.port, to.address, (err) => {
      if (err) this.log.debug({ err, to }, 'demo agent: SIP send failed');
    });
  }

  private ourHeaders(): Array<[string, string]> {
    return [['server', SERVER]];
  }

  private dialogHeaders(): Array<[string, string]> {
    return [['contact', `<${this.uri}>`], ['allow', ALLOW], ...this.ourHeaders()];
  }

  private later(call: Call, ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      call.timers.delete(t);
      fn();
    }, ms);
    call.timers.add(t);
  }

  private note(call: Call, type: DemoEventType, text: string, detail?: Record<string, unknown>): void {
    const event: DemoAgentEvent = { callId: call.callId, type, text, at: Date.now(), ...(detail ? { detail } : {}) };
    this.log.info({ sipCallId: call.callId, demoEvent: type, ...detail }, `demo agent: ${text}`);
    try {
      this.emit('event', event);
    } catch (err) {
      this.log.warn({ err }, 'demo agent: an event listener threw');
    }
  }
}

/** '600 s', or '400 ms' under a second. */
function duration(ms: number): string {
  return ms >= 1000 ? `${Math.round(ms / 1000)} s` : `${Math.round(ms)} ms`;
}

function tag(): string {
  return randomBytes(6).toString('hex');
}
