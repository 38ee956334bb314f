import assert from 'node:assert/strict';
import { grantPermanentPermission } from './harness/permissions';
import { startStack, TestStack } from './harness/bridge';
import { infra } from './harness/infra';
import { PlainWaUser, WireEvent } from './harness/plain-wa-user';
import { RtpPhone, ReceivedDigit } from './harness/rtp-phone';
import { runSippUac, SippRun, startSippUas } from './harness/sipp';
import { within } from './harness/timeline';
import { WaUser } from './harness/wa-user';
import { whenEnded } from './harness/watch';

const AGENT_TONE = 1000;
const USER_TONE = 440;
const CUSTOMER = '+6281361905133';
const BUSINESS = '+6283138205150';
const DYNAMIC_PTS = Array.from({ length: 32 }, (_, i) => 96 + i);
/** The lengths pressed, in ms: a short press and a long one. */
const PRESSES: Array<[string, number]> = [['5', 200], ['9', 480]];
/** "Within one packet": the length on the wire may differ from the press by a 20 ms frame. */
const ONE_PACKET_MS = 20;

/**
 * Digit lengths on the wire toward the WhatsApp user, and from it to the PBX: a plain-RTP stand-in for
 * WhatsApp's media (what WhatsApp offers: opus/48000 with telephone-event/8000; with `g711`, also
 * PCMA/PCMU as Meta's SIP G.711 option) reads every RFC 4733 packet rtpengine sends it, and sends its
 * own digits with 8 kHz durations as WhatsApp does; an RtpPhone behind SIPp is the PBX's media.
 * Each test prints what it measured (ms per digit), for the report.
 */
describe('DTMF clocks: digit lengths on the wire toward and from the WhatsApp user', function () {
  this.timeout(60000);
  let stack: TestStack | null = null;
  let sipp: SippRun | null = null;
  let phone: RtpPhone | null = null;
  let user: PlainWaUser | null = null;
  let waUser: WaUser | null = null;

  before(function () {
    if (!infra.drachtio) this.skip();
  });

  afterEach(async () => {
    user?.close();
    waUser?.close();
    phone?.stop();
    await sipp?.proc.stop();
    await stack?.stop();
    stack = sipp = phone = user = waUser = null;
  });

  /** The telephone-event payload type rtpengine last offered or answered toward the PBX. */
  function pbxEventPt(s: TestStack): () => number {
    let pt = 101;
    s.bridge.rtp.on('sdp', (_call, to, sdp) => {
      if (to !== s.bridge.config.rtpengine.interfaces.pbx) return;
      const m = /^a=rtpmap:(\d+) telephone-event\/8000/m.exec(sdp);
      if (m) pt = Number(m[1]);
    });
    return () => pt;
  }

  function report(what: string, pressed: Array<[string, number]>, got: Array<Pick<WireEvent, 'digit' | 'durationMs'> & Partial<WireEvent>>): void {
    const rows = got.map((g, i) => `${g.digit}: pressed ${pressed[i]?.[1]} ms -> ${g.durationMs.toFixed(0)} ms`
      + (g.durationField !== undefined ? ` (duration field ${g.durationField} at ${g.clock} Hz, ${g.packets} packets over ${g.wallMs} ms, timestamp ${g.tsLeadMs?.toFixed(0)} ms after the last audio packet's)` : ''));
    console.log(`      [dtmf] ${what}: ${rows.join('; ')}`);
  }

  function assertLengths(what: string, got: Array<{ digit: string; durationMs: number }>): void {
    assert.deepEqual(got.map((g) => g.digit), PRESSES.map((p) => p[0]), what);
    got.forEach((g, i) => {
      const ms = PRESSES[i]![1];
      assert.ok(Math.abs(g.durationMs - ms) <= ONE_PACKET_MS, `${what}: digit ${g.digit} pressed ${ms} ms lasts ${g.durationMs} ms on the wire`);
    });
  }

  /**
   * Known and not fixed (rtpengine 10.5): on an opus leg rtpengine sees WhatsApp's events at 48 kHz and
   * rescales the agent's 8 kHz events into that clock, so they carry 6 times their duration. Pinned
   * here so that a fix (or an rtpengine that pairs 8 kHz events with opus) shows.
   */
  function assertSixTimes(what: string, got: WireEvent[]): void {
    assert.deepEqual(got.map((e) => e.digit), PRESSES.map((p) => p[0]), what);
    got.forEach((e, i) => assert.ok(Math.abs(e.durationMs - 6 * PRESSES[i]![1]) <= 6 * ONE_PACKET_MS, `${what}: digit ${e.digit} ${e.durationMs} ms on the wire`));
  }

  async function agentPresses(pt: number): Promise<void> {
    for (const [d, ms] of PRESSES) await phone!.sendDigit(d, ms, pt);
  }

  async function userPresses(): Promise<void> {
    for (const [d, ms] of PRESSES) {
      await user!.sendDigit(d, ms);
      await new Promise((r) => setTimeout(r, 100)); // audio between digits, as a finger lifts
    }
  }

  async function inbound(g711: boolean): Promise<{ s: TestStack; wacid: string; pt: () => number }> {
    phone = new RtpPhone(AGENT_TONE, USER_TONE, { dtmfPayloadTypes: DYNAMIC_PTS });
    sipp = await startSippUas('uas-answer-dtmf.xml', { rtpPort: await phone.start() });
    stack = await startStack({ PBX_TARGET: sipp.uri });
    const pt = pbxEventPt(stack);
    user = new PlainWaUser({ g711 });
    await user.start();
    const { wacid } = await stack.sim.userCalls(user);
    await within(phone.whenPackets(0, 25), 10000, () => 'the WhatsApp side\'s audio at the PBX');
    return { s: stack, wacid, pt };
  }

  for (const g711 of [false, true]) {
    const label = g711 ? 'a G.711 offer (opus, PCMA, PCMU, telephone-event/8000)' : 'an opus offer (opus, telephone-event/8000)';
    const toWa = g711 ? 'the agent\'s digits reach WhatsApp with their length' : 'the agent\'s reach WhatsApp 6 times too long (rtpengine 10.5, pinned)';
    it(`inbound, ${label}: WhatsApp's digits reach the PBX with their length, on its payload type; ${toWa}; the timeline has both`, async () => {
      const { s, wacid, pt } = await inbound(g711);
      const accept = await s.sim.waitForRequest('/calls/accept', wacid);
      assert.match(String(accept.sdp), /^a=rtpmap:126 telephone-event\/8000\r?$/m, 'the answer WhatsApp gets has the events it offered, at 8000');
      await agentPresses(pt());
      await within(user!.whenEvents(PRESSES.length), 10000, () => `the agent's digits at the WhatsApp side (packets by PT ${JSON.stringify(user!.packetsByPt)})`);
      report(`inbound ${g711 ? 'G.711' : 'opus'}, PBX -> WhatsApp`, PRESSES, user!.received);
      await userPresses();
      const got: ReceivedDigit[] = await phone!.waitDigits(PRESSES.length, 10000);
      report(`inbound ${g711 ? 'G.711' : 'opus'}, WhatsApp -> PBX`, PRESSES, got);
      assert.deepEqual(got.map((d) => d.pt), PRESSES.map(() => pt()), 'the digits reach the PBX on the payload type it negotiated');
      if (g711) assertLengths('toward WhatsApp', user!.received);
      else assertSixTimes('toward WhatsApp', user!.received);
      assertLengths('toward the PBX', got);
      await s.sim.userHangsUp(wacid);
      const id = await whenEnded(s.bridge, wacid);
      // The timeline has every digit once, from whom, with its real length (rtpengine's log, scaled back).
      const dtmf = (await s.bridge.cdr.events(id)).filter((e) => e.type === 'dtmf').map((e) => e.detail as { digit: string; from: string; durationMs: number });
      console.log(`      [dtmf] timeline: ${JSON.stringify(dtmf)}`);
      for (const from of ['pbx', 'whatsapp']) {
        const mine = dtmf.filter((d) => d.from === from);
        assert.deepEqual(mine.map((d) => d.digit), PRESSES.map((p) => p[0]), `the timeline's digits from ${from}`);
        mine.forEach((d, i) => assert.ok(Math.abs(d.durationMs - PRESSES[i]![1]) <= 2 * ONE_PACKET_MS, `the timeline's ${from} digit ${d.digit}: ${d.durationMs} ms`));
      }
    });
  }

  it('inbound, heard by a libwebrtc WhatsApp user: the agent\'s digit (6 times too long on the wire) plays out about as long as it was pressed, and the agent is heard again after it', async () => {
    phone = new RtpPhone(AGENT_TONE, USER_TONE, { dtmfPayloadTypes: DYNAMIC_PTS });
    sipp = await startSippUas('uas-answer-dtmf.xml', { rtpPort: await phone.start() });
    stack = await startStack({ PBX_TARGET: sipp.uri });
    const pt = pbxEventPt(stack);
    waUser = new WaUser(USER_TONE, AGENT_TONE);
    // libwebrtc's NetEq plays a received telephone-event out as its two tones: '5' is 770 + 1336 Hz.
    const dtmf5 = waUser.listen(1336, 0.3);
    const { wacid } = await stack.sim.userCalls(waUser);
    await within(waUser.heard.whenHeard(25), 10000, () => 'the agent\'s tone at the WhatsApp user');
    await phone.sendDigit('5', 200, pt());
    await within(dtmf5.whenHeard(5), 10000, () => 'the digit played out at the WhatsApp user');
    const before = waUser.heard.framesWithTone;
    // libwebrtc's NetEq follows the event's packets, not its duration field: measured 230 ms for the
    // 6-times field. What WhatsApp's apps do with the field is not known.
    await within(waUser.heard.whenHeard(before + 50), 10000, () => 'the agent\'s tone again after the digit');
    const playedMs = dtmf5.framesWithTone * 10; // libwebrtc hands over 10 ms frames
    console.log(`      [dtmf] inbound opus, PBX -> libwebrtc WhatsApp user: 5 pressed 200 ms -> played ${playedMs} ms`);
    assert.ok(Math.abs(playedMs - 200) <= 80, `the digit played ${playedMs} ms at the WhatsApp user (pressed 200 ms)`);
    await stack.sim.userHangsUp(wacid);
    await whenEnded(stack.bridge, wacid);
  });

  it('outbound (the bridge\'s offer to WhatsApp): telephone-event/8000 offered; WhatsApp\'s digits reach the PBX with their length, the agent\'s reach WhatsApp 6 times too long (rtpengine 10.5, pinned)', async () => {
    phone = new RtpPhone(AGENT_TONE, USER_TONE, { dtmfPayloadTypes: DYNAMIC_PTS });
    const rtpPort = await phone.start();
    user = new PlainWaUser();
    await user.start();
    stack = await startStack({ SIP_TRUSTED_SOURCES: '127.0.0.0/8', WA_BUSINESS_NUMBER: BUSINESS, WA_PHONE_ID: '461269257068831' });
    const s = stack;
    pbxEventPt(s);
    await grantPermanentPermission(s.bridge.permissions, BUSINESS, CUSTOMER);
    let offer = '';
    let ended: (() => Promise<unknown>) | null = null;
    const answered = new Promise<void>((resolve) => {
      s.sim.outboundScript = async (call) => {
        offer = call.offer;
        await s.sim.answeredBy(user!)(call);
        ended = () => s.sim.deliver(s.sim.outboundTerminate(call, 'COMPLETED'));
        resolve();
      };
    });
    sipp = await runSippUac('uac-call.xml', { target: `127.0.0.1:${infra.drachtio!.sipPort}`, number: CUSTOMER, rtpPort });
    await within(answered, 15000, () => 'the WhatsApp side answered');
    await within(phone.whenPackets(0, 25), 10000, () => 'the WhatsApp side\'s audio at the agent');
    console.log(`      [dtmf] outbound offer's telephone-event: ${offer.match(/^a=rtpmap:\d+ telephone-event\/\d+/gm)?.join(', ')}`);
    await agentPresses(101);
    await within(user.whenEvents(PRESSES.length), 10000, () => `the agent's digits at the WhatsApp side (packets by PT ${JSON.stringify(user!.packetsByPt)})`);
    report('outbound, PBX -> WhatsApp', PRESSES, user.received);
    await userPresses();
    const got = await phone.waitDigits(PRESSES.length, 10000);
    report('outbound, WhatsApp -> PBX', PRESSES, got);
    assert.match(offer, /^a=rtpmap:\d+ telephone-event\/8000\r?$/m, 'the offer carries telephone-event/8000, as WhatsApp\'s own offers do');
    assert.doesNotMatch(offer, /telephone-event\/48000/);
    assertLengths('toward the PBX', got);
    assert.deepEqual(got.map((d) => d.pt), PRESSES.map(() => 101), 'the digits reach the PBX on the payload type it offered');
    assertSixTimes('toward WhatsApp', user.received);
    await ended!();
    assert.equal(await sipp.done, 0, sipp.proc.output.slice(-1500));
  });
});
