import { QueryTypes, Sequelize } from 'sequelize';
import { Config } from '../config';
import { Logger } from '../log';
import { Periodic } from '../util/periodic';
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

interface Task {
  name: string;
  /** One batch: a statement touching at most :limit rows, with :cutoff (a timestamp) bound. */
  sql: string;
  /** The cutoff, or null when the task is off (0 days). */
  cutoff: (now: number) => Date | null;
}

const DAY_MS = 24 * 3600 * 1000;
const daysAgo = (days: number) => (now: number): Date | null => (days > 0 ? new Date(now - days * DAY_MS) : null);

/** Same customer and business: a later reply (by time, then id) than r. */
const NEWER_REPLY = `EXISTS (SELECT 1 FROM call_permission_replies n
  WHERE n.business_number = r.business_number AND n.customer_number = r.customer_number
    AND (n.replied_at > r.replied_at OR (n.replied_at = r.replied_at AND n.id > r.id)))`;

/**
 * One batch of each task: rows picked by ctid with FOR UPDATE SKIP LOCKED, so sweepers on several
 * nodes take different rows and never wait on each other (running on all of them is harmless). Rows
 * still in use are never picked: unprocessed events, calls not ended, a call whose recording file is
 * still on disk (the recording sweep needs its row), the permission reply in force for a customer.
 */
function tasks(r: Config['retention'], sdpScrubAfterMs: number): Task[] {
  return [
    {
      // Not a deletion: ICE passwords and SDES keys are of no use once a call is set up.
      name: 'connect SDP secrets',
      sql: `UPDATE webhook_events SET payload = jsonb_set(payload, '{callingConnect,sdp}', to_jsonb(
              regexp_replace(regexp_replace(payload #>> '{callingConnect,sdp}',
                'a=ice-pwd:[^\\r\\n]*', 'a=ice-pwd:[Redacted]', 'g'), 'inline:[^\\s|]+', 'inline:[Redacted]', 'g')))
            WHERE ctid IN (SELECT ctid FROM webhook_events
              WHERE type = 'whatsapp.call.connect' AND processed_at < :cutoff
                AND (payload #>> '{callingConnect,sdp}') ~ 'a=ice-pwd:[^[]|inline:[^[]'
              LIMIT :limit FOR UPDATE SKIP LOCKED)`,
      cutoff: (now) => new Date(now - sdpScrubAfterMs),
    },
    {
      name: 'webhook_events',
      sql: `DELETE FROM webhook_events WHERE ctid IN (SELECT ctid FROM webhook_events
              WHERE received_at < :cutoff AND processed_at IS NOT NULL LIMIT :limit FOR UPDATE SKIP LOCKED)`,
      cutoff: daysAgo(r.webhookEventsDays),
    },
    {
      name: 'webhook_quarantine',
      sql: `DELETE FROM webhook_quarantine WHERE ctid IN (SELECT ctid FROM webhook_quarantine
              WHERE last_received_at < :cutoff LIMIT :limit FOR UPDATE SKIP LOCKED)`,
      cutoff: daysAgo(r.quarantineDays),
    },
    {
      // call_events go with their call (ON DELETE CASCADE).
      name: 'calls',
      sql: `DELETE FROM calls WHERE ctid IN (SELECT ctid FROM calls
              WHERE ended_at < :cutoff AND (recording_path IS NULL OR recording_deleted_at IS NOT NULL)
              LIMIT :limit FOR UPDATE SKIP LOCKED)`,
      cutoff: daysAgo(r.cdrDays),
    },
    {
      // A reply a later one has replaced: the decision stays with the later one.
      name: 'permission replies replaced',
      sql: `DELETE FROM call_permission_replies WHERE ctid IN (SELECT r.ctid FROM call_permission_replies r
              WHERE r.replied_at < :cutoff AND ${NEWER_REPLY} LIMIT :limit FOR UPDATE OF r SKIP LOCKED)`,
      cutoff: daysAgo(r.permissionsDays),
    },
    {
      // A customer's only reply, a temporary grant expired long ago: "no permission" either way.
      name: 'permission replies expired',
      sql: `DELETE FROM call_permission_replies WHERE ctid IN (SELECT r.ctid FROM call_permission_replies r
              WHERE r.replied_at < :cutoff AND r.response = 'accept' AND NOT r.is_permanent AND r.expires_at < :cutoff
                AND NOT EXISTS (SELECT 1 FROM call_permission_replies o
                  WHERE o.business_number = r.business_number AND o.customer_number = r.customer_number AND o.id <> r.id)
              LIMIT :limit FOR UPDATE OF r SKIP LOCKED)`,
      cutoff: daysAgo(r.permissionsDays),
    },
    {
      name: 'permission requests',
      sql: `DELETE FROM call_permission_requests WHERE ctid IN (SELECT ctid FROM call_permission_requests
              WHERE sent_at < :cutoff LIMIT :limit FOR UPDATE SKIP LOCKED)`,
      cutoff: daysAgo(r.permissionsDays),
    },
  ];
}

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

  constructor(private readonly db: Sequelize, private readonly retention: Config['retention'], private readonly log: Logger, opts: Partial<SweepOptions> = {}) {
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
    for (const t of tasks(this.retention, this.opts.sdpScrubAfterMs)) {
      if (this.stopped) break;
      const cutoff = t.cutoff(now);
      if (!cutoff) continue;
      reports.push(await this.run(t, cutoff));
    }
    const done = reports.filter((r) => r.rows > 0 || r.error);
    if (done.length) this.log.info({ tasks: done }, 'retention sweep');
    return reports;
  }

  private async run(t: Task, cutoff: Date): Promise<TaskReport> {
    const started = Date.now();
    const report: TaskReport = { task: t.name, rows: 0, batches: 0, ms: 0 };
    while (!this.stopped) {
      let n: number;
      try {
        n = await this.batch(t.sql, cutoff);
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

  private async batch(sql: string, cutoff: Date): Promise<number> {
    const [, meta] = await this.db.query(sql, { replacements: { cutoff, limit: this.opts.batchSize }, type: QueryTypes.RAW });
    return (meta as { rowCount?: number } | undefined)?.rowCount ?? 0;
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
