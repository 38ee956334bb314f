import { QueryTypes } from 'sequelize';
import { connectDatabase } from '../../src/cdr/db';
import { infra, startInfra, stopInfra } from '../harness/infra';

/**
 * Reporting-query benchmark: fills a fresh, migrated database with N synthetic CDRs (default 1,000,000,
 * 90 days, 200 agents, 100,000 customers) and prints the execution time of typical reports.
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

async function main(): Promise<void> {
  const rows = Number(process.argv[2] ?? 1_000_000);
  process.env.SKIP_DRACHTIO = '1';
  await startInfra();
  const db = connectDatabase(infra.databaseUrl);
  const t0 = Date.now();
  await db.query(`
    INSERT INTO calls (id, direction, wacid, business_number, customer_number, agent, state, outcome, hangup_by,
                       offered_at, accepted_at, ended_at, talk_seconds, created_at, updated_at)
    SELECT gen_random_uuid(), CASE WHEN i % 3 = 0 THEN 'outbound' ELSE 'inbound' END, 'wacid.' || i, '+6283138205150',
           '+62813' || lpad((i % 100000)::text, 7, '0'), 'agent' || lpad((i % 200)::text, 3, '0'), 'ended',
           (ARRAY['answered','answered','answered','busy','no_answer','caller_hangup','rejected','failed'])[1 + i % 8],
           'whatsapp', t, t + interval '10 seconds', t + interval '130 seconds', CASE WHEN i % 8 < 3 THEN 120 END, t, t
    FROM generate_series(1, ${rows}) AS i, LATERAL (SELECT now() - (i::float / ${rows}) * interval '90 days' AS t) x`);
  await db.query('ANALYZE calls');
  console.log(`inserted ${rows} CDRs in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  for (const [name, sql] of REPORTS) {
    const plan = await db.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, FORMAT TEXT) ${sql}`, { type: QueryTypes.SELECT });
    const text = plan.map((p) => p['QUERY PLAN']).join('\n');
    const ms = /Execution Time: ([\d.]+) ms/.exec(text)?.[1];
    const index = /(?:Index(?: Only)? Scan(?: Backward)? using|Bitmap Index Scan on) (\w+)/.exec(text)?.[1] ?? 'no index (seq scan)';
    console.log(`${name.padEnd(48)} ${String(ms).padStart(9)} ms   ${index}`);
  }
  await db.close();
}

main().then(
  async () => {
    await stopInfra();
    process.exit(0);
  },
  async (err: unknown) => {
    console.error(err);
    await stopInfra();
    process.exit(1);
  },
);
