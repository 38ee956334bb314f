import assert from 'node:assert/strict';
import { CallRecord } from '../src/cdr/models';
import { startStack, TestStack } from './harness/bridge';
import { infra } from './harness/global-setup';
import { RtpPhone } from './harness/rtp-phone';
import { refusalScenario, runSippUac, SippRun } from './harness/sipp';
import { Timeline, within } from './harness/timeline';
import { SimOutboundCall } from './harness/ycloud-sim';
import { WaUser } from './harness/wa-user';

const USER_TONE = 440;
const AGENT_TONE = 1000;
const BUSINESS = '+6283138205150';
const CUSTOMER = '+6281361905133';

/**
 * Mid-call on an agent's call to a WhatsApp user: the PBX leg is the bridge's UAS dialog here, and the
 * same PbxSession answers it. The agent holds, stays silent, resumes, and sends a digit by SIP INFO.
 */
describe('outbound call: hold, resume and INFO from the agent', function () {
  this.timeout(60000);
  let stack: TestStack | null = null;
  let sipp: SippRun | null = null;
  let user: WaUser | null = null;
  let phone: RtpPhone | null = null;

  before(function () {
    if (!infra.drachtio) this.skip(); // the run already said why, loudly, once
  });

  afterEach(async () => {
    user?.close();
    phone?.stop();
    await sipp?.proc.stop();
    await stack?.stop();
    stack = sipp = user = phone = null;
  });

  it('hold answered recvonly, media kept flowing to the user, resume brings the agent back, INFO digit passed on', async () => {
    phone = new RtpPhone(AGENT_TONE, USER_TONE, { followSource: true });
    const rtpPort = await phone.start();
    user = new WaUser(USER_TONE, AGENT_TONE);
    const s = (stack = await startStack({ SIP_TRUSTED_SOURCES: '127.0.0.0/8', WA_BUSINESS_NUMBER: BUSINESS, WA_PHONE_ID: '461269257068831' }));
    const timeline = new Timeline(s.bridge.cdr);
    await s.bridge.permissions.recordReply({
      businessNumber: BUSINESS, customerNumber: CUSTOMER, response: 'accept', isPermanent: true, expiresAt: null,
      responseSource: 'user_action', repliedAt: new Date(), wamid: null, eventId: null,
    });
    s.sim.outboundScript = async (call: SimOutboundCall) => {
      await s.sim.deliver(s.sim.outboundConnect(call, await user!.answer(call.offer)));
      await s.sim.deliver(s.sim.outboundStatus(call, 'RINGING'));
      await s.sim.deliverAccepted(call);
    };
    sipp = await runSippUac('uac-call-hold.xml', {
      target: `127.0.0.1:${infra.drachtio!.sipPort}`, number: CUSTOMER, rtpPort, keys: { holdms: '6000', talkms: '2000' },
    });
    await within(user.heard.whenHeard(25), 10000, () => `the agent heard by the user (timeline: ${timeline.types().join(', ')})`);

    await timeline.waitFor('pbx_hold');
    phone.mute(true); // a held desk phone sends nothing
    await timeline.waitFor('keepalive_started', 1, 6000);
    const p0 = await user.packetsReceived();
    const t0 = Date.now();
    await timeline.waitFor('pbx_resume', 1, 10000);
    const pps = ((await user.packetsReceived()) - p0) / ((Date.now() - t0) / 1000);
    assert.ok(pps >= 40, `${pps.toFixed(0)} packets/s reached the WhatsApp user during the hold`);
    phone.mute(false);
    const before = user.heard.framesWithTone;
    await within(user.heard.whenHeard(before + 25), 8000, () => `the agent heard again after the resume (timeline: ${timeline.types().join(', ')})`);

    const info = await timeline.waitFor('pbx_info');
    assert.equal(info.detail?.digit, '5');
    assert.equal(await within(sipp.done, 15000, () => `SIPp done: ${sipp!.proc.output.slice(-1500)}`), 0, `SIPp: hold answered recvonly, resume sendrecv, INFO 200, BYE 200\n${sipp.proc.output.slice(-1500)}`);
    const invite = s.marks.marks.find((m) => m.name === 'invite_received')!;
    const row = await CallRecord.findByPk(await s.bridge.calls.whenEnded(invite.wacid));
    assert.ok(row);
    assert.equal(row.outcome, 'answered');
    assert.equal(row.hangup_by, 'pbx');
    const types = (await s.bridge.cdr.events(row.id)).map((e) => e.type);
    const order = ['accepted', 'pbx_hold', 'keepalive_started', 'pbx_resume', 'pbx_info', 'ended'].map((t) => types.indexOf(t));
    assert.ok(order.every((i, k) => i >= 0 && (k === 0 || i > order[k - 1]!)), types.join(', '));
  });

  it('an agent INVITE asking for a session interval below Min-SE gets 422 with Min-SE, and places no call', async () => {
    const s = (stack = await startStack({ SIP_TRUSTED_SOURCES: '127.0.0.0/8', WA_BUSINESS_NUMBER: BUSINESS }));
    await s.bridge.permissions.recordReply({
      businessNumber: BUSINESS, customerNumber: CUSTOMER, response: 'accept', isPermanent: true, expiresAt: null,
      responseSource: 'user_action', repliedAt: new Date(), wamid: null, eventId: null,
    });
    const scenario = await refusalScenario(422, undefined, (invite) => invite.replace('Max-Forwards: 70', 'Max-Forwards: 70\nSession-Expires: 30\nSupported: timer'));
    sipp = await runSippUac(scenario, { target: `127.0.0.1:${infra.drachtio!.sipPort}`, number: CUSTOMER });
    assert.equal(await sipp.done, 0, `SIPp got 422:\n${sipp.proc.output.slice(-1500)}`);
    assert.equal(s.sim.requests.filter((r) => r.path === '/calls/connect').length, 0);
    const invite = s.marks.marks.find((m) => m.name === 'invite_received')!;
    const row = await CallRecord.findByPk(await s.bridge.calls.whenEnded(invite.wacid));
    assert.equal(row?.sip_final_code, 422);
  });
});
