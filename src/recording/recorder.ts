import { EventEmitter } from 'node:events';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { CdrStore } from '../cdr/store';
import { Config } from '../config';
import { Logger } from '../log';
import { NgAddress, RtpEngine } from '../media/rtpengine';
import { Periodic } from '../util/periodic';
import { MixdownResult } from './mixdown';
import { parseRecordingMeta } from './recording-meta';

export interface RecordingFile { path: string; bytes: number; seconds: number }

/** The CDR statements the recorder makes: a call's recording result, and the retention of the files. */
export type RecordingRecords = Pick<CdrStore, 'updateCall' | 'addEvent' | 'expiredRecordings' | 'markRecordingsDeleted'>;

/** How long a finished call's files may take to appear (rtpengine's metadata; the recording daemon's WAV). */
const APPEAR_MS = 30_000;
const POLL_MS = 200;
/** Calls whose SDPs are kept at most (far above what one bridge carries at once). */
const MAX_CALLS = 10_000;
const MAX_SDPS_PER_CALL = 16;
/** A pcap mixdown that takes longer than this is abandoned (the pcap stays in the spool dir). */
const MIXDOWN_MS = 120_000;

/**
 * Call recording through rtpengine (RECORDING=all). rtpengine records each call from its acceptance;
 * at the end the recording becomes `<RECORDING_DIR>/<call id>.wav`, stereo, the WhatsApp user on the
 * left and the PBX side on the right, and its path, size and length go into the CDR.
 *
 * - proc (hosts with rtpengine's kernel module): rtpengine-recording writes `<call id>-mix.wav`
 *   (--output-pattern=%c-%t --output-mixed), renamed here once it is complete.
 * - pcap (userspace rtpengine, as in the tests): rtpengine writes a pcap of what it received on each leg
 *   and a metadata file with the SDPs; a worker thread decodes it (G.711, opus) into the WAV and the
 *   spool files are removed.
 *
 * Emits 'finished' (callId, RecordingFile | null) once the CDR has the result.
 */
export class Recorder extends EventEmitter {
  private readonly retention: Periodic | null;
  private mixdowns: Promise<unknown> = Promise.resolve();
  /**
   * The latest SDP rtpengine wrote toward each side of each call in progress: they name rtpengine's
   * port on each leg and each leg's payload types, which is how the pcap's packets are told apart and
   * decoded (rtpengine's own metadata has SDPs only when recording starts with the call's offer).
   */
  private readonly sdps = new Map<string, string[]>();

  constructor(private readonly cfg: Config['recording'], private readonly rtp: RtpEngine, private readonly cdr: RecordingRecords, private readonly log: Logger) {
    super();
    this.retention = cfg.retentionDays > 0 ? new Periodic(async () => { await this.sweep(); }, 60 * 60 * 1000) : null;
    rtp.on('sdp', (callId, _to, sdp) => {
      let kept = this.sdps.get(callId);
      if (!kept) {
        // Bounded: a call that never reaches forget() (a bug elsewhere) cannot grow this without end.
        if (this.sdps.size >= MAX_CALLS) this.sdps.delete(this.sdps.keys().next().value!);
        this.sdps.set(callId, (kept = []));
      }
      // Every SDP of the call (a leg moved by a re-INVITE keeps its old port's packets decodable), the latest last.
      kept.push(sdp);
      if (kept.length > MAX_SDPS_PER_CALL) kept.shift();
    });
  }

  /** The call is over and was not recorded: drop what was kept for it. */
  forget(callId: string): void {
    this.sdps.delete(callId);
  }

  async start(): Promise<void> {
    await fs.mkdir(this.cfg.outputDir, { recursive: true });
    // rtpengine creates these under its --recording-dir; without them every recording would fail at the end of its call.
    const spool = path.join(this.cfg.spoolDir, this.cfg.method === 'pcap' ? 'pcaps' : '');
    if (!(await fs.stat(spool).then((st) => st.isDirectory(), () => false))) {
      this.log.error({ spoolDir: this.cfg.spoolDir, method: this.cfg.method },
        'RECORDING=all but rtpengine\'s recording spool is not here: run rtpengine with --recording-dir=RECORDING_SPOOL_DIR (shared with the bridge) and --recording-method=RECORDING_METHOD');
    }
    if (this.cfg.announcementFile && !(await fs.access(this.cfg.announcementFile).then(() => true, () => false))) {
      this.log.warn({ file: this.cfg.announcementFile }, 'RECORDING_ANNOUNCEMENT_FILE is not readable here; rtpengine must be able to read it at that path');
    }
    void this.retention?.start();
  }

  async stop(): Promise<void> {
    await this.retention?.stop();
  }

  /** rtpengine starts recording the call (at acceptance). */
  async begin(ng: NgAddress, callId: string): Promise<void> {
    await this.rtp.startRecording(ng, { 'call-id': callId });
  }

  /** rtpengine closes the call's recording now (before its delete, whose files close only after the delete delay). */
  async close(ng: NgAddress, callId: string): Promise<void> {
    await this.rtp.stopRecording(ng, { 'call-id': callId });
  }

  /** Turns the closed recording into its WAV and writes it into the CDR; never throws. */
  async finish(callId: string, log: Logger = this.log.child({ callId })): Promise<RecordingFile | null> {
    if (this.cfg.method !== 'pcap') this.forget(callId);
    let file: RecordingFile | null = null;
    try {
      file = this.cfg.method === 'pcap' ? await this.fromPcap(callId) : await this.fromDaemon(callId);
      await this.cdr.updateCall(callId, { recording_path: file.path, recording_bytes: String(file.bytes), recording_seconds: file.seconds.toFixed(3) });
      await this.cdr.addEvent(callId, 'recorded', { path: file.path, bytes: file.bytes, seconds: file.seconds });
      log.info({ ...file }, 'call recording written');
    } catch (err) {
      log.error({ err }, 'call recording failed');
      await this.cdr.addEvent(callId, 'recording_failed', { message: (err as Error).message }).catch(() => undefined);
    }
    this.emit('finished', callId, file);
    return file;
  }

  private async fromPcap(callId: string): Promise<RecordingFile> {
    const sdps = this.sdps.get(callId) ?? [];
    this.sdps.delete(callId);
    const metaDir = path.join(this.cfg.spoolDir, 'metadata');
    // rtpengine-meta-<call id>-<random>.txt, moved here when the recording was closed.
    const metaName = await appears(metaDir, (n) => n.includes(`${callId}-`) && n.endsWith('.txt'));
    const metaPath = path.join(metaDir, metaName);
    const meta = parseRecordingMeta(`${await fs.readFile(metaPath, 'utf8')}\n${sdps.join('\n')}`);
    if (!meta.pcapPath) throw new Error(`rtpengine's metadata ${metaPath} names no pcap file`);
    if (meta.legs.length === 0) throw new Error(`no SDP tells the legs of ${callId} apart`);
    const out = path.join(this.cfg.outputDir, `${callId}.wav`);
    const part = `${out}.part`;
    // One mixdown at a time: a burst of call ends queues up instead of taking every core.
    const job = this.mixdowns.then(() => runMixdown(meta.pcapPath!, meta.legs, part));
    this.mixdowns = job.catch(() => undefined);
    const result = await job;
    await fs.rename(part, out);
    await Promise.all([fs.rm(metaPath, { force: true }), fs.rm(meta.pcapPath, { force: true })]);
    return { path: out, bytes: result.bytes, seconds: result.seconds };
  }

  private async fromDaemon(callId: string): Promise<RecordingFile> {
    const name = await appears(this.cfg.outputDir, (n) => n === `${callId}-mix.wav`);
    const from = path.join(this.cfg.outputDir, name);
    await steady(from);
    const out = path.join(this.cfg.outputDir, `${callId}.wav`);
    await fs.rename(from, out);
    const { size } = await fs.stat(out);
    const header = Buffer.alloc(44);
    const fh = await fs.open(out, 'r');
    try {
      await fh.read(header, 0, 44, 0);
    } finally {
      await fh.close();
    }
    const byteRate = header.readUInt32LE(28);
    return { path: out, bytes: size, seconds: byteRate ? (size - 44) / byteRate : 0 };
  }

  /** Deletes recordings older than RECORDING_RETENTION_DAYS (oldest first, in batches) and marks their CDRs. */
  async sweep(): Promise<number> {
    let deleted = 0;
    for (;;) {
      const rows = await this.cdr.expiredRecordings(this.cfg.retentionDays, 500);
      if (rows.length === 0) break;
      for (const r of rows) await fs.rm(r.recording_path, { force: true });
      await this.cdr.markRecordingsDeleted(rows.map((r) => r.id));
      deleted += rows.length;
      if (rows.length < 500) break;
    }
    if (deleted) this.log.info({ deleted, retentionDays: this.cfg.retentionDays }, 'old call recordings deleted');
    return deleted;
  }
}

function runMixdown(pcapPath: string, legs: unknown, outFile: string): Promise<MixdownResult> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(path.join(__dirname, 'mixdown-worker.js'), { workerData: { pcapPath, legs, outFile } });
    const timer = setTimeout(() => {
      void worker.terminate();
      reject(new Error(`mixdown of ${pcapPath} took over ${MIXDOWN_MS} ms`));
    }, MIXDOWN_MS);
    worker.once('message', (r: MixdownResult) => {
      clearTimeout(timer);
      resolve(r);
    });
    worker.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    worker.once('exit', (code) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`mixdown worker exited with ${code}`));
    });
  });
}

/** The first name in `dir` that `match` accepts, waiting (bounded) for it to appear. */
async function appears(dir: string, match: (name: string) => boolean): Promise<string> {
  const deadline = Date.now() + APPEAR_MS;
  for (;;) {
    const found = (await fs.readdir(dir).catch(() => [] as string[])).find(match);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no recording file appeared in ${dir} within ${APPEAR_MS} ms`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/** Waits (bounded) until a file the recording daemon writes has stopped growing. */
async function steady(file: string): Promise<void> {
  const deadline = Date.now() + APPEAR_MS;
  let last = -1;
  for (;;) {
    const { size } = await fs.stat(file);
    if (size === last) return;
    if (Date.now() > deadline) throw new Error(`${file} still growing after ${APPEAR_MS} ms`);
    last = size;
    await new Promise((r) => setTimeout(r, 1000));
  }
}
