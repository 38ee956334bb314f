import assert from 'node:assert/strict';
import { CallRecord } from '../src/cdr/models';
import { rows } from './harness/db-rows';
import { Baresip } from './harness/baresip';
import { forEachProvider, ProviderName, startStack, TestStack } from './harness/bridge';
import { BrowserHandle, BrowserWaUser } from './harness/browser-wa-user';
import { infra } from './harness/global-setup';
import { RtpPhone } from './harness/rtp-phone';
import { Timeline } from './harness/timeline';
import { SippRun, startSippUas } from './harness/sipp';
import { whenEnded } from './harness/watch';

const USER_TONE = 440;
const AGENT_TONE = 1000;
const ALL_DIGITS = '0123456789*#';
const DYNAMIC_PTS = Array.from({ length: 32 }, (_, i) => 96 + i);

/**
 * Real user agents at both ends: headless Chromium plays the WhatsApp user (its RTCDTMFSender sends
 * RFC 4733 digits inside SRTP, as WhatsApp does), and Debian's baresip is the agent's desk phone
 * (digits, hold and resume by re-INVITE); SIPp with an RTP phone decodes the events on the wire.
 */
describe('real phones: digits and hold', function () {
  this.timeout(90000);
  forEachProvider((provider) => realPhones(provider));
});

function realPhones(provider: ProviderName): void {
  let handle: BrowserHandle | null = null;
  let stack: TestStack | null = null;
  let user: BrowserWaUser | null = null;
  let phone: Baresip | null = null;
  let sipp: SippRun | null = null;
  let rtp: RtpPhone | null = null;

  before(async function () {
    if (!infra.drachtio) return this.skip(); // the run already said why, loudly, once
    const missing = !BrowserWaUser.available() ? 'chromium is not installed'
      : !Baresip.available() ? 'baresip is not installed'
        : BrowserWaUser.isolationProblem();
    if (missing) {
      console.log(`\n!!! REAL-PHONE TESTS SKIPPED: ${missing} !!!\n`);
      return this.skip();
    }
    handle = await BrowserWaUser.launch({ toneHz: USER_TONE });
  });

  after(async () => {
    await handle?.close();
  });

  afterEach(async () => {
    await user?.close();
    await phone?.stop();
    rtp?.stop();
    await sipp?.proc.stop();
    await stack?.stop();
    user = phone = sipp = rtp = stack = null;
  });

  async function endedRow(s: TestStack, wacid: string): Promise<CallRecord> {
    const id = await whenEnded(s.bridge, wacid);
    const row = await rows().CallRecord.findByPk(id);
    assert.ok(row);
    return row;
  }

  async function timeline(s: TestStack, id: string): Promise<Array<{ type: string; detail: Record<string, unknown> | null }>> {
    return (await s.bridge.cdr.events(id)).map((e) => ({ type: e.type, detail: e.detail as Record<string, unknown> | null }));
  }

  /** A WhatsApp user calls; the agent's baresip phone answers; audio flows both ways. */
  async function callBaresip(env: Record<string, string> = {}): Promise<{ s: TestStack; wacid: string; events: Timeline }> {
    phone = await new Baresip({ user: 'agent301', toneHz: AGENT_TONE }).start();
    stack = await startStack({ PBX_TARGET: phone.uri, ...env }, { provider });
    const events = new Timeline(stack.bridge.cdr);
    user = new BrowserWaUser(handle!, USER_TONE, { listenHz: AGENT_TONE });
    const { wacid } = await stack.sim.userCalls(user);
    await phone.whenEstablished();
    await user.waitHeard(25, 10000); // the agent's tone reached the WhatsApp user: media is up
    return { s: stack, wacid, events };
  }

  it('every digit 0-9*# the WhatsApp caller presses reaches the agent phone (RFC 4733) once, in order, and the timeline', async () => {
    const { s, wacid } = await callBaresip();
    await user!.sendDigits(ALL_DIGITS, 120, 80);
    assert.equal(await phone!.waitDigits(ALL_DIGITS.length, 10000), ALL_DIGITS);
    await s.sim.userHangsUp(wacid);
    const row = await endedRow(s, wacid);
    const digits = (await timeline(s, row.id)).filter((e) => e.type === 'dtmf' && e.detail?.from === 'whatsapp');
    assert.equal(digits.map((e) => e.detail?.digit).join(''), ALL_DIGITS);
    assert.equal(phone!.digitsReceived.length, ALL_DIGITS.length, 'each digit once');
  });

  /** A WhatsApp user (Chromium) connected to a SIPp PBX whose media is an RtpPhone decoding every dynamic payload type as events. */
  async function dtmfCall() {
    const phone = (rtp = new RtpPhone(AGENT_TONE, USER_TONE, { dtmfPayloadTypes: DYNAMIC_PTS }));
    const pbx = (sipp = await startSippUas('uas-answer-dtmf.xml', { rtpPort: await phone.start() }));
    const s = (stack = await startStack({ PBX_TARGET: pbx.uri }, { provider }));
    const u = (user = new BrowserWaUser(handle!, USER_TONE, { listenHz: AGENT_TONE }));
    const { wacid } = await s.sim.userCalls(u);
    await u.waitHeard(25, 10000);
    return { wacid, rtp: phone, sipp: pbx, stack: s, user: u };
  }

  it('digits arrive as RFC 4733 on the payload type the PBX negotiated, with their duration', async () => {
    const { wacid, rtp, sipp, stack, user } = await dtmfCall();
    await user.sendDigits(ALL_DIGITS, 120, 80);
    const got = await rtp.waitDigits(ALL_DIGITS.length, 10000);
    assert.equal(got.map((d) => d.digit).join(''), ALL_DIGITS);
    const pts = new Set(got.map((d) => d.pt));
    assert.equal(pts.size, 1, `one payload type for all digits: ${[...pts].join(',')}`);
    // The RtpPhone decodes every dynamic payload type as events: only the negotiated one may carry any.
    const eventPts = Object.keys(rtp.packetsByPt).map(Number).filter((pt) => pt >= 96);
    assert.deepEqual(eventPts, [...pts]);
    for (const d of got) assert.ok(d.durationMs >= 100 && d.durationMs <= 160, `digit ${d.digit} lasted ${d.durationMs} ms (sent 120 ms)`);
    await stack.sim.userHangsUp(wacid);
    await endedRow(stack, wacid);
    assert.equal(await sipp.done, 0, sipp.proc.output.slice(-1500));
  });

  it('a long press (600 ms) reaches the PBX as about 600 ms and is timed so in the timeline (rtpengine reads it 6 times too short)', async () => {
    // A short digit cannot tell: 120 ms read as 20 ms is raised to rtpengine's 100 ms floor. 600 ms read
    // as 100 ms and not scaled back reaches the PBX as 100 ms.
    const { wacid, rtp, sipp, stack, user } = await dtmfCall();
    await user.sendDigits('5', 600, 80);
    const got = await rtp.waitDigits(1, 10000);
    assert.deepEqual(got.map((d) => d.digit), ['5']);
    // The end packet's duration, in 20 ms steps of 8 kHz ticks: within a few packets of the press.
    assert.ok(got[0]!.durationMs >= 500 && got[0]!.durationMs <= 700, `the PBX got a ${got[0]!.durationMs} ms digit (pressed 600 ms)`);
    await stack.sim.userHangsUp(wacid);
    const row = await endedRow(stack, wacid);
    const digits = (await timeline(stack, row.id)).filter((e) => e.type === 'dtmf' && e.detail?.from === 'whatsapp');
    assert.equal(digits.length, 1, JSON.stringify(digits));
    const ms = digits[0]!.detail?.durationMs;
    assert.ok(typeof ms === 'number' && ms >= 500 && ms <= 700, `the timeline says the digit lasted ${String(ms)} ms (pressed 600 ms)`);
    assert.equal(await sipp.done, 0, sipp.proc.output.slice(-1500));
  });

  it('PBX_DTMF_MODE=info: the digits reach the agent phone as SIP INFO (application/dtmf-relay), not in the media', async () => {
    const { s, wacid } = await callBaresip({ PBX_DTMF_MODE: 'info' });
    await user!.sendDigits('159#', 120, 80);
    assert.equal(await phone!.waitDigits(4, 10000), '159#');
    // The SIP trace (stdout) can trail the digit events (ctrl_tcp): await the last INFO in it.
    await phone!.waitSip((m) => m.dir === 'in' && m.status === null && m.method === 'INFO' && /Signal=#/.test(m.body), { what: 'the INFO for #' });
    const infos = phone!.sipRequests('INFO', 'in');
    assert.equal(infos.length, 4);
    assert.deepEqual(infos.map((m) => /Signal=(.)/.exec(m.body)?.[1]).join(''), '159#');
    assert.ok(infos.every((m) => /application\/dtmf-relay/.test(m.headers['content-type']?.[0] ?? '')));
    await s.sim.userHangsUp(wacid);
    const row = await endedRow(s, wacid);
    assert.equal(phone!.digitsReceived.length, 4, 'no digit also came as RFC 4733');
    const digits = (await timeline(s, row.id)).filter((e) => e.type === 'dtmf' && e.detail?.from === 'whatsapp');
    assert.equal(digits.map((e) => e.detail?.digit).join(''), '159#');
  });

  it('digits from the agent phone (RFC 4733) go toward the WhatsApp user and into the timeline', async () => {
    const { s, wacid, events } = await callBaresip();
    const before = await user!.stats();
    await phone!.sendDigits('*7');
    // rtpengine logs the agent's digits as it relays them: wait for both in the timeline.
    await events.waitFor('dtmf', 2, 10000);
    const digits = events.events.filter((e) => e.type === 'dtmf');
    assert.ok(digits.every((e) => e.detail?.from === 'pbx'));
    assert.equal(digits.map((e) => e.detail?.digit).join(''), '*7');
    assert.ok((await user!.stats()).packetsReceived > before.packetsReceived);
    await s.sim.userHangsUp(wacid);
    await endedRow(s, wacid);
  });

  it('the agent holds (re-INVITE sendonly) and resumes: answered recvonly then sendrecv; the WhatsApp user never goes without media', async () => {
    const { s, wacid, events } = await callBaresip();
    const held = await phone!.hold();
    assert.equal(held.status, 200);
    assert.match(held.response.body, /a=recvonly/);
    // baresip sends nothing while holding: the bridge must keep media flowing to the WhatsApp user.
    const id = (await s.bridge.cdr.findCallByWacid(wacid))!.id;
    await events.waitFor('keepalive_started', 1, 10000); // the keepalive started while the agent held the call
    // Counted at the transport: per-stream (inbound-rtp) counts start again when the stream's SSRC changes.
    const transportPackets = async () => (await user!.statsReport()).filter((r) => r.type === 'transport').reduce((n, r) => n + Number(r.packetsReceived ?? 0), 0);
    const a = await transportPackets();
    const t0 = Date.now();
    let got = a;
    while (got - a < 150 && Date.now() - t0 < 10000) {
      await new Promise((r) => setTimeout(r, 250)); // sampling getStats: there is no event to await
      got = await transportPackets();
    }
    const pps = ((got - a) * 1000) / (Date.now() - t0);
    assert.ok(pps > 40, `${pps.toFixed(0)} packets/s reached the WhatsApp user during hold`);
    const resumed = await phone!.resume();
    assert.equal(resumed.status, 200);
    assert.match(resumed.response.body, /a=sendrecv/);
    const heardBefore = (await user!.heard()).framesWithTone;
    await user!.waitHeard(heardBefore + 25, 10000).catch(async (err: Error) => {
      throw new Error(`${err.message}\ntimeline: ${(await timeline(s, id)).map((e) => `${e.type} ${JSON.stringify(e.detail)}`).join('\n')}`);
    }); // the agent is heard again
    await s.sim.userHangsUp(wacid);
    const row = await endedRow(s, wacid);
    const types = (await timeline(s, row.id)).map((e) => e.type);
    for (const t of ['pbx_hold', 'keepalive_started', 'pbx_resume', 'keepalive_stopped']) assert.ok(types.includes(t), `${t} in ${types.join(',')}`);
    assert.ok(types.indexOf('pbx_hold') < types.indexOf('pbx_resume'));
    assert.equal(row.outcome, 'answered');
  });
}
