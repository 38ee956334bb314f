import http from 'node:http';
import { AddressInfo } from 'node:net';
import { QueryTypes, Sequelize, Transaction } from 'sequelize';
import { connectDatabase } from '../../src/cdr/db';
import { apiAuth } from '../../src/http/auth';
import { callsApiRoutes } from '../../src/http/calls-api';
import { createHttpApp, listen } from '../../src/http/server';
import { createLogger } from '../../src/log';
import { CallFilter, Cursor, GroupBy, parseFilter, parseTime } from '../../src/reports/filters';
import { BoundSql, listSql, summarySettingsSql, summarySql } from '../../src/reports/sql';
import { ReportStore } from '../../src/reports/store';
import { ReportAdmission } from '../../src/reports/admission';
import { infra, startInfra, runBench } from '../harness/infra';

/**
 * Reporting-query benchmark: fills a fresh, migrated database with N synthetic CDRs (default 1,000,000,
 * 90 days, 200 agents, 100,000 customers, 3 PBX targets; answered calls carry rtpengine's statistics
 * and a MOS, every fifth of them a recording) and prints the execution time and index of typical reports, then of the CDR API's
 * own statements (src/reports/sql.ts, the very SQL the API runs) and of a CSV export through HTTP.
 * Usage: node dist/test/bench/cdr-report.js [rows]
 */
const REPORTS: Array<[string, string]> = [
  ['answer rate and average talk time, last 24 h', `SELECT count(*) AS calls, avg((outcome = 'answered')::int) AS answer_rate, avg(talk_seconds) AS avg_talk
     FROM calls WHERE offered_at >= now() - interval '1 day'`],
  ['outcomes by direction, last 7 days', `SELECT direction, outcome, count(*) FROM calls
     WHERE offered_at >= now() - interval '7 days' GROUP BY direction, outcome`],
  ['one agent, last 30 days', `SELECT count(*), sum(talk_seconds) FROM calls
     WHERE agent = 'agent042' AND offered_at >= now() - interval '30 days'`],
  ['one customer calls, newest 50', `SELECT * FROM calls WHERE customer_number = '+628130004242' ORDER BY offered_at DESC LIMIT 50`],
  ['missed inbound calls, last hour', `SELECT * FROM calls WHERE outcome = 'no_answer' AND offered_at >= now() - interval '1 hour' ORDER BY offered_at DESC`],
];

const MOS_THRESHOLD = 3.5;
/** What an answered call's media_stats looks like (about 600 bytes), so rows are as wide as real ones. */
const MEDIA_STATS = `'${JSON.stringify({
  legs: {
    whatsapp: { packets: 6012, bytes: 481032, errors: 0, codec: 'opus/48000/2', lost: 3, jitterMs: 2.1, rttMs: 48.5, mos: 4.31 },
    pbx: { packets: 6009, bytes: 1033548, errors: 0, codec: 'PCMU/8000', lost: 0, jitterMs: 0.4, rttMs: 1.2, mos: 4.38 },
  },
  totals: { rtp: { packets: 12021, bytes: 1514580, errors: 0 }, rtcp: { packets: 48, bytes: 3840, errors: 0 } },
  durationSeconds: 131,
})}'::jsonb`;
const DAY = 86400e3;

async function fill(db: Sequelize, rows: number): Promise<void> {
  // In statements of 100,000 rows, each well inside the statement bound.
  for (let lo = 1; lo <= rows; lo += 100_000) await fillRange(db, lo, Math.min(rows, lo + 99_999), rows);
  await db.query('VACUUM ANALYZE calls');
}

/** Calls lo..hi of `rows`, spread over the last 90 days. */
async function fillRange(db: Sequelize, lo: number, hi: number, rows: number): Promise<void> {
  // i % 8 < 3: answered (wait 2..21 s, talk 120 s, an agent, a MOS from 1.00 to 4.99); every fifth
  // answered call recorded, every tenth of those recordings deleted by retention.
  await db.query(`
    INSERT INTO calls (id, direction, wacid, business_number, customer_number, agent, pbx_target, state, outcome, hangup_by,
                       offered_at, accepted_at, ended_at, talk_seconds, mos, recording_path, recording_bytes, recording_seconds,
                       recording_deleted_at, sip_call_id, media_stats, created_at, updated_at)
    SELECT gen_random_uuid(), CASE WHEN i % 3 = 0 THEN 'outbound' ELSE 'inbound' END, 'wacid.HBgLMjM0ODE2NTQ3MjU5FQIAEhggQ0U' || i,
           CASE WHEN i % 4 = 0 THEN '+6283138205151' ELSE '+6283138205150' END,
           '+62813' || lpad((i % 100000)::text, 7, '0'),
           CASE WHEN answered THEN 'agent' || lpad((i % 200)::text, 3, '0') END,
           (ARRAY['sip:pbx1.example.com','sip:pbx2.example.com','sip:pbx3.example.com'])[1 + i % 3], 'ended',
           (ARRAY['answered','answered','answered','busy','no_answer','caller_hangup','rejected','failed'])[1 + i % 8],
           'whatsapp', t, CASE WHEN answered THEN t + make_interval(secs => 2 + i % 20) END, t + interval '130 seconds',
           CASE WHEN answered THEN 120 END,
           CASE WHEN answered THEN 1 + ((i / 8) * 37 % 400) / 100.0 END,
           CASE WHEN answered AND i % 5 = 0 THEN '/var/lib/rtpengine-recording/' || i || '.wav' END,
           CASE WHEN answered AND i % 5 = 0 THEN 1920044 END,
           CASE WHEN answered AND i % 5 = 0 THEN 120 END,
           CASE WHEN answered AND i % 50 = 0 THEN t + interval '60 days' END,
           'b7c1e2d4-' || i || '@10.20.30.40', CASE WHEN answered THEN ${MEDIA_STATS} END,
           t, t
    FROM generate_series(${lo}, ${hi}) AS i,
         LATERAL (SELECT now() - (i::float / ${rows}) * interval '90 days' AS t, i % 8 < 3 AS answered) x`);
}

/** EXPLAIN ANALYZE of a statement: execution time and the indexes its plan reads. */
async function explain(db: Sequelize, q: BoundSql, transaction?: Transaction): Promise<{ ms: number; index: string }> {
  const plan = await db.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, FORMAT TEXT) ${q.sql}`, { bind: q.bind, type: QueryTypes.SELECT, transaction });
  const text = plan.map((p) => p['QUERY PLAN']).join('\n');
  const ms = Number(/Execution Time: ([\d.]+) ms/.exec(text)?.[1]);
  const indexes = [...text.matchAll(/(Index(?: Only)? Scan(?: Backward)? using|Bitmap Index Scan on) (\w+)/g)].map((m) => `${m[1]!.startsWith('Index Only') ? 'index-only ' : ''}${m[2]}`);
  return { ms, index: [...new Set(indexes)].join(', ') || 'no index (seq scan)' };
}

function print(name: string, ms: number, index: string, extra = ''): void {
  const flag = ms > 100 ? '  SLOW' : '';
  console.log(`${name.padEnd(58)} ${ms.toFixed(1).padStart(9)} ms   ${index}${extra}${flag}`);
}

async function timeReports(db: Sequelize): Promise<void> {
  console.log('\n-- typical reports (hand-written SQL)');
  for (const [name, sql] of REPORTS) {
    const r = await explain(db, { sql, bind: [] });
    print(name, r.ms, r.index);
  }
}

const iso = (d: Date) => d.toISOString();

/** The filters of GET /api/calls, each alone, as a request would give them. */
function listCases(now: Date): Array<[string, Record<string, string>]> {
  return [
    ['no filter', {}],
    ['from/to: last 24 h', { from: iso(new Date(now.getTime() - DAY)), to: iso(now) }],
    ['from/to: a day 60 days ago', { from: iso(new Date(now.getTime() - 60 * DAY)), to: iso(new Date(now.getTime() - 59 * DAY)) }],
    ['direction=outbound', { direction: 'outbound' }],
    ['outcome=no_answer', { outcome: 'no_answer' }],
    ['outcome=busy,no_answer,caller_hangup', { outcome: 'busy,no_answer,caller_hangup' }],
    ['customer', { customer: '+628130004242' }],
    ['business', { business: '+6283138205151' }],
    ['agent', { agent: 'agent042' }],
    ['pbx_target', { pbx_target: 'sip:pbx2.example.com' }],
    ['state=ended', { state: 'ended' }],
    ['mos_below=1.5', { mos_below: '1.5' }],
    ['poor_quality=true', { poor_quality: 'true' }],
    ['recorded=true', { recorded: 'true' }],
    ['direction+outcome+business, last 7 days', { direction: 'inbound', outcome: 'no_answer', business: '+6283138205151', from: iso(new Date(now.getTime() - 7 * DAY)) }],
    ['agent + poor_quality, last 30 days', { agent: 'agent042', poor_quality: 'true', from: iso(new Date(now.getTime() - 30 * DAY)) }],
  ];
}

/** The cursor after the `offset`-th newest call matching `f` (what next_cursor would say there). */
async function cursorAt(db: Sequelize, f: CallFilter, offset: number): Promise<Cursor> {
  const q = listSql(f, null, offset + 1);
  const rows = await db.query<{ id: string; cursor_at: string }>(`SELECT id, cursor_at FROM (${q.sql}) x ORDER BY cursor_at, id LIMIT 1`, { bind: q.bind, type: QueryTypes.SELECT });
  return { offeredAt: rows[0]!.cursor_at, id: rows[0]!.id };
}

async function timeLists(db: Sequelize, store: ReportStore, now: Date): Promise<void> {
  console.log('\n-- GET /api/calls: first page (100) per filter  [EXPLAIN ANALYZE | wall time of ReportStore.listCalls]');
  for (const [name, q] of listCases(now)) {
    const f = parseFilter(q, MOS_THRESHOLD);
    const r = await explain(db, listSql(f, null, 101));
    const t = performance.now();
    await store.listCalls(f, { limit: 100, cursor: null });
    print(name, r.ms, r.index, ` | wall ${(performance.now() - t).toFixed(1)} ms`);
  }
  console.log('\n-- GET /api/calls: a page deep in, by cursor');
  for (const [name, q, offset] of [['no filter, after 500,000 calls', {}, 500_000], ['outcome=no_answer, after 50,000 calls', { outcome: 'no_answer' }, 50_000],
    ['poor_quality=true, after 20,000 calls', { poor_quality: 'true' }, 20_000]] as const) {
    const f = parseFilter(q, MOS_THRESHOLD);
    const r = await explain(db, listSql(f, await cursorAt(db, f, offset), 101));
    print(name, r.ms, r.index);
  }
}

/** A summary's statement EXPLAINed under the session settings ReportStore.summary runs it with. */
function explainSummary(db: Sequelize, q: BoundSql): Promise<{ ms: number; index: string }> {
  return db.transaction(async (transaction) => {
    await db.query(summarySettingsSql(60000), { transaction });
    return explain(db, q, transaction);
  });
}

async function timeSummaries(db: Sequelize, store: ReportStore, now: Date): Promise<void> {
  console.log('\n-- GET /api/reports/summary, tz Asia/Jakarta  [EXPLAIN ANALYZE | wall time of ReportStore.summary]');
  const cases: Array<[number, GroupBy, 'inbound' | null]> = [];
  for (const days of [1, 30]) for (const g of ['hour', 'day', 'agent', 'business_number'] as GroupBy[]) cases.push([days, g, null]);
  cases.push([30, 'day', 'inbound']);
  for (const [days, groupBy, direction] of cases) {
    const from = iso(new Date(now.getTime() - days * DAY));
    const r = await explainSummary(db, summarySql({ from, to: iso(now), groupBy, tz: 'Asia/Jakarta', direction }));
    const t = performance.now();
    await store.summary({ from: parseTime(from, 'from'), to: parseTime(iso(now), 'to'), groupBy, tz: 'Asia/Jakarta', direction });
    const name = `summary by ${groupBy}, ${days} day${days > 1 ? 's' : ''}${direction ? `, direction=${direction}` : ''}`;
    print(name, r.ms, r.index, ` | wall ${(performance.now() - t).toFixed(1)} ms`);
  }
}

/** One day of calls as CSV through the real route (auth, Koa, streaming), end to end. */
async function timeCsv(db: Sequelize, store: ReportStore, now: Date): Promise<void> {
  const token = 'bench-reporting-token-0123456789';
  const log = createLogger('warn');
  const app = createHttpApp([
    apiAuth({ adminToken: null, reportingTokens: [token], log }),
    callsApiRoutes({ reports: store, live: { list: () => [], hangup: async () => false }, mosThreshold: MOS_THRESHOLD, recordingDir: '/nonexistent', admission: new ReportAdmission({ total: 4, perToken: 4 }), exportStallMs: 30000, log }),
  ], { ready: async () => ({ ok: true, checks: {} }) }, log);
  const server: http.Server = await listen(app, 0, '127.0.0.1');
  const port = (server.address() as AddressInfo).port;
  console.log('\n-- CSV export through HTTP (GET /api/calls, Accept: text/csv)');
  try {
    for (const days of [1, 7]) {
      const from = iso(new Date(now.getTime() - days * DAY));
      const t = performance.now();
      const res = await fetch(`http://127.0.0.1:${port}/api/calls?from=${from}&to=${iso(now)}`, { headers: { Authorization: `Bearer ${token}`, Accept: 'text/csv' } });
      let bytes = 0;
      let lines = 0;
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        bytes += chunk.length;
        for (const b of chunk) if (b === 10) lines++;
      }
      const s = (performance.now() - t) / 1000;
      const rows = lines - 1;
      console.log(`${`CSV, ${days} day${days > 1 ? 's' : ''}: ${rows} rows, ${(bytes / 1e6).toFixed(1)} MB`.padEnd(58)} ${(s * 1000).toFixed(0).padStart(9)} ms   ${(bytes / 1e6 / s).toFixed(1)} MB/s, ${Math.round(rows / s)} rows/s, rss ${(process.memoryUsage().rss / 1e6).toFixed(0)} MB`);
    }
  } finally {
    await new Promise((r) => server.close(r));
  }
}

async function main(): Promise<void> {
  const rows = Number(process.argv[2] ?? 1_000_000);
  process.env.SKIP_DRACHTIO = '1';
  await startInfra();
  // Filling and the longer reports take more than the bridge's 5 s statement bound.
  const db = connectDatabase(infra.databaseUrl, 120000);
  const t0 = Date.now();
  await fill(db, rows);
  console.log(`inserted ${rows} CDRs in ${((Date.now() - t0) / 1000).toFixed(1)} s (with VACUUM ANALYZE)`);
  const now = new Date();
  const store = new ReportStore(db, 60000);
  await timeReports(db);
  await timeLists(db, store, now);
  await timeSummaries(db, store, now);
  await timeCsv(db, store, now);
  await db.close();
}

runBench(main);
