import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { LocalMetaSipSim, MetaSipCall, MetaSipSim, metaShapeProblems, MetaSipNumber, startMetaSipSim, TlsRefusal } from '../src/sandbox/simulator/meta-sip';
import { DrachtioServer, findDrachtio, startDrachtio } from './harness/drachtio';
import { infra } from './harness/infra';
import { BusinessLeg, MetaBusinessStandIn } from './harness/meta-business';
import { RtpengineInstance, startRtpengine } from './harness/rtpengine';
import { RtpPhone } from './harness/rtp-phone';
import { issueCert, makeTestCa, TestCa } from './harness/test-ca';
import { until, within } from './harness/timeline';

const USER_TONE = 440;
const BUSINESS_TONE = 1000;
const HOSTNAME = 'sip.business.test';
const CUSTOMER = '+6281361905133';
const DTLS_NUMBER: MetaSipNumber = { number: '+6283138205150', phoneId: '1001', hostname: HOSTNAME, password: 'dtls-secret', srtp: 'dtls' };
const SDES_NUMBER: MetaSipNumber = { number: '+6283138205151', phoneId: '1002', hostname: HOSTNAME, password: 'sdes-secret', srtp: 'sdes', g711: true };

/** A TLS server that presents `cert` and records whether any byte arrived (a SIP request would). */
async function tlsServer(cert: { keyFile: string; certFile: string }): Promise<{ port: number; bytes: () => number; close: () => Promise<void> }> {
  let bytes = 0;
  const srv = tls.createServer({ key: fs.readFileSync(cert.keyFile), cert: fs.readFileSync(cert.certFile) }, (s) => {
    s.on('data', (d: Buffer) => { bytes += d.length; });
    s.on('error', () => undefined);
  });
  srv.on('tlsClientError', () => undefined);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return { port: (srv.address() as net.AddressInfo).port, bytes: () => bytes, close: () => new Promise((r) => srv.close(() => r())) };
}

describe('Meta native-SIP simulator against a real SIP-over-TLS business side', function () {
  this.timeout(60000);
  let dir = '';
  let ca: TestCa;
  let bizSip: DrachtioServer | null = null;
  let bizRtp: RtpengineInstance | null = null;
  let meta: LocalMetaSipSim | null = null;
  let biz: MetaBusinessStandIn | null = null;
  const phones: RtpPhone[] = [];

  const phone = async (send: number, listen: number): Promise<RtpPhone> => {
    const p = new RtpPhone(send, listen);
    await p.start();
    phones.push(p);
    return p;
  };

  before(async function () {
    if (!infra.drachtio) return this.skip(); // the run already said why, loudly, once
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-meta-sip-'));
    ca = makeTestCa(dir);
    const cert = issueCert(ca, 'business', [HOSTNAME]);
    bizSip = await startDrachtio(findDrachtio()!, { tls: cert });
    bizRtp = await startRtpengine({ portMin: 38400, portMax: 38599, interfaces: ['127.0.0.1'] });
    meta = await startMetaSipSim({
      bridge: { host: '127.0.0.1', port: bizSip.tlsPort! }, ca: ca.caFile, numbers: [DTLS_NUMBER, SDES_NUMBER], timeoutMs: 5000,
    });
  });

  after(async () => {
    await meta?.stop();
    await bizSip?.proc.stop();
    await bizRtp?.proc.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(async () => {
    biz = new MetaBusinessStandIn(bizSip!, bizRtp!);
    await biz.connect();
  });

  afterEach(async () => {
    for (const c of meta?.sim.calls ?? []) if (!c.isEnded) await c.hangup().catch(() => undefined);
    for (const p of phones.splice(0)) p.stop();
    await biz?.close();
    biz = null;
  });

  /**
   * Proves Meta's media rule and audio both ways on an answered call: the user's phone sends at once,
   * the business's phone is muted; the sim receives the user's audio and holds it back (the business
   * gets nothing) until the business sends, then both hear each other.
   */
  async function assertMediaBothWays(call: MetaSipCall, leg: BusinessLeg, user: RtpPhone, business: RtpPhone): Promise<void> {
    assert.ok(call.phoneTarget, 'the sim said where the user\'s phone must send');
    user.retarget(call.phoneTarget.port, call.phoneTarget.address);
    business.mute(true);
    business.retarget(leg.phoneTarget.port, leg.phoneTarget.address);
    await until('the sim receiving the user\'s audio', async () => (await meta!.sim.mediaPackets(call)).user >= 15, 10000);
    assert.equal(business.packetsIn, 0, 'Meta sent media before the business\'s first packet');
    assert.equal(call.firstPacketFrom(), null);
    const media = new Promise<void>((r) => call.once('media', () => r()));
    business.mute(false);
    await within(media, 5000, () => 'the sim seeing the business\'s first packet');
    assert.equal(call.firstPacketFrom(), 'business');
    assert.equal(call.packetsAtFirstMedia!.business > 0, true);
    await within(Promise.all([user.heard.whenHeard(25), business.heard.whenHeard(25)]), 10000,
      () => `tones both ways (user heard ${user.packetsIn} packets, business ${business.packetsIn})`);
  }

  for (const num of [DTLS_NUMBER, SDES_NUMBER]) {
    it(`a user-initiated call (${num.srtp}): Meta's INVITE and SDP shape, the business's challenge answered, business media first, audio both ways, BYE with wacid and duration`, async () => {
      const user = await phone(USER_TONE, BUSINESS_TONE);
      const business = await phone(BUSINESS_TONE, USER_TONE);
      biz!.phonePort = business.port;
      biz!.challenge = { username: num.number.slice(1), password: num.password };
      const call = meta!.sim.userCalls({
        from: CUSTOMER, to: num.number, profileName: 'Budi', ctaPayload: 'cta-1', deeplinkPayload: 'deep-1', phone: { address: '127.0.0.1', port: user.port },
      });
      await within(call.answered, 15000, () => `answer (ended: ${JSON.stringify(call.endedWith)})`);

      // Two INVITEs: the first challenged (401), the second with credentials.
      assert.equal(biz!.invites.length, 2);
      const inv = biz!.invites[1]!;
      assert.equal(inv.protocol, 'tls');
      assert.equal(inv.uri, `sip:${num.number}@${HOSTNAME}:5061;transport=tls`);
      assert.match(inv.from, new RegExp(`^"Budi" <sip:\\${CUSTOMER}@wa\\.meta\\.vc>;tag=`));
      assert.equal(inv.header('User-Agent'), 'Facebook SipGateway');
      assert.equal(inv.header('x-wa-meta-wacid'), call.wacid);
      assert.match(call.wacid, /^wacid\.HBgL/);
      assert.equal(inv.header('x-wa-meta-phone-number-id'), num.phoneId);
      assert.equal(inv.header('x-wa-meta-country-code'), '62');
      assert.equal(inv.header('x-wa-meta-cta-payload'), 'cta-1');
      assert.equal(inv.header('x-wa-meta-deeplink-payload'), 'deep-1');
      assert.match(inv.header('Authorization') ?? '', /username="\d+"/);
      assert.deepEqual(metaShapeProblems(inv.sdp, num.srtp, 'offer', num.g711), []);
      assert.match(inv.sdp, /^c=IN IP4 127\.0\.0\.5\r?$/m, 'Meta\'s media address is the sim rtpengine\'s');

      await assertMediaBothWays(call, biz!.answered[0]!, user, business);

      await call.hangup();
      const end = await within(call.ended, 5000, () => 'the end');
      assert.deepEqual(end, { by: 'user', status: 200, reason: 'BYE from Meta' });
      await until('the business seeing the BYE', async () => biz!.byes.length > 0, 5000);
      const bye = biz!.byes[0]!;
      assert.equal(bye.header('x-wa-meta-wacid'), call.wacid);
      assert.match(bye.header('x-wa-meta-call-duration') ?? '', /^\d+$/);
      assert.equal(call.counters.reinvitesRefused, 0);
    });
  }

  it('a business-initiated call: the 407 challenge in realm wa.meta.vc, the digest checked, 180 then 200 with the wacid, audio both ways; the business\'s BYE ends it', async () => {
    const user = await phone(USER_TONE, BUSINESS_TONE);
    const business = await phone(BUSINESS_TONE, USER_TONE);
    biz!.phonePort = business.port;
    const seen: Array<{ to: string; from: string }> = [];
    meta!.sim.onBusinessCall((c) => {
      seen.push({ to: c.to, from: c.from });
      return { action: 'answer', afterMs: 100, phone: { address: '127.0.0.1', port: user.port } };
    });
    const before = { ...meta!.sim.counters };
    const callP = new Promise<MetaSipCall>((r) => meta!.sim.once('businessCall', r));
    const leg = await biz!.call({
      meta: meta!.tlsContact, to: CUSTOMER, from: DTLS_NUMBER.number, fromHost: HOSTNAME, srtp: 'dtls',
      auth: { username: DTLS_NUMBER.number.slice(1), password: DTLS_NUMBER.password },
    });
    const call = await within(callP, 1000, () => 'the businessCall event');
    assert.equal(meta!.sim.counters.challenges, before.challenges + 1, 'one 407');
    assert.match(call.inviteHeaders['Proxy-Authorization'] ?? call.inviteHeaders['proxy-authorization'] ?? '', /realm="wa\.meta\.vc"/);
    assert.deepEqual(seen, [{ to: CUSTOMER, from: DTLS_NUMBER.number }]);
    assert.deepEqual(call.provisional, [180]);
    const ok = (leg.dialog as unknown as { res: { get(n: string): string } }).res;
    assert.equal(ok.get('x-wa-meta-wacid'), call.wacid);
    assert.deepEqual(metaShapeProblems(call.localSdp!, 'dtls', 'answer'), []);

    await assertMediaBothWays(call, leg, user, business);

    await new Promise<void>((r) => leg.dialog.destroy(undefined, () => r()));
    const end = await within(call.ended, 5000, () => 'the end');
    assert.equal(end.by, 'business');
  });

  it('a business-initiated call in SDES mode answered, then hung up by the WhatsApp user: BYE with wacid and duration', async () => {
    const user = await phone(USER_TONE, BUSINESS_TONE);
    const business = await phone(BUSINESS_TONE, USER_TONE);
    biz!.phonePort = business.port;
    meta!.sim.onBusinessCall(() => ({ action: 'answer', phone: { address: '127.0.0.1', port: user.port } }));
    const callP = new Promise<MetaSipCall>((r) => meta!.sim.once('businessCall', r));
    const leg = await biz!.call({
      meta: meta!.tlsContact, to: CUSTOMER, from: SDES_NUMBER.number, fromHost: HOSTNAME, srtp: 'sdes',
      auth: { username: SDES_NUMBER.number.slice(1), password: SDES_NUMBER.password },
    });
    const call = await callP;
    assert.deepEqual(metaShapeProblems(call.localSdp!, 'sdes', 'answer', true), []);
    await assertMediaBothWays(call, leg, user, business);
    await call.hangup();
    await until('the business seeing the BYE', async () => biz!.byes.some((b) => b.callId === leg.callId), 5000);
    const bye = biz!.byes.find((b) => b.callId === leg.callId)!;
    assert.equal(bye.header('x-wa-meta-wacid'), call.wacid);
    assert.match(bye.header('x-wa-meta-call-duration') ?? '', /^\d+$/);
  });

  it('refuses the business\'s INVITE: 403 for a wrong password, "403 SIP server ... does not match" for another From domain, 404 for a Request-URI without +', async () => {
    meta!.sim.onBusinessCall(() => ({ action: 'decline' }));
    biz!.phonePort = (await phone(BUSINESS_TONE, USER_TONE)).port;
    const c0 = { ...meta!.sim.counters };
    const base = { meta: meta!.tlsContact, to: CUSTOMER, from: DTLS_NUMBER.number, fromHost: HOSTNAME, srtp: 'dtls' as const };
    const status = (p: Promise<unknown>) => p.then(() => ({ status: 200, reason: 'OK' }), (e: { status?: number; reason?: string }) => ({ status: e.status, reason: e.reason }));

    assert.deepEqual(await status(biz!.call({ ...base, auth: { username: DTLS_NUMBER.number.slice(1), password: 'wrong' } })), { status: 403, reason: 'Forbidden' });
    assert.equal(meta!.sim.counters.authFailures, c0.authFailures + 1);

    assert.deepEqual(await status(biz!.call({ ...base, fromHost: 'pbx.other.test', auth: { username: DTLS_NUMBER.number.slice(1), password: DTLS_NUMBER.password } })),
      { status: 403, reason: 'SIP server pbx.other.test does not match' });
    assert.equal(meta!.sim.counters.fromMismatches, c0.fromMismatches + 1);

    assert.deepEqual(await status(biz!.call({ ...base, requestUri: `sip:${CUSTOMER.slice(1)}@wa.meta.vc;transport=tls`, auth: { username: DTLS_NUMBER.number.slice(1), password: DTLS_NUMBER.password } })),
      { status: 404, reason: 'Not Found' });

    // The policy's answers: decline 603, busy 486.
    assert.equal((await status(biz!.call({ ...base, auth: { username: DTLS_NUMBER.number.slice(1), password: DTLS_NUMBER.password } }))).status, 603);
    meta!.sim.onBusinessCall(() => ({ action: 'busy' }));
    assert.equal((await status(biz!.call({ ...base, auth: { username: DTLS_NUMBER.number.slice(1), password: DTLS_NUMBER.password } }))).status, 486);
    assert.equal(meta!.sim.counters.businessCalls, c0.businessCalls + 2, 'only INVITEs past the checks became calls');
  });

  it('refuses a re-INVITE and an UPDATE from the business with 488 and counts them; answers OPTIONS', async () => {
    const user = await phone(USER_TONE, BUSINESS_TONE);
    const business = await phone(BUSINESS_TONE, USER_TONE);
    biz!.phonePort = business.port;
    const c0 = { ...meta!.sim.counters };
    const call = meta!.sim.userCalls({ from: CUSTOMER, to: DTLS_NUMBER.number, phone: { address: '127.0.0.1', port: user.port } });
    await within(call.answered, 15000, () => `answer (ended: ${JSON.stringify(call.endedWith)})`);
    const dialog = biz!.answered[0]!.dialog;
    const hold = dialog.local.sdp.replace(/a=sendrecv/g, 'a=sendonly');
    await assert.rejects(dialog.modify(hold), (e: { status?: number }) => e.status === 488);
    const update = await dialog.request({ method: 'UPDATE' } as never);
    assert.equal((update as unknown as { status: number }).status, 488);
    const options = await dialog.request({ method: 'OPTIONS' } as never);
    assert.equal((options as unknown as { status: number }).status, 200);
    assert.deepEqual(call.counters, { reinvitesRefused: 1, updatesRefused: 1, options: 1 });
    assert.equal(meta!.sim.counters.reinvitesRefused, c0.reinvitesRefused + 1);
    assert.equal(meta!.sim.counters.updatesRefused, c0.updatesRefused + 1);
    assert.equal(call.isEnded, false, 'the refused re-INVITE left the call up');
  });

  it('a user-initiated call cancelled while ringing: CANCEL, 487', async () => {
    const user = await phone(USER_TONE, BUSINESS_TONE);
    biz!.ringOnly = true;
    const call = meta!.sim.userCalls({ from: CUSTOMER, to: DTLS_NUMBER.number, phone: { address: '127.0.0.1', port: user.port } });
    await within(new Promise<void>((r) => call.once('provisional', (s) => { if (s === 180) r(); })), 15000, () => 'a 180');
    await call.cancel();
    const end = await within(call.ended, 5000, () => 'the end');
    assert.deepEqual(end, { by: 'user', status: 487, reason: '487 Request Terminated' });
  });

  describe('the bridge\'s certificate, checked as Meta checks it before each call', () => {
    const cases: Array<{ name: string; cert: () => { keyFile: string; certFile: string }; reason: RegExp }> = [
      { name: 'expired', cert: () => issueCert(ca, 'expired', [HOSTNAME], { expired: true }), reason: /^tls: certificate has expired$/ },
      { name: 'for another name', cert: () => issueCert(ca, 'other', ['sip.other.test']), reason: /^tls: Hostname\/IP does not match certificate's altnames/ },
      { name: 'from an untrusted CA', cert: () => issueCert(makeTestCa(fs.mkdtempSync(path.join(dir, 'ca2-')), 'stranger CA'), 'stranger', [HOSTNAME]), reason: /^tls: unable to verify the first certificate$/ },
    ];
    for (const c of cases) {
      it(`${c.name}: the call is not placed and the sim says why`, async () => {
        const server = await tlsServer(c.cert());
        // A second sim (never connected: a refused call needs no SIP) pointed at the bad server.
        const other = new MetaSipSim({
          drachtio: { host: '127.0.0.1', port: meta!.drachtio.adminPort, secret: meta!.drachtio.secret },
          rtpengine: { address: meta!.rtpengine.ng.host, port: meta!.rtpengine.ng.port },
          bridge: { host: '127.0.0.1', port: server.port }, ca: ca.caFile, numbers: [DTLS_NUMBER],
        });
        try {
          const refused = new Promise<TlsRefusal>((r) => other.once('tlsRefused', r));
          const call = other.userCalls({ from: CUSTOMER, to: DTLS_NUMBER.number, phone: { address: '127.0.0.1', port: 9 } });
          const end = await within(call.ended, 8000, () => 'the refusal');
          assert.equal(end.by, 'sim');
          assert.match(end.reason, c.reason);
          assert.equal((await refused).hostname, HOSTNAME);
          assert.equal(other.counters.tlsRefusals, 1);
          assert.equal(server.bytes(), 0, 'nothing but the handshake reached the server');
        } finally {
          await other.stop();
          await server.close();
        }
      });
    }
  });
});
