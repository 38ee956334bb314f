import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { XMLValidator } from 'fast-xml-parser';
import { CallRecord } from '../src/cdr/models';
import { Baresip } from './harness/baresip';
import { startStack, TestStack } from './harness/bridge';
import { BrowserHandle, BrowserWaUser } from './harness/browser-wa-user';
import { rows } from './harness/db-rows';
import {
  findFreeswitch, Freeswitch, FreeswitchOptions, FREESWITCH_SAMPLE_FILES, FREESWITCH_SAMPLE_USERNAMES, freeswitchVersion, FsSipMessage, LAB_USER_PASSWORD,
  renderFreeswitchSample,
} from './harness/freeswitch';
import { infra } from './harness/global-setup';
import { grantPermanentPermission } from './harness/permissions';
import { Timeline, until, within } from './harness/timeline';
import { WaUser } from './harness/wa-user';
import { whenEnded } from './harness/watch';
import { SimOutboundCall } from './harness/ycloud-sim';

const USER_TONE = 440; // what the WhatsApp user says
const AGENT_TONE = 1000; // extension 1000's phone
const AGENT_B_TONE = 1500; // extension 1001's phone (transfer target)
/** The E of the generated music-on-hold loop (C-E-G-E, 0.5 s each: build-freeswitch.sh). */
const MOH_TONE = 659;
/** The lab IVR's prompt (tone_stream). */
const IVR_PROMPT_TONE = 600;
/** The bridge's own default business number (WA_BUSINESS_NUMBER). */
const BRIDGE_DEFAULT_BUSINESS = '+6283138205150';
/** The number the sample's default dialplan calls from (its BUSINESS_NUMBER): deliberately another one. */
const SAMPLE_BUSINESS = '+14155550100';
/** A Danish number: 9 + 10 digits is 11 digits, what the stock 01_example.com.xml "domestic" extension takes. */
const DK_CUSTOMER = '+4512345678';
const SECRETS = { pbxToBridge: 'p2b-9c1e04b7d2', bridgeToPbx: 'b2p-41f0a8e6c3' };

let loggedVersion = false;

/**
 * A real FreeSWITCH (1.10) as the PBX, from its stock vanilla configuration plus the repository's
 * sample (config/freeswitch/, placeholders filled as docs/pbx-freeswitch.md says); agents are real
 * baresip desk phones registered to its internal profile as 1000 and 1001. Skipped loudly without
 * `freeswitch` (FREESWITCH_BIN) or drachtio-server.
 */
describe('a real FreeSWITCH as the PBX (config/freeswitch samples)', function () {
  this.timeout(180000);
  const bin = findFreeswitch();
  let pbx: Freeswitch | null = null;
  let stack: TestStack | null = null;
  let user: WaUser | null = null;
  const phones: Baresip[] = [];

  before(function () {
    if (!infra.drachtio) return this.skip(); // the run already said why, loudly, once
    if (!bin) {
      console.log('\n!!! FREESWITCH TESTS SKIPPED: freeswitch not found (set FREESWITCH_BIN or put `freeswitch` on PATH) !!!\n');
      return this.skip();
    }
    if (!Baresip.available()) {
      console.log('\n!!! FREESWITCH TESTS SKIPPED: baresip (the agents\' phones) is not installed !!!\n');
      return this.skip();
    }
    if (!loggedVersion) {
      loggedVersion = true;
      console.log(`      (${freeswitchVersion(bin).split('\n')[0]})`);
    }
  });

  afterEach(async () => {
    user?.close();
    user = null;
    await stack?.stop();
    stack = null;
    await pbx?.api('hupall NORMAL_CLEARING').catch(() => undefined);
    // baresip unregisters (expires=0) as it stops. (`sofia profile internal flush_inbound_reg` is no way to
    // clean up: on 1.10.12 the registration a phone makes next is dropped within a second too.)
    for (const p of phones.splice(0)) await p.stop();
  });

  function values() {
    return {
      bridgeIp: '127.0.0.1',
      bridgeSipPort: infra.drachtio!.sipPort,
      pbxToBridgeSecret: SECRETS.pbxToBridge,
      bridgeToPbxSecret: SECRETS.bridgeToPbx,
      businessNumber: SAMPLE_BUSINESS,
    };
  }

  /** FreeSWITCH for a describe block: the sample, and the gateway pinging every 5 s instead of 30 (lab only). */
  async function startFreeswitch(extra: Partial<FreeswitchOptions> = {}): Promise<Freeswitch> {
    const p = new Freeswitch(bin!, { values: values(), ...extra, gatewayParams: { ping: '5', ...extra.gatewayParams } });
    try {
      return await p.start();
    } catch (err) {
      await p.stop();
      throw err;
    }
  }

  /** The bridge configured the way docs/pbx-freeswitch.md pairs it with the sample. */
  async function startBridge(env: Record<string, string> = {}): Promise<TestStack> {
    stack = await startStack({
      PBX_TARGET: pbx!.uri,
      SIP_TRUSTED_SOURCES: '127.0.0.1',
      SIP_AUTH_USERNAME: FREESWITCH_SAMPLE_USERNAMES.pbxToBridge,
      SIP_AUTH_PASSWORD: SECRETS.pbxToBridge,
      WA_BUSINESS_NUMBER: BRIDGE_DEFAULT_BUSINESS,
      WA_PHONE_ID: '461269257068831',
      ...env,
    });
    return stack;
  }

  /** A desk phone registered to FreeSWITCH's internal profile as `ext` (stock directory user, the lab's password). */
  async function phone(ext: string, toneHz: number, answer: 'auto' | 'manual' = 'auto'): Promise<Baresip> {
    const p = new Baresip({ user: ext, toneHz, answer, record: true, register: { registrar: pbx!.registrar, password: LAB_USER_PASSWORD } });
    phones.push(p);
    await p.start();
    await p.whenRegistered(15000);
    // What user/<ext> dials: the registration's contact (not error/user_not_registered).
    await pbx!.waitForApi(`sofia_contact */${ext}@127.0.0.1`, (o) => new RegExp(`^sofia/internal/sip:${ext}-0x[0-9a-f]+@127\\.0\\.0\\.1:${p.sipPort}`).test(o.trim()), 10000, `${ext} registered`);
    return p;
  }

  async function endedRow(s: TestStack, key: string): Promise<CallRecord> {
    const row = await rows().CallRecord.findByPk(await within(whenEnded(s.bridge, key), 20000, () => `the call ${key} ends`));
    assert.ok(row);
    return row;
  }

  /** The phone's recording of what it heard holds at least `frames` 20 ms frames of `hz`. */
  function phoneHears(p: Baresip, hz: number, frames: number, what: string, ms = 15000): Promise<unknown> {
    return until(what, async () => {
      try {
        return p.heardTone(hz).framesWithTone >= frames;
      } catch {
        return false; // no recording yet
      }
    }, ms, async () => `(${p.describe(800)})`, 250);
  }

  function hearsMore(det: { framesWithTone: number; whenHeard(n: number): Promise<void> }, n: number, what: string, ms = 20000): Promise<void> {
    return within(det.whenHeard(det.framesWithTone + n), ms, () => `${what}\n${pbx!.logText().slice(-2500)}`);
  }

  const bridgePort = () => infra.drachtio!.sipPort;
  const fromBridge = (m: FsSipMessage) => m.peer === `127.0.0.1:${bridgePort()}`;

  /** The FreeSWITCH channel of the bridge's leg (sofia/external/...) of the current call. */
  async function bridgeLegUuid(): Promise<string> {
    return until('the bridge\'s channel in FreeSWITCH', async () => {
      const ch = (await pbx!.channels()).find((c) => /^sofia\/external\//.test(c.name ?? ''));
      return ch?.uuid ?? null;
    }, 10000);
  }

  describe('the sample as documented: WhatsApp calls ring extension 1000', () => {
    before(async function () {
      if (!bin || !infra.drachtio || !Baresip.available()) return this.skip();
      pbx = await startFreeswitch();
    });
    after(async () => {
      await pbx?.stop();
      pbx = null;
    });

    it('a WhatsApp call rings the registered phone 1000 through the external profile; audio both ways', async () => {
      const agent = await phone('1000', AGENT_TONE);
      const s = await startBridge();
      user = new WaUser(USER_TONE, AGENT_TONE);
      const { wacid } = await s.sim.userCalls(user);
      await agent.whenEstablished(20000);
      await hearsMore(user.heard, 50, 'the WhatsApp user hears phone 1000');
      await phoneHears(agent, USER_TONE, 50, 'phone 1000 hears the WhatsApp user');

      const invite = pbx!.sipMessages().find((m) => m.dir === 'rx' && m.method === 'INVITE' && m.status === null && m.text.includes(`X-WhatsApp-Call-Id: ${wacid}`));
      assert.ok(invite, 'the bridge\'s INVITE reached FreeSWITCH');
      assert.ok(fromBridge(invite));
      // PBX_TARGET has no user part: the Request-URI user is the business number, without "+".
      assert.match(invite.startLine, new RegExp(`^INVITE sip:${BRIDGE_DEFAULT_BUSINESS.slice(1)}@127\\.0\\.0\\.1:${pbx!.externalPort} `));
      await pbx!.waitForLog(new RegExp(`WhatsApp call ${wacid} from \\+\\d+ to \\${BRIDGE_DEFAULT_BUSINESS}`), 2000); // the sample read the headers

      await s.sim.userHangsUp(wacid);
      await agent.whenClosed(10000);
      const row = await endedRow(s, wacid);
      assert.equal(row.outcome, 'answered');
      assert.equal(row.direction, 'inbound');
    });

    it('an agent dials 9 + a 10-digit number (9 4512345678): the sample (00_wa-bridge.xml) wins over the stock domestic route, the bridge challenges, the gateway answers, header and audio both ways', async () => {
      const agent = await phone('1000', AGENT_TONE);
      const s = await startBridge();
      await grantPermanentPermission(s.bridge.permissions, SAMPLE_BUSINESS, DK_CUSTOMER);
      user = new WaUser(USER_TONE, AGENT_TONE);
      let call: SimOutboundCall | null = null;
      const answers = s.sim.answeredBy(user, 300);
      s.sim.outboundScript = async (c) => {
        call = c;
        await answers(c);
      };
      // A pinging gateway the bridge did not answer (a bridge stopped by the test before: 503) is DOWN, and
      // FreeSWITCH refuses calls through it (503 to the phone) until its next ping succeeds.
      await pbx!.waitForApi('sofia status gateway wa-bridge', (o) => /^Status\s+UP$/m.test(o), 15000, 'the gateway UP again');
      const mark = pbx!.sipMessages().length;
      await agent.dial(`sip:9${DK_CUSTOMER.slice(1)}@${pbx!.registrar}`);
      await agent.whenEstablished(30000);
      await hearsMore(user.heard, 50, 'the WhatsApp user hears the agent');
      await phoneHears(agent, USER_TONE, 50, 'the agent hears the WhatsApp user');

      await pbx!.waitForLog(/Regex \(PASS\) \[to-whatsapp\] destination_number\(94512345678\)/, 2000);
      assert.doesNotMatch(pbx!.logText(), /Regex \(PASS\) \[domestic\.example\.com\]/);
      const sip = pbx!.sipMessages().slice(mark);
      const invites = sip.filter((m) => m.dir === 'tx' && m.status === null && m.method === 'INVITE' && fromBridge(m));
      assert.equal(invites.length, 2, 'the INVITE, then the same INVITE with credentials');
      assert.match(invites[0]!.startLine, new RegExp(`^INVITE sip:\\${DK_CUSTOMER}@127\\.0\\.0\\.1:${bridgePort()}`));
      for (const inv of invites) assert.match(inv.text, new RegExp(`^X-WhatsApp-Business-Number: \\${SAMPLE_BUSINESS}$`, 'm'));
      assert.doesNotMatch(invites[0]!.text, /^(Proxy-)?Authorization:/mi);
      assert.match(invites[1]!.text, new RegExp(`^Authorization: Digest username="${FREESWITCH_SAMPLE_USERNAMES.pbxToBridge}", realm="wa-sip-bridge"`, 'mi'));
      assert.ok(sip.some((m) => m.dir === 'rx' && m.status === 401 && m.method === 'INVITE' && m.callId === invites[0]!.callId), 'the bridge challenged FreeSWITCH with 401');

      const connect = s.sim.requests.find((r) => r.path === '/calls/connect');
      assert.equal(connect?.body.from, SAMPLE_BUSINESS);
      assert.equal(connect?.body.to, DK_CUSTOMER);
      await s.sim.deliver(s.sim.outboundTerminate(call!, 'COMPLETED')); // the WhatsApp user hangs up
      await agent.whenClosed(10000);
      const invite = s.marks.marks.find((m) => m.name === 'invite_received');
      assert.ok(invite, 'the bridge took the INVITE');
      const row = await endedRow(s, invite.wacid);
      assert.equal(row.direction, 'outbound');
      assert.equal(row.outcome, 'answered');
      assert.equal(row.business_number, SAMPLE_BUSINESS);
      assert.equal(row.customer_number, DK_CUSTOMER);
      assert.equal(row.agent, '1000', 'caller-id-in-from puts the agent\'s extension into the From user');
    });

    it('the same dialling with the sample under its old name (default/wa-bridge.xml) goes to the stock example gateway, never to the bridge', async () => {
      const conf = path.join(pbx!.dir, 'conf', 'dialplan', 'default');
      fs.renameSync(path.join(conf, '00_wa-bridge.xml'), path.join(conf, 'wa-bridge.xml'));
      try {
        assert.match(await pbx!.api('reloadxml'), /\+OK/);
        const agent = await phone('1000', AGENT_TONE);
        const s = await startBridge();
        const mark = pbx!.sipMessages().length;
        await agent.dial(`sip:9${DK_CUSTOMER.slice(1)}@${pbx!.registrar}`);
        await agent.whenClosed(30000);
        await pbx!.waitForLog(/Regex \(PASS\) \[domestic\.example\.com\] destination_number\(94512345678\)/, 2000);
        assert.ok(!pbx!.sipMessages().slice(mark).some((m) => m.dir === 'tx' && m.method === 'INVITE' && fromBridge(m)), 'no INVITE reached the bridge');
        assert.equal(s.sim.requests.some((r) => r.path === '/calls/connect'), false);
      } finally {
        fs.renameSync(path.join(conf, 'wa-bridge.xml'), path.join(conf, '00_wa-bridge.xml'));
        await pbx!.api('reloadxml');
      }
    });

    it('OPTIONS both ways: the gateway\'s pings reach the bridge and are answered 200 (counted on the wire), and FreeSWITCH answers the bridge\'s pings', async () => {
      const s = await startBridge({ PBX_OPTIONS_PING_S: '2' });
      const since = pbx!.sipMessages().length;
      const pings = () => pbx!.sipMessages().slice(since).filter((m) => fromBridge(m) && m.method === 'OPTIONS');
      // Two pings of the gateway (every 5 s in the lab) and their 200s.
      await until('two gateway pings answered 200', async () => {
        const p = pings();
        const sent = p.filter((m) => m.dir === 'tx' && m.status === null);
        const ok = p.filter((m) => m.dir === 'rx' && m.status === 200 && sent.some((x) => x.callId === m.callId));
        return ok.length >= 2;
      }, 20000, async () => pings().map((m) => `${m.dir} ${m.startLine}`).join('\n'));
      const gw = await pbx!.api('sofia status gateway wa-bridge');
      assert.match(gw, /^Status\s+UP$/m, gw);
      assert.match(gw, /^PingState\s+\d+\/\d+\/\d+$/m, gw);

      // The bridge pings its PBX_TARGET, FreeSWITCH's external profile, which answers.
      await until('the bridge counts FreeSWITCH up', async () => s.bridge.targets.status()[pbx!.uri] === 'up', 10000,
        async () => JSON.stringify(s.bridge.targets.status()));
      const rx = pbx!.sipMessages().slice(since).find((m) => m.dir === 'rx' && m.status === null && m.method === 'OPTIONS' && fromBridge(m));
      assert.ok(rx, 'the bridge\'s OPTIONS reached FreeSWITCH');
      assert.ok(pbx!.sipMessages().some((m) => m.dir === 'tx' && m.status === 200 && m.callId === rx.callId), 'FreeSWITCH answered it 200');
      console.log(`      gateway status after the pings:\n${gw.split('\n').filter((l) => /^(Status|PingState|PingCount|PingFreq|PingTime|Ping)\b/.test(l)).map((l) => `        ${l}`).join('\n')}`);
    });

    it('hold with FreeSWITCH\'s own music: phone 1000 holds, the WhatsApp user hears local_stream://moh, then the agent again after resume', async () => {
      const agent = await phone('1000', AGENT_TONE);
      const s = await startBridge();
      const timeline = new Timeline(s.bridge.cdr);
      user = new WaUser(USER_TONE, AGENT_TONE);
      const moh = user.listen(MOH_TONE);
      const { wacid } = await s.sim.userCalls(user);
      await agent.whenEstablished(20000);
      await hearsMore(user.heard, 50, 'the WhatsApp user hears phone 1000');
      assert.equal(moh.framesWithTone, 0, 'no music before the hold');

      await phoneHears(agent, USER_TONE, 50, 'phone 1000 hears the WhatsApp user');
      await agent.hold(10000);
      await hearsMore(moh, 40, 'the WhatsApp user hears FreeSWITCH\'s music on hold', 15000);
      const agentDuringHold = user.heard.framesWithTone;
      await agent.resume(10000);
      await hearsMore(user.heard, 50, 'the agent is heard again after resume');
      assert.ok(user.heard.framesWithTone > agentDuringHold);
      // (baresip 1.0.0's recorder stops writing at the hold and never resumes, so the agent's side of the
      // resumed call is not measured here: the WhatsApp user hears the agent again.)
      assert.equal(timeline.count('pbx_hold'), 0, 'FreeSWITCH plays its music itself: no hold re-INVITE reaches the bridge');
      assert.ok(!pbx!.sipMessages().some((m) => m.dir === 'tx' && m.status === null && m.method === 'INVITE' && fromBridge(m) && /^a=(sendonly|inactive)/m.test(m.text)),
        'no re-INVITE toward the bridge');

      await s.sim.userHangsUp(wacid);
      await endedRow(s, wacid);
    });

    it('blind transfer by the phone (REFER to FreeSWITCH): phone 1000 transfers to 1001; the WhatsApp user talks to 1001', async () => {
      const a = await phone('1000', AGENT_TONE);
      const b = await phone('1001', AGENT_B_TONE);
      const s = await startBridge();
      user = new WaUser(USER_TONE, AGENT_TONE);
      const hearsB = user.listen(AGENT_B_TONE);
      const { wacid } = await s.sim.userCalls(user);
      await a.whenEstablished(20000);
      await hearsMore(user.heard, 50, 'the WhatsApp user hears 1000');

      await a.transfer(`sip:1001@${pbx!.registrar}`);
      await b.whenEstablished(20000);
      await hearsMore(hearsB, 50, 'the WhatsApp user hears 1001 after the transfer');
      await phoneHears(b, USER_TONE, 50, '1001 hears the WhatsApp user');
      await a.whenClosed(10000);

      await s.sim.userHangsUp(wacid);
      const row = await endedRow(s, wacid);
      assert.equal(row.outcome, 'answered');
    });

    it('blind transfer by FreeSWITCH\'s deflect (REFER to the bridge): the bridge dials 1001 on the external profile and the WhatsApp user talks to 1001', async () => {
      await phone('1000', AGENT_TONE);
      const b = await phone('1001', AGENT_B_TONE);
      const s = await startBridge();
      const timeline = new Timeline(s.bridge.cdr);
      user = new WaUser(USER_TONE, AGENT_TONE);
      const hearsB = user.listen(AGENT_B_TONE);
      const { wacid } = await s.sim.userCalls(user);
      await hearsMore(user.heard, 50, 'the WhatsApp user hears 1000');

      const target = `sip:1001@127.0.0.1:${pbx!.externalPort}`;
      assert.match(await pbx!.api(`uuid_deflect ${await bridgeLegUuid()} ${target}`), /^\+OK/);
      const done = await timeline.waitFor('transferred', 1, 20000);
      assert.equal(done.detail?.target, target);
      await b.whenEstablished(20000);
      await hearsMore(hearsB, 50, 'the WhatsApp user hears 1001 after the transfer');
      await phoneHears(b, USER_TONE, 50, '1001 hears the WhatsApp user');
      const refer = pbx!.sipMessages().find((m) => m.dir === 'tx' && m.status === null && m.method === 'REFER' && fromBridge(m));
      assert.ok(refer, 'FreeSWITCH sent the bridge a REFER');
      assert.match(refer.text, new RegExp(`^Refer-To: <?${target.replace(/\./g, '\\.')}>?`, 'mi'));

      await s.sim.userHangsUp(wacid);
      const row = await endedRow(s, wacid);
      assert.equal(row.outcome, 'answered');
      assert.equal(row.pbx_target, target);
    });
  });

  describe('the sample\'s options: FreeSWITCH challenges the bridge, and WhatsApp calls queue in mod_fifo', () => {
    before(async function () {
      if (!bin || !infra.drachtio || !Baresip.available()) return this.skip();
      pbx = await startFreeswitch({
        sample: { queue: true, challengeBridge: true },
        fifos: '    <fifo name="wa_support@$${domain}" importance="0">\n'
          + '      <member timeout="60" simo="1" lag="1">{member_wait=nowait}user/1000@$${domain}</member>\n    </fifo>',
      });
    });
    after(async () => {
      await pbx?.stop();
      pbx = null;
    });

    it('FreeSWITCH challenges (407) and the bridge answers with PBX_AUTH_*; the queued caller hears the hold music until agent 1000 takes the call; audio both ways', async () => {
      const agent = await phone('1000', AGENT_TONE, 'manual');
      const s = await startBridge({ PBX_AUTH_USERNAME: FREESWITCH_SAMPLE_USERNAMES.bridgeToPbx, PBX_AUTH_PASSWORD: SECRETS.bridgeToPbx });
      user = new WaUser(USER_TONE, AGENT_TONE);
      const moh = user.listen(MOH_TONE);
      const { wacid } = await s.sim.userCalls(user);
      await hearsMore(moh, 40, 'the queued WhatsApp user hears FreeSWITCH\'s music', 20000);
      await agent.whenIncoming(20000); // mod_fifo rings the queue's member
      assert.equal(user.heard.framesWithTone, 0, 'no agent before the agent answers');
      await agent.accept();
      await hearsMore(user.heard, 50, 'the WhatsApp user hears agent 1000');
      await phoneHears(agent, USER_TONE, 50, 'agent 1000 hears the WhatsApp user');

      const invites = pbx!.sipMessages().filter((m) => m.dir === 'rx' && m.status === null && m.method === 'INVITE' && m.text.includes(`X-WhatsApp-Call-Id: ${wacid}`));
      assert.equal(invites.length, 2, 'the INVITE, then the same INVITE with credentials');
      assert.doesNotMatch(invites[0]!.text, /^Proxy-Authorization:/mi);
      assert.match(invites[1]!.text, new RegExp(`^Proxy-Authorization: Digest username="${FREESWITCH_SAMPLE_USERNAMES.bridgeToPbx}"`, 'mi'));
      assert.ok(pbx!.sipMessages().some((m) => m.dir === 'tx' && m.status === 407 && m.callId === invites[0]!.callId), 'FreeSWITCH challenged with 407');
      assert.ok(s.sim.requests.some((r) => r.path === '/calls/accept'));

      await s.sim.userHangsUp(wacid);
      const row = await endedRow(s, wacid);
      assert.equal(row.outcome, 'answered');
    });

    it('a bridge with the wrong PBX_AUTH_PASSWORD gets no call through', async () => {
      const s = await startBridge({ PBX_AUTH_USERNAME: FREESWITCH_SAMPLE_USERNAMES.bridgeToPbx, PBX_AUTH_PASSWORD: 'wrong' });
      user = new WaUser(USER_TONE, AGENT_TONE);
      const { wacid } = await s.sim.userCalls(user);
      const row = await endedRow(s, wacid);
      assert.notEqual(row.outcome, 'answered');
      assert.ok([401, 403, 407].includes(Number(row.sip_final_code)), `final code ${row.sip_final_code}`);
      assert.equal(s.sim.requests.some((r) => r.path === '/calls/accept'), false);
    });
  });

  describe('lab routes behind the sample (echo, IVR), with session timers on the external profile', () => {
    let browser: BrowserHandle | null = null;
    let caller: BrowserWaUser | null = null;

    before(async function () {
      if (!bin || !infra.drachtio || !Baresip.available()) return this.skip();
      pbx = await startFreeswitch({
        // The WhatsApp call goes to the lab extension named by PBX_TARGET's user part (sip:echo@...).
        inboundActions: '      <action application="transfer" data="lab-${destination_number} XML default"/>',
        externalParams: { 'enable-timer': 'true', 'session-timeout': '90', 'minimum-session-expires': '90' },
        labExtensions: [{
          context: 'default',
          xml: [
            '  <extension name="lab-echo"><condition field="destination_number" expression="^lab-echo$">',
            '    <action application="answer"/><action application="echo"/></condition></extension>',
            '  <extension name="lab-srtp"><condition field="destination_number" expression="^lab-srtp$">',
            '    <action application="set" data="rtp_secure_media=mandatory:AES_CM_128_HMAC_SHA1_80"/>',
            '    <action application="answer"/>',
            '    <action application="echo"/></condition></extension>',
            '  <extension name="lab-ivr"><condition field="destination_number" expression="^lab-ivr$">',
            '    <action application="answer"/>',
            `    <action application="play_and_get_digits" data="1 4 1 15000 # tone_stream://%(3000,0,${IVR_PROMPT_TONE}) silence_stream://200 wa_digits \\d+ 5000"/>`,
            '    <action application="log" data="INFO IVR-DIGITS=${wa_digits}=END"/>',
            '    <action application="echo"/></condition></extension>',
          ].join('\n'),
        }],
      });
    });
    after(async () => {
      await pbx?.stop();
      pbx = null;
    });
    afterEach(async () => {
      await caller?.close();
      await browser?.close();
      caller = browser = null;
    });

    const target = (route: string) => `sip:${route}@127.0.0.1:${pbx!.externalPort}`;

    it('IVR: play_and_get_digits gets the digits the WhatsApp caller presses during its prompt (RFC 4733 from the browser)', async function () {
      const missing = !BrowserWaUser.available() ? 'chromium is not installed' : BrowserWaUser.isolationProblem();
      if (missing) {
        console.log(`\n!!! FREESWITCH IVR TEST SKIPPED: ${missing} !!!\n`);
        return this.skip();
      }
      // FreeSWITCH sends no RTP while play_and_get_digits waits after its prompt. Seen with a 200 ms silent
      // prompt and the tests' 2 s MEDIA_KEEPALIVE_AFTER_MS: the bridge's keepalive started, and when FreeSWITCH
      // sent again the bridge re-INVITEd it for a fresh PBX leg; a digit pressed during that re-INVITE was lost
      // (159# arrived as 15#). Here the default (8 s), what an operator runs; a caller who waits longer meets it.
      const s = await startBridge({ PBX_TARGET: target('ivr'), MEDIA_KEEPALIVE_AFTER_MS: '8000' });
      browser = await BrowserWaUser.launch({ toneHz: USER_TONE });
      caller = new BrowserWaUser(browser, USER_TONE, { listenHz: IVR_PROMPT_TONE });
      const { wacid } = await s.sim.userCalls(caller);
      await caller.connected(15000);
      await s.sim.waitForRequest('/calls/accept', wacid);
      await caller.waitHeard(10, 10000); // the prompt (600 Hz): media is up; the caller presses during it
      await caller.sendDigits('159#', 120, 80);
      const m = await pbx!.waitForLog(/IVR-DIGITS=([0-9*#]*)=END/, 20000);
      assert.equal(m[1], '159', 'play_and_get_digits ends on # and keeps the digits before it');
      await s.sim.userHangsUp(wacid);
      await endedRow(s, wacid);
    });

    it('SRTP (SDES) on the PBX leg: the bridge offers RTP/SAVP, FreeSWITCH (rtp_secure_media=mandatory) answers with a key, audio both ways through its echo', async () => {
      const s = await startBridge({ PBX_TARGET: target('srtp'), PBX_SRTP: 'sdes' });
      user = new WaUser(USER_TONE, USER_TONE); // FreeSWITCH's echo sends the user's own tone back
      const { wacid } = await s.sim.userCalls(user);
      await hearsMore(user.heard, 50, 'the WhatsApp user hears the echo through SRTP');
      const invite = pbx!.sipMessages().find((m) => m.dir === 'rx' && m.method === 'INVITE' && m.status === null && m.text.includes(`X-WhatsApp-Call-Id: ${wacid}`));
      assert.ok(invite);
      assert.match(invite.text, /^m=audio \d+ RTP\/SAVP /m);
      const ok = pbx!.sipMessages().find((m) => m.dir === 'tx' && m.status === 200 && m.method === 'INVITE' && m.callId === invite.callId);
      assert.ok(ok, 'FreeSWITCH answered');
      assert.match(ok.text, /^m=audio \d+ RTP\/SAVP /m);
      assert.match(ok.text, /^a=crypto:\d+ AES_CM_128_HMAC_SHA1_80 inline:/m);
      // rtpengine offers RFC 6188's names for the 192/256-bit suites (AES_256_CM_HMAC_SHA1_80), which FreeSWITCH
      // calls AES_CM_256_HMAC_SHA1_80 and skips as unsupported, and AEAD_AES_*_GCM with 16-byte tags (FreeSWITCH has
      // the _8 variants only): AES_CM_128_HMAC_SHA1_80 is the suite both sides name alike.
      assert.equal((await pbx!.api(`uuid_getvar ${await bridgeLegUuid()} rtp_has_crypto`)).trim(), 'AES_CM_128_HMAC_SHA1_80');
      await s.sim.userHangsUp(wacid);
      const row = await endedRow(s, wacid);
      assert.equal(row.outcome, 'answered');
    });

    it('the agent\'s digit toward the WhatsApp user: uuid_send_dtmf on the bridge\'s leg plays out at a libwebrtc WhatsApp user, and the echo is heard after it', async () => {
      const s = await startBridge({ PBX_TARGET: target('echo') });
      user = new WaUser(USER_TONE, USER_TONE); // FreeSWITCH's echo sends the user's own tone back
      // libwebrtc's NetEq plays a received telephone-event out as its two tones: '5' is 770 + 1336 Hz.
      const dtmf5 = user.listen(1336, 0.3);
      const { wacid } = await s.sim.userCalls(user);
      await hearsMore(user.heard, 25, 'the WhatsApp user hears the echo');
      assert.match(await pbx!.api(`uuid_send_dtmf ${await bridgeLegUuid()} 5@200`), /^\+OK/);
      await within(dtmf5.whenHeard(5), 10000, () => `the digit played out at the WhatsApp user\n${pbx!.logText().slice(-2500)}`);
      await hearsMore(user.heard, 50, 'the echo heard again after the digit', 10000);
      const playedMs = dtmf5.framesWithTone * 10; // libwebrtc hands over 10 ms frames
      console.log(`      [dtmf] FreeSWITCH uuid_send_dtmf 5@200 -> libwebrtc WhatsApp user: played ${playedMs} ms`);
      assert.ok(playedMs >= 150, `the digit played ${playedMs} ms at the WhatsApp user (sent 200 ms): not cut short`);
      const invite = pbx!.sipMessages().find((m) => m.dir === 'rx' && m.method === 'INVITE' && m.status === null && m.text.includes(`X-WhatsApp-Call-Id: ${wacid}`));
      assert.ok(invite);
      const ok = pbx!.sipMessages().find((m) => m.dir === 'tx' && m.status === 200 && m.method === 'INVITE' && m.callId === invite.callId);
      assert.match(ok?.text ?? '', /^a=rtpmap:\d+ telephone-event\/8000\r?$/m, 'FreeSWITCH answered with telephone-event');
      await s.sim.userHangsUp(wacid);
      const row = await endedRow(s, wacid);
      assert.equal(row.outcome, 'answered');
    });

    it('session timers as FreeSWITCH negotiates them (session-timeout 90 s): the session is refreshed twice and the echo keeps flowing', async () => {
      const s = await startBridge({ PBX_TARGET: target('echo') });
      const timeline = new Timeline(s.bridge.cdr);
      user = new WaUser(USER_TONE, USER_TONE);
      const { wacid } = await s.sim.userCalls(user);
      await hearsMore(user.heard, 25, 'the WhatsApp user hears the echo');
      const invite = pbx!.sipMessages().find((m) => m.dir === 'rx' && m.method === 'INVITE' && m.status === null && m.text.includes(`X-WhatsApp-Call-Id: ${wacid}`))!;
      const ok = pbx!.sipMessages().find((m) => m.dir === 'tx' && m.status === 200 && m.method === 'INVITE' && m.callId === invite.callId);
      const se = /^(?:Session-Expires|x):\s*(.*)$/mi.exec(ok?.text ?? '')?.[1] ?? '(none)';
      console.log(`      bridge's INVITE Supported: ${/^(?:Supported|k):\s*(.*)$/mi.exec(invite.text)?.[1] ?? '(none)'}; FreeSWITCH's 200 Session-Expires: ${se}`);
      // FreeSWITCH's own re-INVITEs/UPDATEs (it is the refresher): a re-INVITE of the bridge's (a renewed leg) is no refresh.
      const refreshes = () => pbx!.sipMessages().filter((m) => m.callId === invite.callId && m.dir === 'tx' && m.status === null && (m.method === 'INVITE' || m.method === 'UPDATE')).length;
      await until('two session refreshes', async () => refreshes() >= 2, 110000,
        async () => `(refreshes: ${refreshes()}; timeline: ${timeline.types().join(', ')})`, 500);
      const refresher = pbx!.sipMessages().filter((m) => m.callId === invite.callId && m.status === null && (m.method === 'INVITE' || m.method === 'UPDATE')).slice(1)
        .map((m) => `${m.dir === 'tx' ? 'FreeSWITCH' : 'the bridge'} ${m.method}`);
      console.log(`      refreshes: ${refresher.join(', ')}`);
      await hearsMore(user.heard, 50, 'the echo still flows after two refreshes', 5000);
      await s.sim.userHangsUp(wacid);
      const row = await endedRow(s, wacid);
      assert.equal(row.outcome, 'answered');
      // FreeSWITCH refreshes at half its 90 s interval: its second refresh comes about 90 s into its session.
      assert.ok(Number(row.talk_seconds) > 80, `talk time ${row.talk_seconds}`);
    });

    // An agent's INVITE that offers no codec the bridge can use (a FreeSWITCH loopback channel offers
    // only L16) is refused with 488 before WhatsApp is called (src/media/usable-codecs.ts).
    it('an agent call offering only L16 (loopback) is refused with 488 and WhatsApp is never called', async () => {
      const s = await startBridge();
      await grantPermanentPermission(s.bridge.permissions, SAMPLE_BUSINESS, DK_CUSTOMER);
      // The gateway DOWN after an earlier test's bridge stopped would refuse the call itself (503), never asking the bridge.
      await pbx!.waitForApi('sofia status gateway wa-bridge', (o) => /^Status\s+UP$/m.test(o), 15000, 'the gateway UP again');
      const out = await pbx!.api(`originate {absolute_codec_string=L16}loopback/9${DK_CUSTOMER.slice(1)}/default &park()`, 30000);
      assert.match(out, /^-ERR /, 'the originate fails');
      // The SIP trace reaches FreeSWITCH's log file a moment after the originate returns.
      await until('the bridge\'s 488 in FreeSWITCH\'s SIP trace', async () => pbx!.sipMessages().some((m) => m.dir === 'rx' && m.status === 488 && fromBridge(m)), 5000,
        async () => pbx!.sipMessages().filter(fromBridge).map((m) => `${m.method} ${m.status ?? ''}`).join(', '), 100);
      assert.equal(s.sim.requests.some((r) => r.path === '/calls/connect'), false);
    });
  });
});

/** The FreeSWITCH sample itself, without a FreeSWITCH: each documented option renders to complete, well-formed XML. */
describe('the FreeSWITCH sample (config/freeswitch), rendered', () => {
  const v = { bridgeIp: '192.0.2.10', bridgeSipPort: 5060, pbxToBridgeSecret: 'x', bridgeToPbxSecret: 'y', businessNumber: SAMPLE_BUSINESS };

  it('every option combination: placeholders filled, well-formed XML; options switch on exactly what they say', () => {
    for (const queue of [false, true]) {
      for (const challengeBridge of [false, true]) {
        const files = renderFreeswitchSample(v, { queue, challengeBridge });
        for (const [rel, text] of Object.entries(files)) assert.equal(XMLValidator.validate(text), true, `${rel} (queue ${queue}, challenge ${challengeBridge})`);
        const pub = files['dialplan/public/wa-bridge.xml']!.replace(/<!--[\s\S]*?-->/g, '');
        assert.equal(pub.includes('application="fifo" data="wa_support@${domain_name} in"'), queue);
        assert.equal(pub.includes('data="user/1000@${domain_name}"'), !queue, 'the queue replaces the bridge to 1000');
        assert.equal(pub.includes('<anti-action application="respond" data="407"/>'), challengeBridge);
        assert.match(pub, /field="network_addr" expression="\^192\\\.0\\\.2\\\.10\$"/);
      }
    }
  });

  it('the agents\' dialplan file sorts before the stock 01_example.com.xml (default.xml includes default/*.xml alphabetically)', () => {
    const name = path.basename(FREESWITCH_SAMPLE_FILES.find((f) => f.startsWith('dialplan/default/'))!);
    assert.ok([name, '01_example.com.xml'].sort()[0] === name, `${name} sorts before 01_example.com.xml`);
  });
});
