import { CallFilter, Cursor, GroupBy } from './filters';
import { CALL_COLUMNS, selectList } from './columns';

/**
 * The reporting API's SQL. Every value reaches Postgres as a bind parameter ($n); only fixed fragments
 * chosen from closed lists are put into the text. The benchmark EXPLAINs these very statements.
 */

/** A statement and its bind parameters, for sequelize.query(sql, { bind }). */
export interface BoundSql { sql: string; bind: unknown[] }

/** Collects bind parameters; add() returns the placeholder. */
class Params {
  readonly values: unknown[] = [];
  add(v: unknown): string {
    this.values.push(v);
    return `$${this.values.length}`;
  }
}

/** Exact text of offered_at for the page cursor (a JS Date would lose the microseconds). */
const CURSOR_AT = `to_char(offered_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS cursor_at`;

/** The WHERE conditions of a filter, each one index-friendly (column = value, offered_at range). */
function conditions(f: CallFilter, p: Params): string[] {
  const w: string[] = [];
  if (f.from) w.push(`offered_at >= ${p.add(f.from)}::timestamptz`);
  if (f.to) w.push(`offered_at < ${p.add(f.to)}::timestamptz`);
  const eq: Array<[string, string | null]> = [
    ['direction', f.direction], ['customer_number', f.customer], ['business_number', f.business],
    ['agent', f.agent], ['pbx_target', f.pbxTarget], ['state', f.state],
    ['user_id', f.userId], ['provider', f.provider], ['number_name', f.numberName], ['cta_payload', f.ctaPayload],
  ];
  for (const [column, v] of eq) if (v !== null) w.push(`${column} = ${p.add(v)}`);
  if (f.outcomes?.length === 1) w.push(`outcome = ${p.add(f.outcomes[0])}`);
  else if (f.outcomes) w.push(`outcome = ANY(${p.add(f.outcomes)}::text[])`);
  if (f.mosBelow !== null) w.push(`mos < ${p.add(f.mosBelow)}::numeric`);
  if (f.recorded) w.push('recording_path IS NOT NULL AND recording_deleted_at IS NULL');
  // The index is on lower(username): usernames are matched as WhatsApp shows them, whatever the case.
  if (f.username !== null) w.push(`lower(username) = lower(${p.add(f.username)})`);
  // A substring: no index serves it, the other conditions (a time range) bound the rows it reads.
  if (f.profileName !== null) w.push(`profile_name ILIKE ${p.add(`%${likeEscape(f.profileName)}%`)}`);
  return w;
}

/** `s` as a literal inside a LIKE pattern (backslash is LIKE's default escape). */
function likeEscape(s: string): string {
  return s.replace(/[\\%_]/g, (c) => `\\${c}`);
}

/**
 * Keyset page: rows after `after` in (offered_at DESC, id DESC) order. The redundant `offered_at <=`
 * lets an index on (column, offered_at) bound its scan; the row comparison settles ties by id.
 */
function keyset(after: Cursor, p: Params): string {
  const at = p.add(after.offeredAt);
  return `offered_at <= ${at}::timestamptz AND (offered_at, id) < (${at}::timestamptz, ${p.add(after.id)}::uuid)`;
}

/** One page of calls, newest first; each row also carries cursor_at for the next page's cursor. */
export function listSql(f: CallFilter, after: Cursor | null, limit: number): BoundSql {
  const p = new Params();
  const w = conditions(f, p);
  if (after) w.push(keyset(after, p));
  const sql = `SELECT ${selectList(CALL_COLUMNS)}, ${CURSOR_AT}
    FROM calls${w.length ? ` WHERE ${w.join(' AND ')}` : ''}
    ORDER BY offered_at DESC, id DESC
    LIMIT ${p.add(limit)}`;
  return { sql, bind: p.values };
}

/** One call, every column (media_stats too). */
export function callSql(id: string): BoundSql {
  return { sql: `SELECT ${selectList(CALL_COLUMNS)}, media_stats FROM calls WHERE id = $1::uuid`, bind: [id] };
}

/** The files WhatsApp made of a call: linked to it, or of its wacid and not linked yet. Oldest first. */
export function mediaSql(callId: string): BoundSql {
  return {
    sql: `SELECT id::int AS id, kind, media_id, mime_type, sha256, bytes::float8 AS bytes, received_at, fetched_at, deleted_at, error,
            (path IS NOT NULL AND deleted_at IS NULL) AS on_disk
          FROM call_media
          WHERE call_id = $1::uuid OR (call_id IS NULL AND wacid = (SELECT wacid FROM calls WHERE id = $1::uuid))
          ORDER BY received_at, id`,
    bind: [callId],
  };
}

/** One file of a call, with where it is. */
export function mediaFileSql(callId: string, mediaId: number): BoundSql {
  return {
    sql: `SELECT m.id::int AS id, m.kind, m.mime_type, m.path, m.deleted_at FROM call_media m JOIN calls c ON c.id = $1::uuid
          WHERE m.id = $2 AND (m.call_id = c.id OR (m.call_id IS NULL AND m.wacid = c.wacid))`,
    bind: [callId, mediaId],
  };
}

/** One call's timeline. */
export function timelineSql(id: string): BoundSql {
  return { sql: 'SELECT at, type, detail FROM call_events WHERE call_id = $1::uuid ORDER BY at, id', bind: [id] };
}

/** What a summary covers once its bounds are instants in UTC. */
export interface ResolvedSummary { from: string; to: string; groupBy: GroupBy; tz: string; direction: string | null }

/** The group key of each call: the period (starting at local midnight / the hour in tz) or the column. */
function groupKey(g: GroupBy, tz: string): string {
  switch (g) {
    case 'hour': return `date_trunc('hour', offered_at, ${tz}::text)`;
    case 'day': return `date_trunc('day', offered_at, ${tz}::text)`;
    case 'agent': return 'agent';
    case 'business_number': return 'business_number';
  }
}

/** The label of a group: a local date (day), a local date and hour (hour), or the column's value. */
function groupLabel(g: GroupBy, tz: string): string {
  switch (g) {
    case 'hour': return `to_char(grp AT TIME ZONE ${tz}::text, 'YYYY-MM-DD"T"HH24:00')`;
    case 'day': return `to_char(grp AT TIME ZONE ${tz}::text, 'YYYY-MM-DD')`;
    default: return 'grp';
  }
}

/**
 * Per group and in total (GROUPING SETS: one scan). The figures are defined in SummaryFigures
 * (src/reports/store.ts); wait is accepted_at - offered_at of answered calls, in seconds. The columns
 * read are all in the calls_report_cover index, so the scan need not visit the CDR rows themselves.
 */
export function summarySql(s: ResolvedSummary): BoundSql {
  const p = new Params();
  const where = [`offered_at >= ${p.add(s.from)}::timestamptz`, `offered_at < ${p.add(s.to)}::timestamptz`];
  if (s.direction) where.push(`direction = ${p.add(s.direction)}`);
  const time = s.groupBy === 'hour' || s.groupBy === 'day';
  const tz = time ? p.add(s.tz) : '';
  // float8, not numeric: sums, means and the percentile's sort are several times cheaper over 10^5 rows.
  const sql = `WITH c AS (
      SELECT ${groupKey(s.groupBy, tz)} AS grp, direction, outcome,
             CASE WHEN outcome = 'answered' THEN talk_seconds::float8 END AS talk,
             CASE WHEN outcome = 'answered' THEN date_part('epoch', accepted_at - offered_at) END AS wait
      FROM calls WHERE ${where.join(' AND ')}
    )
    SELECT GROUPING(grp) = 1 AS total, ${groupLabel(s.groupBy, tz)} AS "group", ${time ? 'grp' : 'NULL::timestamptz'} AS period_start,
      count(*)::int AS offered,
      count(*) FILTER (WHERE outcome = 'answered')::int AS answered,
      count(*) FILTER (WHERE direction = 'inbound' AND outcome <> 'answered')::int AS missed,
      count(*) FILTER (WHERE direction = 'inbound' AND outcome = 'caller_hangup')::int AS abandoned,
      coalesce(sum(talk), 0) AS talk_seconds_total,
      avg(talk) AS talk_seconds_avg,
      avg(wait) AS wait_seconds_avg,
      percentile_cont(0.9) WITHIN GROUP (ORDER BY wait) AS wait_seconds_p90
    FROM c
    GROUP BY GROUPING SETS ((grp), ())
    ORDER BY total, grp NULLS LAST`;
  return { sql, bind: p.values };
}

/**
 * Session settings for a summary, applied with SET LOCAL inside its transaction: no JIT (compiling
 * costs more than it saves on these scans), room to sort a month of calls in memory, and a bound the
 * server enforces itself (the pool's query_timeout only stops waiting for the answer).
 */
export function summarySettingsSql(timeoutMs: number): string {
  const ms = Math.max(100, Math.floor(timeoutMs));
  return `SET LOCAL jit = off; SET LOCAL work_mem = '64MB'; SET LOCAL statement_timeout = ${ms}`;
}
