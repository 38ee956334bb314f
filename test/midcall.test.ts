import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { CallRecord } from '../src/cdr/models';
import { rows } from './harness/db-rows';
import { wavFile } from '../src/media/wav';
import { forEachProvider, ProviderName, startStack, TestStack } from './harness/bridge';
import { infra } from './harness/global-setup';
import { freePort } from './harness/processes';
import { RtpPhone, RtpPhoneOptions } from './harness/rtp-phone';
import { runSippUac, SippKeys, SippRun, printSippTraces, startSippUas } from './harness/sipp';
import { sineFrame, ToneDetector } from './harness/tone';
import { Timeline, until, within } from './harness/timeline';
import { WaUser } from './harness/wa-user';
import { whenEnded } from './harness/watch';

const USER_TONE = 440; // what the WhatsApp user says
const AGENT_TONE = 1000; // what the first agent phone says
const AGENT_B_TONE = 1500; // a second agent endpoint (new port, transfer target)
const HOLD_TONE = 800; // the operator's music-on-hold file (MEDIA_HOLD_FILE)

/** Resolves with null when `p` resolves, or with its error's message: a check reported at the end. */
function settle(p: Promise<unknown>): Promise<string | null> {
  return p.then(() => null, (err: unknown) => (err as Error).message);
}

/** Samples how many RTP packets the WhatsApp user has received, every 250 ms, until stopped. */
class PacketMeter {
  private readonly samples: Array<{ t: number; n: number }> = [];
  private readonly timer: NodeJS.Timeout;
  private pending: Promise<void> = Promise.resolve();

  private constructor(private readonly user: WaUser) {
    this.timer = setInterval(() => {
      this.pending = this.sample();
    }, 250);
  }

  static async start(user: WaUser): Promise<PacketMeter> {
    const m = new PacketMeter(user);
    await m.sample();
    return m;
  }

  private async sample(): Promise<void> {
    const n = await this.user.packetsReceived();
    this.samples.push({ t: performance.now(), n });
  }

  /** Packets per second over the whole span, and the longest span in which none arrived. */
  async stop(): Promise<{ pps: number; seconds: number; longestStallMs: number }> {
    clearInterval(this.timer);
    await this.pending;
    await this.sample();
    const first = this.samples[0]!;
    const last = this.samples[this.samples.length - 1]!;
    let stall = 0;
    let since = first.t;
    for (let i = 1; i < this.samples.length; i++) {
      if (this.samples[i]!.n > this.samples[i - 1]!.n) since = this.samples[i]!.t;
      stall = Math.max(stall, this.samples[i]!.t - since);
    }
    const seconds = (last.t - first.t) / 1000;
    return { pps: (last.n - first.n) / seconds, seconds, longestStallMs: stall };
  }
}

/**
 * What the PBX does in an established call, end to end, for each provider: an inbound WhatsApp call
 * (libwebrtc user, the provider simulator, the bridge, rtpengine, drachtio-server) answered by SIPp playing the PBX, whose
 * SDP points at RtpPhone endpoints carrying the agent's audio. SIPp checks the bridge's SIP answers
 * (ereg check_it); the test checks audio at each end and the CDR.
 */
describe('mid-call requests from the PBX', function () {
  this.timeout(45000);
  forEachProvider((provider) => midCallRequests(provider));
});

function midCallRequests(provider: ProviderName): void {
  let stack: TestStack | null = null;
  let timeline: Timeline | null = null;
  let user: WaUser | null = null;
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
    user?.close();
    for (const p of phones) p.stop();
    for (const s of sipps) await s.run.proc.stop();
    await stack?.stop();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    stack = timeline = user = tmp = null;
    sipps = [];
    phones = [];
  });

  function tmpDir(): string {
    tmp ??= fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-midcall-'));
    return tmp;
  }

  /**
   * The agent's phone behind the PBX. Symmetric RTP by default: after a hold the bridge may answer the
   * resume with a new port (a fresh stream toward WhatsApp), and a phone sends where the media comes from.
   */
  async function phone(sendFreq: number, opts: RtpPhoneOptions = {}): Promise<RtpPhone> {
    const p = new RtpPhone(sendFreq, USER_TONE, { followSource: true, ...opts });
    await p.start();
    phones.push(p);
    return p;
  }

  /** A SIPp UAS playing the PBX; its SIP messages are traced to a file shown when the test fails. */
  async function pbx(scenario: string, rtpPort: number, keys: SippKeys = {}, calls = 1): Promise<SippRun> {
    const trace = path.join(tmpDir(), `${path.basename(scenario, '.xml')}-${sipps.length}.msg`);
    const run = await startSippUas(scenario, { rtpPort, keys, calls, extraArgs: ['-trace_msg', '-message_file', trace] });
    sipps.push({ run, trace });
    return run;
  }

  async function startBridge(env: Record<string, string>): Promise<TestStack> {
    stack = await startStack(env, { provider });
    timeline = new Timeline(stack.bridge.cdr);
    return stack;
  }

  /** The WhatsApp user calls the business; the user listens for the first agent's tone. */
  async function userCalls(s: TestStack): Promise<string> {
    user = new WaUser(USER_TONE, AGENT_TONE);
    const { wacid, status } = await s.sim.userCalls(user);
    assert.equal(status, 200);
    return wacid;
  }

  /** Resolves once `frames` more frames of the detector's tone have been heard (from now). */
  function hearsMore(det: ToneDetector, frames: number, what: string, timeoutMs = 8000): Promise<void> {
    const target = det.framesWithTone + frames;
    return within(det.whenHeard(target), timeoutMs, () => `${what} (heard ${det.framesWithTone - (target - frames)} of ${frames} frames of ${det.freq} Hz; timeline: ${timeline?.types().join(', ')})`);
  }

  async function sippPassed(run: SippRun): Promise<void> {
    const code = await within(run.done, 20000, () => `${run.proc.name} to finish:\n${run.proc.output.slice(-1500)}`);
    assert.equal(code, 0, `${run.proc.name} passed its scenario:\n${run.proc.output.slice(-1500)}`);
  }

  async function endedRow(s: TestStack, wacid: string): Promise<CallRecord> {
    const id = await within(whenEnded(s.bridge, wacid), 20000, () => `call ${wacid} to end (timeline: ${timeline?.types().join(', ')})`);
    const row = await rows().CallRecord.findByPk(id);
    assert.ok(row, 'CDR row exists');
    return row;
  }

  /** Where the bridge's INVITE asks the PBX to send media (its SDP's c= and m=audio), read from a SIPp trace. */
  async function invitedMedia(trace: string): Promise<{ address: string; port: number }> {
    return until('the INVITE in the SIPp trace', async () => {
      const text = fs.existsSync(trace) ? fs.readFileSync(trace, 'utf8') : '';
      const at = text.indexOf('INVITE sip:');
      if (at < 0) return null;
      const invite = text.slice(at);
      const c = /^c=IN IP4 (\S+)/m.exec(invite);
      const m = /^m=audio (\d+) /m.exec(invite);
      return c && m ? { address: c[1]!, port: Number(m[1]) } : null;
    }, 5000, async () => (fs.existsSync(trace) ? fs.readFileSync(trace, 'utf8').slice(-2000) : '(no trace)'));
  }

  async function storedTimeline(s: TestStack, row: CallRecord): Promise<string[]> {
    return (await s.bridge.cdr.events(row.id)).map((e) => e.type);
  }

  function inOrder(types: string[], ...expected: string[]): void {
    let at = -1;
    for (const e of expected) {
      const i = types.indexOf(e, at + 1);
      assert.ok(i > at, `timeline has ${expected.join(' < ')} in that order: ${types.join(', ')}`);
      at = i;
    }
  }

  // Between the bridge and the PBX only (the provider plays no part): run once, with YCloud.
  if (provider === 'ycloud') describe('re-INVITE and UPDATE with new media', () => {
    it('re-INVITE to a new port and codec (PCMU -> PCMA): the 200 answers PCMA, audio follows both ways', async () => {
      const a = await phone(AGENT_TONE, { followSource: false });
      const b = await phone(AGENT_B_TONE, { payloadType: 8, followSource: false });
      const sipp = await pbx('uas-reinvite-move.xml', a.port, { rtpport2: b.port });
      const s = await startBridge({ PBX_TARGET: sipp.uri });
      const wacid = await userCalls(s);
      const hearsB = user!.listen(AGENT_B_TONE);
      await hearsMore(user!.heard, 50, 'the user hears phone A');
      await hearsMore(a.heard, 25, 'phone A hears the user');

      const moved = await timeline!.waitFor('pbx_media_changed');
      assert.deepEqual(moved.detail, { held: false });
      a.mute(true); // the old endpoint goes quiet; B sends where the bridge's answer points (rtpengine's PBX-side port)
      b.retarget(a.remoteAddress!.port);
      await hearsMore(hearsB, 50, 'the user hears phone B (PCMA) after the re-INVITE');
      await hearsMore(b.heard, 25, 'phone B hears the user');
      assert.ok((b.packetsByPt[8] ?? 0) > 0, `the bridge sends PCMA to B (packets by PT ${JSON.stringify(b.packetsByPt)})`);
      // At most a frame already in flight when rtpengine switched encoders may still be PCMU.
      assert.ok((b.packetsByPt[0] ?? 0) <= 2 && (b.packetsByPt[8] ?? 0) > 25, `PCMA to B, not PCMU (packets by PT ${JSON.stringify(b.packetsByPt)})`);

      await s.sim.userHangsUp(wacid);
      const row = await endedRow(s, wacid);
      await sippPassed(sipp); // incl. the 200 to the re-INVITE answering m=audio ... RTP/AVP 8
      assert.equal(row.outcome, 'answered');
      assert.equal(row.hangup_by, 'whatsapp');
      inOrder(await storedTimeline(s, row), 'accepted', 'pbx_media_changed', 'whatsapp_terminated', 'ended');
    });

    it('re-INVITE without SDP: the 200 carries an offer, the answer in the ACK moves the media', async () => {
      const a = await phone(AGENT_TONE);
      const b = await phone(AGENT_B_TONE);
      const sipp = await pbx('uas-reinvite-no-sdp.xml', a.port, { rtpport2: b.port });
      const s = await startBridge({ PBX_TARGET: sipp.uri });
      const wacid = await userCalls(s);
      const hearsB = user!.listen(AGENT_B_TONE);
      await hearsMore(user!.heard, 50, 'the user hears phone A');

      const reinvite = await timeline!.waitFor('pbx_reinvite');
      assert.deepEqual(reinvite.detail, { offer: false });
      await timeline!.waitFor('pbx_media_changed');
      a.mute(true);
      b.retarget(a.remoteAddress!.port);
      await hearsMore(hearsB, 50, 'the user hears phone B, named in the ACK');
      await hearsMore(b.heard, 25, 'phone B hears the user');

      await s.sim.userHangsUp(wacid);
      const row = await endedRow(s, wacid);
      await sippPassed(sipp);
      assert.equal(row.outcome, 'answered');
      inOrder(await storedTimeline(s, row), 'accepted', 'pbx_reinvite', 'pbx_media_changed', 'ended');
    });

    it('UPDATE with SDP moves the media (200 with SDP); UPDATE without SDP is a refresh (200, no body)', async () => {
      const a = await phone(AGENT_TONE);
      const b = await phone(AGENT_B_TONE);
      const sipp = await pbx('uas-update.xml', a.port, { rtpport2: b.port });
      const s = await startBridge({ PBX_TARGET: sipp.uri });
      const wacid = await userCalls(s);
      const hearsB = user!.listen(AGENT_B_TONE);
      await hearsMore(user!.heard, 50, 'the user hears phone A');

      await timeline!.waitFor('pbx_media_changed');
      a.mute(true);
      b.retarget(a.remoteAddress!.port);
      await hearsMore(hearsB, 50, 'the user hears phone B after the UPDATE');
      await hearsMore(b.heard, 25, 'phone B hears the user');

      // The scenario then refreshes by UPDATE without SDP and the agent hangs up.
      const row = await endedRow(s, wacid);
      await sippPassed(sipp);
      assert.equal(row.outcome, 'answered');
      assert.equal(row.hangup_by, 'pbx');
      const types = await storedTimeline(s, row);
      assert.equal(types.filter((t) => t === 'pbx_media_changed').length, 1, `only the UPDATE with SDP changed media: ${types.join(', ')}`);
      assert.ok(!types.includes('pbx_offer_refused'), types.join(', '));
    });
  });

  describe('hold and resume', () => {
    // The 30 s keepalive is between the bridge and the PBX: run once (the other holds run for both providers).
    if (provider === 'ycloud') it('hold by sendonly for longer than 30 s with the PBX silent: 200 says recvonly, the user keeps getting >= 40 packets/s, resume brings the agent back', async function () {
      this.timeout(90000);
      const a = await phone(AGENT_TONE);
      const sipp = await pbx('uas-hold-resume.xml', a.port, { holdms: 33000 });
      const s = await startBridge({ PBX_TARGET: sipp.uri });
      const wacid = await userCalls(s);
      await hearsMore(user!.heard, 50, 'the user hears the agent before the hold');

      const hold = await timeline!.waitFor('pbx_hold');
      a.mute(true); // a held desk phone sends nothing
      const meter = await PacketMeter.start(user!);
      const resume = await timeline!.waitFor('pbx_resume', 1, 45000);
      const rate = await meter.stop();
      a.mute(false);
      // Heard again after resume: checked last (below), so the other checks still report.
      const heardAgain = settle(hearsMore(user!.heard, 50, 'the user hears the agent again after resume'));
      assert.ok((resume.t - hold.t) / 1000 > 30, `the hold lasted ${((resume.t - hold.t) / 1000).toFixed(1)} s`);
      assert.ok(rate.pps >= 40, `the user received ${rate.pps.toFixed(1)} packets/s over ${rate.seconds.toFixed(1)} s of hold`);
      assert.ok(rate.longestStallMs < 5000, `longest stretch without packets to the user during the hold: ${rate.longestStallMs.toFixed(0)} ms`);
      assert.ok(!timeline!.types().includes('ended'), 'the call stayed up through the hold');
      assert.equal(s.sim.requestsFor(wacid).some((r) => r.op === 'terminate'), false, 'the WhatsApp leg was not ended');
      const problem = await heardAgain;

      await s.sim.userHangsUp(wacid);
      const row = await endedRow(s, wacid);
      await sippPassed(sipp); // incl. a=recvonly in the 200 to the hold, a=sendrecv in the 200 to the resume
      assert.equal(row.outcome, 'answered');
      assert.equal(row.hangup_by, 'whatsapp');
      assert.ok(Number(row.talk_seconds) > 33, `talk time ${row.talk_seconds}`);
      inOrder(await storedTimeline(s, row), 'accepted', 'pbx_hold', 'keepalive_started', 'pbx_resume', 'keepalive_stopped', 'ended');
      assert.equal(problem, null);
    });

    it('hold by a=inactive (answered a=inactive) and by c=0.0.0.0, each resumed; keepalive during both', async function () {
      this.timeout(60000);
      const a = await phone(AGENT_TONE);
      const sipp = await pbx('uas-hold-inactive-zero.xml', a.port);
      const s = await startBridge({ PBX_TARGET: sipp.uri, MEDIA_KEEPALIVE_POLL_MS: '300' });
      const wacid = await userCalls(s);
      await hearsMore(user!.heard, 50, 'the user hears the agent');

      const problems: string[] = [];
      for (const [n, kind] of [[1, 'a=inactive'], [2, 'c=0.0.0.0']] as const) {
        await timeline!.waitFor('pbx_hold', n);
        a.mute(true);
        await timeline!.waitFor('keepalive_started', n, 4000);
        const meter = await PacketMeter.start(user!);
        await timeline!.waitFor('pbx_resume', n);
        const rate = await meter.stop();
        a.mute(false);
        assert.ok(rate.pps >= 40, `hold ${kind}: ${rate.pps.toFixed(1)} packets/s to the user once the keepalive played`);
        const problem = await settle(hearsMore(user!.heard, 50, `the user hears the agent after resuming from the ${kind} hold`, 3000));
        if (problem) problems.push(problem);
      }

      await s.sim.userHangsUp(wacid);
      const row = await endedRow(s, wacid);
      await sippPassed(sipp); // incl. a=inactive answered to a=inactive, no sending direction answered to c=0.0.0.0
      assert.equal(row.outcome, 'answered');
      inOrder(await storedTimeline(s, row), 'pbx_hold', 'keepalive_started', 'pbx_resume', 'pbx_hold', 'keepalive_started', 'pbx_resume', 'ended');
      assert.deepEqual(problems, []);
    });

    it('the agent goes quiet without a hold (silence suppression): keepalive plays, then the agent is heard again', async () => {
      // A phone with symmetric RTP: it follows the bridge's media to the port the re-INVITE moves it to.
      const a = await phone(AGENT_TONE, { followSource: true });
      const sipp = await pbx('uas-answer-reinvited.xml', a.port);
      const s = await startBridge({ PBX_TARGET: sipp.uri, MEDIA_KEEPALIVE_POLL_MS: '300' });
      const wacid = await userCalls(s);
      await hearsMore(user!.heard, 50, 'the user hears the agent');

      a.mute(true);
      await timeline!.waitFor('keepalive_started', 1, 4000);
      a.mute(false);
      await timeline!.waitFor('keepalive_stopped', 1, 4000);
      // The bridge re-INVITEs the PBX leg so the agent's audio reaches WhatsApp as a fresh stream.
      await timeline!.waitFor('pbx_leg_renewed', 1, 4000);
      const problem = await settle(hearsMore(user!.heard, 50, 'the user hears the agent once it speaks again'));

      await s.sim.userHangsUp(wacid);
      const row = await endedRow(s, wacid);
      await sippPassed(sipp);
      inOrder(await storedTimeline(s, row), 'accepted', 'keepalive_started', 'keepalive_stopped', 'pbx_leg_renewed', 'ended');
      assert.equal(problem, null);
    });

    it('hold with the PBX\'s own music: the user hears it and the bridge plays nothing', async () => {
      const a = await phone(AGENT_TONE); // keeps sending through the hold: the PBX's music on hold
      const sipp = await pbx('uas-hold-resume.xml', a.port, { holdms: 5000 });
      const s = await startBridge({ PBX_TARGET: sipp.uri, MEDIA_KEEPALIVE_POLL_MS: '300' });
      const wacid = await userCalls(s);
      await hearsMore(user!.heard, 50, 'the user hears the agent');

      await timeline!.waitFor('pbx_hold');
      await hearsMore(user!.heard, 150, 'the user hears the PBX\'s music during the hold', 4500);
      assert.equal(timeline!.count('pbx_resume'), 0, 'still on hold while the music was heard');
      await timeline!.waitFor('pbx_resume');

      await s.sim.userHangsUp(wacid);
      const row = await endedRow(s, wacid);
      await sippPassed(sipp);
      const types = await storedTimeline(s, row);
      inOrder(types, 'pbx_hold', 'pbx_resume', 'ended');
      assert.ok(!types.includes('keepalive_started'), `no keepalive while the PBX sends its own music: ${types.join(', ')}`);
    });

    it('hold with a silent PBX and MEDIA_HOLD_FILE set: the user hears the operator\'s file (800 Hz)', async () => {
      const holdFile = path.join(tmpDir(), 'hold-800hz.wav');
      fs.writeFileSync(holdFile, wavFile(sineFrame(HOLD_TONE, 8000, 8000, 0), 8000));
      const a = await phone(AGENT_TONE);
      const sipp = await pbx('uas-hold-resume.xml', a.port, { holdms: 5000 });
      const s = await startBridge({ PBX_TARGET: sipp.uri, MEDIA_HOLD_FILE: holdFile, MEDIA_KEEPALIVE_POLL_MS: '300' });
      const wacid = await userCalls(s);
      const music = user!.listen(HOLD_TONE);
      await hearsMore(user!.heard, 50, 'the user hears the agent');
      assert.equal(music.framesWithTone, 0, 'no music before the hold');

      await timeline!.waitFor('pbx_hold');
      a.mute(true);
      const started = await timeline!.waitFor('keepalive_started', 1, 4000);
      assert.equal(started.detail?.file, holdFile);
      await hearsMore(music, 100, 'the user hears the 800 Hz hold file', 4000);
      assert.equal(timeline!.count('pbx_resume'), 0, 'the music was heard during the hold');
      await timeline!.waitFor('pbx_resume');
      a.mute(false);
      const problem = await settle(hearsMore(user!.heard, 50, 'the user hears the agent after resume'));

      await s.sim.userHangsUp(wacid);
      const row = await endedRow(s, wacid);
      await sippPassed(sipp);
      inOrder(await storedTimeline(s, row), 'pbx_hold', 'keepalive_started', 'pbx_resume', 'keepalive_stopped', 'ended');
      assert.equal(problem, null);
    });
  });

  // Between the bridge and the PBX only (the provider plays no part): run once, with YCloud.
  if (provider === 'ycloud') describe('session timers', () => {
    it('the PBX refreshes (refresher=uas) by re-INVITE with the same SDP and by UPDATE: each 200 carries Session-Expires', async () => {
      const a = await phone(AGENT_TONE);
      const sipp = await pbx('uas-session-refresh.xml', a.port);
      const s = await startBridge({ PBX_TARGET: sipp.uri });
      const wacid = await userCalls(s);
      await hearsMore(user!.heard, 50, 'the user hears the agent');
      await timeline!.waitFor('session_refresh', 2);
      await hearsMore(user!.heard, 50, 'the user still hears the agent after two refreshes');
      await hearsMore(a.heard, 25, 'the agent still hears the user after two refreshes');

      const row = await endedRow(s, wacid); // the agent hangs up after the UPDATE refresh
      await sippPassed(sipp);
      assert.equal(row.outcome, 'answered');
      assert.equal(row.hangup_by, 'pbx');
      const types = await storedTimeline(s, row);
      assert.equal(types.filter((t) => t === 'session_refresh').length, 2, types.join(', '));
      assert.ok(!types.includes('pbx_media_changed'), `a refresh changes no media: ${types.join(', ')}`);
    });

    it('422 with Min-SE: 1800: the INVITE is retried with Session-Expires: 1800 and answered', async () => {
      const a = await phone(AGENT_TONE);
      const sipp = await pbx('uas-422-min-se.xml', a.port, {}, 2);
      const s = await startBridge({ PBX_TARGET: sipp.uri });
      const wacid = await userCalls(s);
      await hearsMore(user!.heard, 50, 'the user hears the agent on the retried INVITE');
      await hearsMore(a.heard, 25, 'the agent hears the user');

      await s.sim.userHangsUp(wacid);
      const row = await endedRow(s, wacid);
      await sippPassed(sipp);
      assert.equal(row.outcome, 'answered');
      assert.equal(row.sip_final_code, 200);
      assert.equal(row.agent, 'agent117');
    });
  });

  describe('transfers and redirects', () => {
    it('blind transfer by REFER: 202, NOTIFY 100 then 200, BYE to A; the user talks to B; B hangs up', async () => {
      const a = await phone(AGENT_TONE);
      const b = await phone(AGENT_B_TONE);
      const sippB = await pbx('uas-transfer-target.xml', b.port);
      const sippA = await pbx('uas-refer-blind.xml', a.port, { peer_port: sippB.port });
      const s = await startBridge({ PBX_TARGET: sippA.uri });
      const wacid = await userCalls(s);
      const hearsB = user!.listen(AGENT_B_TONE);
      await hearsMore(user!.heard, 50, 'the user hears agent A');

      const started = await timeline!.waitFor('transfer_started');
      assert.equal(started.detail?.target, `sip:200@127.0.0.1:${sippB.port}`);
      const done = await timeline!.waitFor('transferred');
      assert.equal(done.detail?.agent, 'agent200');
      a.mute(true); // A has been released
      await hearsMore(hearsB, 50, 'the user hears B after the transfer');
      await hearsMore(b.heard, 25, 'B hears the user');

      const row = await endedRow(s, wacid); // B hangs up
      await sippPassed(sippA); // 202, both NOTIFYs with the right sipfrag, BYE
      await sippPassed(sippB);
      assert.equal(row.outcome, 'answered');
      assert.equal(row.hangup_by, 'pbx');
      assert.equal(row.agent, 'agent200');
      assert.equal(row.pbx_target, `sip:200@127.0.0.1:${sippB.port}`);
      assert.ok(await s.sim.waitForRequest('terminate', wacid));
      inOrder(await storedTimeline(s, row), 'accepted', 'transfer_started', 'transferred', 'ended');
    });

    it('attended transfer: the Replaces in the Refer-To reaches the target in the new INVITE', async () => {
      const a = await phone(AGENT_TONE);
      const b = await phone(AGENT_B_TONE);
      const sippB = await pbx('uas-transfer-target-replaces.xml', b.port);
      const sippA = await pbx('uas-refer-attended.xml', a.port, { peer_port: sippB.port });
      const s = await startBridge({ PBX_TARGET: sippA.uri });
      const wacid = await userCalls(s);
      const hearsB = user!.listen(AGENT_B_TONE);
      await hearsMore(user!.heard, 50, 'the user hears agent A');
      await timeline!.waitFor('transferred');
      a.mute(true);
      await hearsMore(hearsB, 50, 'the user hears B after the attended transfer');
      const row = await endedRow(s, wacid);
      await sippPassed(sippA);
      await sippPassed(sippB); // the INVITE carried Replaces: consult-call@pbx;to-tag=bt;from-tag=at
      assert.equal(row.agent, 'agent200');
    });

    it('REFER to a phone number is refused with 403 (TRANSFER_REFUSE_PATTERN) and the call goes on', async () => {
      const a = await phone(AGENT_TONE);
      const sipp = await pbx('uas-refer-refused.xml', a.port);
      const s = await startBridge({ PBX_TARGET: sipp.uri });
      const wacid = await userCalls(s);
      await hearsMore(user!.heard, 50, 'the user hears the agent');

      const refused = await timeline!.waitFor('transfer_refused');
      assert.equal(refused.detail?.target, 'sip:+14155550100@127.0.0.1');
      await hearsMore(user!.heard, 50, 'the user still hears the agent after the refused REFER');
      await hearsMore(a.heard, 25, 'the agent still hears the user');

      const row = await endedRow(s, wacid); // the agent hangs up
      await sippPassed(sipp); // the REFER was answered 403
      assert.equal(row.outcome, 'answered');
      assert.equal(row.hangup_by, 'pbx');
      assert.equal(row.agent, 'agent119');
      const types = await storedTimeline(s, row);
      assert.ok(!types.includes('transfer_started'), types.join(', '));
    });

    it('REFER to a busy target: NOTIFY 486, the call stays on A with audio', async () => {
      const a = await phone(AGENT_TONE);
      const sippB = await pbx('uas-busy.xml', 9);
      const sippA = await pbx('uas-refer-busy.xml', a.port, { peer_port: sippB.port });
      const s = await startBridge({ PBX_TARGET: sippA.uri });
      const wacid = await userCalls(s);
      await hearsMore(user!.heard, 50, 'the user hears agent A');

      const failed = await timeline!.waitFor('transfer_failed');
      assert.equal(failed.detail?.status, 486);
      await hearsMore(user!.heard, 50, 'the user still hears A after the failed transfer');
      await hearsMore(a.heard, 25, 'A still hears the user');

      const row = await endedRow(s, wacid); // A hangs up
      await sippPassed(sippA); // 202, NOTIFY 100 Trying, NOTIFY 486
      await sippPassed(sippB);
      assert.equal(row.outcome, 'answered');
      assert.equal(row.hangup_by, 'pbx');
      assert.equal(row.agent, 'agent120');
      inOrder(await storedTimeline(s, row), 'transfer_started', 'transfer_failed', 'ended');
    });

    it('302 from the PBX: the INVITE follows the Contact and B answers with audio', async () => {
      const b = await phone(AGENT_TONE);
      const sippB = await pbx('uas-answer.xml', b.port);
      const sippA = await pbx('uas-redirect.xml', 9, { peer_port: sippB.port });
      const s = await startBridge({ PBX_TARGET: sippA.uri });
      const wacid = await userCalls(s);
      await hearsMore(user!.heard, 50, 'the user hears B');
      await hearsMore(b.heard, 25, 'B hears the user');

      await s.sim.userHangsUp(wacid);
      const row = await endedRow(s, wacid);
      await sippPassed(sippA);
      await sippPassed(sippB);
      assert.equal(row.outcome, 'answered');
      assert.equal(row.agent, 'agent101');
      assert.equal(row.sip_final_code, 200);
    });
  });

  describe('early media', () => {
    it('PBX_EARLY_MEDIA=accept: accepted on the 183, the user hears the PBX before the 200; accepted after it', async () => {
      const a = await phone(AGENT_TONE);
      const sipp = await pbx('uas-early-media.xml', a.port);
      const s = await startBridge({ PBX_TARGET: sipp.uri, PBX_EARLY_MEDIA: 'accept' });
      const wacid = await userCalls(s);
      const accept = await within(s.sim.waitForRequest('accept', wacid), 10000, () => 'accept');
      await hearsMore(user!.heard, 25, 'the user hears the early media');
      const answered = await within(s.marks.waitFor(wacid, 'pbx_answered'), 10000, () => 'the 200');
      assert.ok(accept.at < answered.t, `accept was sent ${(answered.t - accept.at).toFixed(0)} ms before the 200`);
      assert.ok(user!.heard.firstHeardAt! < answered.t, 'the user heard the PBX before the 200');

      await timeline!.waitFor('accepted');
      const live = await rows().CallRecord.findOne({ where: { wacid } });
      assert.equal(live?.state, 'accepted');
      assert.ok(live?.early_media_at);
      await hearsMore(user!.heard, 25, 'the user hears the agent after the 200');

      await s.sim.userHangsUp(wacid);
      const row = await endedRow(s, wacid);
      await sippPassed(sipp);
      assert.equal(row.outcome, 'answered');
      assert.ok(row.early_media_at && row.pbx_answered_at && row.early_media_at <= row.pbx_answered_at);
      assert.equal(s.sim.requestsFor(wacid).filter((r) => r.op === 'accept').length, 1, 'accepted once');
      inOrder(await storedTimeline(s, row), 'pbx_progress', 'early_media_accepted', 'pbx_answered', 'accepted', 'ended');
    });

    it('default (PBX_EARLY_MEDIA unset): a 183 with SDP does not accept, and its early audio is not heard; accept only after the 200', async () => {
      const a = await phone(AGENT_TONE);
      const sipp = await pbx('uas-early-media.xml', a.port);
      const s = await startBridge({ PBX_TARGET: sipp.uri });
      const wacid = await userCalls(s);
      // From the 183 on, the PBX plays its early audio (ringback, an announcement) where the INVITE's
      // SDP says, 1.5 s before its 200: only the bridge's media block keeps it from the user.
      await timeline!.waitFor('pbx_progress');
      const invited = await invitedMedia(sipps[0]!.trace);
      a.retarget(invited.port, invited.address);
      const sentBefore = a.packetsOut;
      const answered = await within(s.marks.waitFor(wacid, 'pbx_answered'), 10000, () => 'the 200');
      const early = a.packetsOut - sentBefore;
      assert.ok(early >= 25, `the PBX sent ${early} packets of early audio before its 200`);
      const accept = await s.sim.waitForRequest('accept', wacid);
      assert.ok(accept.at > answered.t, 'accept was sent after the 200');
      await hearsMore(user!.heard, 50, 'the user hears the agent');
      assert.ok(user!.heard.firstHeardAt! > answered.t, `nothing heard before the 200 (the first sound ${(answered.t - user!.heard.firstHeardAt!).toFixed(0)} ms before it)`);

      await s.sim.userHangsUp(wacid);
      const row = await endedRow(s, wacid);
      await sippPassed(sipp);
      assert.equal(row.early_media_at, null);
      assert.ok(!(await storedTimeline(s, row)).includes('early_media_accepted'));
    });
  });

  // Between the bridge and the PBX only (the provider plays no part): run once, with YCloud.
  if (provider === 'ycloud') describe('OPTIONS', () => {
    it('answers out-of-dialog OPTIONS with 200 and an Allow listing INVITE and REFER', async () => {
      await startBridge({ PBX_TARGET: 'sip:127.0.0.1:9' });
      const trace = path.join(tmpDir(), 'uac-options.msg');
      const run = await runSippUac('uac-options.xml', {
        target: `127.0.0.1:${infra.drachtio!.sipPort}`, number: 'options', extraArgs: ['-trace_msg', '-message_file', trace],
      });
      sipps.push({ run, trace });
      await sippPassed(run);
    });

    it('pings PBX targets: an unanswering one is down and tried last, the answering one up and first', async () => {
      const dead = await freePort('udp');
      const live = await pbx('uas-options.xml', 9);
      const deadUri = `sip:127.0.0.1:${dead}`;
      const s = await startBridge({ PBX_TARGET: `${deadUri},${live.uri}`, PBX_RESPONSE_TIMEOUT_MS: '800', PBX_OPTIONS_PING_S: '0' });
      // The order a call to the number tries its route's targets in.
      const order = () => s.bridge.targets.orderOf(s.bridge.numbers.all()[0]!.pbx.targets);
      assert.deepEqual(order(), [deadUri, live.uri], 'configured order before any ping');
      await s.bridge.targets.pingAll();
      assert.deepEqual(s.bridge.targets.status(), { [deadUri]: 'down', [live.uri]: 'up' });
      assert.deepEqual(order(), [live.uri, deadUri]);
      await sippPassed(live);
    });
  });
}
