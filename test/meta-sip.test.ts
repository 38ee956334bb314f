import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';
import os from 'node:os';
import path from 'node:path';
import { CallRecord } from '../src/cdr/models';
import { MetaSipCall } from '../src/sandbox/simulator/meta-sip';
import { offeredAudioCodecs } from '../src/media/profiles';
import { checkSipEndpoint } from '../src/preflight/sip-target';
import { trustStore } from '../src/preflight/certificates';
import { rows } from './harness/db-rows';
import { parsePromText, sampleSum } from './harness/prom-text';
import { WaUser } from './harness/wa-user';
import { infra } from './harness/infra';
import { BRIDGE_HOSTNAME, BridgeCert, GRAPH, MetaSipStack, SIP_DTLS, SIP_SDES, startMetaSipStack } from './harness/meta-sip-stack';
import { RtpPhone } from './harness/rtp-phone';
import { grantPermanentPermission } from './harness/permissions';
import { refusalScenario, runSippUac, SippKeys, SippRun, printSippTraces, startSippUas } from './harness/sipp';
import { Timeline, until, within } from './harness/timeline';
import { whenEnded } from './harness/watch';

const USER_TONE = 440; // the WhatsApp user, behind Meta
const execFileP = promisify(execFile);
const AGENT_TONE = 1000; // the agent, behind the PBX
const AGENT_B_TONE = 1500; // a transfer target
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
      printSippTraces(sipps);
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

  /**
   * A SIPp UAS playing the PBX. `sender`: the agent's phone sends to the bridge as soon as the bridge's
   * INVITE says where, as desk phones and PBXs do (an RtpPhone alone waits for media to learn where).
   */
  async function pbx(scenario: string, rtpPort: number, keys: SippKeys = {}, sender?: RtpPhone): Promise<SippRun> {
    const trace = path.join(tmpDir(), `${path.basename(scenario, '.xml')}-${sipps.length}.msg`);
    const run = await startSippUas(scenario, { rtpPort, keys, extraArgs: ['-trace_msg', '-message_file', trace] });
    sipps.push({ run, trace });
    if (sender) {
      void until('the bridge\'s INVITE in the SIPp trace', async () => {
        const text = fs.existsSync(trace) ? fs.readFileSync(trace, 'utf8') : '';
        const invite = text.slice(Math.max(0, text.indexOf('INVITE sip:')));
        const c = /^c=IN IP4 (\S+)/m.exec(invite);
        const m = /^m=audio (\d+) /m.exec(invite);
        return text.includes('INVITE sip:') && c && m ? { address: c[1]!, port: Number(m[1]) } : null;
      }, 50000).then((at) => sender.retarget(at.port, at.address), () => undefined);
    }
    return run;
  }

  async function start(targets: Partial<{ dtls: string; sdes: string; graph: string }>, env: Record<string, string> = {}, cert: BridgeCert = 'valid'): Promise<MetaSipStack> {
    const none = 'sip:127.0.0.1:9';
    stack = await startMetaSipStack({ pbx: { dtls: targets.dtls ?? none, sdes: targets.sdes ?? none, graph: targets.graph ?? none }, env, cert });
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
      const sipp = await pbx('uas-answer.xml', agent.port, {}, agent);
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
      // With Meta's G.711 option (the SDES number) the PBX's PCMU passes through: Meta is answered PCMU, not opus.
      assert.equal(offeredAudioCodecs(call.remoteSdp ?? '')[0], mode === 'sdes' ? 'PCMU' : 'OPUS', `the bridge's answer to Meta:\n${call.remoteSdp}`);
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
      // No session timer is imposed on Meta's leg (Meta takes no re-INVITE to refresh one).
      const headerNames = Object.keys(call.inviteHeaders).map((h) => h.toLowerCase());
      assert.ok(!headerNames.includes('session-expires') && !/\btimer\b/i.test(call.inviteHeaders['require'] ?? ''), JSON.stringify(call.inviteHeaders));
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

  /** Packets the user's phone got per second while `during` runs (Meta's leg: media all along). */
  async function packetRate(p: RtpPhone, during: Promise<unknown>): Promise<{ pps: number; seconds: number }> {
    const t0 = performance.now();
    const n0 = p.packetsIn;
    await during;
    const seconds = (performance.now() - t0) / 1000;
    return { pps: (p.packetsIn - n0) / seconds, seconds };
  }

  it('the PBX holds and resumes: Meta\'s leg gets media all along (keepalive) and never a re-INVITE', async () => {
    const agent = await phone(AGENT_TONE, USER_TONE);
    const sipp = await pbx('uas-hold-resume.xml', agent.port, { holdms: 6000 }, agent);
    const s = await start({ dtls: sipp.uri }, { MEDIA_KEEPALIVE_POLL_MS: '300' });
    const user = await phone(USER_TONE, AGENT_TONE);
    const call = await userCalls(s, SIP_DTLS.number, user);
    await within(user.heard.whenHeard(50), 10000, () => 'the user hears the agent');
    await timeline!.waitFor('pbx_hold');
    agent.mute(true); // a held desk phone sends nothing
    const rate = await packetRate(user, timeline!.waitFor('pbx_resume', 1, 15000));
    agent.mute(false);
    assert.ok(rate.pps >= 40, `Meta's leg got ${rate.pps.toFixed(1)} packets/s over ${rate.seconds.toFixed(1)} s of hold`);
    const heard = user.heard.framesWithTone;
    await within(user.heard.whenHeard(heard + 50), 10000, () => 'the user hears the agent again after the resume');
    await call.hangup();
    const row = await endedRow(s, call.wacid);
    await sippPassed(sipp);
    assert.equal(row.outcome, 'answered');
    const types = (await s.bridge.cdr.events(row.id)).map((e) => e.type);
    for (const t of ['pbx_hold', 'keepalive_started', 'pbx_resume']) assert.ok(types.includes(t), `${t} in ${types.join(', ')}`);
    assert.deepEqual(call.counters, { reinvitesRefused: 0, updatesRefused: 0, options: 0 }, 'Meta never got a re-INVITE or UPDATE');
    assert.equal(s.meta.sim.counters.reinvitesRefused + s.meta.sim.counters.updatesRefused, 0);
  });

  it('blind transfer by REFER on the PBX side: the user talks to B, Meta sees nothing of it', async () => {
    const a = await phone(AGENT_TONE, USER_TONE);
    const b = await phone(AGENT_B_TONE, USER_TONE);
    const sippB = await pbx('uas-transfer-target.xml', b.port, {}, b);
    const sippA = await pbx('uas-refer-blind.xml', a.port, { peer_port: sippB.port }, a);
    const s = await start({ dtls: sippA.uri });
    const user = await phone(USER_TONE, AGENT_B_TONE);
    const call = await userCalls(s, SIP_DTLS.number, user);
    await timeline!.waitFor('transferred');
    a.mute(true);
    await within(Promise.all([user.heard.whenHeard(50), b.heard.whenHeard(25)]), 15000, () => 'the user and B hear each other');
    const row = await endedRow(s, call.wacid); // B hangs up
    await sippPassed(sippA);
    await sippPassed(sippB);
    assert.equal(row.agent, 'agent200');
    assert.equal(row.hangup_by, 'pbx');
    assert.equal((await within(call.ended, 5000, () => 'Meta\'s leg ended')).by, 'business', 'the bridge sent Meta the BYE');
    assert.deepEqual(call.counters, { reinvitesRefused: 0, updatesRefused: 0, options: 0 });
  });

  it('attended transfer (Replaces) on the PBX side, and a REFER to a phone number refused with 403', async () => {
    const a = await phone(AGENT_TONE, USER_TONE);
    const b = await phone(AGENT_B_TONE, USER_TONE);
    const sippB = await pbx('uas-transfer-target-replaces.xml', b.port, {}, b);
    const sippA = await pbx('uas-refer-attended.xml', a.port, { peer_port: sippB.port }, a);
    const refusing = await phone(AGENT_TONE, USER_TONE);
    const sippR = await pbx('uas-refer-refused.xml', refusing.port, {}, refusing);
    const s = await start({ dtls: sippA.uri, sdes: sippR.uri });
    const user = await phone(USER_TONE, AGENT_B_TONE);
    const call = await userCalls(s, SIP_DTLS.number, user);
    await timeline!.waitFor('transferred');
    a.mute(true);
    await within(user.heard.whenHeard(50), 15000, () => 'the user hears B after the attended transfer');
    const row = await endedRow(s, call.wacid);
    await sippPassed(sippA);
    await sippPassed(sippB); // the INVITE to B carried Replaces
    assert.equal(row.agent, 'agent200');

    // A PSTN transfer is refused on the PBX leg (TRANSFER_REFUSE_PATTERN): the call goes on with the agent.
    const user2 = await phone(USER_TONE, AGENT_TONE);
    const call2 = await userCalls(s, SIP_SDES.number, user2);
    await timeline!.waitFor('transfer_refused');
    const heard = user2.heard.framesWithTone;
    await within(user2.heard.whenHeard(heard + 50), 10000, () => 'the user still hears the agent after the refused REFER');
    const row2 = await endedRow(s, call2.wacid);
    await sippPassed(sippR);
    assert.equal(row2.outcome, 'answered');
    assert.deepEqual([call.counters, call2.counters], [{ reinvitesRefused: 0, updatesRefused: 0, options: 0 }, { reinvitesRefused: 0, updatesRefused: 0, options: 0 }]);
  });

  it('the agent hangs up (BYE to Meta), and Meta cancels a call still ringing (CANCEL to the PBX)', async () => {
    const agent = await phone(AGENT_TONE, USER_TONE);
    const sipp = await pbx('uas-answer-hangup.xml', agent.port, { talkms: 1500 }, agent);
    const ringing = await pbx('uas-ring.xml', 9);
    const s = await start({ dtls: sipp.uri, sdes: ringing.uri });
    const user = await phone(USER_TONE, AGENT_TONE);
    const call = await userCalls(s, SIP_DTLS.number, user);
    const end = await within(call.ended, 15000, () => 'the agent\'s BYE to reach Meta');
    assert.equal(end.by, 'business');
    const row = await endedRow(s, call.wacid);
    assert.deepEqual([row.outcome, row.hangup_by], ['answered', 'pbx']);
    await sippPassed(sipp);

    const user2 = await phone(USER_TONE, AGENT_TONE);
    const call2 = s.meta.sim.userCalls({ from: CUSTOMER, to: SIP_SDES.number, phone: { address: '127.0.0.1', port: user2.port } });
    await timeline!.waitFor('pbx_progress', 2); // the PBX rings
    await call2.cancel();
    const row2 = await endedRow(s, call2.wacid);
    assert.deepEqual([row2.outcome, row2.hangup_by], ['caller_hangup', 'whatsapp']);
    await sippPassed(ringing); // the PBX got the CANCEL
  });

  it('INVITEs on Meta\'s listener that are not Meta\'s are refused before any media: wrong password, unknown number, no credentials, a source outside META_SIP_TRUSTED_SOURCES', async () => {
    const s = await start({});
    const before = await rows().CallRecord.count({ where: { provider_kind: 'meta-sip' } });
    const offer = 'v=0\r\no=- 1 1 IN IP4 127.0.0.5\r\ns=-\r\nc=IN IP4 127.0.0.5\r\nt=0 0\r\nm=audio 40000 RTP/SAVP 111\r\na=rtpmap:111 opus/48000/2\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj\r\n';
    const tryInvite = async (user: string, auth?: { username: string; password: string }): Promise<number> => {
      try {
        await s.meta.sim.srf.createUAC(`sip:${user}@${BRIDGE_HOSTNAME}:5061;transport=tls`, {
          localSdp: offer, proxy: `sip:127.0.0.1:${s.sip.tlsPort};transport=tls`, headers: { From: '<sip:+6281361905133@wa.meta.vc>' }, ...(auth ? { auth } : {}),
        });
        return 200;
      } catch (err) {
        return (err as { status?: number }).status ?? 0;
      }
    };
    assert.equal(await tryInvite(SIP_DTLS.number, { username: SIP_DTLS.number.slice(1), password: 'guessed' }), 403);
    assert.equal(await tryInvite('+19995550000', { username: '19995550000', password: SIP_DTLS.password }), 404);
    assert.equal(await tryInvite(SIP_DTLS.number), 401);
    assert.equal(await tryInvite(GRAPH.number, { username: GRAPH.number.slice(1), password: 'x' }), 404, 'a Graph number takes no SIP calls');
    assert.equal(s.bridge.calls.active, 0);
    const counted = parsePromText(await s.bridge.metrics.text());
    for (const [result, n] of [['refused_credentials', 1], ['refused_number', 2], ['challenged', 2]] as const) {
      assert.equal(sampleSum(counted, 'wasb_meta_sip_invites_total', { result }), n, `${result}: ${n}`);
    }
    assert.equal(await rows().CallRecord.count({ where: { provider_kind: 'meta-sip' } }), before, 'no call was started for any of them');
    await s.stop();

    const walled = await start({}, { META_SIP_TRUSTED_SOURCES: '192.0.2.0/24' });
    const user = await phone(USER_TONE, AGENT_TONE);
    const call = walled.meta.sim.userCalls({ from: CUSTOMER, to: SIP_DTLS.number, phone: { address: '127.0.0.1', port: user.port } });
    const end = await within(call.ended, 10000, () => 'the refusal');
    assert.equal(end.status, 403);
  });

  it('a Meta SIP number and a Graph number on one bridge: each call reaches its own PBX; Meta\'s webhooks for the SIP call only add to its CDR', async () => {
    const agent = await phone(AGENT_TONE, USER_TONE);
    const graphAgent = await phone(AGENT_TONE, USER_TONE);
    const sippSip = await pbx('uas-answer.xml', agent.port, {}, agent);
    const sippGraph = await pbx('uas-answer.xml', graphAgent.port, {}, graphAgent);
    const s = await start({ dtls: sippSip.uri, graph: sippGraph.uri });
    const user = await phone(USER_TONE, AGENT_TONE);
    const call = await userCalls(s, SIP_DTLS.number, user);
    const graphUser = new WaUser(USER_TONE, AGENT_TONE);
    try {
      const g = await s.graph.userCalls(graphUser, { phoneId: GRAPH.phoneId });
      assert.equal(g.status, 200);
      await within(Promise.all([user.heard.whenHeard(25), graphUser.heard.whenHeard(25)]), 15000, () => 'both users hear their agent');

      // Meta's call webhooks for the SIP call (sip.webhook_delivery): they must not start or end anything.
      const webhook = (event: Record<string, unknown>) => ({
        object: 'whatsapp_business_account',
        entry: [{ id: GRAPH.wabaId, changes: [{ field: 'calls', value: {
          messaging_product: 'whatsapp', metadata: { display_phone_number: SIP_DTLS.number.slice(1), phone_number_id: SIP_DTLS.phoneId },
          calls: [{ id: call.wacid, from: CUSTOMER.slice(1), to: SIP_DTLS.number.slice(1), direction: 'USER_INITIATED', timestamp: String(Math.floor(Date.now() / 1000)), ...event }],
        } }] }],
      });
      assert.equal(await s.graph.deliver(webhook({ event: 'terminate', status: 'COMPLETED', duration: 4 })), 200);
      await timeline!.waitFor('provider_terminate');
      const heard = user.heard.framesWithTone;
      await within(user.heard.whenHeard(heard + 25), 5000, () => 'the SIP call goes on after Meta\'s terminate webhook');

      await call.hangup();
      await s.graph.userHangsUp(g.wacid);
      const sipRow = await endedRow(s, call.wacid);
      const graphRow = await endedRow(s, g.wacid);
      assert.deepEqual([sipRow.provider_kind, sipRow.number_name], ['meta-sip', SIP_DTLS.name]);
      assert.deepEqual([graphRow.provider_kind, graphRow.number_name], ['meta', GRAPH.name]);
      assert.match(sipRow.pbx_target ?? '', new RegExp(`:${sippSip.port}`));
      assert.match(graphRow.pbx_target ?? '', new RegExp(`:${sippGraph.port}`));
      assert.equal(sipRow.hangup_by, 'whatsapp');
      assert.equal(s.graph.requests.some((r) => r.wacid === call.wacid), false, 'no Graph call action for the SIP call');
    } finally {
      graphUser.close();
    }
  });

  for (const cert of ['expired', 'other-name'] as const) {
    it(`the bridge's certificate ${cert === 'expired' ? 'has expired' : 'is for another name'}: the preflight names it, and Meta places no call`, async () => {
      const s = await start({}, {}, cert);
      const results = await checkSipEndpoint({ hostname: BRIDGE_HOSTNAME, port: 5061, connect: { host: '127.0.0.1', port: s.sip.tlsPort! } },
        { trust: trustStore([s.ca.caFile]), timeoutMs: 5000, now: new Date(), openssl: 'openssl' });
      const failures = results.filter((r) => r.status === 'fail');
      assert.ok(failures.length > 0, JSON.stringify(results));
      const said = failures.map((f) => `${f.check}: ${f.detail}`).join('\n');
      assert.match(said, cert === 'expired' ? /expired/i : new RegExp(`${BRIDGE_HOSTNAME.replace(/\./g, '\\.')}`), said);
      const user = await phone(USER_TONE, AGENT_TONE);
      const call = s.meta.sim.userCalls({ from: CUSTOMER, to: SIP_DTLS.number, phone: { address: '127.0.0.1', port: user.port } });
      const end = await within(call.ended, 10000, () => 'the sim giving up');
      assert.equal(end.status, null, `no INVITE was sent: ${end.reason}`);
      assert.equal(s.meta.sim.counters.tlsRefusals, 1);
    });
  }

  it('with the right certificate the preflight passes every check; its command reads the SIP numbers from NUMBERS_FILE and compares them with Meta\'s settings', async () => {
    const s = await start({});
    const results = await checkSipEndpoint({ hostname: BRIDGE_HOSTNAME, port: 5061, connect: { host: '127.0.0.1', port: s.sip.tlsPort! } },
      { trust: trustStore([s.ca.caFile]), timeoutMs: 5000, now: new Date(), openssl: 'openssl' });
    assert.deepEqual(results.filter((r) => r.status === 'fail'), [], JSON.stringify(results, null, 1));

    // Meta's side as the settings command would have set it: the SIP server and the number's password.
    s.graph.sipPasswords.set(SIP_DTLS.phoneId, SIP_DTLS.password);
    s.graph.settings.set(SIP_DTLS.phoneId, { calling: { status: 'ENABLED', sip: { status: 'ENABLED', servers: [{ hostname: BRIDGE_HOSTNAME, port: 5061 }] } } });
    const run = (phone: string) => execFileP(process.execPath, [path.join(__dirname, '..', 'src', 'cli', 'preflight.js'), '--phone', phone,
      '--connect', `127.0.0.1:${s.sip.tlsPort}`, '--ca', s.ca.caFile], { env: { ...process.env, ...s.env }, timeout: 30000 }).then(
      (r) => ({ code: 0, out: r.stdout + r.stderr }), (err: { code?: number; stdout?: string; stderr?: string }) => ({ code: err.code ?? -1, out: `${err.stdout ?? ''}${err.stderr ?? ''}` }));
    const good = await run(SIP_DTLS.number);
    assert.equal(good.code, 0, good.out);
    assert.match(good.out, /password/i);
    // The SDES number's password at Meta differs from the bridge's: named, exit 1.
    s.graph.sipPasswords.set(SIP_SDES.phoneId, 'rotated-at-meta');
    s.graph.settings.set(SIP_SDES.phoneId, { calling: { status: 'ENABLED', sip: { status: 'ENABLED', servers: [{ hostname: BRIDGE_HOSTNAME, port: 5061 }] } } });
    const bad = await run(SIP_SDES.number);
    assert.equal(bad.code, 1, bad.out);
    assert.match(bad.out, /FAIL.*password/i, bad.out);
  });

  for (const mode of ['dtls', 'sdes'] as const) {
    it(`the user's digits reach the PBX as RFC 4733 with their length (${mode})`, async () => {
      const number = mode === 'dtls' ? SIP_DTLS : SIP_SDES;
      const agent = new RtpPhone(AGENT_TONE, USER_TONE, { dtmfPayloadTypes: Array.from({ length: 32 }, (_, i) => 96 + i) });
      await agent.start();
      phones.push(agent);
      const sipp = await pbx('uas-answer-dtmf.xml', agent.port, {}, agent);
      const s = await start({ [mode]: sipp.uri });
      const user = await phone(USER_TONE, AGENT_TONE);
      const call = await userCalls(s, number.number, user);
      await within(user.heard.whenHeard(25), 10000, () => 'the user hears the agent');
      await user.sendDigits('19#', 200, 101);
      const got = await agent.waitDigits(3, 10000);
      assert.equal(got.map((d) => d.digit).join(''), '19#');
      for (const d of got) assert.ok(d.durationMs >= 150 && d.durationMs <= 300, `digit ${d.digit} reached the PBX as ${d.durationMs} ms (pressed 200 ms)`);
      await call.hangup();
      const row = await endedRow(s, call.wacid);
      const digits = (await s.bridge.cdr.events(row.id)).filter((e) => e.type === 'dtmf' && (e.detail as { from?: string } | null)?.from === 'whatsapp');
      assert.equal(digits.map((e) => (e.detail as { digit: string }).digit).join(''), '19#');
    });
  }

  it('a PBX that sends nothing until it hears media: the bridge gives Meta its first packet after one quiet poll, not the hold wait', async () => {
    const agent = await phone(AGENT_TONE, USER_TONE);
    agent.mute(true); // waits to hear before it speaks, and never does here
    const sipp = await pbx('uas-answer.xml', agent.port);
    const s = await start({ dtls: sipp.uri }, { MEDIA_KEEPALIVE_AFTER_MS: '8000', MEDIA_KEEPALIVE_POLL_MS: '500' });
    const user = await phone(USER_TONE, AGENT_TONE);
    const call = await userCalls(s, SIP_DTLS.number, user);
    const started = await timeline!.waitFor('keepalive_started', 1, 10000);
    assert.ok(Number((started.detail as { quietMs?: number }).quietMs) < 8000, `keepalive after ${JSON.stringify(started.detail)}`);
    await within(new Promise<void>((r) => (call.firstPacketFrom() ? r() : call.once('media', () => r()))), 10000, () => 'Meta getting the business\'s first packet');
    assert.equal(call.firstPacketFrom(), 'business');
    await call.hangup();
    const row = await endedRow(s, call.wacid);
    assert.equal(row.outcome, 'answered');
  });
});
