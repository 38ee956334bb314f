import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CallRecord } from '../src/cdr/models';
import { MetaSipCall } from '../src/sandbox/simulator/meta-sip';
import { rows } from './harness/db-rows';
import { infra } from './harness/infra';
import { MetaSipStack, SIP_DTLS, SIP_SDES, startMetaSipStack } from './harness/meta-sip-stack';
import { RtpPhone } from './harness/rtp-phone';
import { grantPermanentPermission } from './harness/permissions';
import { refusalScenario, runSippUac, SippKeys, SippRun, startSippUas } from './harness/sipp';
import { Timeline, until, within } from './harness/timeline';
import { whenEnded } from './harness/watch';

const USER_TONE = 440; // the WhatsApp user, behind Meta
const AGENT_TONE = 1000; // the agent, behind the PBX
const CUSTOMER = '+6281361905133';

/**
 * Meta's native SIP end to end: the Meta SIP simulator (real SIP over TLS, SRTP with DTLS/ICE-lite or
 * SDES from its own rtpengine, the WhatsApp user's phone behind it) calls the bridge's TLS listener and
 * takes the bridge's INVITEs; SIPp plays the PBX and the agents' phones, RtpPhones carry audio both ways.
 */
describe('Meta\'s native SIP: the bridge as the border between Meta and the PBX', function () {
  this.timeout(60000);
  let stack: MetaSipStack | null = null;
  let timeline: Timeline | null = null;
  let sipps: Array<{ run: SippRun; trace: string }> = [];
  let phones: RtpPhone[] = [];
  let tmp: string | null = null;

  before(function () {
    if (!infra.drachtio) this.skip(); // the run already said why, loudly, once
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed') {
      for (const s of sipps) {
        const trace = fs.existsSync(s.trace) ? fs.readFileSync(s.trace, 'utf8') : '(no trace)';
        console.log(`\n--- ${s.run.proc.name} SIP trace, last 5000 chars:\n${trace.slice(-5000)}\n--- output:\n${s.run.proc.output.slice(-1500)}`);
      }
      console.log(`--- timeline: ${timeline?.types().join(', ')}`);
    }
    for (const c of stack?.meta.sim.calls ?? []) if (!c.isEnded) await c.hangup().catch(() => undefined);
    for (const p of phones) p.stop();
    for (const s of sipps) await s.run.proc.stop();
    await stack?.stop();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    stack = timeline = tmp = null;
    sipps = [];
    phones = [];
  });

  function tmpDir(): string {
    tmp ??= fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-meta-sip-'));
    return tmp;
  }

  async function phone(send: number, listen: number): Promise<RtpPhone> {
    const p = new RtpPhone(send, listen, { followSource: true });
    await p.start();
    phones.push(p);
    return p;
  }

  async function pbx(scenario: string, rtpPort: number, keys: SippKeys = {}): Promise<SippRun> {
    const trace = path.join(tmpDir(), `${path.basename(scenario, '.xml')}-${sipps.length}.msg`);
    const run = await startSippUas(scenario, { rtpPort, keys, extraArgs: ['-trace_msg', '-message_file', trace] });
    sipps.push({ run, trace });
    return run;
  }

  async function start(targets: Partial<{ dtls: string; sdes: string; graph: string }>, env: Record<string, string> = {}): Promise<MetaSipStack> {
    const none = 'sip:127.0.0.1:9';
    stack = await startMetaSipStack({ pbx: { dtls: targets.dtls ?? none, sdes: targets.sdes ?? none, graph: targets.graph ?? none }, env });
    timeline = new Timeline(stack.bridge.cdr);
    return stack;
  }

  /** The WhatsApp user calls `to` through Meta; their phone sends to Meta once Meta says where. */
  async function userCalls(s: MetaSipStack, to: string, user: RtpPhone, extra: { ctaPayload?: string } = {}): Promise<MetaSipCall> {
    const call = s.meta.sim.userCalls({ from: CUSTOMER, to, profileName: 'Budi Santoso', phone: { address: '127.0.0.1', port: user.port }, ...extra });
    await within(call.answered, 20000, () => `Meta's call answered (ended: ${JSON.stringify(call.endedWith)}; timeline: ${timeline?.types().join(', ')})`);
    user.retarget(call.phoneTarget!.port, call.phoneTarget!.address);
    return call;
  }

  async function endedRow(s: MetaSipStack, key: string): Promise<CallRecord> {
    const id = await within(whenEnded(s.bridge, key), 20000, () => `call ${key} to end (timeline: ${timeline?.types().join(', ')})`);
    const row = await rows().CallRecord.findByPk(id);
    assert.ok(row, 'CDR row exists');
    return row;
  }

  function traceOf(run: SippRun): string {
    const t = sipps.find((s) => s.run === run)!.trace;
    return fs.existsSync(t) ? fs.readFileSync(t, 'utf8') : '';
  }

  for (const mode of ['dtls', 'sdes'] as const) {
    it(`a WhatsApp user's call over Meta's SIP (${mode}): digest, the PBX's headers, the business's media first, audio both ways, Meta's BYE, the CDR`, async () => {
      const number = mode === 'dtls' ? SIP_DTLS : SIP_SDES;
      const agent = await phone(AGENT_TONE, USER_TONE);
      const sipp = await pbx('uas-answer.xml', agent.port);
      const s = await start({ [mode]: sipp.uri });
      const user = await phone(USER_TONE, AGENT_TONE);
      const call = await userCalls(s, number.number, user, { ctaPayload: 'spring-sale' });

      await within(Promise.all([user.heard.whenHeard(50), agent.heard.whenHeard(50)]), 15000,
        () => `tones both ways (user got ${user.packetsIn} packets, agent ${agent.packetsIn}; timeline: ${timeline?.types().join(', ')})`);
      assert.equal(call.firstPacketFrom(), 'business', 'Meta heard the business first');
      await call.hangup();
      const row = await endedRow(s, call.wacid);

      assert.equal(row.outcome, 'answered');
      assert.equal(row.hangup_by, 'whatsapp');
      assert.equal(row.direction, 'inbound');
      assert.equal(row.wacid, call.wacid);
      assert.equal(row.provider_kind, 'meta-sip');
      assert.equal(row.number_name, number.name);
      assert.equal(row.phone_id, number.phoneId);
      assert.equal(row.customer_number, CUSTOMER);
      assert.equal(row.profile_name, 'Budi Santoso');
      assert.equal(row.cta_payload, 'spring-sale');
      assert.equal(row.country_code, '62');
      assert.equal(row.meta_sip_srtp, mode);
      assert.equal(typeof row.provider_duration, 'number', 'Meta\'s x-wa-meta-call-duration kept');
      assert.deepEqual(call.counters, { reinvitesRefused: 0, updatesRefused: 0, options: 0 });
      const invite = traceOf(sipp);
      assert.match(invite, /^X-WhatsApp-Call-Id: wacid\./m);
      assert.match(invite, /^X-WhatsApp-Country-Code: 62\r?$/m);
      assert.match(invite, /^X-WhatsApp-Cta-Payload: spring-sale\r?$/m);
      assert.match(invite, /^X-WhatsApp-Number-Name: /m);
      assert.match(invite, /^From: "Budi Santoso" <sip:\+6281361905133@/m);
    });
  }

  /** A copy of an agent scenario (test/sipp) calling from `business` instead of the default number. */
  function fromBusiness(scenario: string, business: string): string {
    const src = fs.readFileSync(path.join(__dirname, '..', '..', 'test', 'sipp', scenario), 'utf8');
    const file = path.join(tmpDir(), `${business.slice(1)}-${scenario}`);
    fs.writeFileSync(file, src.replace(/^X-WhatsApp-Business-Number: .*$/m, `X-WhatsApp-Business-Number: ${business}`));
    return file;
  }

  /** The agent dials the customer; the bridge's SIP address. */
  async function agentDials(s: MetaSipStack, scenario: string, rtpPort: number): Promise<SippRun> {
    const trace = path.join(tmpDir(), `agent-${sipps.length}.msg`);
    const run = await runSippUac(scenario, { target: `127.0.0.1:${s.sip.sipPort}`, number: CUSTOMER, rtpPort, extraArgs: ['-trace_msg', '-message_file', trace] });
    sipps.push({ run, trace });
    return run;
  }

  async function sippPassed(run: SippRun): Promise<void> {
    const code = await within(run.done, 20000, () => `${run.proc.name} to finish:\n${run.proc.output.slice(-1500)}`);
    assert.equal(code, 0, `${run.proc.name} passed its scenario:\n${run.proc.output.slice(-1500)}`);
  }

  /** The CDR of a call by its wacid, once ended. */
  async function endedByWacid(wacid: string): Promise<CallRecord> {
    return until(`the CDR of ${wacid} ended`, async () => {
      const row = await rows().CallRecord.findOne({ where: { wacid } });
      return row?.ended_at ? row : null;
    }, 15000);
  }

  for (const mode of ['dtls', 'sdes'] as const) {
    it(`an agent's call out over Meta's SIP (${mode}): INVITE to wa.meta.vc, Meta's 407 answered, audio both ways, the user hangs up`, async () => {
      const number = mode === 'dtls' ? SIP_DTLS : SIP_SDES;
      const s = await start({});
      await grantPermanentPermission(s.bridge.permissions, number.number, CUSTOMER);
      const user = await phone(USER_TONE, AGENT_TONE);
      s.meta.sim.onBusinessCall(() => ({ action: 'answer', afterMs: 300, phone: { address: '127.0.0.1', port: user.port } }));
      const agent = await phone(AGENT_TONE, USER_TONE);
      const sipp = await agentDials(s, mode === 'dtls' ? 'uac-call.xml' : fromBusiness('uac-call.xml', number.number), agent.port);
      const call = await until('Meta receiving the business call', async () => s.meta.sim.calls.find((c) => c.direction === 'business-initiated') ?? null, 15000);
      await within(call.answered, 15000, () => `the user answering (ended: ${JSON.stringify(call.endedWith)})`);
      user.retarget(call.phoneTarget!.port, call.phoneTarget!.address);
      await within(Promise.all([user.heard.whenHeard(50), agent.heard.whenHeard(50)]), 15000,
        () => `tones both ways (user got ${user.packetsIn} packets, agent ${agent.packetsIn}; timeline: ${timeline?.types().join(', ')})`);

      assert.equal(s.meta.sim.counters.challenges, 1, 'Meta challenged the INVITE once');
      assert.equal(s.meta.sim.counters.authFailures + s.meta.sim.counters.fromMismatches, 0);
      assert.equal(call.user, CUSTOMER);
      assert.equal(call.business, number.number);
      await call.hangup();
      await sippPassed(sipp); // the agent got 180, 200, then the BYE
      const row = await endedByWacid(call.wacid);
      assert.equal(row.direction, 'outbound');
      assert.equal(row.outcome, 'answered');
      assert.equal(row.hangup_by, 'whatsapp');
      assert.equal(row.provider_kind, 'meta-sip');
      assert.equal(row.meta_sip_srtp, mode);
      assert.equal(typeof row.provider_duration, 'number');
      assert.deepEqual(call.counters, { reinvitesRefused: 0, updatesRefused: 0, options: 0 });
    });
  }

  it('an agent\'s call the WhatsApp user declines: 603 to the agent; without permission Meta is never called (403)', async () => {
    const s = await start({});
    await grantPermanentPermission(s.bridge.permissions, SIP_DTLS.number, CUSTOMER);
    s.meta.sim.onBusinessCall(() => ({ action: 'decline' }));
    await sippPassed(await agentDials(s, await refusalScenario(603), 9));
    const declined = s.meta.sim.calls.find((c) => c.direction === 'business-initiated')!;
    const row = await endedByWacid(declined.wacid);
    assert.equal(row.outcome, 'rejected');

    const stranger = '+6281399990000';
    const trace = path.join(tmpDir(), 'stranger.msg');
    const run = await runSippUac(await refusalScenario(403), { target: `127.0.0.1:${s.sip.sipPort}`, number: stranger, extraArgs: ['-trace_msg', '-message_file', trace] });
    sipps.push({ run, trace });
    await sippPassed(run);
    assert.equal(s.meta.sim.counters.businessCalls, 1, 'no INVITE reached Meta for the customer without permission');
  });
});
