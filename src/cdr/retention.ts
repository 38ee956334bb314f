import { Config } from '../config';
import { Logger } from '../log';
import { Periodic } from '../util/periodic';
import { RetentionRecords, RetentionTask } from './retention-records';
import { describeDbError } from './write-safety';

/** How the sweep paces itself. */
export interface SweepOptions {
  /** Most rows one statement deletes (or scrubs). */
  batchSize: number;
  /** Wait between two batches, so the sweep never holds Postgres busy for long. */
  pauseMs: number;
  /** Wait between two rounds. */
  intervalMs: number;
  /** A processed connect's SDP keeps its ICE password and SDES keys this long (a call set up by then). */
  sdpScrubAfterMs: number;
}

export const DEFAULT_SWEEP: SweepOptions = { batchSize: 500, pauseMs: 200, intervalMs: 15 * 60 * 1000, sdpScrubAfterMs: 10 * 60 * 1000 };

/** What one task of a round did. */
export interface TaskReport { task: string; rows: number; batches: number; ms: number; error?: string }

/**
 * Deletes what the bridge keeps past its retention (see docs/data-retention.md), in small batches
 * with a pause between them; each statement is bounded by the pool's statement timeout
 * (DATABASE_TIMEOUT_MS). A failed batch ends that task for the round (logged); stop() ends the round
 * after the batch in flight.
 */
export class RetentionSweeper {
  private readonly opts: SweepOptions;
  private readonly periodic: Periodic;
  private stopped = false;
  private wake: (() => void) | null = null;

  constructor(private readonly records: RetentionRecords, private readonly retention: Config['retention'], private readonly log: Logger, opts: Partial<SweepOptions> = {}) {
    this.opts = { ...DEFAULT_SWEEP, ...opts };
    this.periodic = new Periodic(async () => {
      await this.sweep();
    }, this.opts.intervalMs);
  }

  /** Starts the periodic rounds (the first at once, in the background). */
  start(): void {
    this.stopped = false;
    void this.periodic.start();
  }

  /** Stops: the round in flight ends after its current statement. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.periodic.stop();
  }

  /** One round over every table; resolves with what each task did. */
  async sweep(now = Date.now()): Promise<TaskReport[]> {
    const reports: TaskReport[] = [];
    for (const t of this.records.tasks(this.retention, this.opts.sdpScrubAfterMs)) {
      if (this.stopped) break;
      const cutoff = t.cutoff(now);
      if (!cutoff) continue;
      reports.push(await this.run(t, cutoff));
    }
    const done = reports.filter((r) => r.rows > 0 || r.error);
    if (done.length) this.log.info({ tasks: done }, 'retention sweep');
    return reports;
  }

  private async run(t: RetentionTask, cutoff: Date): Promise<TaskReport> {
    const started = Date.now();
    const report: TaskReport = { task: t.name, rows: 0, batches: 0, ms: 0 };
    while (!this.stopped) {
      let n: number;
      try {
        n = await t.batch(cutoff, this.opts.batchSize);
      } catch (err) {
        const e = describeDbError(err);
        report.error = `${e.code}: ${e.message}`;
        this.log.warn({ task: t.name, err: e, code: e.code }, 'retention sweep batch failed: trying again next round');
        break;
      }
      report.batches++;
      report.rows += n;
      if (n < this.opts.batchSize) break;
      await this.pause();
    }
    report.ms = Date.now() - started;
    return report;
  }

  private pause(): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, this.opts.pauseMs);
      function done(): void {
        clearTimeout(t);
        resolve();
      }
      this.wake = () => {
        this.wake = null;
        done();
      };
    });
  }
}
