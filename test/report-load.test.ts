import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import crypto from 'node:crypto';
import { QueryTypes, Sequelize } from 'sequelize';
import { connectDatabase } from '../src/cdr/db';
import { startStack, TestStack } from './harness/bridge';
import { infra } from './harness/infra';

/**
 * Issue 17, finding 1: a read-only reporting token could starve calls. Reports and exports shared the
 * calls' pool of 10 connections, so 16 heavy summaries made signed webhooks and call set-up wait
 * seconds, and exports whose clients never read held ~8 MB each. Here a CDR table of many rows over
 * 400 days is hammered with hourly summaries and stalled exports through three reporting tokens while
 * signed webhooks arrive and the CDR store writes; the numbers are printed for the report.
 */
const ADMIN = 'admin-token-report-load-0123456789';
const TOKENS = ['reporting-load-token-a-0123456789', 'reporting-load-token-b-0123456789', 'reporting-load-token-c-0123456789'];
const LIMITS = { REPORTING_MAX_CONCURRENT: '6', REPORTING_MAX_CONCURRENT_PER_TOKEN: '3', REPORTING_DB_POOL_MAX: '3', REPORTING_EXPORT_STALL_MS: '3000' };
/** 400 days no other test writes to. */
const FROM = '2014-01-01T00:00:00Z';
const TO = '2015-02-05T00:00:00Z';
const ROWS = Number(process.env.REPORT_LOAD_ROWS ?? 120_000);
/** Concurrent summary requesters (the issue's 16). */
const SUMMARIES = 16;
/** What one stalled export may hold in the server: a page of rows as CSV and the response's buffer. */
const MAX_BUFFERED_PER_EXPORT = 256 * 1024;

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)]! : NaN;
};
const ms = (x: number) => `${x.toFixed(1)} ms`;
/** Memory after a full collection when node runs with --expose-gc (else as it stands, noisier). */
const memory = (): NodeJS.MemoryUsage => {
  (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage();
};

describe('reporting load cannot starve calls (issue 17)', function () {
  this.timeout(240_000);
  let stack: TestStack;
  /** Our own connection for seeding and watching, outside both of the bridge's pools. */
  let watcher: Sequelize;
  let seq = 0;

  before(async function () {
    this.timeout(240_000);
    stack = await startStack({ ADMIN_API_TOKEN: ADMIN, REPORTING_API_TOKENS: TOKENS.join(','), ...LIMITS });
    watcher = connectDatabase(infra.databaseUrl, 120_000);
    const t = performance.now();
    // Calls spread over the 400 days; a third answered with an agent, the rest missed.
    await watcher.query(
      `INSERT INTO calls (id, direction, state, offered_at, outcome, agent, business_number, customer_number, talk_seconds, accepted_at, created_at, updated_at)
       SELECT gen_random_uuid(), CASE WHEN i % 4 = 0 THEN 'outbound' ELSE 'inbound' END, 'ended', t,
              CASE WHEN i % 3 = 0 THEN 'answered' WHEN i % 3 = 1 THEN 'busy' ELSE 'caller_hangup' END,
              CASE WHEN i % 3 = 0 THEN 'agent' || (i % 40) END, '+1555070000' || (i % 5), '+1555080' || lpad((i % 5000)::text, 4, '0'),
              CASE WHEN i % 3 = 0 THEN 30 + i % 600 END, CASE WHEN i % 3 = 0 THEN t + make_interval(secs => 2 + i % 30) END, now(), now()
       FROM (SELECT i, $1::timestamptz + (($2::timestamptz - $1::timestamptz) * i / $3) AS t FROM generate_series(0, $3 - 1) AS i) s`,
      { bind: [FROM, TO, ROWS] },
    );
    await watcher.query('ANALYZE calls');
    console.log(`      seeded ${ROWS} calls over 400 days in ${ms(performance.now() - t)}`);
  });

  after(async () => {
    await watcher?.query('DELETE FROM calls WHERE offered_at >= $1::timestamptz AND offered_at < $2::timestamptz', { bind: ['2013-01-01T00:00:00Z', TO] });
    await watcher?.close();
    await stack?.stop();
  });

  const base = () => `http://127.0.0.1:${stack.bridge.httpPort}`;

  /** Signed webhooks one after the other (each stored in Postgres before its 200); their latencies. */
  async function webhooks(n: number): Promise<number[]> {
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const ev = stack.sim.event('whatsapp.call.status.updated', { callingStatusUpdated: { wacid: `wacid.load.${++seq}`, status: 'RINGING' } });
      const t = performance.now();
      assert.equal(await stack.sim.deliver(ev), 200);
      out.push(performance.now() - t);
    }
    return out;
  }

  /** CDR rows written by the bridge's own writer (a call's record), one after the other; their latencies. */
  async function cdrWrites(n: number): Promise<number[]> {
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const t = performance.now();
      await stack.bridge.cdr.createCall(crypto.randomUUID(), { direction: 'inbound', state: 'offered', offered_at: new Date(Date.parse('2013-06-01T00:00:00Z') + ++seq * 1000) });
      out.push(performance.now() - t);
    }
    return out;
  }

  /** The calls' pool as sequelize-pool counts it: connections open and requests waiting for one. */
  function callsPool(): { size: number; waiting: number } {
    return stack.bridge.db.poolUse;
  }

  it(`${SUMMARIES} concurrent 400-day hourly summaries: webhooks and CDR writes do not wait behind them; beyond the limits 429 + Retry-After`, async () => {
    const idleHooks = await webhooks(30);
    const idleWrites = await cdrWrites(20);

    const statuses = new Map<number, number>();
    const retryAfter = new Set<string | null>();
    let stop = false;
    let maxCallsWaiting = 0;
    let maxReportingBackends = 0;
    let maxHeartbeatAge = 0;
    const summary = `/api/reports/summary?from=${FROM}&to=${TO}&group_by=hour&tz=Asia/Jakarta`;
    // Each requester sends summaries back to back until the measurement is over (bounded by count).
    const worker = async (k: number) => {
      for (let i = 0; i < 400 && !stop; i++) {
        // A connection error counts as status 0 (asserted against below).
        const res = await fetch(base() + summary, { headers: { Authorization: `Bearer ${TOKENS[k % TOKENS.length]}` } }).catch(() => null);
        await res?.arrayBuffer().catch(() => undefined);
        const status = res?.status ?? 0;
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        if (status === 429) retryAfter.add(res!.headers.get('retry-after'));
        if (status !== 200) await new Promise((r) => setTimeout(r, 50));
      }
    };
    const workers = Array.from({ length: SUMMARIES }, (_, k) => worker(k));
    // Watches the calls' pool and Postgres while the load runs.
    const watch = (async () => {
      while (!stop) {
        maxCallsWaiting = Math.max(maxCallsWaiting, callsPool().waiting);
        const [row] = await watcher.query<{ reporting: number; age: number }>(
          `SELECT (SELECT count(*)::int FROM pg_stat_activity WHERE application_name = 'wa-sip-bridge reporting' AND state = 'active' AND datname = current_database()) AS reporting,
                  (SELECT extract(epoch FROM now() - heartbeat_at)::float8 FROM bridge_nodes WHERE node_id = $1) AS age`,
          { bind: [stack.bridge.config.nodeId], type: QueryTypes.SELECT },
        );
        maxReportingBackends = Math.max(maxReportingBackends, row?.reporting ?? 0);
        maxHeartbeatAge = Math.max(maxHeartbeatAge, row?.age ?? 0);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    // Let every requester have sent its first summary before measuring.
    while ([...statuses.values()].reduce((a, b) => a + b, 0) < SUMMARIES) await new Promise((r) => setTimeout(r, 20));
    const loadHooks = await webhooks(30);
    const loadWrites = await cdrWrites(20);
    stop = true;
    await Promise.all([...workers, watch]);

    const count = (s: number) => statuses.get(s) ?? 0;
    console.log(`      signed webhook median: idle ${ms(median(idleHooks))}, under ${SUMMARIES} summaries ${ms(median(loadHooks))} (max ${ms(Math.max(...loadHooks))})`);
    console.log(`      CDR write median: idle ${ms(median(idleWrites))}, under load ${ms(median(loadWrites))} (max ${ms(Math.max(...loadWrites))})`);
    console.log(`      summaries: ${count(200)} answered 200, ${count(429)} refused 429 (Retry-After ${[...retryAfter].join('/')}), ${count(503)} 503, ${count(500)} 500, ${count(0)} connection errors; `
      + `refusals per token ${stack.bridge.reportAdmission.refused.per_token}, in all ${stack.bridge.reportAdmission.refused.total}`);
    console.log(`      calls' pool: at most ${maxCallsWaiting} requests waiting; reporting backends active at once: at most ${maxReportingBackends}; node heartbeat at most ${maxHeartbeatAge.toFixed(1)} s old`);

    assert.equal(maxCallsWaiting, 0, "nothing waited for a connection of the calls' pool");
    assert.ok(maxReportingBackends <= Number(LIMITS.REPORTING_DB_POOL_MAX), 'reporting statements run on the reporting pool only');
    assert.ok(count(429) > 0, 'requests beyond the limits are refused');
    assert.deepEqual([...retryAfter], ['5']);
    assert.ok(count(200) > 0, 'summaries within the limits are answered');
    for (const s of statuses.keys()) assert.ok([200, 429, 503].includes(s), `unexpected status ${s}`);
  });

  /** A client that sends a CSV export request and then never reads: a raw socket, paused. */
  async function stalledExport(token: string, from: string): Promise<net.Socket> {
    const socket = net.connect({ port: stack.bridge.httpPort, host: '127.0.0.1', localAddress: from });
    await once(socket, 'connect');
    socket.pause();
    socket.write(`GET /api/calls?from=${FROM}&to=${TO}&format=csv HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\n\r\n`);
    return socket;
  }

  it('stalled exports: per-token and total limits (429), bounded bytes held per export, ended after REPORTING_EXPORT_STALL_MS', async () => {
    const exports = stack.bridge.reportExports;
    const admission = stack.bridge.reportAdmission;
    const stalled: number[] = [];
    const onStalled = (bytes: number) => stalled.push(bytes);
    exports.on('stalled', onStalled);
    const mem0 = memory();
    const sockets: net.Socket[] = [];
    let peak = 0;
    const sample = setInterval(() => {
      peak = Math.max(peak, ...exports.bufferedBytes());
    }, 50);
    try {
      // Three exports for token A and three for token B: every place taken.
      for (const token of [TOKENS[0]!, TOKENS[1]!]) {
        for (let i = 0; i < 3; i++) {
          const added = once(exports, 'added');
          sockets.push(await stalledExport(token, `127.0.0.${2 + sockets.length}`));
          await added;
        }
      }
      assert.equal(admission.inUse(), 6);

      const get = (token: string) => fetch(`${base()}/api/calls?from=${FROM}&to=${TO}&format=csv`, { headers: { Authorization: `Bearer ${token}` } });
      // More of token A's: its own limit. Token C's and the admin's: the limit in all.
      const refused: Array<[string, number, string | null, string]> = [];
      for (const [who, token] of [['A', TOKENS[0]!], ['C', TOKENS[2]!], ['admin', ADMIN]] as const) {
        for (let i = 0; i < 10; i++) {
          const res = await get(token);
          const body = res.status === 429 ? ((await res.json()) as { error: string }).error : (await res.body?.cancel(), '');
          refused.push([who, res.status, res.headers.get('retry-after'), body]);
        }
      }

      // Nobody reads: after REPORTING_EXPORT_STALL_MS each export is ended and its place freed.
      while (stalled.length < 6) await once(exports, 'stalled');
      const mem1 = memory();
      while (exports.count > 0) await once(exports, 'removed');
      clearInterval(sample);
      const n429 = refused.filter((r) => r[1] === 429).length;
      console.log(`      6 stalled exports admitted, ${n429} of ${refused.length} further exports refused 429; bytes held per stalled export when ended: `
        + `${stalled.map((b) => `${(b / 1024).toFixed(0)} KiB`).join(', ')}; most any export held: ${(peak / 1024).toFixed(0)} KiB (asserted <= ${MAX_BUFFERED_PER_EXPORT / 1024} KiB)`);
      console.log(`      memory growth with 6 stalled exports (test and bridge in one process): rss ${((mem1.rss - mem0.rss) / 1e6).toFixed(1)} MB, `
        + `heap ${((mem1.heapUsed - mem0.heapUsed) / 1e6).toFixed(1)} MB, external+buffers ${((mem1.external + mem1.arrayBuffers - mem0.external - mem0.arrayBuffers) / 1e6).toFixed(1)} MB`);

      for (const [who, status, retry, error] of refused) {
        assert.equal(status, 429, `${who}: ${error}`);
        assert.equal(retry, '5');
        assert.match(error, who === 'A' ? /this token has 3 reporting requests in progress/ : /6 reporting requests are in progress/);
      }
      assert.equal(stalled.length, 6);
      for (const b of [...stalled, peak]) assert.ok(b <= MAX_BUFFERED_PER_EXPORT, `an export held ${b} bytes`);
      assert.equal(admission.inUse(), 0);
      const ok = await get(TOKENS[2]!);
      assert.equal(ok.status, 200, 'a place is free again');
      await ok.body?.cancel();
    } finally {
      clearInterval(sample);
      for (const s of sockets) s.destroy();
      exports.off('stalled', onStalled);
    }
  });
});
