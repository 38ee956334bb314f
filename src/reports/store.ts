import { QueryTypes, Sequelize } from 'sequelize';
import { CALL_COLUMNS, CallDetailRow, CallRow, Column } from './columns';
import { PagedCsvOptions, PagedCsvStream } from './export-stream';
import { csvHeader, csvRows } from './csv';
import {
  CallFilter, checkResolvedBound, checkSummaryRange, Cursor, encodeCursor, GroupBy, microsToIso, PageRequest, ReportInputError, SummaryRequest, TimeBound,
} from './filters';
import { BoundSql, callSql, listSql, mediaFileSql, mediaSql, ResolvedSummary, summarySettingsSql, summarySql, timelineSql } from './sql';

/** A page of calls, newest first; next_cursor is null on the last page. */
export interface CallPage { calls: CallRow[]; next_cursor: string | null }

/** One entry of a call's timeline (call_events). */
export interface TimelineEntry { at: Date; type: string; detail: Record<string, unknown> | null }
export interface CallDetail { call: CallDetailRow; timeline: TimelineEntry[]; media: CallMediaEntry[] }

/**
 * A file WhatsApp made of the call (Meta: per-call recording, transcription, a voicemail after a missed
 * call), as the detail view lists it. `url`: where GET serves it, null while it is not (or no longer) on disk.
 */
export interface CallMediaEntry {
  id: number;
  kind: string;
  media_id: string;
  mime_type: string | null;
  sha256: string | null;
  bytes: number | null;
  received_at: Date;
  fetched_at: Date | null;
  deleted_at: Date | null;
  error: string | null;
  url: string | null;
}

/** A stored file of a call, for serving it. */
export interface CallMediaFile { id: number; kind: string; mime_type: string | null; path: string | null; deleted_at: Date | null }

/**
 * The figures of a summary, per group and in total, over the calls offered (offered_at) in [from, to):
 *
 * - offered: every call, including calls still in progress.
 * - answered: calls whose outcome is `answered` (both legs were connected). Calls in progress have no
 *   outcome yet and count only as offered.
 * - missed: inbound calls that ended with any other outcome (busy, no_answer, rejected, unreachable,
 *   caller_hangup, failed). Outbound calls are never missed.
 * - abandoned: inbound calls with outcome `caller_hangup`: the WhatsApp caller hung up while the PBX
 *   rang (a subset of missed).
 * - answer_rate: answered / offered (0..1, 4 decimals); null when nothing was offered.
 * - talk_seconds_total, talk_seconds_avg: sum and mean of talk_seconds (accept to hang-up) over answered
 *   calls; the mean is null without answered calls.
 * - wait_seconds_avg, wait_seconds_p90: mean and 90th percentile (percentile_cont(0.9), interpolated) of
 *   accepted_at - offered_at over answered calls: for inbound calls how long the caller waited for an
 *   agent, for outbound calls how long the customer took to answer. Null without answered calls.
 */
export interface SummaryFigures {
  offered: number;
  answered: number;
  missed: number;
  abandoned: number;
  answer_rate: number | null;
  talk_seconds_total: number;
  talk_seconds_avg: number | null;
  wait_seconds_avg: number | null;
  wait_seconds_p90: number | null;
}

/**
 * One group. `group`: the local date (YYYY-MM-DD, group_by=day), the local hour (YYYY-MM-DDTHH:00,
 * group_by=hour), the agent or the business number (null for calls without one, e.g. calls no agent
 * answered). `period_start`: the UTC instant the day or hour starts (null for agent/business_number).
 */
export interface SummaryGroup extends SummaryFigures { group: string | null; period_start: Date | null }

export interface SummaryReport {
  from: string;
  to: string;
  tz: string;
  group_by: GroupBy;
  direction: string | null;
  /** Groups with at least one call, in time or name order. */
  groups: SummaryGroup[];
  totals: SummaryFigures;
}

export interface ExportOptions extends PagedCsvOptions {
  /** Rows per query (keyset batches); default EXPORT_BATCH_ROWS. */
  batchRows?: number;
  /** The CSV's columns (a reporting token's leave out recording_path); default every column. */
  columns?: readonly Column[];
  /** Told after each batch has been fetched (tests, logs). */
  onBatch?: (rows: number) => void;
  /** Told when the export stops early on a database error (the response is cut short). */
  onError?: (err: Error) => void;
}

/**
 * Rows per export query: small, because a page is what an export holds while its client is slow
 * (about 100 KB of CSV); each page is an index range scan that starts where the last one ended.
 */
export const EXPORT_BATCH_ROWS = 200;

type RawPageRow = CallRow & { cursor_at: string };
type RawSummaryRow = Omit<SummaryGroup, 'answer_rate'> & { total: boolean };

/** The reporting queries over `calls` and `call_events`: raw SQL, bind parameters only. */
export class ReportStore {
  private readonly knownZones = new Set<string>(['UTC']);

  /**
   * `db`: the reporting pool (src/cdr/db.ts connectReportingDatabase), not the calls' pool.
   * `timeoutMs`: the server-side bound on a summary's statement (REPORTING_STATEMENT_TIMEOUT_MS).
   */
  constructor(private readonly db: Sequelize, private readonly timeoutMs = 5000) {}

  private select<T extends object>(q: BoundSql): Promise<T[]> {
    return this.db.query<T>(q.sql, { bind: q.bind, type: QueryTypes.SELECT });
  }

  /** One page of calls matching `filter`, newest first (offered_at DESC, id DESC). */
  async listCalls(filter: CallFilter, page: PageRequest): Promise<CallPage> {
    const { rows, last } = await this.fetchPage(filter, page.cursor, page.limit);
    const calls: CallRow[] = rows.map(({ cursor_at: _c, ...row }) => row);
    return { calls, next_cursor: last ? encodeCursor(last) : null };
  }

  /**
   * A batch of at most `limit` rows (with cursor_at) and, when more may follow, the cursor after the
   * batch's last row. Read as a RAW query: Sequelize then hands over pg's rows without copying each one.
   */
  private async fetchPage(filter: CallFilter, after: Cursor | null, limit: number): Promise<{ rows: RawPageRow[]; last: Cursor | null }> {
    const q = listSql(filter, after, limit + 1);
    const [raw] = (await this.db.query(q.sql, { bind: q.bind, type: QueryTypes.RAW })) as [RawPageRow[], unknown];
    const more = raw.length > limit;
    const rows = more ? raw.slice(0, limit) : raw;
    const end = rows[rows.length - 1];
    return { rows, last: more && end ? { offeredAt: end.cursor_at, id: end.id } : null };
  }

  /**
   * Every call matching `filter` as CSV (header row first), fetched in keyset batches as the reader
   * asks for more: memory holds one batch, a reader that stops reading for `stallMs` ends the export,
   * and destroying the stream (a client gone) stops the queries.
   */
  exportCsv(filter: CallFilter, o: ExportOptions = {}): PagedCsvStream {
    const batchRows = o.batchRows ?? EXPORT_BATCH_ROWS;
    const columns = o.columns ?? CALL_COLUMNS;
    let after: Cursor | null = null;
    const next = async () => {
      const { rows, last } = await this.fetchPage(filter, after, batchRows);
      o.onBatch?.(rows.length);
      after = last;
      return { text: rows.length ? csvRows(rows, columns) : '', done: !last };
    };
    const stream = new PagedCsvStream(csvHeader(columns), next, o);
    if (o.onError) stream.once('error', o.onError);
    return stream;
  }

  /** One call with every column and its timeline; null when there is no such call. */
  async getCall(id: string): Promise<CallDetail | null> {
    const [call] = await this.select<CallDetailRow>(callSql(id));
    if (!call) return null;
    // One after the other: a request holds one connection of the small reporting pool at a time.
    const timeline = await this.select<TimelineEntry>(timelineSql(id));
    const media = await this.select<Omit<CallMediaEntry, 'url'> & { on_disk: boolean }>(mediaSql(id));
    return {
      call, timeline,
      media: media.map(({ on_disk, ...m }) => ({ ...m, url: on_disk ? `/api/calls/${id}/media/${m.id}` : null })),
    };
  }

  /** One file of a call (null: no such file of this call). */
  async getMediaFile(callId: string, mediaId: number): Promise<CallMediaFile | null> {
    const [row] = await this.select<CallMediaFile>(mediaFileSql(callId, mediaId));
    return row ?? null;
  }

  /** Offered/answered/missed/... per hour, day, agent or business number over [from, to), and in total. */
  async summary(req: SummaryRequest): Promise<SummaryReport> {
    await this.checkTimeZone(req.tz);
    const range = await this.resolveRange(req.from, req.to, req.tz);
    const resolved: ResolvedSummary = { ...range, groupBy: req.groupBy, tz: req.tz, direction: req.direction };
    const q = summarySql(resolved);
    const rows = await this.db.transaction(async (transaction) => {
      await this.db.query(summarySettingsSql(this.timeoutMs), { transaction });
      return this.db.query<RawSummaryRow>(q.sql, { bind: q.bind, type: QueryTypes.SELECT, transaction });
    });
    const groups = rows.filter((r) => !r.total).map(({ total: _t, ...g }) => ({ ...g, ...figures(g) }));
    const total = rows.find((r) => r.total);
    return {
      from: range.from, to: range.to, tz: req.tz, group_by: req.groupBy, direction: req.direction,
      groups, totals: total ? figures(total) : figures(null),
    };
  }

  /** 400 unless Postgres knows the zone (pg_timezone_names); known names are remembered. */
  private async checkTimeZone(tz: string): Promise<void> {
    if (this.knownZones.has(tz)) return;
    const [row] = await this.select<{ known: boolean }>({ sql: 'SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = $1) AS known', bind: [tz] });
    if (!row?.known) throw new ReportInputError('tz', `unknown time zone "${tz}" (use an IANA name such as Asia/Jakarta or UTC)`);
    this.knownZones.add(tz);
  }

  /** Local bounds become instants in `tz` (Postgres' rules, as date_trunc uses); then the range is checked. */
  private async resolveRange(from: TimeBound, to: TimeBound, tz: string): Promise<{ from: string; to: string }> {
    if (from.kind === 'instant' && to.kind === 'instant') return { from: from.iso, to: to.iso };
    const expr = (b: TimeBound, n: number) => (b.kind === 'instant' ? `$${n}::timestamptz` : `($${n}::timestamp AT TIME ZONE $3::text)`);
    const [row] = await this.select<{ f: string; t: string }>({
      sql: `SELECT (extract(epoch FROM ${expr(from, 1)}) * 1000000)::bigint::text AS f, (extract(epoch FROM ${expr(to, 2)}) * 1000000)::bigint::text AS t`,
      bind: [from.iso, to.iso, tz],
    });
    const f = Number(row!.f);
    const t = Number(row!.t);
    checkResolvedBound(f, 'from', tz);
    checkResolvedBound(t, 'to', tz);
    checkSummaryRange(f, t);
    return { from: microsToIso(f), to: microsToIso(t) };
  }
}

const round = (v: number | null, digits: number): number | null => (v === null ? null : Number(v.toFixed(digits)));

/** The figures of a summary row (answer_rate derived, averages rounded to the millisecond). */
function figures(r: Omit<SummaryFigures, 'answer_rate'> | null): SummaryFigures {
  if (!r) return { offered: 0, answered: 0, missed: 0, abandoned: 0, answer_rate: null, talk_seconds_total: 0, talk_seconds_avg: null, wait_seconds_avg: null, wait_seconds_p90: null };
  return {
    offered: r.offered,
    answered: r.answered,
    missed: r.missed,
    abandoned: r.abandoned,
    answer_rate: r.offered ? round(r.answered / r.offered, 4) : null,
    talk_seconds_total: round(r.talk_seconds_total, 3) ?? 0,
    talk_seconds_avg: round(r.talk_seconds_avg, 3),
    wait_seconds_avg: round(r.wait_seconds_avg, 3),
    wait_seconds_p90: round(r.wait_seconds_p90, 3),
  };
}
