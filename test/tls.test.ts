import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Srf from 'drachtio-srf';
import { Client } from 'rtpengine-client';
import { CallRecord } from '../src/cdr/models';
import { mediaAddresses } from '../src/media/sdp';
import { startStack, TestStack } from './harness/bridge';
import { DrachtioServer, findDrachtio, startDrachtio } from './harness/drachtio';
import { infra } from './harness/infra';
import { RtpengineInstance, startRtpengine } from './harness/rtpengine';
import { RtpPhone } from './harness/rtp-phone';
import { WaUser } from './harness/wa-user';

const USER_TONE = 440;
const AGENT_TONE = 1000;
const BUSINESS = '+6283138205150';

/** A self-signed certificate for 127.0.0.1 (the test's own CA-less TLS peers). */
function selfSigned(dir: string): { keyFile: string; certFile: string } {
  const keyFile = path.join(dir, 'key.pem');
  const certFile = path.join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', keyFile, '-out', certFile], { stdio: 'ignore' });
  return { keyFile, certFile };
}

/**
 * A PBX that takes SIP only over TLS and media only as SRTP (SDES): its own drachtio-server with a
 * TLS contact and a drachtio-srf application answering the bridge's INVITE, with a second rtpengine
 * turning its SRTP into plain RTP for the agent's phone (so the test hears the decrypted audio).
 */
class TlsSrtpPbx {
  readonly srf = new Srf();
  readonly invites: Array<{ protocol: string; sdp: string }> = [];
  private readonly ng: Client;
  private dialogs: Srf.Dialog[] = [];

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

  get tlsUri(): string {
    return `sip:agents@127.0.0.1:${this.server.tlsPort};transport=tls`;
  }

  private async answer(req: Srf.SrfRequest, res: Srf.SrfResponse): Promise<void> {
    this.invites.push({ protocol: String((req as unknown as { protocol: string }).protocol), sdp: req.body });
    const callId = req.get('Call-ID');
    const ids = { 'call-id': callId, 'from-tag': 'bridge' };
    // SRTP from the bridge -> plain RTP to the agent's phone, and the phone's answer back as SRTP.
    const toPhone = await this.ng.offer(this.rtp.ng.port, '127.0.0.1', { ...ids, sdp: req.body, 'transport-protocol': 'RTP/AVP', replace: ['origin', 'session-connection'] });
    assert.equal(toPhone.result, 'ok', JSON.stringify(toPhone));
    const phoneSdp = `v=0\r\no=agent 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio ${this.phonePort} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n`;
    const back = await this.ng.answer(this.rtp.ng.port, '127.0.0.1', { ...ids, 'to-tag': 'phone', sdp: phoneSdp, replace: ['origin', 'session-connection'] });
    assert.equal(back.result, 'ok', JSON.stringify(back));
    const uas = await this.srf.createUAS(req, res, { localSdp: String(back.sdp) });
    this.dialogs.push(uas);
  }

  async close(): Promise<void> {
    for (const d of this.dialogs) d.destroy();
    this.srf.disconnect();
    this.ng.close();
  }
}

describe('a PBX reached over SIP TLS, with SRTP (SDES) on its leg', function () {
  this.timeout(60000);
  let dir = '';
  let bridgeSip: DrachtioServer | null = null;
  let pbxSip: DrachtioServer | null = null;
  let pbxRtp: RtpengineInstance | null = null;
  let pbx: TlsSrtpPbx | null = null;
  let stack: TestStack | null = null;
  let user: WaUser | null = null;
  let phone: RtpPhone | null = null;

  before(async function () {
    if (!infra.drachtio) return this.skip(); // the run already said why, loudly, once
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-tls-'));
    const cert = selfSigned(dir);
    // The bridge's own drachtio-server with a TLS contact, as the compose file's TLS option runs it.
    bridgeSip = await startDrachtio(findDrachtio()!, { tls: cert });
    pbxSip = await startDrachtio(findDrachtio()!, { tls: cert });
    pbxRtp = await startRtpengine({ portMin: 37400, portMax: 37599, interfaces: ['127.0.0.1'] });
  });

  after(async () => {
    await bridgeSip?.proc.stop();
    await pbxSip?.proc.stop();
    await pbxRtp?.proc.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  afterEach(async () => {
    user?.close();
    phone?.stop();
    await stack?.stop();
    await pbx?.close();
    stack = user = phone = pbx = null;
  });

  it('a WhatsApp call reaches the PBX over TLS with an SRTP offer, and audio flows both ways through the encryption', async () => {
    phone = new RtpPhone(AGENT_TONE, USER_TONE);
    const phonePort = await phone.start();
    pbx = new TlsSrtpPbx(pbxSip!, pbxRtp!, phonePort);
    await pbx.connect();
    stack = await startStack({
      DRACHTIO_PORT: String(bridgeSip!.adminPort), DRACHTIO_SECRET: bridgeSip!.secret,
      PBX_TARGET: pbx.tlsUri, PBX_SRTP: 'sdes',
    });
    user = new WaUser(USER_TONE, AGENT_TONE);
    const { wacid } = await stack.sim.userCalls(user, { to: BUSINESS });
    await user.heard.whenHeard(50);
    await phone.heard.whenHeard(25);

    const invite = pbx.invites[0]!;
    assert.equal(invite.protocol, 'tls', 'the INVITE came over TLS');
    assert.match(invite.sdp, /^m=audio \d+ RTP\/SAVP /m, 'an SRTP offer');
    assert.match(invite.sdp, /^a=crypto:\d+ AES_CM_128_HMAC_SHA1_80 inline:/m, 'keyed by SDES');
    assert.doesNotMatch(invite.sdp, /a=(ice-|candidate|fingerprint)/, 'nothing of WebRTC on the PBX leg');
    assert.deepEqual(mediaAddresses(invite.sdp), ['127.0.0.1']);

    await stack.sim.userHangsUp(wacid);
    const id = await stack.bridge.calls.whenEnded(wacid);
    const row = await CallRecord.findByPk(id);
    assert.equal(row?.outcome, 'answered');
    assert.equal(row?.pbx_target, pbx.tlsUri);
  });
});
