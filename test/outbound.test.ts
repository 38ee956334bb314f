import assert from 'node:assert/strict';
import { CallRecord } from '../src/cdr/models';
import { rows } from './harness/db-rows';
import { MediaStats } from '../src/media/stats';
import { forEachProvider, ProviderName, startStack, TestStack } from './harness/bridge';
import { infra } from './harness/infra';
import { RtpPhone, RtpPhoneOptions } from './harness/rtp-phone';
import { refusalScenario, runSippUac, SippRun } from './harness/sipp';
import { Timeline, within } from './harness/timeline';
import { grantPermanentPermission } from './harness/permissions';
import { assertTalkTime } from './harness/talk-time';
import { WaUser } from './harness/wa-user';
import { callParts } from './harness/call-parts';
import { whenEnded } from './harness/watch';
import { SimRequest } from './harness/ycloud-sim';

const AGENT_TONE = 1000;
const USER_TONE = 440;
const CUSTOMER = '+6281361905133';
const BUSINESS = '+6283138205150';

/**
 * Agent -> WhatsApp calls end to end: SIPp as the agent's phone (with a real RTP endpoint), the bridge,
 * rtpengine, drachtio-server, the YCloud simulator, and a libwebrtc WhatsApp user that answers.
 */
describe('outbound call from an agent to a WhatsApp user', function () {
  this.timeout(45000);
  forEachProvider((provider) => outboundCalls(provider));
});

function outboundCalls(provider: ProviderName): void {
  const parts = callParts();

  async function setUp(env: Record<string, string> = {}, phoneOpts: RtpPhoneOptions = {}): Promise<TestStack> {
    parts.phone = new RtpPhone(AGENT_TONE, USER_TONE, phoneOpts);
    await parts.phone.start();
    parts.user = new WaUser(USER_TONE, AGENT_TONE);
    parts.stack = await startStack({ SIP_TRUSTED_SOURCES: '127.0.0.0/8', WA_BUSINESS_NUMBER: BUSINESS, WA_PHONE_ID: '461269257068831', ...env }, { provider });
    return parts.stack;
  }

  async function grantPermission(s: TestStack, customer = CUSTOMER): Promise<void> {
    await grantPermanentPermission(s.bridge.permissions, BUSINESS, customer);
  }

  async function dial(scenario: string, number = CUSTOMER, auth?: { username: string; password: string }, keys?: Record<string, string>): Promise<SippRun> {
    parts.sipp = await runSippUac(scenario, { target: `127.0.0.1:${infra.drachtio!.sipPort}`, number, rtpPort: await phonePort(), auth, keys });
    return parts.sipp;
  }

  async function phonePort(): Promise<number> {
    return (parts.phone as unknown as { socket: { address(): { port: number } } }).socket.address().port;
  }

  async function outboundCdr(s: TestStack): Promise<CallRecord> {
    const done = await parts.sipp!.done;
    assert.equal(done, 0, `SIPp scenario completed:\n${parts.sipp!.proc.output.slice(-2000)}`);
    // This stack saw exactly one INVITE: its mark carries the call's id.
    const invite = s.marks.marks.find((m) => m.name === 'invite_received');
    assert.ok(invite, 'the bridge took the INVITE');
    const id = await whenEnded(s.bridge, invite.wacid);
    const row = await rows().CallRecord.findByPk(id);
    assert.ok(row, 'an outbound CDR exists');
    return row;
  }


  it('answered: 180 on RINGING, 200 on ACCEPTED, audio both ways only after ACCEPTED; agent hangs up', async () => {
    const s = await setUp();
    await grantPermission(s);
    s.sim.outboundScript = s.sim.answeredBy(parts.user!, 400);
    await dial('uac-call-hangup.xml');
    await parts.user!.heard.whenHeard(25);
    await parts.phone!.heard.whenHeard(25);
    const row = await outboundCdr(s);

    const connect = s.sim.requests.find((r) => r.op === 'connect')!;
    assert.equal(connect.from ?? BUSINESS, BUSINESS, 'the business number (Meta names it by phone id in the path)');
    assert.equal(connect.to, CUSTOMER);
    assert.match(String(connect.sdp), /UDP\/TLS\/RTP\/SAVPF/);
    assert.match(String(connect.sdp), /opus\/48000\/2/);
    assert.match(String(connect.sdp), /a=fingerprint:sha-256/);
    assert.doesNotMatch(String(connect.sdp), /PCMU/);
    const wacid = row.wacid!;
    const acceptedAt = s.sim.acceptedDeliveredAt.get(wacid)!;
    assert.ok(parts.phone!.heard.firstLoudAt! > acceptedAt, 'no audio reached the agent before ACCEPTED');
    assert.ok(parts.user!.heard.firstLoudAt! > acceptedAt, 'no audio reached the WhatsApp user before ACCEPTED');
    assert.ok(await s.sim.waitForRequest('/calls/terminate', wacid));

    assert.equal(row.direction, 'outbound');
    assert.equal(row.outcome, 'answered');
    assert.equal(row.hangup_by, 'pbx');
    assert.equal(row.agent, 'agent201');
    assert.equal(row.customer_number, CUSTOMER);
    assert.equal(row.business_number, BUSINESS);
    assert.equal(row.sip_final_code, 200);
    assert.ok(row.pbx_ringing_at && row.accepted_at && row.ended_at);
    assert.ok(Number(row.talk_seconds) > 1);
    // The WhatsApp user picks up 400 ms after RINGING (answeredBy): that is not talk.
    assertTalkTime(row, 0.4);
    assert.equal(row.wa_codec, 'opus/48000/2');
    const stats = row.media_stats as MediaStats;
    assert.ok(stats.legs.whatsapp!.packets > 25 && stats.legs.pbx!.packets > 25, JSON.stringify(stats));
  });

  it('answered, then the customer hangs up: BYE to the agent, CDR says whatsapp', async () => {
    const s = await setUp();
    await grantPermission(s);
    s.sim.outboundScript = async (call) => {
      await s.sim.answeredBy(parts.user!)(call);
      await parts.phone!.heard.whenHeard(25);
      await s.sim.deliver(s.sim.outboundTerminate(call, 'COMPLETED'));
    };
    await dial('uac-call.xml');
    const row = await outboundCdr(s);
    assert.equal(row.outcome, 'answered');
    assert.equal(row.hangup_by, 'whatsapp');
    assert.equal(row.provider_status, 'COMPLETED');
    assert.equal(s.sim.requestsFor(row.wacid!).some((r) => r.op === 'terminate'), false);
  });

  it('declined by the user: 603 with a Reason, CDR says rejected', async () => {
    const s = await setUp();
    await grantPermission(s);
    s.sim.outboundScript = async (call) => {
      await s.sim.rings(call, parts.user!);
      await s.sim.deliver(s.sim.outboundStatus(call, 'REJECTED'));
      await s.sim.deliver(s.sim.outboundTerminate(call, 'FAILED'));
    };
    await dial(await refusalScenario(603, 'cause=21'));
    const row = await outboundCdr(s);
    assert.equal(row.outcome, 'rejected');
    assert.equal(row.sip_final_code, 603);
    assert.equal(row.hangup_by, 'whatsapp');
  });

  it('not answered: 480, CDR says no_answer', async () => {
    const s = await setUp();
    await grantPermission(s);
    s.sim.outboundScript = async (call) => {
      await s.sim.rings(call, parts.user!);
      await s.sim.deliver(s.sim.outboundTerminate(call, 'FAILED'));
    };
    await dial(await refusalScenario(480, 'cause=19'));
    const row = await outboundCdr(s);
    assert.equal(row.outcome, 'no_answer');
    assert.equal(row.sip_final_code, 480);
  });

  it('the agent gives up while it rings: CANCEL -> calls/terminate, CDR says caller_hangup', async () => {
    const s = await setUp();
    await grantPermission(s);
    s.sim.outboundScript = async (call) => {
      await s.sim.rings(call, parts.user!);
    };
    await dial('uac-cancel.xml');
    const row = await outboundCdr(s);
    assert.ok(await s.sim.waitForRequest('/calls/terminate', row.wacid!));
    assert.equal(row.outcome, 'caller_hangup');
    assert.equal(row.hangup_by, 'pbx');
    assert.equal(row.sip_final_code, 487);
  });

  it('no permission on record: 403 with a Reason, no WhatsApp call, a permission request sent', async () => {
    const s = await setUp({ PERMISSION_AUTO_REQUEST: 'interactive', PERMISSION_REQUEST_TEXT: 'May we call you?' });
    const stranger = '+6281300000001'; // no reply from this customer is on record (the database is shared by the run)
    // The refusal comes before anything is asked of YCloud: a call placed instead fails the test at
    // once (the simulator's user never answers it, so waiting for the 403 would end only in a timeout).
    const placed = new Promise<never>((_, reject) => s.sim.on('request', (r: SimRequest) => {
      if (r.op === 'connect') reject(new Error(`a WhatsApp call was placed to ${String(r.to)} without permission (no 403)`));
    }));
    await dial(await refusalScenario(403, 'permission'), stranger);
    // SIPp checks the 403 and its Reason (ereg check_it 'permission'): exit 0 only if both came.
    const code = await within(Promise.race([parts.sipp!.done, placed]), 10000, () => `the 403 (SIPp so far:\n${parts.sipp!.proc.output.slice(-1500)})`);
    assert.equal(code, 0, `SIPp got the 403 with a Reason naming the permission:\n${parts.sipp!.proc.output.slice(-1500)}`);
    const row = await outboundCdr(s);
    assert.equal(s.sim.requests.some((r) => r.op === 'connect'), false);
    const sent = s.sim.requests.find((r) => r.op === 'message');
    assert.ok(sent, 'a permission request was sent');
    assert.equal(sent.to, stranger);
    assert.deepEqual((sent.body.interactive as Record<string, unknown>).type, 'call_permission_request');
    assert.equal(row.outcome, 'rejected');
    assert.equal(row.sip_final_code, 403);
    const requests = await s.bridge.permissions.requests(BUSINESS, stranger);
    assert.equal(requests[0]?.trigger, 'auto');
  });

  it('the provider says 138006 (no permission) although one is on record: 403', async () => {
    const s = await setUp();
    await grantPermission(s);
    s.sim.noPermission.add(CUSTOMER);
    await dial(await refusalScenario(403));
    const row = await outboundCdr(s);
    assert.equal(row.outcome, 'rejected');
    assert.match(row.error ?? '', /138006|permission/i);
  });

  it('an unusable SDP offer from the PBX: 488, no WhatsApp call, CDR says failed', async () => {
    const s = await setUp();
    await grantPermission(s);
    await dial(await refusalScenario(488, undefined, (invite) => invite.replace('m=audio [rtpport] RTP/AVP 0 8 101', 'm=audio 0 RTP/AVP 0')));
    const row = await outboundCdr(s);
    assert.equal(s.sim.requests.some((r) => r.op === 'connect'), false);
    assert.equal(row.outcome, 'failed');
    assert.equal(row.sip_final_code, 488);
    assert.match(row.error ?? '', /SDP/);
  });

  it('an offer with no codec the bridge can use (L16 only, as FreeSWITCH loopback channels offer): 488 with a Warning, no WhatsApp call, CDR failed', async () => {
    const s = await setUp();
    await grantPermission(s);
    const l16 = (invite: string) => invite.replace('m=audio [rtpport] RTP/AVP 0 8 101', 'm=audio [rtpport] RTP/AVP 118 119 101\na=rtpmap:118 L16/8000\na=rtpmap:119 L16/16000');
    // SIPp checks the Warning: 305 (incompatible media format) naming what was offered.
    await dial(await refusalScenario(488, '305 wa-sip-bridge .no codec the bridge can use .offered: L16/8000, L16/16000', l16, 'Warning:'));
    const row = await outboundCdr(s);
    assert.equal(s.sim.requests.some((r) => r.op === 'connect'), false, 'WhatsApp was never called');
    assert.equal(row.outcome, 'failed');
    assert.equal(row.sip_final_code, 488);
    assert.match(row.error ?? '', /no codec the bridge can use/);
    const events = await s.bridge.cdr.events(row.id);
    assert.deepEqual(events.find((e) => e.type === 'codec_refused')?.detail, { sdp: 'agent_offer', offered: ['L16/8000', 'L16/16000'] });
    assert.match(await s.bridge.metrics.text(), /^wasb_codec_refusals_total\{sdp="agent_offer"\} 1$/m);
  });

  it('an INVITE from an untrusted address is refused with 403 and places no call', async () => {
    const s = await setUp({ SIP_TRUSTED_SOURCES: '192.0.2.77/32' });
    await grantPermission(s);
    await dial(await refusalScenario(403));
    assert.equal(await parts.sipp!.done, 0);
    assert.equal(s.sim.requests.some((r) => r.op === 'connect'), false);
  });

  it('digest authentication, when configured: challenged with 401, then the call goes through', async () => {
    const s = await setUp({ SIP_AUTH_USERNAME: 'pbx', SIP_AUTH_PASSWORD: 's3cret' });
    await grantPermission(s);
    s.sim.outboundScript = s.sim.answeredBy(parts.user!);
    await dial('uac-auth-call.xml', CUSTOMER, { username: 'pbx', password: 's3cret' });
    const row = await outboundCdr(s);
    assert.equal(row.outcome, 'answered');
  });

  it('a Request-URI that is no number gets 404, an incomplete one 484', async () => {
    await setUp();
    await dial(await refusalScenario(404), 'support');
    assert.equal(await parts.sipp!.done, 0, parts.sipp!.proc.output.slice(-1500));
    await parts.sipp!.proc.stop();
    await dial(await refusalScenario(484), '12345');
    assert.equal(await parts.sipp!.done, 0, parts.sipp!.proc.output.slice(-1500));
  });

  it('webhooks reordered, duplicated, and ahead of calls/connect\'s response: the call still connects', async () => {
    const s = await setUp();
    await grantPermission(s);
    s.sim.connectReturnsWacid = false;
    // Everything arrives before calls/connect has answered, in the wrong order, some twice.
    s.sim.beforeConnectResponse = async (call) => {
      const accepted = s.sim.outboundStatus(call, 'ACCEPTED');
      const ringing = s.sim.outboundStatus(call, 'RINGING');
      s.sim.acceptedDeliveredAt.set(call.wacid, 0);
      await s.sim.deliver(accepted);
      await s.sim.deliver(ringing);
      await s.sim.deliver(accepted); // redelivery, same event id
      await s.sim.deliver(s.sim.outboundStatus(call, 'RINGING')); // same status, new event id
    };
    s.sim.outboundScript = async (call) => {
      const connect = s.sim.outboundConnect(call, await parts.user!.answer(call.offer));
      await s.sim.deliver(connect);
      await s.sim.deliver(connect);
      await parts.phone!.heard.whenHeard(25);
      await s.sim.deliver(s.sim.outboundTerminate(call, 'COMPLETED'));
    };
    await dial('uac-call.xml');
    const row = await outboundCdr(s);
    assert.equal(row.outcome, 'answered');
    assert.equal(row.hangup_by, 'whatsapp');
    assert.ok(row.wacid);
  });
  it('mid-call: the agent holds (answered recvonly, media kept flowing), resumes (heard again) and sends a digit by INFO', async () => {
    // A phone with symmetric RTP: the resume may be answered with a fresh port (see docs/pbx-sip-contract.md, "Keepalive and WebRTC streams").
    const s = await setUp({}, { followSource: true });
    const timeline = new Timeline(s.bridge.cdr);
    await grantPermission(s);
    s.sim.outboundScript = s.sim.answeredBy(parts.user!);
    await dial('uac-call-hold.xml', CUSTOMER, undefined, { holdms: '6000', talkms: '2000' });
    await within(parts.user!.heard.whenHeard(25), 10000, () => `the agent heard by the user (timeline: ${timeline.types().join(', ')})`);

    await timeline.waitFor('pbx_hold');
    parts.phone!.mute(true); // a held desk phone sends nothing
    await timeline.waitFor('keepalive_started', 1, 6000);
    const p0 = await parts.user!.packetsReceived();
    const t0 = Date.now();
    await timeline.waitFor('pbx_resume', 1, 10000);
    const pps = ((await parts.user!.packetsReceived()) - p0) / ((Date.now() - t0) / 1000);
    assert.ok(pps >= 40, `${pps.toFixed(0)} packets/s reached the WhatsApp user during the hold`);
    parts.phone!.mute(false);
    const before = parts.user!.heard.framesWithTone;
    await within(parts.user!.heard.whenHeard(before + 25), 8000, () => `the agent heard again after the resume (timeline: ${timeline.types().join(', ')})`);

    const info = await timeline.waitFor('pbx_info');
    assert.equal(info.detail?.digit, '5');
    const row = await outboundCdr(s); // SIPp checked: hold answered recvonly, resume sendrecv, INFO 200, BYE 200
    assert.equal(row.outcome, 'answered');
    assert.equal(row.hangup_by, 'pbx');
    const types = (await s.bridge.cdr.events(row.id)).map((e) => e.type);
    const order = ['accepted', 'pbx_hold', 'keepalive_started', 'pbx_resume', 'pbx_info', 'ended'].map((t) => types.indexOf(t));
    assert.ok(order.every((i, k) => i >= 0 && (k === 0 || i > order[k - 1]!)), types.join(', '));
  });

  it('an INVITE asking for a session interval below Min-SE gets 422 with Min-SE, and places no call', async () => {
    const s = await setUp();
    await grantPermission(s);
    await dial(await refusalScenario(422, undefined, (invite) => invite.replace('Max-Forwards: 70', 'Max-Forwards: 70\nSession-Expires: 30\nSupported: timer')));
    const row = await outboundCdr(s);
    assert.equal(row.sip_final_code, 422);
    assert.equal(s.sim.requests.filter((r) => r.op === 'connect').length, 0);
  });
}
