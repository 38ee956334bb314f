import assert from 'node:assert/strict';
import net from 'node:net';
import { startStack, TestStack } from './harness/bridge';
import { LogTap } from './harness/log-tap';
import { newWacid } from './harness/ycloud-sim';

/**
 * Issue 17, findings 2, 3 and 5 against a real bridge: one address holding many connections with
 * slow headers, floods of refused requests and their log lines, and what /readyz tells whom.
 */

const ADMIN = 'admin-token-0123456789abcdef';

/** Opens `n` connections from `from` that send part of a request's headers and then nothing; resolves once all are connected. */
async function slowHeaders(port: number, from: string, n: number): Promise<{ sockets: net.Socket[]; closed: () => number; whenClosed: (k: number) => Promise<void> }> {
  let closed = 0;
  const waiters: Array<{ k: number; resolve: () => void }> = [];
  const sockets = await Promise.all(Array.from({ length: n }, () => new Promise<net.Socket>((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress: from });
    s.on('error', () => undefined);
    s.once('close', () => {
      closed++;
      for (const w of waiters.filter((x) => closed >= x.k)) w.resolve();
    });
    s.once('connect', () => {
      s.write('POST /webhooks/ycloud HTTP/1.1\r\nHost: 127.0.0.1\r\n');
      resolve(s);
    });
  })));
  return {
    sockets,
    closed: () => closed,
    whenClosed: (k) => (closed >= k ? Promise.resolve() : new Promise((resolve) => waiters.push({ k, resolve }))),
  };
}

describe('HTTP door: connections, refusal logs, readiness', function () {
  this.timeout(60000);
  let stack: TestStack | null = null;
  afterEach(async () => {
    await stack?.stop();
    stack = null;
  });

  it('one address holding 200 slow-header connections gets 10 (the per-address cap); a signed webhook from another address is answered', async () => {
    const s = stack = await startStack({ HTTP_MAX_CONNECTIONS: '30', HTTP_MAX_CONNECTIONS_PER_CLIENT: '10' });
    const hog = await slowHeaders(s.bridge.httpPort, '127.0.0.2', 200);
    await hog.whenClosed(190);
    const ev = s.sim.event('whatsapp.call.status.updated', { callingStatusUpdated: { wacid: newWacid(), status: 'RINGING' } });
    const status = await s.sim.deliver(ev).catch(() => 0);
    console.log(`      (200 slow-header connections from one address: ${hog.closed()} closed at once, ${200 - hog.closed()} held; signed webhook from another address: ${status})`);
    assert.equal(hog.closed(), 190);
    assert.equal(status, 200);
    for (const sock of hog.sockets) sock.destroy();
  });

  it('a flood of 2,500 refused requests (no token, no signature, control characters, no metrics token) gives a bounded number of log lines', async () => {
    const tap = new LogTap();
    const s = stack = await startStack({ LOG_LEVEL: 'info', ADMIN_API_TOKEN: ADMIN, METRICS_TOKEN: 'metrics-token-0123456789' }, { logStream: tap });
    const base = `http://127.0.0.1:${s.bridge.httpPort}`;
    const kinds: Array<() => Promise<Response>> = [
      () => fetch(`${base}/api/calls`),
      () => fetch(`${base}/api/calls`, { headers: { Authorization: 'Bearer not-a-token-at-all' } }),
      () => fetch(`${base}/webhooks/ycloud`, { method: 'POST', body: '{}' }),
      () => fetch(`${base}/healthz?x=%01`),
      () => fetch(`${base}/metrics`),
    ];
    const before = tap.lines().length;
    let sent = 0;
    const statuses = new Map<number, number>();
    for (let batch = 0; batch < 50; batch++) {
      await Promise.all(Array.from({ length: 50 }, async (_, i) => {
        const res = await kinds[(batch * 50 + i) % kinds.length]!();
        await res.arrayBuffer();
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        sent++;
      }));
    }
    const lines = tap.lines().slice(before);
    const warnings = lines.filter((l) => Number(l.level) >= 40);
    const suppressed = warnings.reduce((n, l) => n + Number(l.suppressedBefore ?? 0), 0);
    console.log(`      (${sent} refused requests [${[...statuses].map(([k, v]) => `${k}: ${v}`).join(', ')}]: ${warnings.length} warning lines, ${lines.length} lines in all)`);
    assert.deepEqual([...statuses.keys()].sort(), [400, 401]);
    // Four rate-limited sources (API auth, webhooks, query guard, metrics), 20 lines each per 10 s window.
    assert.ok(warnings.length <= 4 * 20 * 2, `${warnings.length} warning lines`);
    assert.ok(warnings.length >= 3, 'each kind of refusal is still logged');
    assert.ok(suppressed >= 0);
    assert.equal(lines.filter((l) => l.msg === 'HTTP connection error' && Number(l.level) >= 30).length, 0, 'connection errors only at debug');
  });

  it('/readyz answers true/false per check to anyone, the details (addresses, errors) only with the admin token; the status is unchanged', async () => {
    const s = stack = await startStack({ ADMIN_API_TOKEN: ADMIN });
    const url = `http://127.0.0.1:${s.bridge.httpPort}/readyz`;
    const open = await fetch(url);
    const openBody = (await open.json()) as { ok: boolean; checks: Record<string, unknown>; details?: unknown };
    assert.equal(open.status, openBody.ok ? 200 : 503);
    assert.deepEqual(Object.keys(openBody).sort(), ['checks', 'ok']);
    assert.deepEqual(Object.keys(openBody.checks).sort(), ['cluster', 'draining', 'postgres', 'rtpengine', 'sip']);
    assert.ok(Object.values(openBody.checks).every((v) => typeof v === 'boolean'), JSON.stringify(openBody));
    assert.doesNotMatch(JSON.stringify(openBody), /\d+\.\d+\.\d+\.\d+/, 'no address');

    const wrong = (await (await fetch(url, { headers: { Authorization: 'Bearer not-the-admin-token' } })).json()) as Record<string, unknown>;
    assert.equal(wrong.details, undefined);

    const admin = await fetch(url, { headers: { Authorization: `Bearer ${ADMIN}` } });
    const adminBody = (await admin.json()) as { ok: boolean; checks: Record<string, unknown>; details: { rtpengine: Record<string, boolean>; postgres: string | null } };
    assert.equal(admin.status, open.status);
    assert.deepEqual(adminBody.checks, openBody.checks);
    assert.deepEqual(Object.keys(adminBody.details.rtpengine), [s.bridge.config.rtpengine.ng.map((n) => `${n.host}:${n.port}`)[0]]);
    assert.equal(adminBody.details.postgres, null);
  });
});
