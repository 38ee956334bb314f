import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import path from 'node:path';
import { QueryTypes, Sequelize } from 'sequelize';
import { SequelizeStorage, Umzug } from 'umzug';
import { scratchDatabase } from './harness/db-rows';

/** Its own database, with the migrations umzug finds (the compiled ones beside the tests). */
async function migrator(prefix: string): Promise<{ db: Sequelize; drop: () => Promise<void>; umzug: Umzug<ReturnType<Sequelize['getQueryInterface']>> }> {
  const { db, drop } = await scratchDatabase(prefix);
  const umzug = new Umzug({
    migrations: { glob: ['*.js', { cwd: path.join(__dirname, '..', 'migrations') }] },
    context: db.getQueryInterface(),
    storage: new SequelizeStorage({ sequelize: db, tableName: 'schema_migrations' }),
    logger: undefined,
  });
  return { db, drop, umzug };
}

async function columnsOf(db: Sequelize, table: string): Promise<Map<string, number | null>> {
  return new Map(
    (await db.query<{ column_name: string; len: number | null }>(
      'SELECT column_name, character_maximum_length AS len FROM information_schema.columns WHERE table_name = :table',
      { replacements: { table }, type: QueryTypes.SELECT },
    )).map((r) => [r.column_name, r.len]),
  );
}

/**
 * The issue 19 migration goes up on a database holding rows of before it, down again, and up again:
 * the columns, tables and indexes appear and go, rows written before it keep their values, and a
 * BSUID fits where a number did. (A database of its own: down drops tables.)
 */
describe('migration 20261221000001 (providers, users, call media, account notices)', function () {
  this.timeout(60000);
  const NAME = '20261221000001-providers-users-media.js';
  let db: Sequelize;
  let drop: () => Promise<void> = async () => undefined;
  let umzug: Umzug<ReturnType<Sequelize['getQueryInterface']>>;

  before(async () => {
    ({ db, drop, umzug } = await migrator('wasb_migr'));
  });
  after(() => drop());

  const columns = (table: string) => columnsOf(db, table);
  const tableExists = async (t: string) => (await db.query<{ t: string | null }>('SELECT to_regclass(:t)::text AS t', { replacements: { t }, type: QueryTypes.SELECT }))[0]!.t !== null;

  it('up, down and up again, keeping the rows written before it', async () => {
    const names = (await umzug.pending()).map((m) => m.name);
    const at = names.indexOf(NAME);
    assert.ok(at > 0, 'the migration is there, after others');
    await umzug.up({ to: names[at - 1] });
    const id = crypto.randomUUID();
    await db.query(`INSERT INTO calls (id, direction, state, offered_at, customer_number, created_at, updated_at) VALUES (:id, 'inbound', 'ended', now(), '+15550001111', now(), now())`, { replacements: { id } });
    await db.query(`INSERT INTO webhook_events (id, type, received_at, payload) VALUES ('before-19', 'whatsapp.call.connect', now(), '{}')`);
    assert.equal((await columns('calls')).get('customer_number'), 32);

    await umzug.up({ to: NAME });
    const calls = await columns('calls');
    for (const c of ['provider', 'provider_kind', 'number_name', 'user_id', 'profile_name', 'username', 'cta_payload', 'deeplink_payload', 'context']) assert.ok(calls.has(c), c);
    assert.equal(calls.get('customer_number'), 160);
    assert.equal(calls.get('user_id'), 160);
    assert.equal(calls.get('context'), 512);
    assert.equal((await columns('call_permission_replies')).get('customer_number'), 160);
    assert.equal((await columns('call_permission_requests')).get('customer_number'), 160);
    assert.ok(await tableExists('call_media'));
    assert.ok(await tableExists('account_notices'));
    const [w] = await db.query<{ provider: string }>("SELECT provider FROM webhook_events WHERE id = 'before-19'", { type: QueryTypes.SELECT });
    assert.equal(w!.provider, 'ycloud', 'events stored before it are YCloud\'s');
    const bsuid = `US.${'9'.repeat(60)}`;
    await db.query('UPDATE calls SET customer_number = :bsuid, user_id = :bsuid WHERE id = :id', { replacements: { id, bsuid } });
    await assert.rejects(
      db.query(`INSERT INTO call_media (wacid, kind, media_id, received_at) VALUES ('w', 'recording', 'm', now()), ('w', 'recording', 'm', now())`),
      { name: "SequelizeUniqueConstraintError" },
    );
    await assert.rejects(
      db.query(`INSERT INTO account_notices (provider, field, event, severity, received_at, event_id) VALUES ('meta', 'f', 'e', 'info', now(), 'x'), ('meta', 'f', 'e', 'info', now(), 'x')`),
      { name: "SequelizeUniqueConstraintError" },
    );

    // Down refuses to narrow while a BSUID longer than a number is stored, and changes nothing then.
    await assert.rejects(umzug.down({ to: NAME }));
    assert.ok(await tableExists('call_media'));
    await db.query("UPDATE calls SET customer_number = '+15550001111' WHERE id = :id", { replacements: { id } });
    await umzug.down({ to: NAME });
    assert.ok(!(await tableExists('call_media')));
    assert.ok(!(await tableExists('account_notices')));
    assert.ok(!(await columns('calls')).has('user_id'));
    assert.ok(!(await columns('webhook_events')).has('provider'));
    assert.equal((await columns('calls')).get('customer_number'), 32);

    await umzug.up({ to: NAME });
    assert.ok(await tableExists('call_media'));
    const [row] = await db.query<{ customer_number: string }>('SELECT customer_number FROM calls WHERE id = :id', { replacements: { id }, type: QueryTypes.SELECT });
    assert.equal(row!.customer_number, '+15550001111');
  });
});

/**
 * The issue 20 migration (Meta's native SIP): calls get the user's country and the SRTP keying of Meta's
 * leg; a row written before keeps its values (null in the new columns), and down takes the columns away.
 */
describe('migration 20261222000001 (Meta\'s native SIP: country code, SRTP keying)', function () {
  this.timeout(60000);
  const NAME = '20261222000001-meta-sip.js';
  let db: Sequelize;
  let drop: () => Promise<void> = async () => undefined;
  let umzug: Umzug<ReturnType<Sequelize['getQueryInterface']>>;

  before(async () => {
    ({ db, drop, umzug } = await migrator('wasb_migr20'));
  });
  after(() => drop());

  it('up, down and up again, keeping the rows written before it', async () => {
    const names = (await umzug.pending()).map((m) => m.name);
    const at = names.indexOf(NAME);
    assert.ok(at > 0, 'the migration is there, after others');
    await umzug.up({ to: names[at - 1] });
    const id = crypto.randomUUID();
    await db.query(
      `INSERT INTO calls (id, direction, state, offered_at, customer_number, provider_duration, created_at, updated_at)
       VALUES (:id, 'inbound', 'ended', now(), '+15550001111', 42, now(), now())`,
      { replacements: { id } },
    );
    assert.ok(!(await columnsOf(db, 'calls')).has('country_code'));

    await umzug.up({ to: NAME });
    const calls = await columnsOf(db, 'calls');
    assert.equal(calls.get('country_code'), 16);
    assert.equal(calls.get('meta_sip_srtp'), 8);
    assert.ok(!calls.has('provider_duration_s'), 'Meta\'s BYE duration goes in provider_duration');
    const [before] = await db.query<{ country_code: string | null; meta_sip_srtp: string | null; provider_duration: number }>(
      'SELECT country_code, meta_sip_srtp, provider_duration FROM calls WHERE id = :id', { replacements: { id }, type: QueryTypes.SELECT },
    );
    assert.deepEqual(before, { country_code: null, meta_sip_srtp: null, provider_duration: 42 });
    await db.query("UPDATE calls SET country_code = 'BR', meta_sip_srtp = 'sdes', provider_kind = 'meta-sip' WHERE id = :id", { replacements: { id } });

    await umzug.down({ to: NAME });
    const after = await columnsOf(db, 'calls');
    assert.ok(!after.has('country_code') && !after.has('meta_sip_srtp'));
    await umzug.up({ to: NAME });
    const [row] = await db.query<{ customer_number: string; provider_kind: string }>(
      'SELECT customer_number, provider_kind FROM calls WHERE id = :id', { replacements: { id }, type: QueryTypes.SELECT },
    );
    assert.deepEqual(row, { customer_number: '+15550001111', provider_kind: 'meta-sip' });
  });
});
