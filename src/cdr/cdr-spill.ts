import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Logger } from '../log';
import { CdrSpillSink, CdrWrite, SpillableRecorder } from './call-recorder';
import { CallFields, NewCall } from './models';
import { describeDbError, isPrimaryKeyTaken, isTransientDbError } from './write-safety';

/** What replaying a spill needs of the store: the writes, with events written at most once. */
export interface CdrReplayTarget {
  createCall(id: string, fields: NewCall): Promise<void>;
  updateCall(id: string, fields: CallFields): Promise<void>;
  /** Appends the event unless the call has one of this type at this time already; true when it did. */
  addEventOnce(callId: string, type: string, detail: object | null, at: Date): Promise<boolean>;
}

/** What a replay did. */
export interface ReplayReport {
  /** Calls whose spilled writes all reached Postgres now. */
  calls: string[];
  /** Writes made (or found made already). */
  writes: number;
  /** Writes Postgres refused for what they say (logged, not kept). */
  refused: number;
  /** Writes kept in the file for the next start (Postgres went away during the replay). */
  left: number;
}

export interface CdrSpillOptions {
  /** The directory of the spill file (CDR_SPILL_DIR); created when first needed. */
  dir: string;
  /** This node's id: each node has a file of its own. */
  nodeId: string;
  /** Bound on each write of the replay, besides the pool's own timeouts. */
  attemptTimeoutMs: number;
  /** Told how many writes were lost because the spill file could not be written (a metric). */
  onLost?: (writes: number) => void;
}

/** One line of the spill file. */
interface SpillLine { callId: string; why: string; write: CdrWrite }

/**
 * Where a call's CDR writes go when they cannot reach Postgres: past the recorder's retry limit
 * (CDR_RETRY_S), or still queued when the bridge stops. Each write is one JSON line of
 * `<dir>/cdr-spill-<node id>.jsonl`, in the order the call made them, appended and synced before
 * anything else is appended. At the next start (before the calls a previous run left open are
 * recovered) the file is replayed into Postgres and removed: a create whose row exists is taken as
 * done, updates are applied in their order, an event is added unless the call has it already, so a
 * write that did reach Postgres as well is not doubled. The file holds CDR fields (phone numbers):
 * it is made readable by its owner only.
 */
export class CdrSpill implements CdrSpillSink {
  readonly file: string;
  /** Recorders with writes queued: at shutdown, they hand them over (spillPending). */
  private readonly live = new Set<SpillableRecorder>();
  /** Appends, one after the other. */
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly o: CdrSpillOptions, private readonly log: Logger) {
    this.file = path.join(o.dir, `cdr-spill-${o.nodeId.replace(/[^A-Za-z0-9._-]/g, '_')}.jsonl`);
  }

  track(r: SpillableRecorder): void {
    this.live.add(r);
  }

  untrack(r: SpillableRecorder): void {
    this.live.delete(r);
  }

  append(callId: string, writes: readonly CdrWrite[], why: string): void {
    const text = writes.map((write) => `${JSON.stringify({ callId, why, write } satisfies SpillLine)}\n`).join('');
    this.chain = this.chain.then(() => this.write(text)).catch((err: unknown) => {
      this.log.error({ err, callId, writes: writes.length, file: this.file }, 'CDR writes could not be spilled to file: lost');
      this.o.onLost?.(writes.length);
    });
  }

  /** Every recorder with writes still queued hands them over (the bridge is stopping); returns their call ids. */
  spillPending(why: string): string[] {
    const recorders = [...this.live];
    for (const r of recorders) r.spillQueued(why);
    const callIds = recorders.map((r) => r.callId);
    if (callIds.length) this.log.warn({ callIds, file: this.file, why }, 'CDR writes still queued spilled to file; the next start replays them');
    return callIds;
  }

  /** Resolves once every append so far is on disk (or logged as lost). */
  async flushed(): Promise<void> {
    let at: Promise<void>;
    do {
      at = this.chain;
      await at;
    } while (at !== this.chain);
  }

  /**
   * Writes what the spill file holds into Postgres, in order, and removes the file. Stops at the
   * first write that fails for a passing reason (Postgres went away again): it and the writes after it
   * stay in the file for the next start. Run before any call is taken (nothing appends meanwhile).
   */
  async replay(target: CdrReplayTarget): Promise<ReplayReport> {
    const report: ReplayReport = { calls: [], writes: 0, refused: 0, left: 0 };
    // Said at start-up rather than in the outage that needs it.
    await fs.mkdir(this.o.dir, { recursive: true }).then(() => fs.access(this.o.dir, fsConstants.W_OK)).catch((err: unknown) => {
      this.log.error({ err, dir: this.o.dir }, 'CDR_SPILL_DIR is not a writable directory: CDR writes Postgres cannot take will be lost');
    });
    let text: string;
    try {
      text = await fs.readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return report;
      throw err;
    }
    const byCall = new Map<string, string[]>();
    text.split('\n').forEach((raw, i) => {
      if (!raw.trim()) return;
      const line = parseLine(raw);
      if (!line) return this.log.error({ file: this.file, line: i + 1, bytes: raw.length }, 'unreadable line in the CDR spill file: skipped');
      let lines = byCall.get(line.callId);
      if (!lines) byCall.set(line.callId, (lines = []));
      lines.push(raw);
    });
    const left: string[] = [];
    for (const [callId, lines] of byCall) {
      if (left.length > 0) {
        left.push(...lines);
        continue;
      }
      let done = 0;
      for (const raw of lines) {
        const outcome = await this.apply(target, parseLine(raw)!);
        if (outcome === 'transient') break;
        if (outcome === 'refused') report.refused++;
        else report.writes++;
        done++;
      }
      if (done < lines.length) {
        left.push(...lines.slice(done));
        this.log.warn({ callId, replayed: done, left: lines.length - done }, 'CDR replay from the spill file stopped: Postgres unreachable; the rest stays for the next start');
      } else {
        report.calls.push(callId);
        this.log.info({ callId, writes: lines.length }, 'CDR writes replayed from the spill file');
      }
    }
    report.left = left.length;
    if (left.length > 0) {
      const tmp = `${this.file}.tmp`;
      await fs.writeFile(tmp, left.map((l) => `${l}\n`).join(''), { mode: 0o600 });
      await fs.rename(tmp, this.file);
    } else {
      await fs.rm(this.file, { force: true });
    }
    this.log.info({ file: this.file, calls: report.calls.length, writes: report.writes, refused: report.refused, left: report.left }, 'CDR spill file replayed');
    return report;
  }

  private async apply(target: CdrReplayTarget, line: SpillLine): Promise<'ok' | 'refused' | 'transient'> {
    const { callId, write: w } = line;
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`CDR replay write took longer than ${this.o.attemptTimeoutMs} ms`)), this.o.attemptTimeoutMs);
    });
    const write = (async () => {
      switch (w.kind) {
        case 'create': return target.createCall(callId, w.fields);
        case 'update': return target.updateCall(callId, w.fields);
        case 'event': return void (await target.addEventOnce(callId, w.type, w.detail, w.at));
      }
    })();
    write.catch(() => undefined);
    try {
      await Promise.race([write, limit]);
      return 'ok';
    } catch (err) {
      // Written before (the write reached Postgres after all, or an earlier replay was cut short).
      if (w.kind === 'create' && isPrimaryKeyTaken(err, 'calls')) return 'ok';
      if (isTransientDbError(err)) return 'transient';
      this.log.error({ callId, err: describeDbError(err) }, `CDR ${w.kind === 'event' ? `event ${w.type}` : w.kind} from the spill file refused by Postgres: skipped`);
      return 'refused';
    } finally {
      clearTimeout(timer);
    }
  }

  private async write(text: string): Promise<void> {
    await fs.mkdir(this.o.dir, { recursive: true });
    const fh = await fs.open(this.file, 'a', 0o600);
    try {
      await fh.appendFile(text);
      await fh.datasync();
    } finally {
      await fh.close();
    }
  }
}

const ISO_DATE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;

/** A line back as it was appended (its times as Dates), or null when it is not one. */
function parseLine(raw: string): SpillLine | null {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return null;
  }
  const l = v as { callId?: unknown; why?: unknown; write?: { kind?: unknown; fields?: unknown; type?: unknown; detail?: unknown; at?: unknown } };
  const w = l?.write;
  if (typeof l?.callId !== 'string' || !w) return null;
  const why = typeof l.why === 'string' ? l.why : '';
  if ((w.kind === 'create' || w.kind === 'update') && w.fields && typeof w.fields === 'object') {
    // The call's times (offered_at, ended_at ...) were Dates when spilled.
    const fields = Object.fromEntries(Object.entries(w.fields).map(([k, x]) => [k, k.endsWith('_at') && typeof x === 'string' && ISO_DATE.test(x) ? new Date(x) : x]));
    return { callId: l.callId, why, write: { kind: w.kind, fields: fields as NewCall } };
  }
  if (w.kind === 'event' && typeof w.type === 'string' && typeof w.at === 'string' && ISO_DATE.test(w.at)) {
    const detail = w.detail && typeof w.detail === 'object' ? w.detail : null;
    return { callId: l.callId, why, write: { kind: 'event', type: w.type, detail, at: new Date(w.at) } };
  }
  return null;
}
