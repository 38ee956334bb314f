import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { XMLValidator } from 'fast-xml-parser';
import { CallRecord } from '../src/cdr/models';
import { rows } from './harness/db-rows';
import { Asterisk, AsteriskBinary, asteriskHasModule, AsteriskOptions, ASTERISK_SAMPLE_DIR, findAsterisks, phoneSections, renderAsteriskSample, SAMPLE_USERNAMES, SampleValues } from './harness/asterisk';
import { Baresip } from './harness/baresip';
import { PhoneCall, sdpAudioAddress, SipPhone } from './harness/sip-phone';
import { sineFrame, ToneDetector } from './harness/tone';
import { wavFile } from '../src/media/wav';
import { startStack, TestStack } from './harness/bridge';
import { BrowserHandle, BrowserWaUser } from './harness/browser-wa-user';
import { infra } from './harness/global-setup';
import { Timeline, until, within } from './harness/timeline';
import { grantPermanentPermission } from './harness/permissions';
import { WaUser } from './harness/wa-user';
import { SimOutboundCall } from './harness/ycloud-sim';
import { whenEnded } from './harness/watch';

const USER_TONE = 440;
const CUSTOMER = '+6281361905133';
/** The bridge's own default business number (WA_BUSINESS_NUMBER). */
const BRIDGE_DEFAULT_BUSINESS = '+6283138205150';
/** The number the sample's dialplan calls from (its WA_BUSINESS): deliberately another one. */
const SAMPLE_BUSINESS = '+14155550100';
const SECRETS = { bridgeToPbx: 'b2p-7d1f0c9e4a', pbxToBridge: 'p2b-3e8a51b26f' };

const ASTERISKS = findAsterisks();
if (ASTERISKS.length === 0) {
  describe('a real Asterisk as the PBX (config/asterisk samples)', () => {
    it('needs an Asterisk', function () {
      console.log('\n!!! ASTERISK TESTS SKIPPED: asterisk not found (set ASTERISK_BIN or ASTERISK_BINS, or put `asterisk` / `asterisk-<N>` on PATH) !!!\n');
      this.skip();
    });
  });
}
for (const a of ASTERISKS) asteriskSuite(a);

/**
 * A real Asterisk (PJSIP) as the PBX, configured with the repository's sample files
 * (config/asterisk/pjsip.conf and extensions.conf, placeholders filled in as docs/pbx-asterisk.md says): digest
 * authentication both ways, the business-number header set by the pre-dial handler, session timers,
 * and an IVR reading a WhatsApp caller's digits; then what Asterisk does itself: its music on hold, a
 * phone's hold and attended transfer, direct media, a T.38 re-INVITE, Queue(). Run once per Asterisk
 * found (findAsterisks: `asterisk` and each `asterisk-<N>` on PATH); one that is missing skips loudly.
 */
function asteriskSuite(a: AsteriskBinary): void {
describe(`a real Asterisk as the PBX (${a.version ?? a.bin}, config/asterisk samples)`, function () {
  this.timeout(150000);
  const bin = a.missing ? null : a.bin;
  let pbx: Asterisk | null = null;
  let stack: TestStack | null = null;
  let user: WaUser | null = null;
  let browser: BrowserHandle | null = null;
  let caller: BrowserWaUser | null = null;
  const phones: SipPhone[] = [];
  const tmpDirs: string[] = [];
  const baresips: Baresip[] = [];

  before(function () {
    if (!infra.drachtio) return this.skip();
    if (!bin) {
      console.log(`\n!!! ASTERISK TESTS SKIPPED: ${a.missing} !!!\n`);
      return this.skip();
    }
  });

  afterEach(async function () {
    // ASTERISK_LOG_DIR=<dir>: keep each test's Asterisk log (with ASTERISK_RTP_DEBUG=1, its RTP debug too).
    if (process.env.ASTERISK_LOG_DIR && pbx) {
      const name = (this.currentTest?.title ?? 'test').replace(/[^A-Za-z0-9]+/g, '-').slice(0, 60);
      fs.writeFileSync(path.join(process.env.ASTERISK_LOG_DIR, `${(a.version ?? 'asterisk').replace(/\s+/g, '-')}-${name}.log`), pbx.logText());
    }
    for (const p of phones.splice(0)) p.stop();
    for (const d of tmpDirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
    for (const b of baresips.splice(0)) await b.stop();
    user?.close();
    await caller?.close();
    await browser?.close();
    await stack?.stop();
    await pbx?.stop();
    user = caller = browser = stack = pbx = null;
  });

  function sampleValues(): SampleValues {
    return {
      bridgeIp: '127.0.0.1',
      bridgeSipPort: infra.drachtio!.sipPort,
      bridgeToPbxSecret: SECRETS.bridgeToPbx,
      pbxToBridgeSecret: SECRETS.pbxToBridge,
      businessNumber: SAMPLE_BUSINESS,
    };
  }

  /** Asterisk from the samples; `lab` is context [wa-lab], whose `agent` extension the sample's WA_AGENTS rings. */
  async function startAsterisk(lab: string[], extra: Partial<AsteriskOptions> = {}): Promise<Asterisk> {
    pbx = await new Asterisk(bin!, { values: sampleValues(), agents: 'Local/agent@wa-lab', lab, ...extra }).start();
    return pbx;
  }

  /** The bridge configured the way docs/pbx-asterisk.md pairs it with the sample. */
  async function startBridge(env: Record<string, string> = {}): Promise<TestStack> {
    stack = await startStack({
      PBX_TARGET: pbx!.uri,
      PBX_AUTH_USERNAME: SAMPLE_USERNAMES.bridgeToPbx,
      PBX_AUTH_PASSWORD: SECRETS.bridgeToPbx,
      SIP_TRUSTED_SOURCES: '127.0.0.1',
      SIP_AUTH_USERNAME: SAMPLE_USERNAMES.pbxToBridge,
      SIP_AUTH_PASSWORD: SECRETS.pbxToBridge,
      WA_BUSINESS_NUMBER: BRIDGE_DEFAULT_BUSINESS,
      WA_PHONE_ID: '461269257068831',
      ...env,
    });
    return stack;
  }

  async function endedRow(s: TestStack, wacid: string): Promise<CallRecord> {
    const row = await rows().CallRecord.findByPk(await whenEnded(s.bridge, wacid));
    assert.ok(row);
    return row;
  }

  const ECHO = ['exten => agent,1,Answer()', ' same => n,Echo()'];

  it('a WhatsApp call: Asterisk challenges the bridge\'s INVITE, the bridge answers with PBX_AUTH_*, audio both ways', async () => {
    await startAsterisk(ECHO);
    const s = await startBridge();
    user = new WaUser(USER_TONE, USER_TONE); // the agent's stand-in echoes the user's own tone
    const { wacid } = await s.sim.userCalls(user);
    await within(user.heard.whenHeard(50), 15000, () => `the user hears the echo through Asterisk:\n${pbx!.logText().slice(-3000)}`);

    const sip = pbx!.sipMessages();
    const invites = sip.filter((m) => m.dir === 'rx' && /^INVITE /.test(m.text) && m.text.includes(`X-WhatsApp-Call-Id: ${wacid}`));
    assert.equal(invites.length, 2, 'the INVITE, then the same INVITE with credentials');
    assert.doesNotMatch(invites[0]!.text, /^Authorization:/mi);
    assert.match(invites[1]!.text, new RegExp(`^Authorization: Digest username="${SAMPLE_USERNAMES.bridgeToPbx}"`, 'mi'));
    const callId = /^Call-ID: (.+)$/mi.exec(invites[0]!.text)![1]!.trim();
    const inDialog = (m: { text: string }) => m.text.includes(`Call-ID: ${callId}`);
    assert.ok(sip.some((m) => m.dir === 'tx' && inDialog(m) && /^SIP\/2\.0 401 /.test(m.text) && /^CSeq: \d+ INVITE/mi.test(m.text)), 'Asterisk challenged the INVITE with 401');
    assert.ok(sip.some((m) => m.dir === 'tx' && inDialog(m) && /^SIP\/2\.0 200 /.test(m.text) && /^CSeq: \d+ INVITE/mi.test(m.text)), 'and answered the authenticated one');
    await pbx!.waitForLog(new RegExp(`WhatsApp call ${wacid} from \\${CUSTOMER} to \\${BRIDGE_DEFAULT_BUSINESS}`), 2000); // the sample read the headers

    await s.sim.userHangsUp(wacid);
    const row = await endedRow(s, wacid);
    assert.equal(row.outcome, 'answered');
    assert.equal(row.direction, 'inbound');
  });

  it('the agent\'s digit toward the WhatsApp user: SendDTMF() on the agent\'s side, between its tone and an echo, plays out at a libwebrtc WhatsApp user, and the agent is heard after it', async () => {
    // The agent's stand-in talks (a 1000 Hz tone) until the user's audio reaches it (WaitForNoise: the media
    // path is up, not a guessed delay), presses 5 for 200 ms, then echoes the user.
    await startAsterisk(['exten => agent,1,Answer()', ' same => n,Playtones(1000)', ' same => n,WaitForNoise(300,1,20)', ' same => n,StopPlaytones()',
      ' same => n,SendDTMF(5,,200)', ' same => n,Echo()']);
    const s = await startBridge();
    user = new WaUser(USER_TONE, 1000);
    const echo = user.listen(USER_TONE);
    // libwebrtc's NetEq plays a received telephone-event out as its two tones: '5' is 770 + 1336 Hz.
    const dtmf5 = user.listen(1336, 0.3);
    const { wacid } = await s.sim.userCalls(user);
    await within(user.heard.whenHeard(10), 20000, () => `the agent's tone at the WhatsApp user:\n${pbx!.logText().slice(-3000)}`);
    await within(dtmf5.whenHeard(5), 20000, () => `the digit played out at the WhatsApp user:\n${pbx!.logText().slice(-3000)}`);
    await within(echo.whenHeard(echo.framesWithTone + 50), 10000, () => 'the agent (echo) heard after the digit');
    const playedMs = dtmf5.framesWithTone * 10; // libwebrtc hands over 10 ms frames
    console.log(`      [dtmf] Asterisk SendDTMF(5,,200) -> libwebrtc WhatsApp user: played ${playedMs} ms`);
    // On the wire toward WhatsApp (measured with a plain-RTP stand-in): 13 packets over ~200 ms, in step with the
    // audio, duration field 12480 at 8 kHz (rtpengine 10.5's 6-times rescale, as in test/dtmf-clocks.test.ts).
    assert.ok(playedMs >= 150, `the digit played ${playedMs} ms at the WhatsApp user (sent 200 ms): not cut short`);
    const sent = pbx!.sipMessages().find((m) => m.dir === 'tx' && /^SIP\/2\.0 200 /.test(m.text) && /^CSeq: \d+ INVITE/mi.test(m.text));
    assert.match(sent?.text ?? '', /^a=rtpmap:\d+ telephone-event\/8000\r?$/m, 'Asterisk answered with telephone-event');
    await s.sim.userHangsUp(wacid);
    const row = await endedRow(s, wacid);
    assert.equal(row.outcome, 'answered');
  });

  it('OPTIONS both ways: Asterisk challenges the bridge\'s pings (PBX_OPTIONS_PING_S) with 401 and the bridge counts that as up; the bridge answers Asterisk\'s qualify 200', async () => {
    await startAsterisk(ECHO);
    const s = await startBridge({ PBX_OPTIONS_PING_S: '2' });
    await until('the bridge counts Asterisk up', async () => s.bridge.targets.status()[pbx!.uri] === 'up', 15000,
      async () => `${JSON.stringify(s.bridge.targets.status())}\n${pbx!.logText().slice(-2000)}`);
    const sip = pbx!.sipMessages();
    const callIdOf = (t: string) => /^Call-ID: (.+)$/mi.exec(t)?.[1]?.trim();
    const ping = sip.find((m) => m.dir === 'rx' && m.text.startsWith('OPTIONS sip:127.0.0.1:'));
    assert.ok(ping, 'the bridge\'s OPTIONS reached Asterisk');
    const answer = sip.find((m) => m.dir === 'tx' && m.text.startsWith('SIP/2.0 ') && /^CSeq: \d+ OPTIONS/mi.test(m.text) && callIdOf(m.text) === callIdOf(ping.text));
    assert.ok(answer, 'Asterisk answered it');
    console.log(`      Asterisk's answer to the bridge's OPTIONS: ${answer.text.split('\n')[0]!.trim()}`);
    // The sample's endpoint has auth=, and res_pjsip challenges an identified endpoint's out-of-dialog OPTIONS as
    // it does an INVITE (22.10.1 and 20.20.1): never a 200. The bridge's ping takes any response as alive.
    assert.match(answer.text, /^SIP\/2\.0 401 /, 'Asterisk challenges the bridge\'s ping');
    assert.match(answer.text, /^WWW-Authenticate: Digest /mi);
    // The other way: the sample's qualify (pjsip qualify wa-bridge), answered 200 by the bridge.
    await pbx!.bridgeReachable();
    assert.ok(pbx!.sipMessages().some((m) => m.dir === 'rx' && m.text.startsWith('SIP/2.0 200 ') && /^CSeq: \d+ OPTIONS/mi.test(m.text)), 'the bridge answered Asterisk\'s OPTIONS 200');
  });

  it('SRTP (SDES) on the PBX leg: the endpoint with media_encryption=sdes, the bridge with PBX_SRTP=sdes; Asterisk answers RTP/SAVP with a key, audio both ways through its echo', async function () {
    if (!asteriskHasModule(a.bin, 'res_srtp.so')) {
      console.log(`\n!!! ASTERISK SRTP TEST SKIPPED: ${a.version ?? a.bin} has no res_srtp.so (build it with libsrtp2-dev installed) !!!\n`);
      return this.skip();
    }
    await startAsterisk(ECHO, { endpoint: ['media_encryption=sdes'] });
    const s = await startBridge({ PBX_SRTP: 'sdes' });
    user = new WaUser(USER_TONE, USER_TONE);
    const { wacid } = await s.sim.userCalls(user);
    await within(user.heard.whenHeard(50), 15000, () => `the user hears the echo through SRTP:\n${pbx!.logText().slice(-3000)}`);
    const sip = pbx!.sipMessages();
    const invite = sip.find((m) => m.dir === 'rx' && /^INVITE /.test(m.text) && m.text.includes(`X-WhatsApp-Call-Id: ${wacid}`));
    assert.ok(invite);
    assert.match(invite.text, /^m=audio \d+ RTP\/SAVP /m, 'the bridge offers SRTP');
    const callId = /^Call-ID: (.+)$/mi.exec(invite.text)![1]!.trim();
    const ok = sip.find((m) => m.dir === 'tx' && m.text.includes(`Call-ID: ${callId}`) && /^SIP\/2\.0 200 /.test(m.text) && /^CSeq: \d+ INVITE/mi.test(m.text));
    assert.ok(ok, 'Asterisk answered');
    assert.match(ok.text, /^m=audio \d+ RTP\/SAVP /m);
    assert.match(ok.text, /^a=crypto:\d+ AES_CM_128_HMAC_SHA1_80 inline:/m);
    await s.sim.userHangsUp(wacid);
    const row = await endedRow(s, wacid);
    assert.equal(row.outcome, 'answered');
  });

  it('a bridge with the wrong PBX_AUTH_PASSWORD gets no call through', async () => {
    await startAsterisk(ECHO);
    const s = await startBridge({ PBX_AUTH_PASSWORD: 'wrong' });
    user = new WaUser(USER_TONE, USER_TONE);
    const { wacid } = await s.sim.userCalls(user);
    const row = await endedRow(s, wacid);
    assert.notEqual(row.outcome, 'answered');
    assert.ok([401, 403, 407].includes(Number(row.sip_final_code)), `final code ${row.sip_final_code}`);
    assert.equal(s.sim.requests.some((r) => r.path === '/calls/accept'), false);
  });

  it('an agent dials 9 + number: the pre-dial handler\'s business number reaches the bridge, the bridge challenges Asterisk, audio both ways', async () => {
    await startAsterisk([]);
    const s = await startBridge();
    await pbx!.bridgeReachable();
    await grantPermanentPermission(s.bridge.permissions, SAMPLE_BUSINESS, CUSTOMER);
    user = new WaUser(USER_TONE, USER_TONE);
    let call: SimOutboundCall | null = null;
    const answers = s.sim.answeredBy(user, 300);
    s.sim.outboundScript = async (c) => {
      call = c;
      await answers(c);
    };
    // The agent's phone: a Local channel into the sample's [agents] context dialling 9 + the number;
    // its other half echoes what it hears once the WhatsApp user answers.
    await pbx!.originate({ channel: `Local/9${CUSTOMER.slice(1)}@agents`, application: 'Echo', callerId: '"Agent 201" <201>' });
    await within(user.heard.whenHeard(50), 20000, () => `the user hears the agent's side (echo) through Asterisk:\n${pbx!.logText().slice(-3000)}`);

    const sip = pbx!.sipMessages();
    const invites = sip.filter((m) => m.dir === 'tx' && m.text.startsWith(`INVITE sip:${CUSTOMER}@127.0.0.1:${infra.drachtio!.sipPort}`));
    assert.equal(invites.length, 2, 'the INVITE, then the same INVITE with credentials');
    for (const inv of invites) assert.match(inv.text, new RegExp(`^X-WhatsApp-Business-Number: \\${SAMPLE_BUSINESS}\\r?$`, 'm'));
    assert.doesNotMatch(invites[0]!.text, /^Authorization:/mi);
    assert.match(invites[1]!.text, new RegExp(`^Authorization: Digest username="${SAMPLE_USERNAMES.pbxToBridge}", realm="wa-sip-bridge"`, 'mi'));
    assert.ok(sip.some((m) => m.dir === 'rx' && /^SIP\/2\.0 401 /.test(m.text) && /^CSeq: \d+ INVITE/mi.test(m.text)), 'the bridge challenged the INVITE');

    const connect = s.sim.requests.find((r) => r.path === '/calls/connect');
    assert.equal(connect?.body.from, SAMPLE_BUSINESS);
    assert.equal(connect?.body.to, CUSTOMER);
    await s.sim.deliver(s.sim.outboundTerminate(call!, 'COMPLETED')); // the WhatsApp user hangs up
    // An outbound call ends under the bridge's own id, which its invite_received mark carries.
    const invite = s.marks.marks.find((m) => m.name === 'invite_received');
    assert.ok(invite, 'the bridge took the INVITE');
    const row = await endedRow(s, invite.wacid);
    assert.equal(row.wacid, call!.wacid);
    assert.equal(row.direction, 'outbound');
    assert.equal(row.outcome, 'answered');
    assert.equal(row.business_number, SAMPLE_BUSINESS);
    assert.notEqual(row.business_number, BRIDGE_DEFAULT_BUSINESS);
    assert.equal(row.customer_number, CUSTOMER);
    assert.equal(row.agent, '201');
  });

  it('session timers: Asterisk refreshes a 90 s session twice and the call keeps audio both ways', async () => {
    await startAsterisk(ECHO, { endpoint: ['timers=always', 'timers_sess_expires=90', 'timers_min_se=90'] });
    const s = await startBridge();
    const timeline = new Timeline(s.bridge.cdr);
    user = new WaUser(USER_TONE, USER_TONE); // Asterisk's Echo() sends the user's own tone back
    const { wacid } = await s.sim.userCalls(user);
    await within(user.heard.whenHeard(25), 10000, () => 'the user hears the echo through Asterisk');
    const refreshes = () => timeline.events.filter((e) => e.type === 'session_refresh' || e.type === 'pbx_media_changed').length;
    // Asterisk refreshes at half the interval: two refreshes within ~95 s.
    await within(new Promise<void>((resolve) => {
      const t = setInterval(() => {
        if (refreshes() >= 2) {
          clearInterval(t);
          resolve();
        }
      }, 200);
    }), 110000, () => `two session refreshes from Asterisk (timeline: ${timeline.types().join(', ')})`);
    const before = user.heard.framesWithTone;
    await within(user.heard.whenHeard(before + 50), 5000, () => 'the echo still flows after two refreshes');
    await s.sim.userHangsUp(wacid);
    const row = await endedRow(s, wacid);
    assert.equal(row.outcome, 'answered');
    assert.ok(Number(row.talk_seconds) > 90, `talk time ${row.talk_seconds}`);
  });

  it('IVR: Asterisk Read() gets the digits the WhatsApp caller presses', async function () {
    const missing = !BrowserWaUser.available() ? 'chromium is not installed' : BrowserWaUser.isolationProblem();
    if (missing) {
      console.log(`\n!!! ASTERISK IVR TEST SKIPPED: ${missing} !!!\n`);
      return this.skip();
    }
    await startAsterisk(['exten => agent,1,Answer()', ' same => n,Read(DIGITS,,4,,,20)', ' same => n,Verbose(1,IVR-DIGITS=${DIGITS}=END)', ' same => n,Echo()']);
    const s = await startBridge();
    browser = await BrowserWaUser.launch({ toneHz: USER_TONE });
    caller = new BrowserWaUser(browser, USER_TONE, { listenHz: USER_TONE });
    const { wacid } = await s.sim.userCalls(caller);
    await caller.connected(10000);
    await s.sim.waitForRequest('/calls/accept', wacid);
    await caller.waitPacketsReceived(25, 10000);
    await caller.sendDigits('159#', 120, 80);
    const m = await pbx!.waitForLog(/IVR-DIGITS=([0-9*#]*)=END/, 15000);
    assert.equal(m[1], '159', 'Read() ends on # and keeps the digits before it');
    await s.sim.userHangsUp(wacid);
    await endedRow(s, wacid);
  });

  // ---- What Asterisk does itself: its phones, its music, its media moves ----------------------------

  /** Asterisk's RTP ports (rtp.conf in the harness): media from one of these went through Asterisk. */
  const viaAsterisk = (port: number) => port >= 11000 && port <= 11999;
  const AGENT_TONE = 1000;
  const MOH_TONE = 700;

  /** A desk phone on its own loopback address (Asterisk tells its phones from the bridge by address). */
  async function startPhone(user: string, address: string, toneHz: number): Promise<SipPhone> {
    const p = await new SipPhone(user, { address, toneHz, listenHz: USER_TONE }).start();
    phones.push(p);
    return p;
  }

  function asteriskAt(): { host: string; port: number } {
    return { host: '127.0.0.1', port: pbx!.port };
  }

  const HOLD_FILE_TONE = 800;
  /** The operator's hold music for the bridge (MEDIA_HOLD_FILE): a WAV of 800 Hz, removed after the test. */
  function holdFile(): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-hold-'));
    tmpDirs.push(dir);
    const file = path.join(dir, 'hold-800hz.wav');
    fs.writeFileSync(file, wavFile(sineFrame(HOLD_FILE_TONE, 8000, 8000, 0), 8000));
    return file;
  }

  /** A failed wait's message: what was awaited, the phones' SIP traces and the end of Asterisk's log. */
  function why(what: string): () => string {
    return () => `${what}\n${phones.map((p) => p.describe(4000)).join('\n')}\n--- asterisk log ---\n${pbx?.logText().slice(-5000) ?? ''}`;
  }

  /** Frames of `det`'s tone heard from now on: resolves once `n` more have arrived. */
  function more(det: ToneDetector, n: number): Promise<void> {
    return det.whenHeard(det.framesWithTone + n);
  }

  /** The WhatsApp user calls, phone 101 answers; both hear each other's tone. */
  async function callAnswered(s: TestStack, phone: SipPhone): Promise<{ wacid: string; call: PhoneCall }> {
    user = new WaUser(USER_TONE, AGENT_TONE);
    const { wacid } = await s.sim.userCalls(user);
    const call = await phone.whenCall(1, 20000);
    await within(user.heard.whenHeard(50), 15000, () => `the WhatsApp user hears phone ${phone.user}:\n${phone.describe()}\n${pbx!.logText().slice(-3000)}`);
    await within(call.media.heard.whenHeard(50), 15000, () => `phone ${phone.user} hears the WhatsApp user`);
    return { wacid, call };
  }

  it('Asterisk\'s own music on hold (moh_passthrough=no): the agent\'s phone holds, the WhatsApp user hears it (a generated tone file); it stops on resume and the agent hears the user', async () => {
    const phone = await startPhone('101', '127.0.0.2', AGENT_TONE);
    await startAsterisk([], { agents: 'PJSIP/101', pjsip: phoneSections('101', phone.uri, '127.0.0.2'), endpoint: ['moh_passthrough=no'], mohToneHz: MOH_TONE });
    const s = await startBridge();
    const timeline = new Timeline(s.bridge.cdr);
    const { wacid, call } = await callAnswered(s, phone);
    const moh = user!.listen(MOH_TONE);
    assert.equal(moh.framesWithTone, 0, 'no music before the hold');

    assert.equal(await phone.hold(call, true), 200);
    await within(moh.whenHeard(50), 10000, () => `the WhatsApp user hears Asterisk's music on hold (${MOH_TONE} Hz):\n${pbx!.logText().slice(-3000)}`);
    // The hold lasts 2.5 s of music (250 frames of 10 ms), longer than two keepalive polls (1 s): the
    // bridge sees the music's SSRC in rtpengine's query (a hold shorter than a poll may go unseen).
    await within(moh.whenHeard(250), 10000, () => 'the WhatsApp user hears 2.5 s of the music');
    // Asterisk plays the music itself (moh_passthrough=no): the bridge's leg is not re-INVITEd.
    assert.equal(timeline.count('pbx_media_changed'), 0, `the bridge saw no re-INVITE for the hold (timeline: ${timeline.types().join(', ')})`);

    assert.equal(await phone.hold(call, false), 200);
    await pbx!.waitForLog(/Stopped music on hold on PJSIP\/wa-bridge-/, 5000);
    await within(more(call.media.heard, 50), 10000, why('the agent hears the WhatsApp user after resume'));
    const mohAfter = moh.framesWithTone;
    await within(more(call.media.heard, 100), 10000, why('the agent keeps hearing the WhatsApp user'));
    assert.ok(moh.framesWithTone - mohAfter < 5, `the music stopped with the resume (${moh.framesWithTone - mohAfter} frames of it since)`);
    // After the resume Asterisk forwards the phone's packets as they come (native_rtp, "P2P"), on the
    // phone's own SSRC, which the WhatsApp user's WebRTC stack saw before the music's; libwebrtc ignores
    // a returning SSRC. The bridge sees the return in rtpengine's query and re-INVITEs Asterisk with a
    // fresh PBX leg (a new SSRC toward WhatsApp): the user hears the agent again.
    await timeline.waitFor('pbx_ssrc_returned', 1, 10000);
    await timeline.waitFor('pbx_leg_renewed', 1, 15000);
    await within(more(user!.heard, 50), 15000, why('the WhatsApp user hears the agent after resume'));
    const heardAfter = user!.heard.framesWithTone;
    await within(more(user!.heard, 50), 10000, why('the WhatsApp user keeps hearing the agent'));
    await within(more(call.media.heard, 50), 10000, why('the agent still hears the WhatsApp user after the renewal'));
    console.log(`      (bridge timeline: ${timeline.types().join(', ')}; the user heard ${user!.heard.framesWithTone - heardAfter}+ frames of the agent after the renewal)`);

    await s.sim.userHangsUp(wacid);
    const row = await endedRow(s, wacid);
    assert.equal(row.outcome, 'answered');
    await phone.whenEnded(call);
  });

  it('a phone\'s hold with the sample (moh_passthrough=yes): Asterisk passes it on to the bridge, the user hears MEDIA_HOLD_FILE, then the agent again after resume', async () => {
    const phone = await startPhone('101', '127.0.0.2', AGENT_TONE);
    await startAsterisk([], { agents: 'PJSIP/101', pjsip: phoneSections('101', phone.uri, '127.0.0.2'), mohToneHz: MOH_TONE });
    const s = await startBridge({ MEDIA_HOLD_FILE: holdFile(), MEDIA_KEEPALIVE_POLL_MS: '300' });
    const timeline = new Timeline(s.bridge.cdr);
    const { wacid, call } = await callAnswered(s, phone);
    const bridgeMusic = user!.listen(HOLD_FILE_TONE);
    const asteriskMusic = user!.listen(MOH_TONE);

    assert.equal(await phone.hold(call, true), 200);
    const held = await timeline.waitFor('pbx_media_changed', 1, 10000);
    assert.equal(held.detail?.held, true, 'Asterisk re-INVITEd the bridge to hold');
    await within(bridgeMusic.whenHeard(50), 15000, why('the WhatsApp user hears the bridge\'s MEDIA_HOLD_FILE'));
    assert.equal(asteriskMusic.framesWithTone, 0, 'Asterisk played none of its own music');

    assert.equal(await phone.hold(call, false), 200);
    const resumed = await timeline.waitFor('pbx_media_changed', 2, 10000);
    assert.equal(resumed.detail?.held, false, 'Asterisk re-INVITEd the bridge to resume');
    await within(more(user!.heard, 50), 10000, why('the WhatsApp user hears the agent again after resume'));
    await within(more(call.media.heard, 50), 10000, why('the agent hears the WhatsApp user after resume'));

    await s.sim.userHangsUp(wacid);
    const row = await endedRow(s, wacid);
    assert.equal(row.outcome, 'answered');
  });

  it('attended transfer from a PJSIP phone: 101 holds (the bridge\'s hold music), calls 102, REFERs with Replaces; the WhatsApp user talks to 102', async () => {
    const p101 = await startPhone('101', '127.0.0.2', AGENT_TONE);
    const p102 = await startPhone('102', '127.0.0.3', 1300);
    await startAsterisk(['exten => 102,1,Dial(PJSIP/102,20)'], {
      agents: 'PJSIP/101',
      pjsip: [...phoneSections('101', p101.uri, '127.0.0.2'), ...phoneSections('102', p102.uri, '127.0.0.3')],
      mohToneHz: MOH_TONE,
    });
    const s = await startBridge({ MEDIA_HOLD_FILE: holdFile(), MEDIA_KEEPALIVE_POLL_MS: '300' });
    const timeline = new Timeline(s.bridge.cdr);
    const { wacid, call: held } = await callAnswered(s, p101);
    const music = user!.listen(HOLD_FILE_TONE);
    const from102 = user!.listen(1300);

    assert.equal(await p101.hold(held, true), 200);
    await timeline.waitFor('pbx_hold', 1, 10000);
    await within(music.whenHeard(25), 10000, why('the WhatsApp user hears the hold music while 101 consults'));
    const consult = await p101.call(`sip:102@127.0.0.1:${pbx!.port}`, asteriskAt());
    const at102 = await p102.whenCall(1);
    // The consultation: 101 and 102 talk (102's audio reaches 101 once Asterisk has bridged them). A
    // REFER sent before that takes another path in Asterisk 22 (the WhatsApp channel is swapped into the
    // consultation's dialing channel) after which 102's audio never reached the bridge (1 run in 4).
    await within(consult.media.whenPackets(0, 25, 10000), 11000, why('101 hears 102 in the consultation'));
    assert.equal(await p101.referReplaces(held, consult, `sip:102@127.0.0.1:${pbx!.port}`), 202, 'Asterisk accepts the REFER');

    // Asterisk takes the WhatsApp user off hold as it bridges them with 102 (a re-INVITE to the bridge).
    await timeline.waitFor('pbx_resume', 1, 10000);
    await within(from102.whenHeard(50), 15000, why('the WhatsApp user hears 102 after the transfer'));
    await within(at102.media.heard.whenHeard(50), 15000, why('102 hears the WhatsApp user'));
    // Asterisk reports the transfer's success by NOTIFY (sipfrag 200) and ends the consultation call;
    // the transferred call is 101's to end, as phones do after that NOTIFY (RFC 5589).
    await p101.until(() => held.notifies.some((b) => /^SIP\/2\.0 200/m.test(b)), 'a NOTIFY with sipfrag 200 in the transferred call', 10000);
    await p101.whenEnded(consult);
    assert.equal(consult.endedBy, 'remote', 'Asterisk ended the consultation call');
    assert.equal(await p101.bye(held), 200, '101 hangs up the transferred call');
    const musicNow = music.framesWithTone;
    await within(more(from102, 50), 10000, why('102 still heard'));
    assert.ok(music.framesWithTone - musicNow < 5, 'no hold music once the WhatsApp user is with 102');

    await s.sim.userHangsUp(wacid);
    const row = await endedRow(s, wacid);
    assert.equal(row.outcome, 'answered');
    await p102.whenEnded(at102);
    console.log(`      (bridge timeline during the transfer: ${timeline.types().join(', ')})`);
  });

  it('blind transfer from a PJSIP phone: 101 REFERs the WhatsApp user to 102; Asterisk dials 102 and the user talks to 102', async () => {
    const p101 = await startPhone('101', '127.0.0.2', AGENT_TONE);
    const p102 = await startPhone('102', '127.0.0.3', 1300);
    await startAsterisk(['exten => 102,1,Dial(PJSIP/102,20)'], {
      agents: 'PJSIP/101',
      pjsip: [...phoneSections('101', p101.uri, '127.0.0.2'), ...phoneSections('102', p102.uri, '127.0.0.3')],
    });
    const s = await startBridge();
    const timeline = new Timeline(s.bridge.cdr);
    const { wacid, call } = await callAnswered(s, p101);
    const from102 = user!.listen(1300);

    assert.equal(await p101.refer(call, `sip:102@127.0.0.1:${pbx!.port}`), 202, 'Asterisk accepts the REFER');
    const at102 = await p102.whenCall(1);
    await within(from102.whenHeard(50), 15000, why('the WhatsApp user hears 102 after the blind transfer'));
    await within(at102.media.heard.whenHeard(50), 15000, why('102 hears the WhatsApp user'));
    await p101.until(() => call.notifies.some((b) => /^SIP\/2\.0 200/m.test(b)), 'a NOTIFY with sipfrag 200', 10000);
    if (!call.ended) assert.equal(await p101.bye(call), 200, '101 hangs up after the NOTIFY');

    await s.sim.userHangsUp(wacid);
    const row = await endedRow(s, wacid);
    assert.equal(row.outcome, 'answered');
    await p102.whenEnded(at102);
    console.log(`      (bridge timeline: ${timeline.types().join(', ')}; 101's call ended by ${call.endedBy})`);
  });

  it('direct_media=yes: Asterisk re-INVITEs the bridge to send media straight to the phone, and audio still flows both ways; back through Asterisk for its music on hold (moh_passthrough=no)', async () => {
    const phone = await startPhone('101', '127.0.0.2', AGENT_TONE);
    await startAsterisk([], {
      agents: 'PJSIP/101',
      pjsip: phoneSections('101', phone.uri, '127.0.0.2', ['direct_media=yes']),
      endpoint: ['direct_media=yes', 'moh_passthrough=no'],
      mohToneHz: MOH_TONE,
    });
    const s = await startBridge();
    const timeline = new Timeline(s.bridge.cdr);
    const { wacid, call } = await callAnswered(s, phone);
    // Asterisk moves the media: the phone is re-INVITEd toward the bridge's rtpengine, the bridge toward the phone.
    await phone.until(() => call.reinvites.some((sdp) => { const a = sdpAudioAddress(sdp); return !!a && !viaAsterisk(a.port); }), 'a re-INVITE pointing the phone at the bridge', 15000);
    await timeline.waitFor('pbx_media_changed', 1, 15000);
    const toBridge = pbx!.sipMessages().filter((m) => m.dir === 'tx' && m.text.startsWith('INVITE sip:') && m.text.split('\n')[0]!.includes(`127.0.0.1:${infra.drachtio!.sipPort}`)
      && new RegExp(`^m=audio ${call.media.port} `, 'm').test(m.text));
    assert.ok(toBridge.length >= 1, `Asterisk re-INVITEd the bridge with the phone's own RTP port ${call.media.port}`);
    await within(more(user!.heard, 50), 10000, why('the WhatsApp user hears the phone after the move'));
    const bySource = new Map(call.media.packetsBySource);
    await within(more(call.media.heard, 50), 10000, why('the phone hears the WhatsApp user after the move'));
    // What reached the phone since: (nearly) all of it straight from the bridge's rtpengine, none through Asterisk's ports.
    const since = [...call.media.packetsBySource].map(([src, n]) => ({ src, n: n - (bySource.get(src) ?? 0) })).filter((x) => x.n > 0);
    const fromAsterisk = since.filter((x) => viaAsterisk(Number(x.src.split(':')[1]))).reduce((t, x) => t + x.n, 0);
    const direct = since.filter((x) => !viaAsterisk(Number(x.src.split(':')[1]))).reduce((t, x) => t + x.n, 0);
    assert.ok(direct >= 50 && fromAsterisk <= 2, `the phone's media comes straight from the bridge's rtpengine: ${JSON.stringify(since)}`);

    // Hold: Asterisk must play its music itself, so it takes the media back (re-INVITE to its own RTP port).
    const changes = timeline.count('pbx_media_changed');
    const moh = user!.listen(MOH_TONE);
    assert.equal(await phone.hold(call, true), 200);
    await within(moh.whenHeard(50), 15000, () => `the WhatsApp user hears the music once Asterisk has the media back:\n${pbx!.logText().slice(-3000)}`);
    await timeline.waitFor('pbx_media_changed', changes + 1, 10000);
    // Resume: Asterisk hands the media back to the phone (a third re-INVITE of the bridge, the phone's port again).
    assert.equal(await phone.hold(call, false), 200);
    await timeline.waitFor('pbx_media_changed', changes + 2, 10000);
    const last = pbx!.sipMessages().filter((m) => m.dir === 'tx' && m.text.startsWith('INVITE sip:') && m.text.split('\n')[0]!.includes(`127.0.0.1:${infra.drachtio!.sipPort}`)).pop();
    assert.match(last?.text ?? '', new RegExp(`^m=audio ${call.media.port} `, 'm'), 'the last re-INVITE points the bridge at the phone again');
    await within(more(call.media.heard, 50), 10000, why('the phone hears the WhatsApp user after resume'));
    // The phone's stream comes back on the SSRC the WhatsApp user's WebRTC stack saw before the music's
    // (libwebrtc ignores a returning SSRC): the bridge sees it in rtpengine's query and renews its PBX leg.
    await timeline.waitFor('pbx_ssrc_returned', 1, 10000);
    await timeline.waitFor('pbx_leg_renewed', 1, 15000);
    await within(more(user!.heard, 50), 15000, why('the WhatsApp user hears the agent after the media moved back to the phone'));
    const heardBefore = user!.heard.framesWithTone;
    await within(more(call.media.heard, 100), 10000, why('the phone keeps hearing the WhatsApp user'));
    assert.ok(user!.heard.framesWithTone - heardBefore >= 20, `the WhatsApp user keeps hearing the agent (${user!.heard.framesWithTone - heardBefore} frames in 2 s)`);

    await s.sim.userHangsUp(wacid);
    const row = await endedRow(s, wacid);
    assert.equal(row.outcome, 'answered');
    console.log(`      (bridge timeline: ${timeline.types().join(', ')}; phone re-INVITEd ${call.reinvites.length}x)`);
  });

  it('T.38: the phone re-INVITEs to fax, Asterisk passes m=image on to the bridge, the bridge refuses it (488) and the call keeps its audio', async () => {
    const phone = await startPhone('101', '127.0.0.2', AGENT_TONE);
    await startAsterisk([], { agents: 'PJSIP/101', pjsip: phoneSections('101', phone.uri, '127.0.0.2', ['t38_udptl=yes']), endpoint: ['t38_udptl=yes'] });
    const s = await startBridge();
    const timeline = new Timeline(s.bridge.cdr);
    const { wacid, call } = await callAnswered(s, phone);

    const { status } = await phone.offerT38(call);
    const sip = pbx!.sipMessages();
    const t38 = sip.filter((m) => m.dir === 'tx' && /^INVITE sip:/.test(m.text) && /^m=image \d+ udptl t38/m.test(m.text));
    assert.equal(t38.length, 1, `Asterisk offered T.38 to the bridge once:\n${pbx!.logText().slice(-4000)}`);
    const t38CallId = /^Call-ID: (.+)$/mi.exec(t38[0]!.text)![1]!.trim();
    const answer = sip.find((m) => m.dir === 'rx' && /^SIP\/2\.0 [2-6]\d\d /.test(m.text) && m.text.includes(t38CallId) && /^CSeq: \d+ INVITE/mi.test(m.text) && sip.indexOf(m) > sip.indexOf(t38[0]!));
    assert.match(answer?.text ?? '', /^SIP\/2\.0 488 /, 'the bridge answered the T.38 offer 488');
    await timeline.waitFor('pbx_offer_refused', 1, 5000);
    assert.ok(status >= 400, `the phone's T.38 re-INVITE failed (${status})`);

    await within(more(user!.heard, 50), 10000, why('the WhatsApp user still hears the phone'));
    await within(more(call.media.heard, 50), 10000, why('the phone still hears the WhatsApp user'));
    await s.sim.userHangsUp(wacid);
    const row = await endedRow(s, wacid);
    assert.equal(row.outcome, 'answered');
    console.log(`      (the phone's T.38 re-INVITE got ${status}; bridge timeline: ${timeline.types().join(', ')})`);
  });

  it('Queue() with two agents (ringall): both phones ring, one answers, the other stops ringing, the WhatsApp user talks to the one who answered', async function () {
    if (!Baresip.available()) {
      console.log('\n!!! ASTERISK QUEUE TEST SKIPPED: baresip is not installed !!!\n');
      return this.skip();
    }
    const first = await new Baresip({ user: 'agent301', toneHz: 600, answer: 'manual', record: true }).start();
    const second = await new Baresip({ user: 'agent302', toneHz: 900, answer: 'manual', record: true }).start();
    baresips.push(first, second);
    await startAsterisk([], {
      agents: 'PJSIP/301',
      queue: true,
      pjsip: [...phoneSections('301', first.uri, null), ...phoneSections('302', second.uri, null)],
      files: { 'queues.conf': '[support]\nstrategy=ringall\ntimeout=20\nretry=2\nmember => PJSIP/301\nmember => PJSIP/302\n' },
    });
    const s = await startBridge();
    user = new WaUser(USER_TONE, 600);
    const fromSecond = user.listen(900);
    const { wacid } = await s.sim.userCalls(user);
    await within(Promise.all([first.whenIncoming(20000), second.whenIncoming(20000)]), 21000, () => `both agents ring:\n${pbx!.logText().slice(-3000)}`);
    await first.accept();
    await second.whenClosed(10000);
    assert.ok(second.sip.some((m) => m.dir === 'in' && m.method === 'CANCEL'), 'Asterisk CANCELled the second phone');
    await within(user.heard.whenHeard(50), 15000, () => `the WhatsApp user hears the agent who answered:\n${first.describe()}`);
    await s.sim.waitForRequest('/calls/accept', wacid);
    await until('the answering agent hears the WhatsApp user', async () => first.heardTone(USER_TONE).framesWithTone >= 50, 15000);
    assert.equal(fromSecond.framesWithTone, 0, 'nothing of the other agent');

    await s.sim.userHangsUp(wacid);
    const row = await endedRow(s, wacid);
    assert.equal(row.outcome, 'answered');
    await first.whenClosed(10000);
  });
});
}

/** The samples themselves, without a PBX: what docs/pbx-asterisk.md tells operators to copy is complete and well-formed. */
describe('PBX sample configurations (config/)', () => {
  const values: SampleValues = { bridgeIp: '192.0.2.10', bridgeSipPort: 5060, bridgeToPbxSecret: 'x', pbxToBridgeSecret: 'y', businessNumber: SAMPLE_BUSINESS };
  const lab = { sipPort: 5062, agents: 'PJSIP/101', lab: [] };

  it('Asterisk: every placeholder is filled, the header is set by a pre-dial handler, auth both ways', () => {
    const { pjsip, extensions } = renderAsteriskSample(values, lab);
    const live = (t: string) => t.split('\n').map((l) => l.replace(/;.*$/, '').trim()).filter(Boolean);
    const dial = live(extensions).filter((l) => /Dial\(PJSIP\/.*@wa-bridge/.test(l));
    assert.equal(dial.length, 1);
    assert.match(dial[0]!, /,b\(wa-outbound-headers\^s\^1\(\$\{WA_BUSINESS\}\)\)\)$/);
    const adds = live(extensions).filter((l) => l.includes('PJSIP_HEADER(add'));
    assert.deepEqual(adds, ['exten => s,1,Set(PJSIP_HEADER(add,X-WhatsApp-Business-Number)=${ARG1})'], 'the header is added only in the handler');
    for (const line of ['auth=wa-bridge-in', 'outbound_auth=wa-bridge-out', 'match=192.0.2.10', 'contact=sip:192.0.2.10:5060', 'qualify_frequency=30', 'direct_media=no', 'moh_passthrough=yes', 'dtmf_mode=rfc4733', 'rtp_symmetric=yes', 'force_rport=yes', 'rewrite_contact=yes']) {
      assert.ok(live(pjsip).includes(line), line);
    }
    assert.ok(live(extensions).includes(`WA_BUSINESS=${SAMPLE_BUSINESS}`));
  });

  it('FreeSWITCH: well-formed XML; external-profile gateway; domain_name set before user/; header and gateway on the way out', () => {
    const dir = path.join(ASTERISK_SAMPLE_DIR, '..', 'freeswitch');
    const read = (p: string) => fs.readFileSync(path.join(dir, p), 'utf8');
    const files = ['sip_profiles/external/wa-bridge.xml', 'dialplan/public/wa-bridge.xml', 'dialplan/default/00_wa-bridge.xml'];
    for (const f of files) assert.equal(XMLValidator.validate(read(f)), true, f);
    const gw = read(files[0]!);
    assert.match(gw, /<gateway name="wa-bridge">/);
    assert.match(gw, /<param name="register" value="false"\/>/);
    assert.match(gw, /<param name="proxy" value="BRIDGE_IP:BRIDGE_SIP_PORT"\/>/);
    const pub = read(files[1]!);
    const setDomain = pub.indexOf('data="domain_name=$${domain}"');
    assert.ok(setDomain > 0 && setDomain < pub.indexOf('<action application="bridge" data="user/'), 'domain_name is set before bridging to user/');
    assert.match(pub, /field="network_addr"/);
    const out = read(files[2]!);
    assert.match(out, /data="sip_h_X-WhatsApp-Business-Number=BUSINESS_NUMBER"/);
    assert.match(out, /data="sofia\/gateway\/wa-bridge\/\+\$1"/);
  });
});
