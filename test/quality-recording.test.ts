import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { rows, testDb } from './harness/db-rows';
import crypto from 'node:crypto';
import { connectDatabase } from '../src/cdr/db';
import { CdrStore } from '../src/cdr/store';
import { createLogger } from '../src/log';
import { wavFile, wavHeader } from '../src/media/wav';
import { Recorder } from '../src/recording/recorder';
import { ngRecord } from '../src/media/ng-answer';
import { legQuality } from '../src/media/quality';
import { RtpEngine } from '../src/media/rtpengine';
import { MediaStats } from '../src/media/stats';
import { forEachProvider, ProviderName, startStack, TestStack } from './harness/bridge';
import { infra } from './harness/global-setup';
import { RtpPhone } from './harness/rtp-phone';
import { RtpengineInstance, startRtpengine } from './harness/rtpengine';
import { startSippUas } from './harness/sipp';
import { callParts } from './harness/call-parts';
import { sineFrame, toneShare } from './harness/tone';
import { WaUser } from './harness/wa-user';
import { nextObserved, whenEnded } from './harness/watch';

const USER_TONE = 440;
const AGENT_TONE = 1000;
const ANNOUNCEMENT_TONE = 700;

/**
 * For each provider, call quality from real RTCP (a libwebrtc user and an RTP phone that sends receiver reports), and
 * recording through rtpengine (pcap method) into a stereo WAV, with the announcement played first.
 */
describe('call quality and recording', function () {
  this.timeout(60000);
  forEachProvider((provider) => qualityAndRecording(provider));
});

function qualityAndRecording(provider: ProviderName): void {
  const parts = callParts();
  let rtp: RtpengineInstance | null = null;
  let dir: string | null = null;

  afterEach(async () => {
    await rtp?.proc.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    rtp = dir = null;
  });

  async function call(env: Record<string, string>): Promise<{ s: TestStack; wacid: string }> {
    parts.phone = new RtpPhone(AGENT_TONE, USER_TONE, { rtcp: true });
    const rtpPort = await parts.phone.start();
    parts.sipp = await startSippUas('uas-answer.xml', { rtpPort });
    parts.stack = await startStack({ PBX_TARGET: parts.sipp.uri, ...env }, { provider });
    parts.user = new WaUser(USER_TONE, AGENT_TONE);
    const { wacid } = await parts.stack.sim.userCalls(parts.user);
    return { s: parts.stack, wacid };
  }

  it('per-leg packet loss, jitter, round trip and MOS from rtpengine, in the CDR', async () => {
    rtp = await startRtpengine({ portMin: 37400, portMax: 37599 });
    const { s, wacid } = await call({ RTPENGINE_NG: `${rtp.ng.host}:${rtp.ng.port}` });
    await parts.user!.heard.whenHeard(50);
    // rtpengine sends each party a sender report every 5 s, and each answers with receiver reports
    // (libwebrtc every few seconds): wait, bounded, until rtpengine has figures from both.
    const [live] = s.bridge.calls.list();
    const ng = new RtpEngine([rtp.ng], 2000);
    const started = Date.now();
    let reported: string[] = [];
    try {
      // The bridge's tags are wa-… and pbx-…: the same leg names the bridge gives them.
      while (reported.length < 2 && Date.now() - started < 30000) {
        await new Promise((r) => setTimeout(r, 500));
        const res = await ng.query(rtp.ng, { 'call-id': live!.id });
        const labels = Object.fromEntries(Object.keys(ngRecord(res.tags)).map((t) => [t, t.startsWith('wa-') ? 'whatsapp' : 'pbx']));
        reported = Object.keys(legQuality(res, labels));
      }
    } finally {
      await ng.close();
    }
    const rtcp = parts.phone!.rtcp!;
    assert.equal(reported.length, 2, `both parties' reports reached rtpengine (legs ${reported.join(',')}; the PBX phone got ${rtcp.srIn} sender reports and sent ${rtcp.rrOut} receiver reports, after ${Date.now() - started} ms)`);
    await s.sim.userHangsUp(wacid);
    const row = (await rows().CallRecord.findByPk(await whenEnded(s.bridge, wacid)))!;
    const q = (row.media_stats as MediaStats).quality;
    assert.ok(q.whatsapp, `the WhatsApp user's reports gave figures: ${JSON.stringify(row.media_stats)}`);
    assert.ok(q.pbx, `the PBX phone's reports gave figures: ${JSON.stringify(row.media_stats)}`);
    for (const [leg, l] of Object.entries(q)) {
      // Loopback with no loss: a clean line (LQ MOS of G.711/opus tops out around 4.4).
      assert.ok(l.mos >= 4 && l.mos <= 4.5, `${leg} MOS ${l.mos}`);
      assert.ok(l.packetLossPct >= 0 && l.packetLossPct < 1, `${leg} loss ${l.packetLossPct}`);
      assert.ok(l.jitterMs >= 0 && l.jitterMs < 40, `${leg} jitter ${l.jitterMs}`);
      assert.ok(l.reports >= 1);
    }
    assert.ok(q.pbx!.rttMs !== null && q.pbx!.rttMs < 50, `PBX leg round trip ${q.pbx!.rttMs} ms`);
    assert.equal(Number(row.mos), Math.min(q.whatsapp!.mos, q.pbx!.mos));
    assert.equal(Number(row.jitter_ms), Math.max(q.whatsapp!.jitterMs, q.pbx!.jitterMs));
    assert.ok(row.packet_loss_pct !== null);
  });

  it('RECORDING=all: announcement first, then a stereo WAV named by the call id with both parties in the CDR; retention deletes it', async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-rec-'));
    const spool = path.join(dir, 'spool');
    const out = path.join(dir, 'recordings');
    fs.mkdirSync(spool);
    rtp = await startRtpengine({ portMin: 37400, portMax: 37599, recordingDir: spool });
    // 1.5 s of 700 Hz stands in for "this call may be recorded".
    const announcement = path.join(dir, 'announcement.wav');
    fs.writeFileSync(announcement, wavFile(sineFrame(ANNOUNCEMENT_TONE, 8000, 12000, 0), 8000));
    const { s, wacid } = await call({
      RTPENGINE_NG: `${rtp.ng.host}:${rtp.ng.port}`, RECORDING: 'all', RECORDING_METHOD: 'pcap',
      RECORDING_SPOOL_DIR: spool, RECORDING_DIR: out, RECORDING_ANNOUNCEMENT_FILE: announcement, RECORDING_RETENTION_DAYS: '30',
    });
    const heardAnnouncement = parts.user!.listen(ANNOUNCEMENT_TONE);
    await heardAnnouncement.whenHeard(25);
    await parts.user!.heard.whenHeard(50); // then the agent
    await parts.phone!.heard.whenHeard(50); // and the agent hears the user
    assert.ok(parts.user!.heard.firstHeardAt! > heardAnnouncement.firstHeardAt!, 'the announcement came before the agent');
    const gap = parts.phone!.heard.firstHeardAt! - heardAnnouncement.firstHeardAt!;
    assert.ok(gap > 700, `the agent heard the user only after the 1.5 s announcement (${gap.toFixed(0)} ms after the user heard it start)`);
    await new Promise((r) => setTimeout(r, 1000));
    const finished = nextObserved(s.bridge, 'recording-finished').then(([id]) => id);
    await s.sim.userHangsUp(wacid);
    const id = await whenEnded(s.bridge, wacid);
    assert.equal(await finished, id);

    const row = (await rows().CallRecord.findByPk(id))!;
    assert.equal(row.recording_path, path.join(out, `${id}.wav`));
    const wav = fs.readFileSync(row.recording_path!);
    assert.equal(Number(row.recording_bytes), wav.length);
    assert.equal(wav.readUInt16LE(22), 2, 'stereo');
    assert.equal(wav.readUInt32LE(24), 8000);
    const seconds = Number(row.recording_seconds);
    assert.ok(seconds > 2 && seconds < 15, `recording length ${seconds} s`);
    // Left: the WhatsApp user (440 Hz); right: the agent (1000 Hz). Each checked over its loud second.
    const frames = (wav.length - 44) / 4;
    const channel = (c: 0 | 1) => Int16Array.from({ length: frames }, (_, i) => wav.readInt16LE(44 + i * 4 + c * 2));
    const loudest = (x: Int16Array) => {
      let best: Int16Array = new Int16Array(0);
      let bestRms = 0;
      for (let at = 0; at + 8000 <= x.length; at += 4000) {
        const w = x.subarray(at, at + 8000);
        const { rms } = toneShare(w, 1, 8000);
        if (rms > bestRms) [best, bestRms] = [w, rms];
      }
      return best;
    };
    const left = loudest(channel(0));
    const right = loudest(channel(1));
    assert.ok(toneShare(left, USER_TONE, 8000).share > 0.8, `left channel carries the user's ${USER_TONE} Hz (${JSON.stringify(toneShare(left, USER_TONE, 8000))})`);
    assert.ok(toneShare(right, AGENT_TONE, 8000).share > 0.8, `right channel carries the agent's ${AGENT_TONE} Hz (${JSON.stringify(toneShare(right, AGENT_TONE, 8000))})`);
    assert.ok(toneShare(left, AGENT_TONE, 8000).share < 0.1 && toneShare(right, USER_TONE, 8000).share < 0.1, 'the channels are not mixed');
    const types = (await s.bridge.cdr.events(id)).map((e) => e.type);
    for (const t of ['announcement_played', 'recording_started', 'recorded']) assert.ok(types.includes(t), `${t} in ${types.join(',')}`);
    assert.deepEqual(fs.readdirSync(path.join(spool, 'pcaps')), [], 'the spool pcap was removed once converted');

    // Retention: the same call, 31 days older, is swept.
    await testDb().query(`UPDATE calls SET offered_at = now() - interval '31 days' WHERE id = :id`, { replacements: { id } });
    assert.equal(await s.bridge.recorder!.sweep(), 1);
    assert.equal(fs.existsSync(row.recording_path!), false);
    const swept = (await rows().CallRecord.findByPk(id))!;
    assert.ok(swept.recording_deleted_at);
  });

  it('an announcement rtpengine cannot play costs the caller nothing: connected unannounced, the failure in the timeline', async () => {
    const { s, wacid } = await call({ RECORDING_ANNOUNCEMENT_FILE: '/nonexistent/notice.wav' });
    await parts.user!.heard.whenHeard(25);
    await parts.phone!.heard.whenHeard(25);
    await s.sim.userHangsUp(wacid);
    const id = await whenEnded(s.bridge, wacid);
    const row = (await rows().CallRecord.findByPk(id))!;
    assert.equal(row.outcome, 'answered');
    const events = await s.bridge.cdr.events(id);
    const failed = events.find((e) => e.type === 'announcement_failed');
    assert.ok(failed, events.map((e) => e.type).join(','));
    assert.equal((failed.detail as { file: string }).file, '/nonexistent/notice.wav');
  });
}

// No provider in this one: the recorder and the daemon's file, with a stub rtpengine and no calls.

describe('recording with the recording daemon (RECORDING_METHOD=proc), the bridge\'s side', () => {
  it('waits for <call id>-mix.wav, renames it <call id>.wav and puts it in the CDR', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-proc-'));
    const db = connectDatabase(infra.databaseUrl);
    const rtpStub = new RtpEngine([{ host: '127.0.0.1', port: 9 }], 100);
    try {
      const id = crypto.randomUUID();
      const cdr = new CdrStore(db);
      await cdr.createCall(id, { direction: 'inbound', state: 'ended', offered_at: new Date() });
      const recorder = new Recorder({ enabled: true, method: 'proc', spoolDir: dir, outputDir: dir, retentionDays: 0, announcementFile: null }, rtpStub, cdr, createLogger('silent'));
      const finishing = recorder.finish(id);
      // The daemon writes its file a moment later (2 s of stereo 8 kHz).
      setTimeout(() => fs.writeFileSync(path.join(dir, `${id}-mix.wav`), Buffer.concat([wavHeader(64000, 8000, 2), Buffer.alloc(64000)])), 300);
      const file = await finishing;
      assert.deepEqual(file, { path: path.join(dir, `${id}.wav`), bytes: 64044, seconds: 2 });
      assert.equal(fs.existsSync(path.join(dir, `${id}-mix.wav`)), false);
      const row = (await rows().CallRecord.findByPk(id))!;
      assert.equal(row.recording_path, file!.path);
      assert.equal(Number(row.recording_seconds), 2);
      assert.deepEqual((await cdr.events(id)).map((e) => e.type), ['recorded']);
    } finally {
      await rtpStub.close();
      await db.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
