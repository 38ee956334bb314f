import crypto from 'node:crypto';
import dgram from 'node:dgram';
import { AddressInfo } from 'node:net';
import {
  buildResponse, cseqOf, header, parseSipMessage, serialize, SipRequest, SipResponse, tagOf, uriOf,
} from '../../src/sandbox/demo-agent/sip-message';
import { RtpPhone } from './rtp-phone';

/**
 * An agent's desk phone registered (statically) on a PBX, for what baresip 1.0.0 cannot do: an attended
 * transfer (REFER with Replaces), a T.38 re-INVITE, following the PBX's direct-media re-INVITEs on its
 * own RTP. SIP over UDP on its own loopback address (a PBX tells its phones from the bridge by address),
 * media by an RtpPhone per call (PCMU, a tone out, a tone listened for), sent where the latest SDP
 * says (not to where packets come from: a PBX that moves the media sends the old path a straggler or
 * two, and a desk phone follows the SDP). Answers every incoming call at
 * once; answers in-dialog requests (re-INVITE, BYE, NOTIFY, OPTIONS) as a phone does. No digest: the
 * lab's phone endpoints have no auth=.
 */

/** One call (dialog) of the phone. `local`/`remote` are RFC 3261's: our tag, the PBX's tag. */
export interface PhoneCall {
  callId: string;
  localTag: string;
  remoteTag: string;
  /** Our From/To value (the one with our tag), without the tag. */
  localUri: string;
  remoteUri: string;
  /** Where in-dialog requests go: the PBX's Contact. */
  target: string;
  cseq: number;
  media: RtpPhone;
  /** The PBX's latest SDP (offer or answer). */
  remoteSdp: string;
  /** Every re-INVITE offer the PBX sent in this call, in order. */
  reinvites: string[];
  /** NOTIFY bodies received in this call (REFER progress, message/sipfrag). */
  notifies: string[];
  ended: boolean;
  endedBy: 'local' | 'remote' | null;
}

export interface SipPhoneOptions {
  /** The tone this phone's microphone "says". */
  toneHz: number;
  /** The tone it listens for. */
  listenHz: number;
  /** SIP address (the PBX identifies the phone by it), e.g. 127.0.0.2. */
  address: string;
}

/** The c= address and m=audio port of an SDP (null when there is no audio stream or it is disabled). */
export function sdpAudioAddress(sdp: string): { address: string; port: number } | null {
  const c = /^c=IN IP4 (\S+)/m.exec(sdp)?.[1];
  const m = /^m=audio (\d+)/m.exec(sdp)?.[1];
  if (!c || !m || Number(m) === 0) return null;
  return { address: c, port: Number(m) };
}

function hostPort(uri: string): { host: string; port: number } {
  const m = /^sips?:(?:[^@]*@)?([^;:>?]+)(?::(\d+))?/.exec(uri);
  if (!m) throw new Error(`not a SIP URI: ${uri}`);
  return { host: m[1]!, port: Number(m[2] ?? 5060) };
}

const rand = (n = 6) => crypto.randomBytes(n).toString('hex');

export class SipPhone {
  private readonly sock = dgram.createSocket('udp4');
  readonly calls: PhoneCall[] = [];
  /** Every SIP message in and out, as text (for failure reports). */
  readonly trace: string[] = [];
  port = 0;
  private waiters: Array<() => void> = [];
  private sdpVersion = 1;

  constructor(readonly user: string, private readonly opts: SipPhoneOptions) {}

  get contact(): string {
    return `<sip:${this.user}@${this.opts.address}:${this.port}>`;
  }

  /** Where the PBX reaches this phone (its AOR contact). */
  get uri(): string {
    return `sip:${this.user}@${this.opts.address}:${this.port}`;
  }

  async start(): Promise<this> {
    this.sock.on('message', (buf, r) => {
      const m = parseSipMessage(buf);
      if (!m) return;
      this.trace.push(`<<< from ${r.address}:${r.port}\n${buf.toString('utf8')}`);
      if (m.kind === 'request') void this.onRequest(m, { address: r.address, port: r.port });
      else this.onResponse(m);
    });
    await new Promise<void>((resolve, reject) => {
      this.sock.once('error', reject);
      this.sock.bind(0, this.opts.address, () => resolve());
    });
    this.port = (this.sock.address() as AddressInfo).port;
    return this;
  }

  stop(): void {
    for (const c of this.calls) c.media.stop();
    try {
      this.sock.close();
    } catch {
      // already closed
    }
  }

  /** The tail of the SIP trace, for assertion messages. */
  describe(chars = 6000): string {
    return `--- phone ${this.user} SIP trace ---\n${this.trace.join('\n').slice(-chars)}`;
  }

  /** The newest call, once there is one (incoming or placed). */
  async whenCall(n = 1, timeoutMs = 15000): Promise<PhoneCall> {
    return this.until(() => this.calls[n - 1] ?? null, `call #${n}`, timeoutMs);
  }

  /** Resolves with `probe`'s first truthy value, asked again after each SIP message; rejects after `timeoutMs`. */
  until<T>(probe: () => T | null | undefined | false, what: string, timeoutMs: number): Promise<T> {
    const v = probe();
    if (v) return Promise.resolve(v);
    return new Promise((resolve, reject) => {
      const w = () => {
        const r = probe();
        if (!r) return;
        clearTimeout(t);
        this.waiters = this.waiters.filter((x) => x !== w);
        resolve(r);
      };
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`phone ${this.user}: ${what} not within ${timeoutMs} ms\n${this.describe()}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  /** Calls `uri` through the PBX at `pbx` (host:port). Resolves once answered (200, ACK sent). */
  async call(uri: string, pbx: { host: string; port: number }, timeoutMs = 30000): Promise<PhoneCall> {
    const media = new RtpPhone(this.opts.toneHz, this.opts.listenHz);
    const rtpPort = await media.start();
    const call: PhoneCall = {
      callId: `${rand()}@${this.opts.address}`, localTag: rand(), remoteTag: '', localUri: `<sip:${this.user}@${this.opts.address}>`, remoteUri: `<${uri}>`,
      target: `sip:${pbx.host}:${pbx.port}`, cseq: 1, media, remoteSdp: '', reinvites: [], notifies: [], ended: false, endedBy: null,
    };
    const sdp = this.sdp(rtpPort, 'sendrecv');
    const branch = `z9hG4bK${rand()}`;
    const invite = serialize(`INVITE ${uri} SIP/2.0`, [
      ['via', `SIP/2.0/UDP ${this.opts.address}:${this.port};branch=${branch};rport`],
      ['max-forwards', '70'],
      ['from', `${call.localUri};tag=${call.localTag}`],
      ['to', call.remoteUri],
      ['call-id', call.callId],
      ['cseq', '1 INVITE'],
      ['contact', this.contact],
      ['allow', 'INVITE, ACK, CANCEL, BYE, REFER, NOTIFY, OPTIONS'],
      ['content-type', 'application/sdp'],
    ], sdp);
    const res = await this.transact(invite, pbx, call.callId, 1, 'INVITE', timeoutMs);
    if (res.status >= 300) {
      media.stop();
      this.ack(call, res, pbx, branch);
      throw new Error(`phone ${this.user}: INVITE ${uri} refused: ${res.status} ${res.reason}`);
    }
    call.remoteTag = tagOf(header(res, 'to')) ?? '';
    call.target = uriOf(header(res, 'contact')) ?? call.target;
    call.remoteSdp = res.body;
    const addr = sdpAudioAddress(res.body);
    if (addr) media.retarget(addr.port, addr.address);
    this.calls.push(call);
    this.ack(call, res);
    this.notify();
    return call;
  }

  /** Hold (a=sendonly, the phone's own audio stops) or resume (a=sendrecv) by re-INVITE; resolves with the final status. */
  async hold(call: PhoneCall, on: boolean): Promise<number> {
    call.media.mute(on);
    return this.reinvite(call, this.sdp(call.media.port, on ? 'sendonly' : 'sendrecv'));
  }

  /** A re-INVITE offering T.38 (m=image udptl t38) instead of audio, as a fax machine's phone port does. */
  async offerT38(call: PhoneCall): Promise<{ status: number; response: SipResponse }> {
    const sdp = [
      'v=0', `o=${this.user} 1000 ${++this.sdpVersion} IN IP4 ${this.opts.address}`, 's=-', `c=IN IP4 127.0.0.1`, 't=0 0',
      `m=image ${call.media.port + 2} udptl t38`,
      'a=T38FaxVersion:0', 'a=T38MaxBitRate:14400', 'a=T38FaxRateManagement:transferredTCF', 'a=T38FaxMaxDatagram:400', 'a=T38FaxUdpEC:t38UDPRedundancy',
      '',
    ].join('\r\n');
    const response = await this.inDialog(call, 'INVITE', [['content-type', 'application/sdp']], sdp, 30000);
    return { status: response.status, response };
  }

  /** Sends a re-INVITE with `sdp`; resolves with the final status (ACK sent for a 2xx). */
  async reinvite(call: PhoneCall, sdp: string, timeoutMs = 15000): Promise<number> {
    const res = await this.inDialog(call, 'INVITE', [['content-type', 'application/sdp']], sdp, timeoutMs);
    if (res.status < 300) {
      call.remoteSdp = res.body || call.remoteSdp;
      const addr = sdpAudioAddress(call.remoteSdp);
      if (addr) call.media.retarget(addr.port, addr.address);
    }
    return res.status;
  }

  /**
   * Attended transfer: REFER in `held` (the call to be transferred) with Refer-To naming `target` and
   * Replaces for `consult` (our call with the transfer target), as desk phones send it. Resolves with
   * the REFER's final status.
   */
  async referReplaces(held: PhoneCall, consult: PhoneCall, targetUri: string): Promise<number> {
    const replaces = encodeURIComponent(`${consult.callId};to-tag=${consult.remoteTag};from-tag=${consult.localTag}`);
    const res = await this.inDialog(held, 'REFER', [
      ['refer-to', `<${targetUri}?Replaces=${replaces}>`],
      ['referred-by', `<sip:${this.user}@${this.opts.address}>`],
    ], '', 15000);
    return res.status;
  }

  /** Blind transfer: REFER in `call` with Refer-To `targetUri` (no Replaces). Resolves with the REFER's final status. */
  async refer(call: PhoneCall, targetUri: string): Promise<number> {
    const res = await this.inDialog(call, 'REFER', [
      ['refer-to', `<${targetUri}>`],
      ['referred-by', `<sip:${this.user}@${this.opts.address}>`],
    ], '', 15000);
    return res.status;
  }

  /** Ends a call with BYE. */
  async bye(call: PhoneCall): Promise<number> {
    if (call.ended) return 0;
    call.ended = true;
    call.endedBy = 'local';
    call.media.stop();
    const res = await this.inDialog(call, 'BYE', [], '', 10000);
    this.notify();
    return res.status;
  }

  whenEnded(call: PhoneCall, timeoutMs = 15000): Promise<PhoneCall> {
    return this.until(() => (call.ended ? call : null), `the end of call ${call.callId}`, timeoutMs);
  }

  private sdp(port: number, dir: 'sendrecv' | 'sendonly' | 'recvonly' | 'inactive'): string {
    return [
      'v=0', `o=${this.user} 1000 ${++this.sdpVersion} IN IP4 127.0.0.1`, 's=-', 'c=IN IP4 127.0.0.1', 't=0 0',
      `m=audio ${port} RTP/AVP 0 101`, 'a=rtpmap:0 PCMU/8000', 'a=rtpmap:101 telephone-event/8000', 'a=fmtp:101 0-16', 'a=ptime:20', `a=${dir}`, '',
    ].join('\r\n');
  }

  private async inDialog(call: PhoneCall, method: string, headers: Array<[string, string]>, body: string, timeoutMs: number): Promise<SipResponse> {
    const seq = ++call.cseq;
    const dest = hostPort(call.target);
    const branch = `z9hG4bK${rand()}`;
    const msg = serialize(`${method} ${call.target} SIP/2.0`, [
      ['via', `SIP/2.0/UDP ${this.opts.address}:${this.port};branch=${branch};rport`],
      ['max-forwards', '70'],
      ['from', `${call.localUri};tag=${call.localTag}`],
      ['to', `${call.remoteUri};tag=${call.remoteTag}`],
      ['call-id', call.callId],
      ['cseq', `${seq} ${method}`],
      ['contact', this.contact],
      ...headers,
    ], body);
    const res = await this.transact(msg, dest, call.callId, seq, method, timeoutMs);
    if (method === 'INVITE') this.ack(call, res, dest, res.status >= 300 ? branch : undefined);
    return res;
  }

  /** ACK: for a 2xx a new transaction to the target; for a failure the INVITE's branch (hop by hop). */
  private ack(call: PhoneCall, res: SipResponse, dest = hostPort(call.target), failureBranch?: string): void {
    const seq = cseqOf(res)?.seq ?? call.cseq;
    const uri = failureBranch ? uriOf(call.remoteUri)! : call.target;
    const to = header(res, 'to') ?? `${call.remoteUri};tag=${call.remoteTag}`;
    this.send(serialize(`ACK ${uri} SIP/2.0`, [
      ['via', `SIP/2.0/UDP ${this.opts.address}:${this.port};branch=${failureBranch ?? `z9hG4bK${rand()}`};rport`],
      ['max-forwards', '70'],
      ['from', `${call.localUri};tag=${call.localTag}`],
      ['to', to],
      ['call-id', call.callId],
      ['cseq', `${seq} ACK`],
    ]), dest);
  }

  /** Sends a request, retransmitting (RFC 3261 timer A/E, 500 ms doubling) until a response; resolves with the final one. */
  private transact(msg: Buffer, dest: { host: string; port: number }, callId: string, seq: number, method: string, timeoutMs: number): Promise<SipResponse> {
    return new Promise((resolve, reject) => {
      let provisional = false;
      let interval = 500;
      let retrans: NodeJS.Timeout | null = null;
      const resend = () => {
        if (provisional) return;
        this.send(msg, dest);
        interval = Math.min(interval * 2, 4000);
        retrans = setTimeout(resend, interval);
      };
      const done = () => {
        if (retrans) clearTimeout(retrans);
        clearTimeout(limit);
        this.pendingResponses.delete(key);
      };
      const key = `${callId} ${seq} ${method}`;
      const limit = setTimeout(() => {
        done();
        reject(new Error(`phone ${this.user}: no final response to ${method} within ${timeoutMs} ms\n${this.describe()}`));
      }, timeoutMs);
      this.pendingResponses.set(key, (r) => {
        if (r.status < 200) {
          provisional = true;
          return;
        }
        done();
        resolve(r);
      });
      resend();
    });
  }

  private readonly pendingResponses = new Map<string, (r: SipResponse) => void>();

  private onResponse(m: SipResponse): void {
    const cseq = cseqOf(m);
    if (!cseq) return;
    const key = `${header(m, 'call-id')} ${cseq.seq} ${cseq.method}`;
    const pending = this.pendingResponses.get(key);
    if (pending) pending(m);
    else if (cseq.method === 'INVITE' && m.status >= 200 && m.status < 300) {
      // A retransmitted 200 (our ACK was lost): ACK it again.
      const call = this.calls.find((c) => c.callId === header(m, 'call-id'));
      if (call) this.ack(call, m);
    }
  }

  private async onRequest(req: SipRequest, from: { address: string; port: number }): Promise<void> {
    const callId = header(req, 'call-id') ?? '';
    const call = this.calls.find((c) => c.callId === callId);
    const reply = (status: number, opts: { body?: string; headers?: Array<[string, string]> } = {}) => this.send(buildResponse(req, status, {
      toTag: call?.localTag ?? this.pendingTags.get(callId),
      headers: [['contact', this.contact], ...(opts.body ? [['content-type', 'application/sdp'] as [string, string]] : []), ...(opts.headers ?? [])],
      body: opts.body,
    }), { host: from.address, port: from.port });
    switch (req.method) {
      case 'INVITE':
        if (!call) await this.onIncoming(req, reply);
        else this.onReinvite(call, req, reply);
        break;
      case 'ACK':
        this.acked.add(`${callId} ${cseqOf(req)?.seq}`);
        break;
      case 'BYE':
        reply(200);
        if (call && !call.ended) {
          call.ended = true;
          call.endedBy = 'remote';
          call.media.stop();
        }
        break;
      case 'NOTIFY':
        reply(200);
        call?.notifies.push(req.body);
        break;
      case 'CANCEL':
        reply(200);
        break;
      default:
        reply(200);
    }
    this.notify();
  }

  private readonly pendingTags = new Map<string, string>();
  private readonly acked = new Set<string>();

  private async onIncoming(req: SipRequest, reply: (status: number, opts?: { body?: string }) => void): Promise<void> {
    const callId = header(req, 'call-id') ?? '';
    if (this.pendingTags.has(callId)) return; // a retransmission: the 200 is on its way again below
    const localTag = rand();
    this.pendingTags.set(callId, localTag);
    reply(180);
    const media = new RtpPhone(this.opts.toneHz, this.opts.listenHz);
    const port = await media.start();
    const addr = sdpAudioAddress(req.body);
    if (addr) media.retarget(addr.port, addr.address);
    const from = header(req, 'from') ?? '';
    const call: PhoneCall = {
      callId, localTag, remoteTag: tagOf(from) ?? '', localUri: (header(req, 'to') ?? '').replace(/;\s*tag=[^;]*/, ''),
      remoteUri: from.replace(/;\s*tag=[^;]*/, ''), target: uriOf(header(req, 'contact')) ?? '', cseq: 0, media, remoteSdp: req.body,
      reinvites: [], notifies: [], ended: false, endedBy: null,
    };
    this.calls.push(call);
    const body = this.sdp(port, 'sendrecv');
    // The 200 again until the ACK (RFC 3261 13.3.1.4).
    const seq = cseqOf(req)?.seq;
    for (let wait = 500; wait <= 4000 && !this.acked.has(`${callId} ${seq}`) && !call.ended; wait *= 2) {
      reply(200, { body });
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  private onReinvite(call: PhoneCall, req: SipRequest, reply: (status: number, opts?: { body?: string }) => void): void {
    call.reinvites.push(req.body);
    if (!req.body) {
      reply(200, { body: this.sdp(call.media.port, call.media.isMuted ? 'sendonly' : 'sendrecv') });
      return;
    }
    call.remoteSdp = req.body;
    const addr = sdpAudioAddress(req.body);
    if (!addr) {
      reply(488);
      return;
    }
    call.media.retarget(addr.port, addr.address);
    reply(200, { body: this.sdp(call.media.port, call.media.isMuted ? 'sendonly' : 'sendrecv') });
  }

  private send(buf: Buffer, dest: { host: string; port: number }): void {
    this.trace.push(`>>> to ${dest.host}:${dest.port}\n${buf.toString('utf8')}`);
    this.sock.send(buf, dest.port, dest.host);
  }

  private notify(): void {
    for (const w of this.waiters.slice()) w();
  }
}

