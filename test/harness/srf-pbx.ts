import Srf from 'drachtio-srf';
import { Client } from 'rtpengine-client';
import { DrachtioServer } from './drachtio';
import { RtpengineInstance } from './rtpengine';

/**
 * A PBX made of real parts: its own drachtio-server (UDP, TLS) and a drachtio-srf application that
 * answers the bridge's INVITEs and places agents' calls, with its own rtpengine between the SIP leg
 * (plain RTP or SRTP, whatever the bridge offers or `srtp` asks for) and the agent's plain-RTP phone.
 * Unlike SIPp, it sends in-dialog requests where the bridge's Contact says, as a PBX does.
 */
export class SrfPbx {
  readonly srf = new Srf();
  /** Each INVITE the bridge sent: transport, SDP and the headers that carry the bridge's addresses. */
  readonly invites: Array<{ protocol: string; sdp: string; via: string; contact: string; from: string; header: (name: string) => string | undefined }> = [];
  private readonly ng: Client;
  private readonly dialogs: Srf.Dialog[] = [];
  private seq = 0;

  constructor(private readonly server: DrachtioServer, private readonly rtp: RtpengineInstance, private readonly phonePort: number) {
    this.ng = new Client({ timeout: 2000, localAddress: '127.0.0.1' });
    this.srf.invite((req, res) => void this.answer(req, res));
  }

  async connect(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.srf.connect({ host: '127.0.0.1', port: this.server.adminPort, secret: this.server.secret });
      this.srf.once('connect', (err: Error | null) => (err ? reject(err) : resolve()));
    });
  }

  /** Where the bridge reaches this PBX. */
  uri(transport: 'udp' | 'tls'): string {
    return transport === 'tls' ? `sip:agents@127.0.0.1:${this.server.tlsPort};transport=tls` : `sip:agents@127.0.0.1:${this.server.sipPort}`;
  }

  /** An agent's call to `uri` (the bridge), offering SRTP when `srtp`; resolves once answered. */
  async call(uri: string, o: { srtp: boolean; headers?: Record<string, string> }): Promise<Srf.Dialog> {
    const callId = `pbx-out-${++this.seq}`;
    const offer = await this.ng.offer(this.rtp.ng.port, '127.0.0.1', {
      'call-id': callId, 'from-tag': 'phone', sdp: this.phoneSdp(), 'transport-protocol': o.srtp ? 'RTP/SAVP' : 'RTP/AVP', replace: ['origin', 'session-connection'],
    });
    const dialog = await this.srf.createUAC(uri, { localSdp: String(offer.sdp), headers: { 'Call-ID': callId, From: '<sip:agent201@127.0.0.1>', ...o.headers } } as Srf.CreateUACOptions);
    await this.ng.answer(this.rtp.ng.port, '127.0.0.1', { 'call-id': callId, 'from-tag': 'phone', 'to-tag': 'bridge', sdp: dialog.remote.sdp, replace: ['origin', 'session-connection'] });
    this.dialogs.push(dialog);
    return dialog;
  }

  /** The agent hangs up every call: BYE sent where each dialog's remote target says. */
  async hangup(): Promise<void> {
    await Promise.all(this.dialogs.splice(0).map((d) => new Promise<void>((resolve) => d.destroy(undefined, () => resolve()))));
  }

  async close(): Promise<void> {
    for (const d of this.dialogs.splice(0)) d.destroy();
    this.srf.disconnect();
    this.ng.close();
  }

  private phoneSdp(): string {
    return `v=0\r\no=agent 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio ${this.phonePort} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n`;
  }

  private async answer(req: Srf.SrfRequest, res: Srf.SrfResponse): Promise<void> {
    this.invites.push({
      protocol: String((req as unknown as { protocol: string }).protocol), sdp: req.body, via: req.get('Via'), contact: req.get('Contact'), from: req.get('From'),
      header: (name) => (req.has(name) ? req.get(name) : undefined),
    });
    const ids = { 'call-id': req.get('Call-ID'), 'from-tag': 'bridge' };
    try {
      // The bridge's offer (RTP or SRTP) -> plain RTP to the agent's phone, and the phone's answer back.
      await this.ng.offer(this.rtp.ng.port, '127.0.0.1', { ...ids, sdp: req.body, 'transport-protocol': 'RTP/AVP', replace: ['origin', 'session-connection'] });
      const back = await this.ng.answer(this.rtp.ng.port, '127.0.0.1', { ...ids, 'to-tag': 'phone', sdp: this.phoneSdp(), replace: ['origin', 'session-connection'] });
      this.dialogs.push(await this.srf.createUAS(req, res, { localSdp: String(back.sdp) }));
    } catch {
      if (!res.finalResponseSent) res.send(500);
    }
  }
}
