import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Baresip, sdpDirection } from '../harness/baresip';
import { RtpPhone } from '../harness/rtp-phone';
import { runSippUac, SippRun, startSippUas } from '../harness/sipp';

const HAVE_BARESIP = Baresip.available();
const HAVE_SIPP = spawnSync('sipp', ['-v'], { encoding: 'utf8' }).error === undefined;

/** SIPp calls a baresip phone, sends `digits` as SIP INFO application/dtmf-relay, then hangs up. */
function infoScenario(digits: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-sipp-info-'));
  const file = path.join(dir, 'uac-info-dtmf.xml');
  const dialog = (method: string, cseq: number) => `${method} sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: ${cseq} ${method}
Max-Forwards: 70`;
  const infos = [...digits].map((d, i) => `  <pause milliseconds="150"/>
  <send retrans="500"><![CDATA[
${dialog('INFO', 2 + i)}
Content-Type: application/dtmf-relay
Content-Length: [len]

Signal=${d}
Duration=160

]]></send>
  <recv response="200"/>
`).join('');
  fs.writeFileSync(file, `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uac sends DTMF as SIP INFO">
  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:sipp@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=sipp 1 1 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [rtpport] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=sendrecv

]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200"/>
  <send><![CDATA[
${dialog('ACK', 1)}
Content-Length: 0

]]></send>
${infos}  <send retrans="500"><![CDATA[
${dialog('BYE', 2 + digits.length)}
Content-Length: 0

]]></send>
  <recv response="200"/>
</scenario>
`);
  return file;
}

/** baresip 1.0.0 against itself, SIPp and RtpPhone on loopback: the desk phone the bridge tests use. */
describe('Baresip test phone (real baresip on loopback)', function () {
  this.timeout(30000);
  const phones: Baresip[] = [];
  const rtp: RtpPhone[] = [];
  const sipps: SippRun[] = [];
  const scenarios: string[] = [];

  before(function () {
    if (!HAVE_BARESIP) {
      console.log('\n!!! BARESIP TESTS SKIPPED: no `baresip` on PATH (apt-get install baresip-core) !!!\n');
      this.skip();
    }
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed') for (const p of phones) console.log(p.describe(4000));
    await Promise.all(phones.splice(0).map((p) => p.stop()));
    for (const r of rtp.splice(0)) r.stop();
    await Promise.all(sipps.splice(0).map((s) => s.proc.stop()));
    for (const f of scenarios.splice(0)) fs.rmSync(path.dirname(f), { recursive: true, force: true });
  });

  async function phone(opts: ConstructorParameters<typeof Baresip>[0]): Promise<Baresip> {
    const p = new Baresip(opts);
    phones.push(p);
    return p.start();
  }

  it('A calls B, B answers by itself, A sends 159# as RFC 4733, holds (sendonly) and resumes (sendrecv), hangs up', async () => {
    const [a, b] = await Promise.all([phone({ user: 'alice', toneHz: 440, record: true }), phone({ user: 'bob', toneHz: 1000, record: true })]);
    assert.notEqual(a.sipPort, b.sipPort);

    await a.dial(b.uri);
    const incoming = await b.whenIncoming();
    assert.match(incoming.peeruri ?? '', /^sip:alice@127\.0\.0\.1:/);
    assert.equal(incoming.direction, 'incoming');
    const [estA, estB] = await Promise.all([a.whenEstablished(), b.whenEstablished()]);
    assert.equal(estA.id, estB.id, 'one call, one id (the Call-ID) on both sides');

    // The offer: loopback media, PCMU then PCMA, telephone-event. baresip's SIP trace (stdout) and its
    // events (ctrl_tcp) are two streams, so the trace is awaited, not read as it happens to be.
    const invite = await b.waitSip((m) => m.dir === 'in' && m.status === null && m.method === 'INVITE', { what: 'the INVITE at B' });
    assert.match(invite.body, /^c=IN IP4 127\.0\.0\.1\r$/m);
    assert.match(invite.body, /^m=audio \d+ RTP\/AVP 0 8 101\r$/m);
    assert.match(invite.body, /^a=rtpmap:101 telephone-event\/8000\r$/m);
    assert.equal(sdpDirection(invite.body), 'sendrecv');
    const ok = await a.waitSip((m) => m.status === 200 && m.method === 'INVITE', { what: "B's 200 at A" });
    assert.equal(ok.dir, 'in');

    await a.sendDigits('159#');
    assert.equal(await b.waitDigits(4), '159#');
    assert.equal(a.sipRequests('INFO').length, 0, 'rtpevent mode sends no INFO');

    const held = await a.hold();
    assert.equal(held.status, 200);
    assert.equal(sdpDirection(held.offer.body), 'sendonly', held.offer.body);
    assert.equal(sdpDirection(held.response.body), 'recvonly', held.response.body);
    const heldAtB = await b.waitSip((m) => m.dir === 'in' && m.method === 'INVITE' && m.cseq === held.offer.cseq, { what: 'hold re-INVITE at B' });
    assert.match(heldAtB.body, /^a=sendonly\r$/m);

    const resumed = await a.resume();
    assert.equal(sdpDirection(resumed.offer.body), 'sendrecv');
    assert.equal(sdpDirection(resumed.response.body), 'sendrecv');
    assert.ok(resumed.offer.cseq > held.offer.cseq);

    await a.hangup();
    const [closedA, closedB] = await Promise.all([a.whenClosed(), b.whenClosed()]);
    assert.match(closedB.param ?? '', /reset by peer/i);
    assert.match(closedA.param ?? '', /reset by user/i);
    await a.waitSip((m) => m.dir === 'out' && m.status === null && m.method === 'BYE', { what: 'the BYE from A' });
    await b.waitSip((m) => m.dir === 'in' && m.status === null && m.method === 'BYE', { what: 'the BYE at B' });
    assert.equal(a.sipRequests('BYE', 'out').length, 1);
    assert.equal(b.sipRequests('BYE', 'in').length, 1);

    // Each heard the other's tone (sndfile recordings of the decoded audio).
    const bHeard = b.heardTone(440);
    const aHeard = a.heardTone(1000);
    assert.ok(bHeard.framesWithTone >= 15 && bHeard.framesWithTone >= 0.8 * bHeard.frames, `B heard A's 440 Hz in ${bHeard.framesWithTone}/${bHeard.frames} frames`);
    assert.ok(aHeard.framesWithTone >= 15 && aHeard.framesWithTone >= 0.8 * aHeard.frames, `A heard B's 1000 Hz in ${aHeard.framesWithTone}/${aHeard.frames} frames`);
  });

  it('answer: manual rings until accept(); the caller cancelling is reported as closed', async () => {
    const [a, b] = await Promise.all([phone({ user: 'carol' }), phone({ user: 'dave', answer: 'manual' })]);
    await a.dial(b.uri);
    await b.whenIncoming();
    await a.waitEvent('CALL_RINGING', { timeoutMs: 5000 });
    await b.accept();
    await Promise.all([a.whenEstablished(), b.whenEstablished()]);
    await b.hangup();
    await Promise.all([a.whenClosed(), b.whenClosed()]);

    // A second call on the same phones: the per-call waits look at the new call only.
    await a.dial(b.uri);
    await b.whenIncoming();
    await a.hangup(); // while it rings: CANCEL
    await Promise.all([a.whenClosed(), b.whenClosed()]);
    await a.waitSip((m) => m.dir === 'out' && m.status === null && m.method === 'CANCEL', { what: 'the CANCEL from A' });
    assert.equal(a.sipRequests('CANCEL', 'out').length, 1);
    assert.equal(a.events.filter((e) => e.type === 'CALL_ESTABLISHED').length, 1);
  });

  it('DTMF as SIP INFO: sent with dtmfmode=info where baresip can (>= 1.1.0), refused loudly by 1.0.0', async function () {
    if (!Baresip.canSendInfoDtmf()) {
      await assert.rejects(phone({ user: 'erin', dtmfmode: 'info' }), /cannot send DTMF as SIP INFO: dtmfmode arrived in baresip 1\.1\.0/);
      const a = await phone({ user: 'erin' });
      await assert.rejects(a.sendDigits('1', 'info'), /sends DTMF as rtpevent/);
      return;
    }
    const [a, b] = await Promise.all([phone({ user: 'erin', dtmfmode: 'info' }), phone({ user: 'frank' })]);
    await a.dial(b.uri);
    await Promise.all([a.whenEstablished(), b.whenEstablished()]);
    await a.sendDigits('159#');
    assert.equal(await b.waitDigits(4), '159#');
    const infos = b.sipRequests('INFO', 'in');
    assert.ok(infos.length >= 4);
    for (const i of infos) assert.match(i.headers['content-type']?.[0] ?? '', /^application\/dtmf-relay/);
    await a.hangup();
    await b.whenClosed();
  });

  it('reports digits received as SIP INFO application/dtmf-relay (sent by SIPp) and answers each with 200', async function () {
    if (!HAVE_SIPP) {
      console.log('\n!!! SIPp missing: the INFO receive test is skipped !!!\n');
      this.skip();
    }
    const b = await phone({ user: 'gina' });
    const media = new RtpPhone(1000, 1000);
    rtp.push(media);
    const rtpPort = await media.start();
    const scenario = infoScenario('159#');
    scenarios.push(scenario);
    const sipp = await runSippUac(scenario, { target: b.sipAddress, number: b.user, rtpPort });
    sipps.push(sipp);
    await b.whenEstablished();
    assert.equal(await b.waitDigits(4), '159#');
    await b.whenClosed();
    assert.equal(await sipp.done, 0, sipp.proc.output.slice(-1500));
    await b.waitSip((m) => m.dir === 'out' && m.method === 'BYE' && m.status === 200, { what: "B's 200 to the BYE" });
    const infos = b.sipRequests('INFO', 'in');
    assert.equal(infos.length, 4);
    for (const i of infos) assert.equal(i.headers['content-type']?.[0], 'application/dtmf-relay');
    assert.deepEqual(infos.map((i) => /Signal=(\S)/.exec(i.body)?.[1]), ['1', '5', '9', '#']);
    const ok = b.sip.filter((m) => m.dir === 'out' && m.method === 'INFO' && m.status === 200);
    assert.equal(ok.length, 4);
    await media.whenPackets(0, 10); // baresip sent its audio to the SDP port
  });

  it('RFC 4733 both ways with RtpPhone behind a SIPp UAS: baresip digits decoded, RtpPhone digits reported', async function () {
    if (!HAVE_SIPP) {
      console.log('\n!!! SIPp missing: the RtpPhone interop test is skipped !!!\n');
      this.skip();
    }
    const media = new RtpPhone(1000, 440);
    rtp.push(media);
    const rtpPort = await media.start();
    const sipp = await startSippUas('uas-answer.xml', { rtpPort });
    sipps.push(sipp);
    const a = await phone({ user: 'hank', toneHz: 440, record: true });
    await a.dial(`sip:agent101@127.0.0.1:${sipp.port}`);
    await a.whenEstablished();
    await media.heard.whenHeard(10); // baresip's tone at the RtpPhone; from now on it answers back

    await a.sendDigits('2580');
    const got = await media.waitDigits(4);
    assert.equal(got.map((d) => d.digit).join(''), '2580');
    for (const d of got) {
      assert.equal(d.pt, 101);
      assert.ok(d.durationMs >= 180, `baresip's events last 9 packets at least (${d.durationMs} ms)`);
    }

    await media.sendDigits('*#', 120);
    assert.equal(await a.waitDigits(2), '*#');
    const heard = a.heardTone(1000);
    assert.ok(heard.framesWithTone > 10, `baresip heard the RtpPhone's tone in ${heard.framesWithTone} frames`);

    await a.hangup();
    await a.whenClosed();
    assert.equal(await sipp.done, 0, sipp.proc.output.slice(-1500));
  });
});
