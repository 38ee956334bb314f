import assert from 'node:assert/strict';
import http from 'node:http';
import { AddressInfo } from 'node:net';
import Koa from 'koa';
import { createLogger } from '../src/log';
import { listen } from '../src/http/server';
import { isLoopbackHost, namesAddress, PhoneServer, StreamLimits } from '../src/sandbox/phone-server';
import type { SimPermissionRequest } from '../src/sandbox/ycloud-simulator';
import { startStack, TestStack } from './harness/bridge';
import { until } from './harness/timeline';
import { DEFAULT_LINE } from './harness/ycloud-sim';

/**
 * Issue 17, finding 6: the sandbox page's routes answer a browser on this machine only. A phone
 * server on its own HTTP port, fed by a test stack's simulator and CDR store (no SIP needed).
 */

interface Answer { status: number; headers: http.IncomingHttpHeaders; body: string }

/** A raw request (any Host, Origin and Sec-Fetch-Site, which fetch would not let a test choose). */
function request(port: number, method: string, path: string, headers: Record<string, string>, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers: { ...headers, ...(body ? { 'Content-Length': String(Buffer.byteLength(body)) } : {}) }, agent: false, setHost: !('Host' in headers) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('sandbox page: same-origin actions, loopback Host, bounded event streams', function () {
  this.timeout(30000);
  let stack: TestStack;
  let phone: PhoneServer;
  let server: http.Server | null = null;
  let port: number;

  async function startPhone(streams: Partial<StreamLimits> = {}, pageHost?: string): Promise<void> {
    phone = new PhoneServer({
      sim: stack.sim, cdr: stack.bridge.cdr, log: createLogger('silent'), userNumber: '+15550100001', businessNumber: '+15550100000',
      businessName: 'Demo', phoneId: '100000000000001', pbx: 'none', streams, pageHost,
    });
    const app = new Koa();
    app.use(phone.routes().routes());
    server = await listen(app, 0, '127.0.0.1');
    port = (server.address() as AddressInfo).port;
  }

  before(async () => {
    stack = await startStack();
  });
  after(async () => {
    await stack?.stop();
  });
  afterEach(async () => {
    phone?.close();
    const s = server;
    server = null;
    if (!s) return;
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  });

  it('knows a loopback Host from any other', () => {
    for (const h of ['127.0.0.1:3000', '127.0.0.1', '127.1.2.3:80', 'localhost:3000', 'LOCALHOST', '[::1]:3000', '[::1]']) assert.equal(isLoopbackHost(h), true, h);
    for (const h of ['', 'evil.example', 'evil.example:3000', '127.0.0.1.evil.example', '10.0.0.1:3000', '[::2]:3000', 'localhost.evil.example', '127.0.0.1:3000:1', '0.0.0.0:3000']) assert.equal(isLoopbackHost(h), false, h);
  });

  it('refuses any other Host with 421 (a DNS-rebinding page), on the page and its actions', async () => {
    await startPhone();
    assert.equal((await request(port, 'GET', '/sandbox', { Host: `127.0.0.1:${port}` })).status, 200);
    assert.equal((await request(port, 'GET', '/sandbox', { Host: `localhost:${port}` })).status, 200);
    for (const path of ['/sandbox', '/sandbox/phone.js', '/sandbox/events']) {
      const a = await request(port, 'GET', path, { Host: `rebind.example:${port}` });
      assert.equal(a.status, 421, path);
      assert.match((JSON.parse(a.body) as { error: string }).error, /loopback/);
    }
    const post = await request(port, 'POST', '/sandbox/api/calls', { Host: `rebind.example:${port}`, 'Content-Type': 'application/json' }, '{"sdp":"v=0"}');
    assert.equal(post.status, 421);
  });

  it('with --listen, answers a Host naming that address too, and still no other', async () => {
    for (const [h, a] of [['192.168.1.5:3000', '192.168.1.5'], ['192.168.1.5', '192.168.1.5'], ['[fd00::5]:3000', 'fd00::5']]) assert.equal(namesAddress(h!, a), true, h);
    for (const [h, a] of [['192.168.1.50:3000', '192.168.1.5'], ['evil.example', '192.168.1.5'], ['192.168.1.5:3000', undefined]]) assert.equal(namesAddress(h!, a), false, h);
    await startPhone({}, '192.168.1.5');
    assert.equal((await request(port, 'GET', '/sandbox', { Host: `192.168.1.5:${port}` })).status, 200);
    assert.equal((await request(port, 'GET', '/sandbox', { Host: `127.0.0.1:${port}` })).status, 200);
    const other = await request(port, 'GET', '/sandbox', { Host: `192.168.1.6:${port}` });
    assert.equal(other.status, 421);
    assert.match(other.body, /or 192\.168\.1\.5/);
    // Its actions come from its own origin on that address.
    const host = `192.168.1.5:${port}`;
    const own = await request(port, 'POST', '/sandbox/api/permissions/wamid.nope', { Host: host, Origin: `http://${host}`, 'Content-Type': 'application/json' }, '{"choice":"temporary"}');
    assert.equal(own.status, 400, own.body);
  });

  it('shows a permission prompt sent before a page was open to the page opened later, until it is answered', async () => {
    await startPhone();
    /** A page's event stream: what it has received so far. */
    const open = () => new Promise<{ text: () => string; close: () => void }>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port, path: '/sandbox/events', agent: false }, (res) => {
        let text = '';
        res.on('data', (b: Buffer) => (text += b.toString()));
        res.on('error', () => undefined);
        resolve({ text: () => text, close: () => res.destroy() });
      }).on('error', reject);
    });
    assert.equal(phone.pages, 0);
    // The stack's one number (YCloud's: any business number), asking as the sandbox's would.
    const route = stack.bridge.numbers.all()[0]!;
    const asked = new Promise<SimPermissionRequest>((resolve) => stack.sim.once('permission-request', resolve));
    await route.provider.requestPermission({ ...route.line, number: DEFAULT_LINE.number }, '+15550100042', { kind: 'interactive', text: 'May we call you back?' });
    const sent = await asked;
    // A page opened now: the prompt is in what it is sent first.
    const late = await open();
    const prompt = `event: permission-request\ndata: ${JSON.stringify({ id: sent.id, business: sent.business, businessName: 'Demo', text: 'May we call you back?' })}`;
    await until('the late page gets the prompt', async () => late.text().includes(prompt) || null, 5000, async () => late.text());
    // Answered (from that page): every open page is told, and a page opened afterwards is not asked again.
    const answer = await request(port, 'POST', `/sandbox/api/permissions/${encodeURIComponent(sent.id)}`, { Host: `127.0.0.1:${port}`, 'Content-Type': 'application/json' }, '{"choice":"decline"}');
    assert.equal(answer.status, 200, answer.body);
    await until('the page is told it was answered', async () => late.text().includes('event: permission-answered') || null, 5000, async () => late.text());
    const after = await open();
    phone.timeline({ at: Date.now(), kind: 'info', title: 'marker after the answer' });
    await until('the later page is up to date', async () => after.text().includes('marker after the answer') || null, 5000, async () => after.text());
    assert.ok(!after.text().includes('event: permission-request'), after.text());
    late.close();
    after.close();
  });

  it('takes actions only as JSON from its own origin: another Origin or a cross-site fetch 403, not JSON 415', async () => {
    await startPhone();
    const host = `127.0.0.1:${port}`;
    const path = '/sandbox/api/permissions/wamid.nope';
    const body = '{"choice":"temporary"}';
    // Through the guard, the action itself answers (no such request: 400).
    const own = await request(port, 'POST', path, { Host: host, Origin: `http://${host}`, 'Sec-Fetch-Site': 'same-origin', 'Content-Type': 'application/json' }, body);
    assert.equal(own.status, 400, own.body);
    assert.match(own.body, /no permission request/);
    assert.equal((await request(port, 'POST', path, { Host: host, 'Content-Type': 'application/json' }, body)).status, 400, 'no Origin (curl): allowed');
    const refused: Array<[Record<string, string>, number]> = [
      [{ Origin: 'http://evil.example', 'Content-Type': 'application/json' }, 403],
      [{ Origin: `http://localhost:${port}`, 'Content-Type': 'application/json' }, 403],
      [{ 'Sec-Fetch-Site': 'cross-site', 'Content-Type': 'application/json' }, 403],
      [{ 'Sec-Fetch-Site': 'same-site', 'Content-Type': 'application/json' }, 403],
      [{ 'Content-Type': 'text/plain' }, 415],
      [{ 'Content-Type': 'application/x-www-form-urlencoded' }, 415],
      [{}, 415],
    ];
    for (const [headers, status] of refused) {
      const a = await request(port, 'POST', path, { Host: host, ...headers }, body);
      assert.equal(a.status, status, JSON.stringify(headers));
      assert.ok((JSON.parse(a.body) as { error: string }).error);
    }
  });

  it('holds at most 20 event streams (then 503), and closes one that stopped reading', async () => {
    await startPhone({ keepaliveMs: 100, maxBufferedBytes: 256 * 1024 });
    const streams = await Promise.all(Array.from({ length: 20 }, () => new Promise<http.IncomingMessage>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port, path: '/sandbox/events', agent: false }, resolve).on('error', reject);
    })));
    assert.ok(streams.every((r) => r.statusCode === 200));
    assert.equal(phone.pages, 20);
    const extra = await request(port, 'GET', '/sandbox/events', {});
    assert.equal(extra.status, 503);
    assert.equal(extra.headers['retry-after'], '5');
    // All but one read; the last one stops reading: it is closed once its unread data passes the bound.
    for (const r of streams.slice(0, 19)) r.resume();
    const stalled = streams[19]!;
    stalled.pause();
    const detail = 'x'.repeat(64 * 1024);
    let pushed = 0;
    while (phone.pages === 20 && pushed < 2000) {
      phone.timeline({ at: Date.now(), kind: 'info', title: 'filler', detail });
      pushed++;
      await new Promise((r) => setImmediate(r));
    }
    // A paused socket reads nothing, not even its end: read on to see the bridge's side has closed it.
    const socketClosed = new Promise<void>((resolve) => stalled.socket.once('close', () => resolve()));
    stalled.on('error', () => undefined);
    stalled.resume();
    await socketClosed;
    console.log(`      (a page that stopped reading was closed after ${pushed} timeline entries of 64 KiB; 19 others open)`);
    assert.equal(phone.pages, 19);
    for (const r of streams) r.destroy();
  });
});
