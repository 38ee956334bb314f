import crypto from 'node:crypto';
import Srf from 'drachtio-srf';
import { Client } from 'rtpengine-client';
import { rtpTarget } from '../../src/sandbox/simulator/meta-sip';
import { DigestAuth } from '../../src/sip/trust';
import { DrachtioServer } from './drachtio';
import { RtpengineInstance } from './rtpengine';

/** A plain RTP phone's SDP (PCMU, telephone-event 101) on loopback. */
function plainSdp(port: number): string {
  return `v=0\r\no=biz 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio ${port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n`;
}

export interface ReceivedInvite { uri: string; protocol: string; from: string; sdp: string; header: (name: string) => string | undefined }
export interface BusinessLeg { callId: string; dialog: Srf.Dialog; phoneTarget: { address: string; port: number } }

/**
 * The business side for the Meta SIP simulator's own tests, standing where the bridge will: its own
 * drachtio-server (TLS) and a drachtio-srf application that takes Meta's INVITEs (optionally
 * challenging them with digest) and places calls to Meta, with its own rtpengine between Meta's
 * SRTP leg and the business's plain-RTP phone (opus <-> PCMU).
 */
export class MetaBusinessStandIn {
  readonly srf = new Srf();
  readonly invites: ReceivedInvite[] = [];
  /** Each call Meta placed that this side answered. */
  readonly answered: BusinessLeg[] = [];
  /** BYEs received from Meta: their headers. */
  readonly byes: Array<{ callId: string; header: (name: string) => string | undefined }> = [];
  /** Challenge Meta's INVITEs with these credentials (401, as the bridge's DigestAuth does). */
  challenge: { username: string; password: string } | null = null;
  /** Ring (180) and never answer Meta's INVITEs. */
  ringOnly = false;
  /** The plain RTP port of the business's phone (set before a call). */
  phonePort = 0;
  private digest: DigestAuth | null = null;
  private readonly ng = new Client({ timeout: 3000, localAddress: '127.0.0.1' });

  constructor(private readonly server: DrachtioServer, private readonly rtp: RtpengineInstance) {
    this.srf.invite((req, res) => void this.answer(req, res));
  }

  async connect(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('business stand-in: drachtio not connected within 5 s')), 5000);
      this.srf.once('connect', (err: Error | null) => {
        clearTimeout(t);
        if (err) reject(err);
        else resolve();
      });
      this.srf.connect({ host: '127.0.0.1', port: this.server.adminPort, secret: this.server.secret });
    });
  }

  /** The business calls a WhatsApp user through Meta (`to`: E.164), SRTP as Meta's number mode wants. */
  async call(o: {
    meta: { host: string; port: number }; to: string; from: string; fromHost: string; srtp: 'dtls' | 'sdes';
    auth?: { username: string; password: string }; requestUri?: string;
  }): Promise<BusinessLeg> {
    const callId = `biz-${crypto.randomBytes(8).toString('hex')}`;
    const offer = await this.ng.offer(this.rtp.ng.port, this.rtp.ng.host, {
      'call-id': callId, 'from-tag': 'phone', sdp: plainSdp(this.phonePort), replace: ['origin', 'session-connection'],
      ...(o.srtp === 'dtls'
        ? { 'transport-protocol': 'UDP/TLS/RTP/SAVPF', ICE: 'force', SDES: ['off'], 'rtcp-mux': ['require'] }
        : { 'transport-protocol': 'RTP/SAVP', ICE: 'remove', DTLS: 'off' }),
      codec: { transcode: ['opus/48000/2'] },
    });
    const uri = o.requestUri ?? `sip:${o.to}@wa.meta.vc;transport=tls`;
    const dialog = await this.srf.createUAC(uri, {
      proxy: `sip:${o.meta.host}:${o.meta.port};transport=tls`,
      localSdp: String(offer.sdp),
      headers: { 'Call-ID': callId, From: `<sip:${o.from}@${o.fromHost}>` },
      ...(o.auth ? { auth: o.auth } : {}),
    });
    const back = await this.ng.answer(this.rtp.ng.port, this.rtp.ng.host, { 'call-id': callId, 'from-tag': 'phone', 'to-tag': 'meta', sdp: dialog.remote.sdp, replace: ['origin', 'session-connection'] });
    const leg = { callId, dialog, phoneTarget: rtpTarget(String(back.sdp))! };
    this.watch(leg);
    return leg;
  }

  async close(): Promise<void> {
    for (const l of this.answered) l.dialog.destroy();
    this.srf.disconnect();
    this.ng.close();
  }

  private watch(leg: BusinessLeg): void {
    leg.dialog.on('destroy', (req: Srf.SrfRequest) => {
      this.byes.push({ callId: leg.callId, header: (n) => (req?.has(n) ? req.get(n) : undefined) });
      void this.ng.delete(this.rtp.ng.port, this.rtp.ng.host, { 'call-id': leg.callId }).catch(() => undefined);
    });
  }

  private async answer(req: Srf.SrfRequest, res: Srf.SrfResponse): Promise<void> {
    this.invites.push({
      uri: req.uri, protocol: String(req.protocol), from: req.get('From'), sdp: req.body,
      header: (name) => (req.has(name) ? req.get(name) : undefined),
    });
    if (this.challenge) {
      this.digest ??= new DigestAuth({ ...this.challenge, realm: 'business.test' });
      const verdict = this.digest.verify('INVITE', req.uri, req.has('Authorization') ? req.get('Authorization') : undefined);
      if (verdict !== 'ok') {
        if (verdict === 'missing' || verdict === 'stale') res.send(401, { headers: { 'WWW-Authenticate': this.digest.challenge(verdict === 'stale') } });
        else res.send(403);
        return;
      }
    }
    if (this.ringOnly) {
      res.send(180);
      return;
    }
    const callId = req.get('Call-ID');
    try {
      const toPhone = await this.ng.offer(this.rtp.ng.port, this.rtp.ng.host, {
        'call-id': callId, 'from-tag': 'meta', sdp: req.body, replace: ['origin', 'session-connection'],
        'transport-protocol': 'RTP/AVP', ICE: 'remove', DTLS: 'off', SDES: ['off'], 'rtcp-mux': ['demux'],
        codec: { mask: ['opus'], transcode: ['PCMU'] },
      });
      const back = await this.ng.answer(this.rtp.ng.port, this.rtp.ng.host, { 'call-id': callId, 'from-tag': 'meta', 'to-tag': 'phone', sdp: plainSdp(this.phonePort), replace: ['origin', 'session-connection'] });
      const dialog = await this.srf.createUAS(req, res, { localSdp: String(back.sdp) });
      const leg = { callId, dialog, phoneTarget: rtpTarget(String(toPhone.sdp))! };
      this.answered.push(leg);
      this.watch(leg);
    } catch {
      if (!res.finalResponseSent) res.send(500);
    }
  }
}
