import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Sequelize } from 'sequelize';
import { CdrSpill } from '../src/cdr/cdr-spill';
import { CdrWrite } from '../src/cdr/call-recorder';
import { connectDatabase } from '../src/cdr/db';
import { CdrStore } from '../src/cdr/store';
import { createLogger } from '../src/log';
import { startStack, TestStack } from './harness/bridge';
import { callParts } from './harness/call-parts';
import { cannedWaUser } from './harness/canned-offer';
import { rows } from './harness/db-rows';
import { databaseUrlVia, infra } from './harness/infra';
import { LogTap } from './harness/log-tap';
import { RtpPhone } from './harness/rtp-phone';
import { startSippUas } from './harness/sipp';
import { TcpProxy } from './harness/tcp-proxy';
import { WaUser } from './harness/wa-user';
import { newWacid } from './harness/ycloud-sim';
import { whenEnded } from './harness/watch';

/** Postgres as a bridge reaches it: through a relay the test can cut. */
function postgresProxy(): TcpProxy {
  return new TcpProxy(infra.isolated ? { path: '/var/run/postgresql/.s.PGSQL.5432' } : { host: '127.0.0.1', port: 5432 });
}

function proxiedUrl(port: number): string {
  return databaseUrlVia(port);
}

/** `p`, or a rejection naming `what` after `ms`. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)));
  return Promise.race([p, limit]).finally(() => clearTimeout(t));
}

/** The spill file's lines, parsed. */
function spilled(file: string): Array<{ callId: string; why: string; write: { kind: string; type?: string; fields?: Record<string, unknown> } }> {
  return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as ReturnType<typeof spilled>[number]);
}

describe('CDR spill file', function () {
  this.timeout(60000);
  const log = createLogger('silent');
  let dir: string;
  let db: Sequelize;
  let store: CdrStore;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-spill-'));
    db = connectDatabase(infra.databaseUrl, 2000);
    store = new CdrStore(db);
  });
  afterEach(async () => {
    await db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const spill = (nodeId = 'node-a') => new CdrSpill({ dir, nodeId, attemptTimeoutMs: 3000 }, log);

  it('replays each call\'s writes in order, once: a create and an event that reached Postgres as well are not doubled; then the file is gone', async () => {
    const id = crypto.randomUUID();
    const offeredAt = new Date(Date.now() - 5000);
    const offeredEventAt = new Date(offeredAt.getTime() + 3);
    // The create and the first event reached Postgres (an attempt in flight when they were spilled).
    await store.createCall(id, { direction: 'inbound', state: 'offered', offered_at: offeredAt, customer_number: '+6281100000009' });
    await store.addEvent(id, 'offered', { from: '+6281100000009' }, offeredEventAt);
    const endedAt = new Date();
    const writes: CdrWrite[] = [
      { kind: 'create', fields: { direction: 'inbound', state: 'offered', offered_at: offeredAt, customer_number: '+6281100000009' } },
      { kind: 'event', type: 'offered', detail: { from: '+6281100000009' }, at: offeredEventAt },
      { kind: 'update', fields: { state: 'pre_accepted', pre_accepted_at: new Date(offeredAt.getTime() + 10) } },
      { kind: 'event', type: 'pre_accepted', detail: null, at: new Date(offeredAt.getTime() + 10) },
      { kind: 'update', fields: { state: 'ended', outcome: 'failed', hangup_by: 'bridge', ended_at: endedAt, error: 'x', media_stats: { legs: {} } as object } },
      { kind: 'event', type: 'ended', detail: { outcome: 'failed' }, at: endedAt },
    ];
    const other = crypto.randomUUID();
    const s = spill();
    s.append(id, writes.slice(0, 3), 'past the retry limit');
    s.append(other, [{ kind: 'create', fields: { direction: 'outbound', state: 'offered', offered_at: offeredAt } }, { kind: 'event', type: 'offered', detail: null, at: offeredAt }], 'the bridge stopped');
    s.append(id, writes.slice(3), 'follows the writes spilled before it');
    await s.flushed();
    assert.equal(spilled(s.file).length, 8);
    assert.equal(fs.statSync(s.file).mode & 0o777, 0o600, 'the file holds phone numbers: its owner only');

    // The next start: a spill of the same node (a new process).
    const report = await spill().replay(store);
    assert.deepEqual(report, { calls: [id, other], writes: 8, refused: 0, left: 0 });
    assert.equal(fs.existsSync(s.file), false, 'replayed and removed');
    const row = (await store.findCall(id))!;
    assert.equal(row.state, 'ended');
    assert.equal(row.outcome, 'failed');
    assert.equal(row.customer_number, '+6281100000009');
    assert.equal(row.ended_at?.getTime(), endedAt.getTime(), 'times come back as they were');
    assert.deepEqual(row.media_stats, { legs: {} });
    assert.deepEqual((await store.events(id)).map((e) => e.type), ['offered', 'pre_accepted', 'ended'], 'the offered event is not doubled');
    assert.equal((await store.findCall(other))?.direction, 'outbound');

    // Nothing left: a second replay does nothing.
    assert.deepEqual(await spill().replay(store), { calls: [], writes: 0, refused: 0, left: 0 });
  });

  it('Postgres gone during the replay: nothing is lost, the file keeps every write not yet made for the next start', async () => {
    const id = crypto.randomUUID();
    const s = spill();
    s.append(id, [
      { kind: 'create', fields: { direction: 'inbound', state: 'offered', offered_at: new Date() } },
      { kind: 'event', type: 'offered', detail: null, at: new Date() },
    ], 'test');
    await s.flushed();
    const before = fs.readFileSync(s.file, 'utf8');

    const proxy = postgresProxy();
    const port = await proxy.start();
    await proxy.close(); // refusing
    const cut = connectDatabase(proxiedUrl(port), 500);
    try {
      const report = await within(spill().replay(new CdrStore(cut)), 10000, 'replay against a refusing Postgres');
      assert.deepEqual(report, { calls: [], writes: 0, refused: 0, left: 2 });
      assert.equal(fs.readFileSync(s.file, 'utf8'), before, 'every write kept, in order');
    } finally {
      await cut.close();
    }
    assert.deepEqual((await spill().replay(store)).calls, [id]);
    assert.deepEqual((await store.events(id)).map((e) => e.type), ['offered']);
  });

  it('an unreadable line (a crash in the middle of an append) is logged and skipped; the rest is replayed', async () => {
    const id = crypto.randomUUID();
    const s = spill();
    s.append(id, [{ kind: 'create', fields: { direction: 'inbound', state: 'offered', offered_at: new Date() } }], 'test');
    await s.flushed();
    fs.appendFileSync(s.file, '{"callId":"cut sho');
    const tap = new LogTap();
    const report = await new CdrSpill({ dir, nodeId: 'node-a', attemptTimeoutMs: 3000 }, createLogger('info', {}, { destination: tap })).replay(store);
    assert.deepEqual(report, { calls: [id], writes: 1, refused: 0, left: 0 });
    const bad = await tap.waitFor(/unreadable line/, 1000);
    assert.equal(bad.line, 2);
    assert.equal(tap.all.includes('cut sho'), false, 'the line itself is not logged (it may hold numbers)');
    assert.ok(await store.findCall(id));
  });

  describe('a bridge stopped while Postgres is unreachable', () => {
    let proxy: TcpProxy | null = null;
    const stacks: TestStack[] = [];

    afterEach(async () => {
      for (const s of stacks.splice(0)) await s.stop();
      await proxy?.close();
      proxy = null;
    });

    /** A bridge that reaches Postgres through a relay, cut before a call comes; the call is rejected (no SIP side here). */
    async function callInOutage(env: Record<string, string>, tap: LogTap): Promise<{ first: TestStack; wacid: string; nodeId: string }> {
      proxy = postgresProxy();
      const port = await proxy.start();
      const nodeId = `spill-${process.pid}-${crypto.randomBytes(3).toString('hex')}`;
      const first = await startStack({ DATABASE_URL: proxiedUrl(port), DATABASE_TIMEOUT_MS: '500', NODE_ID: nodeId, LOG_LEVEL: 'info', ...env }, { logStream: tap });
      stacks.push(first);
      await proxy.close();
      const wacid = newWacid();
      // The connect cannot be stored (YCloud is asked to retry) but is acted on: the call is turned away.
      const { status } = await first.sim.userCalls(cannedWaUser, { wacid });
      assert.equal(status, 503);
      await within(first.sim.waitForRequest('/calls/reject', wacid), 20000, 'the call rejected at WhatsApp');
      return { first, wacid, nodeId };
    }

    /** A new bridge with the same node id and Postgres reachable: its start-up replays the spill. */
    async function restart(nodeId: string, tap: LogTap): Promise<TestStack> {
      const second = await startStack({ NODE_ID: nodeId, LOG_LEVEL: 'info' }, { logStream: tap });
      stacks.push(second);
      return second;
    }

    async function assertComplete(wacid: string, types: string[]): Promise<string> {
      const row = await rows().CallRecord.findOne({ where: { wacid } });
      assert.ok(row, 'the CDR row is there');
      assert.equal(row.state, 'ended');
      assert.equal(row.outcome, 'failed');
      assert.equal(row.hangup_by, 'bridge');
      assert.ok(row.ended_at && row.offered_at <= row.ended_at);
      assert.match(row.error ?? '', /./, 'with the reason');
      const timeline = (await rows().CallEvent.findAll({ where: { call_id: row.id }, order: [['at', 'ASC'], ['id', 'ASC']] })).map((e) => e.type);
      assert.deepEqual(timeline, types, 'the whole timeline, once, in order');
      return row.id;
    }

    it('past CDR_RETRY_S the writes go to the spill file; the next start writes the complete CDR into Postgres', async () => {
      const tap = new LogTap();
      const { first, wacid, nodeId } = await callInOutage({ CDR_RETRY_S: '1' }, tap);
      const id = await within(whenEnded(first.bridge, wacid), 20000, 'the call ended (its writes spilled)');
      const spilledLine = await tap.waitFor(/CDR writes spilled to file/, 1000);
      assert.equal(spilledLine.callId, id);
      await first.stop();
      stacks.splice(stacks.indexOf(first), 1);
      const file = first.bridge.cdrSpill.file;
      const lines = spilled(file);
      assert.ok(lines.length >= 3 && lines.every((l) => l.callId === id), JSON.stringify(lines.map((l) => l.write.kind)));
      assert.equal(lines[0]!.write.kind, 'create');
      const types = lines.filter((l) => l.write.kind === 'event').map((l) => l.write.type!);
      assert.equal(types.at(-1), 'ended', 'the end of the call is in the file');

      const tap2 = new LogTap();
      await restart(nodeId, tap2);
      const replayed = await tap2.waitFor(/CDR writes replayed from the spill file/, 1000);
      assert.equal(replayed.callId, id);
      assert.equal(fs.existsSync(file), false, 'the file is removed once replayed');
      assert.equal(await assertComplete(wacid, types), id);
    });

    it('writes still queued at shutdown are spilled, named in the log, and written by the next start', async () => {
      const tap = new LogTap();
      // Retried for longer than the test runs: only the stop ends them.
      const { first, wacid, nodeId } = await callInOutage({ CDR_RETRY_S: '600' }, tap);
      await tap.waitFor(/CDR .* failed; retrying until Postgres answers/, 10000);
      await within(first.stop(), first.bridge.stopBoundMs, 'the bridge stopped');
      stacks.splice(stacks.indexOf(first), 1);
      const named = await tap.waitFor(/CDR writes still queued spilled to file/, 1000);
      const lines = spilled(first.bridge.cdrSpill.file);
      const ids = [...new Set(lines.map((l) => l.callId))];
      assert.deepEqual(named.callIds, ids, 'the log names each call spilled');
      assert.equal(ids.length, 1);
      const types = lines.filter((l) => l.write.kind === 'event').map((l) => l.write.type!);
      assert.equal(types.at(-1), 'ended');

      const tap2 = new LogTap();
      await restart(nodeId, tap2);
      assert.equal((await tap2.waitFor(/CDR writes replayed from the spill file/, 1000)).callId, ids[0]);
      assert.equal(await assertComplete(wacid, types), ids[0]);
    });
  });

  describe('an answered call ending while Postgres is unreachable', () => {
    const parts = callParts({ keepStack: true });
    let proxy: TcpProxy | null = null;
    const stacks: TestStack[] = [];

    afterEach(async () => {
      for (const st of stacks.splice(0)) await st.stop();
      await proxy?.close();
      proxy = null;
    });

    it('its end, spilled when the bridge stops, reaches Postgres at the next start: the CDR is complete', async () => {
      proxy = postgresProxy();
      const port = await proxy.start();
      const nodeId = `spill-call-${process.pid}-${crypto.randomBytes(3).toString('hex')}`;
      const tap = new LogTap();
      parts.phone = new RtpPhone(1000, 440);
      // The agent answers and hangs up 2.5 s later: the end of the call happens in the outage.
      parts.sipp = await startSippUas('uas-answer-hangup.xml', { rtpPort: await parts.phone.start() });
      const first = await startStack({
        PBX_TARGET: parts.sipp.uri, DATABASE_URL: proxiedUrl(port), DATABASE_TIMEOUT_MS: '1000', CDR_RETRY_S: '600', NODE_ID: nodeId, LOG_LEVEL: 'info',
      }, { logStream: tap });
      stacks.push(first);
      const answeredWritten = new Promise<void>((resolve) => first.bridge.cdr.on('event', (_id, type) => type === 'pbx_answered' && resolve()));
      parts.user = new WaUser(440, 1000);
      const { wacid } = await first.sim.userCalls(parts.user);
      await within(answeredWritten, 20000, 'pbx_answered written to Postgres');
      await proxy.close();

      assert.equal(await within(parts.sipp.done, 20000, 'the agent hung up'), 0, parts.sipp.proc.output.slice(-1500));
      await within(first.sim.waitForRequest('/calls/terminate', wacid), 20000, 'the WhatsApp leg terminated');
      await tap.waitFor(/CDR .* failed; retrying until Postgres answers/, 10000);
      await within(first.stop(), first.bridge.stopBoundMs, 'the bridge stopped');
      stacks.splice(stacks.indexOf(first), 1);
      const named = await tap.waitFor(/CDR writes still queued spilled to file/, 1000);
      const lines = spilled(first.bridge.cdrSpill.file);
      assert.deepEqual(named.callIds, [...new Set(lines.map((l) => l.callId))]);
      assert.ok(lines.some((l) => l.write.type === 'ended'), 'the end is in the file');

      const tap2 = new LogTap();
      stacks.push(await startStack({ NODE_ID: nodeId, LOG_LEVEL: 'info' }, { logStream: tap2 }));
      const replayed = await tap2.waitFor(/CDR writes replayed from the spill file/, 1000);
      const row = await rows().CallRecord.findOne({ where: { wacid } });
      assert.ok(row, 'CDR row exists');
      assert.equal(replayed.callId, row.id);
      assert.equal(row.state, 'ended');
      assert.equal(row.outcome, 'answered');
      assert.equal(row.hangup_by, 'pbx');
      assert.equal(row.sip_final_code, 200);
      assert.equal(row.error, null, 'ended by its own hang-up, not closed by the restart\'s recovery');
      assert.ok(row.accepted_at && row.ended_at && row.accepted_at <= row.ended_at);
      assert.ok(Number(row.talk_seconds) > 1, `talk time ${row.talk_seconds}`);
      const timeline = (await rows().CallEvent.findAll({ where: { call_id: row.id }, order: [['at', 'ASC'], ['id', 'ASC']] })).map((e) => e.type);
      assert.deepEqual(timeline, ['offered', 'pre_accepted', 'invite_sent', 'pbx_progress', 'pbx_answered', 'accepted', 'ended']);
    });
  });
});
