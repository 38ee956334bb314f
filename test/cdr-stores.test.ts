import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { Sequelize } from 'sequelize';
import { connectDatabase, migrate } from '../src/cdr/db';
import { CdrStore } from '../src/cdr/store';
import { infra } from './harness/infra';

/**
 * Each CdrStore has models of its own, bound to its own Sequelize: two stores (two bridges) in one
 * process, on two databases, each write and read their own rows, and closing one leaves the other
 * working. (The models were once bound onto shared classes: the second store took the first's over.)
 */
describe('CDR stores side by side in one process', function () {
  this.timeout(60000);
  const tag = crypto.randomBytes(4).toString('hex');
  const otherName = `wasb_stores_${process.pid}_${tag}`;
  let admin: Sequelize;
  let dbA: Sequelize;
  let dbB: Sequelize;

  before(async () => {
    admin = connectDatabase(infra.databaseUrl, 10000);
    await admin.query(`CREATE DATABASE ${otherName}`);
    const u = new URL(infra.databaseUrl);
    u.pathname = `/${otherName}`;
    dbA = connectDatabase(infra.databaseUrl, 10000);
    dbB = connectDatabase(u.toString(), 10000);
    await migrate(dbB);
  });

  after(async () => {
    await dbA?.close();
    await dbB?.close().catch(() => undefined);
    await admin.query(`DROP DATABASE IF EXISTS ${otherName} WITH (FORCE)`).catch(() => undefined);
    await admin.close();
  });

  it('two stores on two databases each write and read their own rows, also after the other is closed', async () => {
    const a = new CdrStore(dbA);
    const b = new CdrStore(dbB); // made second: it must not take a's models over
    const id = crypto.randomUUID(); // the same id in both databases: each must find its own
    const offeredAt = new Date();
    await a.createCall(id, { direction: 'inbound', state: 'offered', offered_at: offeredAt, customer_number: '+6281100000001', wacid: `wacid.a.${tag}` });
    await b.createCall(id, { direction: 'outbound', state: 'offered', offered_at: offeredAt, customer_number: '+6281100000002', wacid: `wacid.b.${tag}` });
    await a.updateCall(id, { state: 'ended', outcome: 'answered' });
    await a.addEvent(id, 'in_a', null);
    await b.addEvent(id, 'in_b', null);

    const rowA = await a.findCall(id);
    const rowB = await b.findCall(id);
    assert.equal(rowA?.direction, 'inbound');
    assert.equal(rowA?.customer_number, '+6281100000001');
    assert.equal(rowA?.outcome, 'answered');
    assert.equal(rowB?.direction, 'outbound');
    assert.equal(rowB?.customer_number, '+6281100000002');
    assert.equal(rowB?.state, 'offered', "a's update reached a's database only");
    assert.deepEqual((await a.events(id)).map((e) => e.type), ['in_a']);
    assert.deepEqual((await b.events(id)).map((e) => e.type), ['in_b']);
    assert.equal((await a.findCallByWacid(`wacid.b.${tag}`)), null, "b's row is not in a's database");
    assert.equal((await b.findCallByWacid(`wacid.b.${tag}`))?.id, id);
    assert.deepEqual(await a.wacidHistory(`wacid.a.${tag}`), { call: true, terminated: false });
    assert.deepEqual(await b.wacidHistory(`wacid.a.${tag}`), { call: false, terminated: false });

    // b's pool gone (its bridge stopped): a goes on through its own.
    await dbB.close();
    await assert.rejects(b.findCall(id));
    await a.addEvent(id, 'after_b_closed', null);
    assert.deepEqual((await a.events(id)).map((e) => e.type), ['in_a', 'after_b_closed']);
  });
});
