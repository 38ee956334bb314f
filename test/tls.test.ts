import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { rows } from './harness/db-rows';
import { mediaAddresses } from '../src/media/sdp';
import { startStack, TestStack } from './harness/bridge';
import { DrachtioServer, findDrachtio, startDrachtio } from './harness/drachtio';
import { infra } from './harness/infra';
import { RtpengineInstance, startRtpengine } from './harness/rtpengine';
import { RtpPhone } from './harness/rtp-phone';
import { SrfPbx } from './harness/srf-pbx';
import { grantPermanentPermission } from './harness/permissions';
import { WaUser } from './harness/wa-user';
import { whenEnded } from './harness/watch';

const USER_TONE = 440;
const AGENT_TONE = 1000;
const BUSINESS = '+6283138205150';
const CUSTOMER = '+6281361905133';

/** A self-signed certificate for 127.0.0.1 (the test's own CA-less TLS peers). */
function selfSigned(dir: string): { keyFile: string; certFile: string } {
  const keyFile = path.join(dir, 'key.pem');
  const certFile = path.join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', keyFile, '-out', certFile], { stdio: 'ignore' });
  return { keyFile, certFile };
}

describe('a PBX reached over SIP TLS, with SRTP (SDES) on its leg', function () {
  this.timeout(60000);
  let dir = '';
  let bridgeSip: DrachtioServer | null = null;
  let pbxSip: DrachtioServer | null = null;
  let pbxRtp: RtpengineInstance | null = null;
  let pbx: SrfPbx | null = null;
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
    pbx = new SrfPbx(pbxSip!, pbxRtp!, phonePort);
    await pbx.connect();
    stack = await startStack({
      DRACHTIO_PORT: String(bridgeSip!.adminPort), DRACHTIO_SECRET: bridgeSip!.secret,
      PBX_TARGET: pbx.uri('tls'), PBX_SRTP: 'sdes',
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
    const id = await whenEnded(stack.bridge, wacid);
    const row = await rows().CallRecord.findByPk(id);
    assert.equal(row?.outcome, 'answered');
    assert.equal(row?.pbx_target, pbx.uri('tls'));
  });

  it('an agent calls out over TLS offering SRTP: the bridge answers with SRTP keys, and audio flows both ways', async () => {
    phone = new RtpPhone(AGENT_TONE, USER_TONE);
    const phonePort = await phone.start();
    pbx = new SrfPbx(pbxSip!, pbxRtp!, phonePort);
    await pbx.connect();
    const s = (stack = await startStack({
      DRACHTIO_PORT: String(bridgeSip!.adminPort), DRACHTIO_SECRET: bridgeSip!.secret,
      SIP_TRUSTED_SOURCES: '127.0.0.0/8', WA_BUSINESS_NUMBER: BUSINESS, WA_PHONE_ID: '461269257068831', PBX_SRTP: 'sdes',
    }));
    await grantPermanentPermission(s.bridge.permissions, BUSINESS, CUSTOMER);
    user = new WaUser(USER_TONE, AGENT_TONE);
    s.sim.outboundScript = s.sim.answeredBy(user);
    const dialog = await pbx.call(`sip:${CUSTOMER}@127.0.0.1:${bridgeSip!.tlsPort};transport=tls`, { srtp: true });
    assert.match(dialog.remote.sdp, /^m=audio \d+ RTP\/SAVP /m, 'the bridge answered SRTP');
    assert.match(dialog.remote.sdp, /^a=crypto:\d+ \S+ inline:/m, `with its SDES key:\n${dialog.remote.sdp}`);
    await user.heard.whenHeard(50);
    await phone.heard.whenHeard(25);
    await pbx.hangup();
    const invite = s.marks.marks.find((m) => m.name === 'invite_received')!;
    const row = await rows().CallRecord.findByPk(await whenEnded(s.bridge, invite.wacid));
    assert.equal(row?.outcome, 'answered');
    assert.equal(row?.hangup_by, 'pbx');
  });
});
