import assert from 'node:assert/strict';
import { CallRecord } from '../src/cdr/models';
import { rows } from './harness/db-rows';
import { MediaStats } from '../src/media/stats';
import { forEachProvider, ProviderName, startStack, TestStack } from './harness/bridge';
import { freePort } from './harness/processes';
import { RtpPhone } from './harness/rtp-phone';
import { startSippUas } from './harness/sipp';
import { WaUser } from './harness/wa-user';
import { callParts } from './harness/call-parts';
import { parsePromText, sampleSum } from './harness/prom-text';
import { whenEnded } from './harness/watch';
import { assertTalkTime } from './harness/talk-time';

const USER_TONE = 440; // what the WhatsApp user says
const AGENT_TONE = 1000; // what the agent says

/**
 * Inbound calls end to end: a libwebrtc WhatsApp user, the YCloud simulator, the bridge, rtpengine,
 * drachtio-server, and SIPp as the PBX/agent phone with a real RTP endpoint for the agent's audio.
 */
describe('inbound WhatsApp call to the PBX', function () {
  this.timeout(45000);
  forEachProvider((provider) => inboundCalls(provider));
});

function inboundCalls(provider: ProviderName): void {
  const parts = callParts();
  const providerLabel = provider === 'meta' ? 'Meta' : 'YCloud';

  async function setUp(scenario: string | null, env: Record<string, string> = {}): Promise<TestStack> {
    parts.phone = new RtpPhone(AGENT_TONE, USER_TONE);
    const rtpPort = await parts.phone.start();
    if (scenario) parts.sipp = await startSippUas(scenario, { rtpPort });
    parts.stack = await startStack({ PBX_TARGET: parts.sipp?.uri ?? 'sip:127.0.0.1:9', ...env }, { provider });
    parts.user = new WaUser(USER_TONE, AGENT_TONE);
    return parts.stack;
  }

  async function cdr(s: TestStack, wacid: string): Promise<CallRecord> {
    const id = await whenEnded(s.bridge, wacid);
    const row = await rows().CallRecord.findByPk(id);
    assert.ok(row, 'CDR row exists');
    return row;
  }

  async function timeline(s: TestStack, id: string): Promise<string[]> {
    return (await s.bridge.cdr.events(id)).map((e) => e.type);
  }

  it('answered by the agent: pre-accept before the PBX answers, accept after, audio both ways only after accept; user hangs up', async () => {
    const s = await setUp('uas-answer.xml');
    // Hold accept's 200 back a little: audio leaking before it would be heard in this window.
    s.sim.delay('/calls/accept', 400);
    const { wacid, status } = await s.sim.userCalls(parts.user!);
    assert.equal(status, 200);

    const preAccept = await s.sim.waitForRequest('/calls/preAccept', wacid);
    // WhatsApp offers a=setup:actpass; the answer must take the DTLS client role (RFC 5763 s5), or
    // WhatsApp waits for a handshake nobody starts and the call has no audio (caught here, not by a timeout).
    const waAnswer = preAccept.sdp ?? '';
    assert.deepEqual(waAnswer.match(/^a=setup:.*$/gm)?.map((l) => l.trim()), ['a=setup:active'], `the pre-accept answer's DTLS role:\n${waAnswer}`);
    const answered = await s.marks.waitFor(wacid, 'pbx_answered');
    const accept = await s.sim.waitForRequest('/calls/accept', wacid);
    assert.ok(preAccept.at < answered.t, 'pre-accept was sent before the PBX answered');
    assert.ok(accept.at > answered.t, 'accept was sent after the PBX answered');

    await parts.user!.heard.whenHeard(50); // 0.5 s of the agent's tone at the WhatsApp user
    await parts.phone!.heard.whenHeard(25); // 0.5 s of the user's tone at the agent's phone
    const acceptedAt = s.sim.acceptRespondedAt(wacid);
    assert.ok(acceptedAt !== null);
    assert.ok(parts.user!.heard.firstLoudAt! > acceptedAt, `no audio reached the user before accept returned (first sound ${(parts.user!.heard.firstLoudAt! - acceptedAt).toFixed(1)} ms after)`);

    await s.sim.userHangsUp(wacid);
    const row = await cdr(s, wacid);
    assert.equal(await parts.sipp!.done, 0, `SIPp saw the call through to BYE:\n${parts.sipp!.proc.output.slice(-1500)}`);

    assert.equal(row.direction, 'inbound');
    assert.equal(row.outcome, 'answered');
    assert.equal(row.hangup_by, 'whatsapp');
    assert.equal(row.agent, 'agent101');
    assert.equal(row.customer_number, '+6281361905133');
    assert.equal(row.business_number, '+6283138205150');
    assert.equal(row.sip_final_code, 200);
    assert.ok(row.sip_call_id);
    assert.equal(row.wa_codec, 'opus/48000/2');
    assert.equal(row.pbx_codec, 'PCMU/8000');
    assert.ok(row.pre_accepted_at! <= row.pbx_answered_at!);
    assert.ok(row.pbx_ringing_at! <= row.pbx_answered_at!);
    assert.ok(row.pbx_answered_at! <= row.accepted_at!);
    assert.ok(row.accepted_at! <= row.ended_at!);
    assert.ok(Number(row.talk_seconds) > 0.5, `talk time ${row.talk_seconds}`);
    // The PBX rings 300 ms (uas-answer.xml) and accept's 200 is held 400 ms: neither is talk.
    assertTalkTime(row, 0.7);
    const stats = row.media_stats as MediaStats;
    assert.ok(stats.legs.whatsapp!.packets > 25, `WhatsApp leg packets ${stats.legs.whatsapp!.packets}`);
    assert.ok(stats.legs.pbx!.packets > 25, `PBX leg packets ${stats.legs.pbx!.packets}`);
    assert.equal(stats.legs.whatsapp!.codec, 'opus/48000/2');
    assert.deepEqual(await timeline(s, row.id), [
      'offered', 'pre_accepted', 'invite_sent', 'pbx_progress', 'pbx_answered', 'accepted', 'whatsapp_terminated', 'ended',
    ]);
    assert.equal(s.sim.requestsFor(wacid).some((r) => r.op === 'terminate' || r.op === 'reject'), false);
  });

  it('answered, then the agent hangs up: WhatsApp leg terminated, CDR says pbx; the media watch stops with the call', async () => {
    const s = await setUp('uas-answer-hangup.xml', { MEDIA_KEEPALIVE_POLL_MS: '100' });
    const { wacid } = await s.sim.userCalls(parts.user!);
    await parts.user!.heard.whenHeard(25);
    await parts.phone!.heard.whenHeard(25);
    const row = await cdr(s, wacid);
    assert.ok(await s.sim.waitForRequest('/calls/terminate', wacid));
    assert.equal(await parts.sipp!.done, 0);
    assert.equal(row.outcome, 'answered');
    assert.equal(row.hangup_by, 'pbx');
    assert.equal(row.agent, 'agent102');
    assert.ok(Number(row.talk_seconds) > 1);
    // It used to poll rtpengine every MEDIA_KEEPALIVE_POLL_MS for ever after the PBX's BYE.
    const queries = async () => sampleSum(parsePromText(await s.bridge.metrics.registry.metrics()), 'wasb_rtpengine_commands_total', { command: 'query' });
    const before = await queries();
    await new Promise((r) => setTimeout(r, 500)); // five polls' worth: none may come
    assert.equal(await queries(), before, 'no rtpengine query after the call ended');
  });

  it('the PBX answers with no codec the bridge can use (L16): its leg gets BYE with a 488 Reason, the WhatsApp call is rejected, CDR failed', async () => {
    const s = await setUp('uas-answer-l16.xml');
    const { wacid } = await s.sim.userCalls(parts.user!);
    const row = await cdr(s, wacid);
    assert.equal(await parts.sipp!.done, 0, `SIPp got the BYE with its Reason:\n${parts.sipp!.proc.output.slice(-1500)}`);
    assert.ok(await s.sim.waitForRequest('/calls/reject', wacid), 'the WhatsApp call was rejected');
    assert.equal(s.sim.requestsFor(wacid).some((r) => r.op === 'accept'), false, 'never accepted');
    assert.equal(row.outcome, 'failed');
    assert.equal(row.hangup_by, 'bridge');
    assert.match(row.error ?? '', /no codec the bridge can use \(offered: L16\/8000/);
    assert.ok((await timeline(s, row.id)).includes('codec_refused'));
    assert.equal(sampleSum(parsePromText(await s.bridge.metrics.registry.metrics()), 'wasb_codec_refusals_total', { sdp: 'pbx_answer' }), 1);
  });

  it('busy: the WhatsApp call is rejected, CDR says busy with 486', async () => {
    const s = await setUp('uas-busy.xml');
    const { wacid } = await s.sim.userCalls(parts.user!);
    const row = await cdr(s, wacid);
    assert.ok(await s.sim.waitForRequest('/calls/reject', wacid));
    assert.equal(s.sim.requestsFor(wacid).some((r) => r.op === 'accept'), false);
    assert.equal(await parts.sipp!.done, 0);
    assert.equal(row.outcome, 'busy');
    assert.equal(row.sip_final_code, 486);
    assert.equal(row.hangup_by, 'pbx');
    assert.equal(row.accepted_at, null);
    assert.equal(row.talk_seconds, null);
  });

  it('no answer within the timeout: INVITE cancelled, WhatsApp call rejected, CDR says no_answer', async () => {
    const s = await setUp('uas-ring.xml', { PBX_NO_ANSWER_TIMEOUT_S: '1' });
    const { wacid } = await s.sim.userCalls(parts.user!);
    const row = await cdr(s, wacid);
    assert.ok(await s.sim.waitForRequest('/calls/reject', wacid));
    assert.equal(await parts.sipp!.done, 0, `SIPp saw CANCEL and sent 487:\n${parts.sipp!.proc.output.slice(-1500)}`);
    assert.equal(row.outcome, 'no_answer');
    assert.equal(row.hangup_by, 'bridge');
    assert.ok(row.pbx_ringing_at);
    assert.ok((await timeline(s, row.id)).includes('no_answer_timeout'));
  });

  it('caller hangs up while the agent phone rings: INVITE cancelled, nothing sent back to WhatsApp', async () => {
    const s = await setUp('uas-ring.xml');
    const { wacid } = await s.sim.userCalls(parts.user!);
    await s.marks.waitFor(wacid, 'pbx_ringing');
    await s.sim.userHangsUp(wacid);
    const row = await cdr(s, wacid);
    assert.equal(await parts.sipp!.done, 0, `SIPp saw CANCEL:\n${parts.sipp!.proc.output.slice(-1500)}`);
    assert.equal(row.outcome, 'caller_hangup');
    assert.equal(row.hangup_by, 'whatsapp');
    assert.equal(row.provider_status, 'FAILED');
    const after = s.sim.requestsFor(wacid).map((r) => r.op);
    assert.deepEqual(after, ['pre_accept']);
  });

  it('PBX unreachable: WhatsApp call rejected, CDR says unreachable', async () => {
    const dead = await freePort('udp');
    const s = await setUp(null, { PBX_TARGET: `sip:127.0.0.1:${dead}`, PBX_RESPONSE_TIMEOUT_MS: '1500' });
    const { wacid } = await s.sim.userCalls(parts.user!);
    const row = await cdr(s, wacid);
    assert.ok(await s.sim.waitForRequest('/calls/reject', wacid));
    assert.equal(row.outcome, 'unreachable');
    assert.equal(row.accepted_at, null);
  });

  it('fails over to the next PBX target when the first is unreachable', async () => {
    const dead = await freePort('udp');
    parts.phone = new RtpPhone(AGENT_TONE, USER_TONE);
    parts.sipp = await startSippUas('uas-answer-hangup.xml', { rtpPort: await parts.phone.start() });
    parts.stack = await startStack({ PBX_TARGET: `sip:127.0.0.1:${dead},${parts.sipp.uri}`, PBX_RESPONSE_TIMEOUT_MS: '1000' }, { provider });
    parts.user = new WaUser(USER_TONE, AGENT_TONE);
    const { wacid } = await parts.stack.sim.userCalls(parts.user);
    const row = await cdr(parts.stack, wacid);
    assert.equal(row.outcome, 'answered');
    assert.equal(row.pbx_target, parts.sipp.uri.replace('sip:', 'sip:6283138205150@'));
    assert.equal((await timeline(parts.stack, row.id)).filter((t) => t === 'invite_sent').length, 2);
  });

  it('the provider refuses accept: the agent leg gets BYE, CDR says failed with the provider\'s error', async () => {
    const s = await setUp('uas-answer.xml');
    s.sim.failNext('/calls/accept', { status: 400, code: 'FAILED_PRECONDITION', message: 'call no longer exists', whatsappCode: 138004 });
    const { wacid } = await s.sim.userCalls(parts.user!);
    const row = await cdr(s, wacid);
    assert.equal(await parts.sipp!.done, 0, 'the agent leg was hung up with BYE');
    assert.equal(row.outcome, 'failed');
    assert.equal(row.hangup_by, 'bridge');
    assert.match(row.error ?? '', new RegExp(`${providerLabel}: .*call no longer exists`));
  });

  it('a PBX that challenges the INVITE (401) gets the configured credentials, and the call is answered with audio', async () => {
    parts.phone = new RtpPhone(AGENT_TONE, USER_TONE);
    const rtpPort = await parts.phone.start();
    parts.sipp = await startSippUas('uas-auth-challenge.xml', { rtpPort, keys: { authuser: 'wa-bridge', authpass: 'pbx-s3cret' } });
    const s = (parts.stack = await startStack({ PBX_TARGET: parts.sipp.uri, PBX_AUTH_USERNAME: 'wa-bridge', PBX_AUTH_PASSWORD: 'pbx-s3cret' }, { provider }));
    parts.user = new WaUser(USER_TONE, AGENT_TONE);
    const { wacid } = await s.sim.userCalls(parts.user);
    await parts.user.heard.whenHeard(25);
    await parts.phone.heard.whenHeard(25);
    await s.sim.userHangsUp(wacid);
    const row = await cdr(s, wacid);
    assert.equal(await parts.sipp.done, 0, `SIPp checked the credentials and saw the call through:\n${parts.sipp.proc.output.slice(-1500)}`);
    assert.equal(row.outcome, 'answered');
    assert.equal(row.sip_final_code, 200);
  });

  it('wrong PBX credentials: the PBX refuses the authenticated INVITE, the WhatsApp call is rejected, CDR has the 403', async () => {
    parts.sipp = await startSippUas('uas-auth-challenge.xml', { keys: { authuser: 'wa-bridge', authpass: 'pbx-s3cret' } });
    const s = (parts.stack = await startStack({ PBX_TARGET: parts.sipp.uri, PBX_AUTH_USERNAME: 'wa-bridge', PBX_AUTH_PASSWORD: 'wrong' }, { provider }));
    parts.user = new WaUser(USER_TONE, AGENT_TONE);
    const { wacid } = await s.sim.userCalls(parts.user);
    assert.ok(await s.sim.waitForRequest('/calls/reject', wacid));
    const row = await cdr(s, wacid);
    assert.equal(row.sip_final_code, 403);
    assert.equal(row.outcome, 'rejected');
  });
}
