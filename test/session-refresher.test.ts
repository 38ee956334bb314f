import assert from 'node:assert/strict';
import fs from 'node:fs';
import { rows } from './harness/db-rows';
import { startStack } from './harness/bridge';
import { callParts } from './harness/call-parts';
import { infra } from './harness/infra';
import { grantPermanentPermission } from './harness/permissions';
import { RtpPhone } from './harness/rtp-phone';
import { runSippUac, startSippUas } from './harness/sipp';
import { within } from './harness/timeline';
import { WaUser } from './harness/wa-user';
import { whenEnded } from './harness/watch';

const AGENT_TONE = 1000;
const USER_TONE = 440;
const CUSTOMER = '+6281361905133';
const BUSINESS = '+6283138205150';

/**
 * The bridge as the session's refresher (RFC 4028), against SIPp PBXs that ask it to be: at 90 s
 * (RFC 4028's smallest Min-SE, and SIP_MIN_SE_S's) it refreshes every 45 s, so these tests take a
 * minute and a half and a minute. As UAC (a WhatsApp user's call) drachtio-server's SIP stack
 * (sofia-sip) sends the refreshes by itself; as UAS (an agent's call) the bridge does (SessionRefresher).
 */
describe('the bridge refreshes a session when the PBX makes it the refresher', function () {
  this.timeout(240_000);
  const parts = callParts();

  it('inbound: the PBX\'s 200 says refresher=uac; the bridge (its drachtio-server) sends two re-INVITE refreshes 45 s apart, audio flowing throughout', async () => {
    parts.phone = new RtpPhone(AGENT_TONE, USER_TONE);
    const trace = `/tmp/wasb-refresh-${process.pid}.log`;
    parts.sipp = await startSippUas('uas-bridge-refreshes.xml', { rtpPort: await parts.phone.start(), extraArgs: ['-trace_msg', '-message_file', trace] });
    const s = (parts.stack = await startStack({ PBX_TARGET: parts.sipp.uri }));
    parts.user = new WaUser(USER_TONE, AGENT_TONE);
    const { wacid } = await s.sim.userCalls(parts.user);
    await within(parts.user.heard.whenHeard(25), 15000, () => 'the agent heard at the WhatsApp user');
    // Two refreshes seen by the PBX (SIPp's trace: the first INVITE and two re-INVITEs from the bridge).
    const invites = () => (fs.existsSync(trace) ? fs.readFileSync(trace, 'utf8').match(/^CSeq: \d+ INVITE$/gm)?.length ?? 0 : 0);
    const deadline = Date.now() + 150_000;
    while (invites() < 3 * 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1000)); // each is traced received and answered
    assert.ok(invites() >= 6, `two refreshes reached the PBX (${invites() / 2 - 1} seen)`);
    // Both ways still, after the second refresh.
    const [toUser, toAgent] = [parts.user.heard.framesWithTone, parts.phone.heard.framesWithTone];
    await within(parts.user.heard.whenHeard(toUser + 25), 10000, () => 'the agent heard again after the refreshes');
    await within(parts.phone.heard.whenHeard(toAgent + 25), 10000, () => 'the user heard again after the refreshes');
    await s.sim.userHangsUp(wacid);
    const id = await whenEnded(s.bridge, wacid);
    assert.equal(await parts.sipp.done, 0, `SIPp saw two re-INVITEs with Session-Expires and SDP, then BYE:\n${parts.sipp.proc.output.slice(-1500)}`);
    const row = await rows().CallRecord.findByPk(id);
    assert.equal(row?.outcome, 'answered');
    assert.equal(row?.hangup_by, 'whatsapp');
  });

  it('outbound: the agent asks refresher=uas; the bridge refreshes by re-INVITE, the agent answers 481, the call ends with BYE and a CDR reason', async () => {
    parts.phone = new RtpPhone(AGENT_TONE, USER_TONE);
    const rtpPort = await parts.phone.start();
    parts.user = new WaUser(USER_TONE, AGENT_TONE);
    const s = (parts.stack = await startStack({ SIP_TRUSTED_SOURCES: '127.0.0.0/8', WA_BUSINESS_NUMBER: BUSINESS, WA_PHONE_ID: '461269257068831' }));
    await grantPermanentPermission(s.bridge.permissions, BUSINESS, CUSTOMER);
    s.sim.outboundScript = s.sim.answeredBy(parts.user);
    parts.sipp = await runSippUac('uac-refresh-481.xml', { target: `127.0.0.1:${infra.drachtio!.sipPort}`, number: CUSTOMER, rtpPort });
    await within(parts.user.heard.whenHeard(25), 15000, () => 'the agent heard at the WhatsApp user');
    assert.equal(await within(parts.sipp.done, 90_000, () => 'SIPp saw the re-INVITE refresh and the BYE'), 0, parts.sipp.proc.output.slice(-2000));
    const invite = s.marks.marks.find((m) => m.name === 'invite_received')!;
    const id = await whenEnded(s.bridge, invite.wacid);
    const row = await rows().CallRecord.findByPk(id);
    assert.equal(row?.outcome, 'answered');
    const types = (await s.bridge.cdr.events(id)).map((e) => e.type);
    assert.equal(row?.hangup_by, 'bridge', `${row?.error ?? ''}; timeline: ${types.join(', ')}`);
    // The bridge's own refresh, or drachtio-server's (sofia-sip refreshes too), whichever asks first, meets the 481.
    assert.match(row?.error ?? '', /session refresh failed \((481|no answer)\)/);
    assert.ok(types.indexOf('session_refresher') >= 0 && types.indexOf('session_refresh_failed') > types.indexOf('session_refresher'), types.join(', '));
    assert.ok(await s.sim.waitForRequest('/calls/terminate', row!.wacid!), 'the WhatsApp call was ended too');
  });
});
