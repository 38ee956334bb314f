import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { QueryTypes, Sequelize } from 'sequelize';
import { migrate, pendingMigrations } from '../src/cdr/db';
import { CdrStore } from '../src/cdr/store';
import { parseFilter, parseSummaryQuery } from '../src/reports/filters';
import { ReportStore } from '../src/reports/store';
import { scratchDatabase } from './harness/db-rows';
import { infra } from './harness/infra';

const OUTCOMES = ['answered', 'busy', 'no_answer', 'rejected', 'unreachable', 'caller_hangup', 'failed'] as const;

/** The URL of a scratch database (the harness builds it from the run's). */
async function urlOf(db: Sequelize): Promise<string> {
  const [{ name }] = await db.query<{ name: string }>('SELECT current_database() AS name', { type: QueryTypes.SELECT }) as [{ name: string }];
  const u = new URL(infra.databaseUrl);
  u.pathname = `/${name}`;
  return u.toString();
}

/** Runs a Postgres client program (pg_dump, pg_restore), bounded; throws with its stderr when it fails. */
function pgTool(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60000 });
  if (r.error) throw r.error;
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
}

/**
 * docs/operations.md's backup and restore, done: the bridge's database dumped with pg_dump (custom
 * format) while it holds CDRs and their timelines, restored with pg_restore into a new, empty database,
 * and the reporting API's queries (src/reports) give the same answers on both. The restored database
 * is at this build's schema, so a bridge starts on it without migrating.
 */
describe('backup and restore (pg_dump, pg_restore)', function () {
  this.timeout(120000);
  let source: { db: Sequelize; drop: () => Promise<void> } | null = null;
  let target: { db: Sequelize; drop: () => Promise<void> } | null = null;
  let dir = '';

  before(function () {
    if (spawnSync('pg_dump', ['--version']).status !== 0 || spawnSync('pg_restore', ['--version']).status !== 0) this.skip();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-backup-'));
  });
  after(async () => {
    await source?.drop();
    await target?.drop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('dump, restore into a new database: the reports, exports and call details are the same', async () => {
    source = await scratchDatabase('wasb_backup');
    await migrate(source.db);
    const cdr = new CdrStore(source.db);
    const ids: string[] = [];
    const base = Date.parse('2019-06-03T08:00:00Z');
    for (let i = 0; i < 120; i++) {
      const id = crypto.randomUUID();
      ids.push(id);
      const outcome = OUTCOMES[i % OUTCOMES.length]!;
      const offered = new Date(base + i * 37 * 60000 + (i % 5) * 123);
      await cdr.createCall(id, {
        direction: i % 3 === 0 ? 'outbound' : 'inbound', state: 'ended', offered_at: offered, outcome,
        business_number: i % 2 ? '+15550100001' : '+15550100002', customer_number: `+1555020${String(i).padStart(4, '0')}`,
        pbx_target: 'sip:pbx.example.com:5060', agent: i % 4 ? `agent${i % 4}` : null,
        accepted_at: outcome === 'answered' ? new Date(offered.getTime() + 4000 + i * 10) : null,
        ended_at: new Date(offered.getTime() + 60000 + i * 1000),
        talk_seconds: outcome === 'answered' ? (55 + i / 4).toFixed(3) : null,
        mos: outcome === 'answered' ? (3 + (i % 15) / 10).toFixed(2) : null,
        sip_final_code: outcome === 'busy' ? 486 : 200, hangup_by: i % 2 ? 'whatsapp' : 'pbx',
        media_stats: { legs: { whatsapp: { packets: 1000 + i } } } as object,
      });
      await cdr.addEvent(id, 'offered', { n: i }, offered);
      if (outcome === 'answered') await cdr.addEvent(id, 'accepted', null, new Date(offered.getTime() + 4000));
    }

    const dump = path.join(dir, 'bridge.dump');
    // As docs/operations.md says: pg_dump --format=custom, then pg_restore --no-owner into a new database.
    pgTool('pg_dump', ['--format=custom', '--file', dump, '--dbname', await urlOf(source.db)]);
    target = await scratchDatabase('wasb_restored');
    pgTool('pg_restore', ['--no-owner', '--exit-on-error', '--dbname', await urlOf(target.db), dump]);

    assert.deepEqual(await pendingMigrations(target.db), [], 'the restored database is at this build\'s schema');
    const answers = async (db: Sequelize) => {
      const reports = new ReportStore(db, 20000);
      const all = parseFilter({}, 3.5);
      const page = await reports.listCalls(all, { limit: 1000, cursor: null });
      const answered = await reports.listCalls(parseFilter({ outcome: 'answered', mos_below: '3.8' }, 3.5), { limit: 1000, cursor: null });
      const summary = await reports.summary(parseSummaryQuery({ from: '2019-06-01T00:00:00', to: '2019-06-08T00:00:00', group_by: 'day', tz: 'Asia/Jakarta' }));
      const byNumber = await reports.summary(parseSummaryQuery({ from: '2019-06-01T00:00:00Z', to: '2019-06-08T00:00:00Z', group_by: 'business_number' }));
      let csv = '';
      for await (const chunk of reports.exportCsv(all, { batchRows: 50 })) csv += (chunk as Buffer).toString('utf8');
      const details = await Promise.all([ids[0]!, ids[7]!, ids[119]!].map((id) => reports.getCall(id)));
      return { page, answered, summary, byNumber, csv, details };
    };
    const before = await answers(source.db);
    const after = await answers(target.db);
    assert.equal(before.page.calls.length, 120, 'the answers cover the CDRs written');
    assert.ok(before.answered.calls.length > 0 && before.summary.totals.offered === 120 && before.csv.split('\r\n').length > 120);
    assert.equal(before.details[1]!.timeline.length, 2, 'an answered call\'s timeline');
    assert.deepEqual(after, before);

    // New rows still get ids after the restored ones (sequences came with the dump).
    await new CdrStore(target.db).addEvent(ids[0]!, 'after-restore', null);
    const [{ n }] = await target.db.query<{ n: string }>("SELECT count(*) AS n FROM call_events WHERE call_id = :id", { replacements: { id: ids[0] }, type: QueryTypes.SELECT }) as [{ n: string }];
    assert.equal(Number(n), 3, 'offered, accepted, and the one added after the restore');
  });
});
