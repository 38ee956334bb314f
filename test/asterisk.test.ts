import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { XMLValidator } from 'fast-xml-parser';
import { CallRecord } from '../src/cdr/models';
import { rows } from './harness/db-rows';
import { Asterisk, AsteriskOptions, ASTERISK_SAMPLE_DIR, findAsterisk, renderAsteriskSample, SAMPLE_USERNAMES, SampleValues } from './harness/asterisk';
import { startStack, TestStack } from './harness/bridge';
import { BrowserHandle, BrowserWaUser } from './harness/browser-wa-user';
import { infra } from './harness/global-setup';
import { Timeline, within } from './harness/timeline';
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

/**
 * A real Asterisk (PJSIP) as the PBX, configured with the repository's sample files
 * (config/asterisk/pjsip.conf and extensions.conf, placeholders filled in as docs/pbx-asterisk.md says): digest
 * authentication both ways, the business-number header set by the pre-dial handler, session timers,
 * and an IVR reading a WhatsApp caller's digits. Skipped loudly without `asterisk`.
 */
describe('a real Asterisk as the PBX (config/asterisk samples)', function () {
  this.timeout(150000);
  const bin = findAsterisk();
  let pbx: Asterisk | null = null;
  let stack: TestStack | null = null;
  let user: WaUser | null = null;
  let browser: BrowserHandle | null = null;
  let caller: BrowserWaUser | null = null;

  before(function () {
    if (!infra.drachtio) return this.skip();
    if (!bin) {
      console.log('\n!!! ASTERISK TESTS SKIPPED: asterisk not found (set ASTERISK_BIN or put `asterisk` on PATH) !!!\n');
      return this.skip();
    }
  });

  afterEach(async () => {
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
});

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
    for (const line of ['auth=wa-bridge-in', 'outbound_auth=wa-bridge-out', 'match=192.0.2.10', 'contact=sip:192.0.2.10:5060', 'qualify_frequency=30', 'direct_media=no', 'dtmf_mode=rfc4733', 'rtp_symmetric=yes', 'force_rport=yes', 'rewrite_contact=yes']) {
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
