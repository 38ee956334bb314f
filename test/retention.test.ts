import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { QueryTypes, Sequelize } from 'sequelize';
import { migrate } from '../src/cdr/db';
import { RetentionSweeper } from '../src/cdr/retention';
import { RetentionRecords } from '../src/cdr/retention-records';
import { createLogger } from '../src/log';
import { CANNED_WA_OFFER } from './harness/canned-offer';
import { scratchDatabase } from './harness/db-rows';

const DAY = 24 * 3600 * 1000;
const log = createLogger('silent');
const RETENTION = { webhookEventsDays: 30, quarantineDays: 30, cdrDays: 365, permissionsDays: 90 };

/**
 * Issue 17, finding 2: every table the bridge writes has a retention, swept in bounded batches that
 * never touch what is still in use. Rows are written straight into Postgres, dated as needed.
 */
describe('data retention sweep', function () {
  this.timeout(120000);
  let db: Sequelize;
  const tag = crypto.randomBytes(4).toString('hex');

  // The sweep works on whole tables: a database of its own, so the counts are this file's rows only.
  let drop: () => Promise<void> = async () => undefined;
  before(async () => {
    ({ db, drop } = await scratchDatabase('wasb_retention'));
    await migrate(db);
  });
  after(() => drop());

  const q = (sql: string, replacements: Record<string, unknown> = {}) => db.query(sql, { replacements, type: QueryTypes.RAW });
  const count = async (sql: string, replacements: Record<string, unknown> = {}): Promise<number> =>
    Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM ${sql}`, { replacements, type: QueryTypes.SELECT }))[0]!.n);

  async function events(prefix: string, n: number, ageDays: number, processed: boolean, type = 'whatsapp.message.updated', payload: object = {}): Promise<void> {
    await q(`INSERT INTO webhook_events (id, type, wacid, received_at, processed_at, payload)
             SELECT :prefix || '-' || i, :type, NULL, now() - make_interval(days => :age), CASE WHEN :processed THEN now() - make_interval(days => :age) END, :payload::jsonb
             FROM generate_series(1, :n) i`, { prefix: `${tag}-${prefix}`, n, age: ageDays, processed, type, payload: JSON.stringify(payload) });
  }

  async function call(ageDays: number, opts: { live?: boolean; recording?: 'on_disk' | 'deleted' } = {}): Promise<string> {
    const id = crypto.randomUUID();
    const at = new Date(Date.now() - ageDays * DAY);
    await q(`INSERT INTO calls (id, direction, state, offered_at, ended_at, recording_path, recording_deleted_at, created_at, updated_at)
             VALUES (:id, 'inbound', :state, :at, :ended, :path, :deleted, :at, :at)`, {
      id, at, state: opts.live ? 'accepted' : 'ended', ended: opts.live ? null : at,
      path: opts.recording ? `/rec/${id}.wav` : null, deleted: opts.recording === 'deleted' ? at : null,
    });
    await q(`INSERT INTO call_events (call_id, at, type, detail) SELECT :id, :at, 'e' || i, NULL FROM generate_series(1, 5) i`, { id, at });
    return id;
  }

  async function reply(pair: string, ageDays: number, response: 'accept' | 'reject', opts: { permanent?: boolean; expiresDaysAgo?: number } = {}): Promise<void> {
    await q(`INSERT INTO call_permission_replies (business_number, customer_number, response, is_permanent, expires_at, replied_at, created_at)
             VALUES ('+15550000000', :c, :response, :perm, :exp, now() - make_interval(days => :age), now())`, {
      c: pair, response, perm: opts.permanent ?? false, age: ageDays,
      exp: opts.expiresDaysAgo === undefined ? null : new Date(Date.now() - opts.expiresDaysAgo * DAY),
    });
  }

  it('deletes old rows in batches and keeps young ones, unprocessed events, live calls, recordings on disk and the permission in force', async () => {
    await events('old', 1234, 40, true);
    await events('young', 50, 5, true);
    await events('unprocessed', 20, 40, false);
    for (let i = 0; i < 30; i++) {
      await q(`INSERT INTO webhook_quarantine (body_sha256, body, reason, received_at, last_received_at)
               VALUES (:sha, :body, 'test', now() - make_interval(days => :age), now() - make_interval(days => :age))`,
      { sha: crypto.randomBytes(32), body: Buffer.from(`body ${i}`), age: i < 20 ? 40 : 1 });
    }
    const oldCalls = await Promise.all(Array.from({ length: 12 }, () => call(400)));
    const live = await call(400, { live: true });
    const onDisk = await call(400, { recording: 'on_disk' });
    const recordingGone = await call(400, { recording: 'deleted' });
    const young = await call(10);
    const c = (s: string) => `+1555${tag.replace(/\D/g, '').padEnd(3, '0').slice(0, 3)}${s}`;
    await reply(c('0001'), 200, 'accept', { permanent: true }); // replaced by the reject below
    await reply(c('0001'), 150, 'reject'); // in force: kept however old
    await reply(c('0002'), 200, 'accept', { expiresDaysAgo: 193 }); // only reply, expired long ago
    await reply(c('0003'), 200, 'accept', { permanent: true }); // only reply, permanent
    await reply(c('0004'), 200, 'accept', { expiresDaysAgo: 10 }); // expired recently
    await q(`INSERT INTO call_permission_requests (business_number, customer_number, kind, trigger, sent_at)
             SELECT '+15550000000', :c, 'interactive', 'api', now() - make_interval(days => a) FROM unnest(ARRAY[200, 100, 1]) a`, { c: c('0001') });

    const sweeper = new RetentionSweeper(new RetentionRecords(db), RETENTION, log, { batchSize: 500, pauseMs: 10 });
    const t0 = performance.now();
    const reports = await sweeper.sweep();
    const ms = Math.round(performance.now() - t0);
    const by = Object.fromEntries(reports.map((r) => [r.task, r]));
    for (const r of reports) assert.equal(r.error, undefined, `${r.task}: ${r.error}`);

    assert.deepEqual([by.webhook_events!.rows, by.webhook_events!.batches], [1234, 3], 'old processed events deleted, 500 at a time');
    assert.equal(await count('webhook_events WHERE id LIKE :p', { p: `${tag}-young-%` }), 50);
    assert.equal(await count('webhook_events WHERE id LIKE :p AND processed_at IS NULL', { p: `${tag}-unprocessed-%` }), 20, 'unprocessed events are never deleted');
    assert.equal(by.webhook_quarantine!.rows, 20);
    assert.equal(await count('webhook_quarantine'), 10);
    assert.equal(by.calls!.rows, 13, 'the old ended calls, and the one whose recording is gone');
    assert.equal(await count('calls WHERE id IN (:ids)', { ids: oldCalls }), 0);
    assert.equal(await count('call_events WHERE call_id IN (:ids)', { ids: [...oldCalls, recordingGone] }), 0, 'their timelines with them');
    assert.equal(await count('calls WHERE id IN (:ids)', { ids: [live, onDisk, young] }), 3, 'a live call, a recording still on disk and a young call stay');
    assert.equal(await count('call_events WHERE call_id IN (:ids)', { ids: [live, onDisk, young] }), 15);
    assert.equal(by['permission replies replaced']!.rows, 1);
    assert.equal(by['permission replies expired']!.rows, 1);
    const left = await db.query<{ customer_number: string; response: string }>(
      'SELECT customer_number, response FROM call_permission_replies ORDER BY customer_number', { type: QueryTypes.SELECT });
    assert.deepEqual(left.map((r) => `${r.customer_number.slice(-4)} ${r.response}`), ['0001 reject', '0003 accept', '0004 accept']);
    assert.equal(by['permission requests']!.rows, 2);
    console.log(`      retention sweep: ${reports.map((r) => `${r.task} ${r.rows} rows/${r.batches} batches/${r.ms} ms`).join('; ')}; whole round ${ms} ms (batch 500, pause 10 ms)`);

    const again = await sweeper.sweep();
    assert.equal(again.reduce((n, r) => n + r.rows, 0), 0, 'a second round finds nothing more');
  });

  it('CDR_RETENTION_DAYS=0 keeps every call; other settings at 0 keep their table', async () => {
    const old = await call(4000);
    await events('keep', 3, 4000, true);
    const reports = await new RetentionSweeper(new RetentionRecords(db), { webhookEventsDays: 0, quarantineDays: 0, cdrDays: 0, permissionsDays: 0 }, log).sweep();
    assert.deepEqual(reports.map((r) => r.task), ['connect SDP secrets'], 'only the SDP scrub runs');
    assert.equal(await count('calls WHERE id = :old', { old }), 1);
    assert.equal(await count('webhook_events WHERE id LIKE :p', { p: `${tag}-keep-%` }), 3);
  });

  it('ICE passwords and SDES keys leave stored connects once processed and old enough; unprocessed ones keep them', async () => {
    const sdp = `${CANNED_WA_OFFER}a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:32\r\n`;
    const payload = { type: 'whatsapp.call.connect', callingConnect: { wacid: 'w', sdp } };
    await q(`INSERT INTO webhook_events (id, type, received_at, processed_at, payload) VALUES
             (:a, 'whatsapp.call.connect', now() - interval '1 hour', now() - interval '1 hour', :p::jsonb),
             (:b, 'whatsapp.call.connect', now() - interval '1 hour', NULL, :p::jsonb),
             (:c, 'whatsapp.call.connect', now(), now(), :p::jsonb)`, { a: `${tag}-sdp-old`, b: `${tag}-sdp-open`, c: `${tag}-sdp-new`, p: JSON.stringify(payload) });
    const reports = await new RetentionSweeper(new RetentionRecords(db), RETENTION, log).sweep();
    assert.equal(reports.find((r) => r.task === 'connect SDP secrets')!.rows, 1);
    const sdpOf = async (id: string) => (await db.query<{ sdp: string }>(
      `SELECT payload #>> '{callingConnect,sdp}' AS sdp FROM webhook_events WHERE id = :id`, { replacements: { id }, type: QueryTypes.SELECT }))[0]!.sdp;
    const scrubbed = await sdpOf(`${tag}-sdp-old`);
    assert.ok(!scrubbed.includes('abcdefghijklmnopqrstuvwx') && !scrubbed.includes('WVNfX19zZW1jdGwg'), scrubbed);
    assert.match(scrubbed, /a=ice-pwd:\[Redacted\]\r\n/);
    assert.match(scrubbed, /inline:\[Redacted\]\|2\^20\|1:32/);
    assert.match(scrubbed, /a=ice-ufrag:abcd\r\na=ice-pwd/, 'the rest of the SDP stays');
    assert.equal(await sdpOf(`${tag}-sdp-open`), sdp, 'an unprocessed connect may still be replayed: kept whole');
    assert.equal(await sdpOf(`${tag}-sdp-new`), sdp, 'a call just set up may still need it (another node): kept for a while');
  });

  it("Meta's stored connects (a calls.connect delivery: item.session.sdp) lose their ICE passwords and SDES keys the same way; the rest of the delivery stays", async () => {
    const sdp = `${CANNED_WA_OFFER}a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:32\r\n`;
    // What src/providers/meta/events.ts stores per delivery (MetaStored): the change's field, entry, metadata, contact and the one call.
    const payload = {
      provider: 'meta', field: 'calls', entry: { id: '188234691048809', time: null }, metadata: { phone_number_id: '461269257068831', display_phone_number: '6283138205150' },
      contact: { wa_id: '6281361905133', profile: { name: 'Caller' } }, part: 'calls',
      item: { id: 'wacid.meta-sdp', event: 'connect', direction: 'USER_INITIATED', from: '6281361905133', to: '6283138205150', timestamp: '1796645336', session: { sdp_type: 'offer', sdp } },
    };
    await q(`INSERT INTO webhook_events (id, type, received_at, processed_at, payload, provider) VALUES
             (:a, 'calls.connect', now() - interval '1 hour', now() - interval '1 hour', :p::jsonb, 'meta'),
             (:b, 'calls.connect', now() - interval '1 hour', NULL, :p::jsonb, 'meta'),
             (:c, 'calls.connect', now(), now(), :p::jsonb, 'meta')`, { a: `${tag}-meta-sdp-old`, b: `${tag}-meta-sdp-open`, c: `${tag}-meta-sdp-new`, p: JSON.stringify(payload) });
    const reports = await new RetentionSweeper(new RetentionRecords(db), RETENTION, log).sweep();
    assert.equal(reports.find((r) => r.task === 'connect SDP secrets')!.rows, 1);
    const payloadOf = async (id: string) => (await db.query<{ payload: typeof payload }>(
      'SELECT payload FROM webhook_events WHERE id = :id', { replacements: { id }, type: QueryTypes.SELECT }))[0]!.payload;
    const scrubbed = await payloadOf(`${tag}-meta-sdp-old`);
    const s = scrubbed.item.session.sdp;
    assert.ok(!s.includes('abcdefghijklmnopqrstuvwx') && !s.includes('WVNfX19zZW1jdGwg'), s);
    assert.match(s, /a=ice-pwd:\[Redacted\]\r\n/);
    assert.match(s, /inline:\[Redacted\]\|2\^20\|1:32/);
    assert.match(s, /a=ice-ufrag:abcd\r\na=ice-pwd/, 'the rest of the SDP stays');
    assert.deepEqual({ ...scrubbed, item: { ...scrubbed.item, session: { ...scrubbed.item.session, sdp } } }, payload, 'nothing else in the delivery changed');
    assert.equal((await payloadOf(`${tag}-meta-sdp-open`)).item.session.sdp, sdp, 'an unprocessed connect may still be replayed: kept whole');
    assert.equal((await payloadOf(`${tag}-meta-sdp-new`)).item.session.sdp, sdp, 'a call just set up may still need it: kept for a while');
  });

  it('two sweepers at once (two nodes) share the work without errors; stop() ends a round between batches', async () => {
    await events('pair', 3000, 40, true);
    const a = new RetentionSweeper(new RetentionRecords(db), RETENTION, log, { batchSize: 200, pauseMs: 5 });
    const b = new RetentionSweeper(new RetentionRecords(db), RETENTION, log, { batchSize: 200, pauseMs: 5 });
    const [ra, rb] = await Promise.all([a.sweep(), b.sweep()]);
    const of = (r: typeof ra) => r.find((t) => t.task === 'webhook_events')!;
    assert.equal(of(ra).error, undefined);
    assert.equal(of(rb).error, undefined);
    assert.equal(of(ra).rows + of(rb).rows, 3000, 'each row deleted once');
    console.log(`      two sweepers: ${of(ra).rows} + ${of(rb).rows} rows in ${of(ra).batches} + ${of(rb).batches} batches`);

    await events('stop', 3000, 40, true);
    const c = new RetentionSweeper(new RetentionRecords(db), RETENTION, log, { batchSize: 100, pauseMs: 50 });
    const round = c.sweep();
    await new Promise((resolve) => setTimeout(resolve, 120));
    await c.stop();
    const rc = of(await round);
    assert.ok(rc.rows < 3000 && rc.rows > 0, `stopped part way: ${rc.rows} rows`);
    assert.equal(await count('webhook_events WHERE id LIKE :p', { p: `${tag}-stop-%` }), 3000 - rc.rows);
  });
});
