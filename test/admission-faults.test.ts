import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { QueryTypes, Sequelize, Transaction } from 'sequelize';
import { rows } from './harness/db-rows';
import { startStack, TestStack } from './harness/bridge';
import { cannedWaUser } from './harness/canned-offer';
import { infra } from './harness/infra';
import { newWacid } from './harness/ycloud-sim';
import { whenEnded } from './harness/watch';

/**
 * Holds an ACCESS EXCLUSIVE lock on `calls` from a connection of the test's own: the admission check
 * (which reads `calls`) and every CDR write wait on it and time out, while webhook_events (another
 * table) takes the event, so YCloud gets its 200. That is Postgres slow for the admission query only.
 */
class CallsLock {
  private readonly db = new Sequelize(infra.databaseUrl, { logging: false, pool: { max: 1 } });
  private tx: Transaction | null = null;

  async take(): Promise<void> {
    this.tx = await this.db.transaction();
    await this.db.query('LOCK TABLE calls IN ACCESS EXCLUSIVE MODE', { transaction: this.tx, type: QueryTypes.RAW });
  }

  async release(): Promise<void> {
    await this.tx?.commit();
    this.tx = null;
  }

  async close(): Promise<void> {
    await this.tx?.rollback().catch(() => undefined);
    await this.db.close();
  }
}

/** Resolves once the pipeline has finished with the event (marked processed, or left unprocessed). */
function whenProcessed(stack: TestStack, eventId: string): Promise<boolean> {
  return new Promise((resolve) => {
    const on = (id: string, _type: string, ok: boolean) => {
      if (id !== eventId) return;
      stack.bridge.events.off('processed', on);
      resolve(ok);
    };
    stack.bridge.events.on('processed', on);
  });
}

/**
 * Issue 17, finding 1: an inbound connect whose admission check against Postgres times out must not
 * vanish (YCloud got 200, nothing sent to YCloud, no CDR, event marked processed, never replayed).
 */
describe('admission check against Postgres fails', function () {
  this.timeout(60000);
  let stack: TestStack | null = null;
  let lock: CallsLock | null = null;

  afterEach(async () => {
    await lock?.close();
    await stack?.stop();
    lock = stack = null;
  });

  it('the call is rejected at WhatsApp and its CDR (written once Postgres answers) says the admission check failed', async () => {
    stack = await startStack({ DATABASE_TIMEOUT_MS: '300', CDR_RETRY_S: '60' });
    lock = new CallsLock();
    await lock.take();
    const wacid = newWacid();
    const t0 = performance.now();
    const { status, eventId } = await stack.sim.userCalls(cannedWaUser, { wacid });
    assert.equal(status, 200, 'the event itself is stored: YCloud gets its 200');
    const processed = whenProcessed(stack, eventId);
    await stack.sim.waitForRequest('/calls/reject', wacid);
    const rejectedAfterMs = Math.round(performance.now() - t0);
    assert.equal(stack.sim.requestsFor(wacid).some((r) => r.path === '/calls/preAccept'), false, 'never pre-accepted');
    await lock.release();
    const id = await whenEnded(stack.bridge, wacid);
    assert.equal(await processed, true);
    const row = await rows().CallRecord.findByPk(id);
    assert.ok(row, 'a CDR row exists');
    assert.equal(row.outcome, 'failed');
    assert.equal(row.hangup_by, 'bridge');
    assert.match(row.error ?? '', /admission check failed/);
    assert.ok(row.ended_at);
    const ev = await rows().WebhookEventRecord.findByPk(eventId);
    assert.ok(ev?.processed_at, 'the event is marked processed once the CDR is written');
    console.log(`      admission check unanswerable: call rejected at YCloud ${rejectedAfterMs} ms after the connect (DATABASE_TIMEOUT_MS=300), CDR error: ${row.error}`);
  });

  it('when the CDR cannot be written either, the event is left unprocessed (replayed later) after the call is rejected', async () => {
    stack = await startStack({ DATABASE_TIMEOUT_MS: '300', CDR_RETRY_S: '1' });
    lock = new CallsLock();
    await lock.take();
    const wacid = newWacid();
    const { status, eventId } = await stack.sim.userCalls(cannedWaUser, { wacid });
    assert.equal(status, 200);
    const processed = whenProcessed(stack, eventId);
    await stack.sim.waitForRequest('/calls/reject', wacid);
    assert.equal(await processed, false, 'processing reports a failure');
    await lock.release();
    const ev = await rows().WebhookEventRecord.findByPk(eventId);
    assert.ok(ev, 'the event is stored');
    assert.equal(ev.processed_at, null, 'not marked processed: start-up (or a survivor) replays it');
    assert.equal(await rows().CallRecord.count({ where: { wacid } }), 0, 'no CDR could be written');
    const replay = await stack.bridge.db.webhookEvents.unprocessedWebhooks(stack.bridge.config.nodeId);
    assert.ok(replay.some((w) => w.id === eventId), 'the replay query finds it');
  });
});
