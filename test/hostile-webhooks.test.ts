import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import { rows } from './harness/db-rows';
import { WEBHOOK_MAX_BODY_BYTES } from '../src/http/ingress-guard';
import { signWebhook } from '../src/providers/ycloud/signature';
import { deliverAndProcess, startStack, TestStack } from './harness/bridge';
import { callParts } from './harness/call-parts';
import { RtpPhone } from './harness/rtp-phone';
import { startSippUas } from './harness/sipp';
import { WaUser } from './harness/wa-user';
import { newWacid } from './harness/ycloud-sim';
import { nextObserved, whenEnded } from './harness/watch';

/**
 * Hostile input at POST /webhooks/ycloud against a real bridge: requests without a plausible signature,
 * oversized, slow and concurrent uploads, and signed events that can never be valid. Limits are made
 * small for the test: reads time out after 1 s, 8 at once in all, 3 at once per client address
 * (beyond, the read waiting longest makes way). The minimum rate (4096 bytes/s after 1 s) is the default.
 * Attackers send from other loopback addresses (127.0.0.2 and up) than the simulator (127.0.0.1).
 */
const LIMITS = { WEBHOOK_READ_TIMEOUT_MS: '1000', WEBHOOK_MAX_CONCURRENT_READS: '8', WEBHOOK_MAX_READS_PER_CLIENT: '3' };

interface Answer { status: number; headers: http.IncomingHttpHeaders; body: string }
interface Upload { req: http.ClientRequest; answer: Promise<Answer> }

/** A signature header that is well formed and fresh but made with the wrong secret. */
const forgedSignature = (body: string | Buffer = '') => signWebhook('not-the-secret', body);

/**
 * Opens a POST on its own connection from `from`, sends the headers and `initial` bytes of the body,
 * and leaves the rest to the caller (nothing more: a stalled upload).
 */
function upload(port: number, headers: Record<string, string>, opts: { from?: string; initial?: string | Buffer; end?: boolean; path?: string } = {}): Upload {
  const req = http.request({
    host: '127.0.0.1', port, path: opts.path ?? '/webhooks/ycloud', method: 'POST', localAddress: opts.from ?? '127.0.0.1', agent: false,
    headers: { 'Content-Type': 'application/json', ...headers },
  });
  const answer = new Promise<Answer>((resolve, reject) => {
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    // Writes after the server has answered and closed may fail (EPIPE, ECONNRESET): the answer is what counts.
    req.on('error', (err) => reject(err));
  });
  if (opts.initial !== undefined) req.write(opts.initial);
  else req.flushHeaders();
  if (opts.end) req.end();
  return { req, answer };
}

/** Resolves once the bridge is reading exactly `n` webhook bodies. */
function whenReading(stack: TestStack, n: number): Promise<void> {
  if (stack.bridge.webhookIngress.slots.reading === n) return Promise.resolve();
  return nextObserved(stack.bridge, 'webhook-reads', (count) => count === n).then(() => undefined);
}

/** `n` stalled uploads from `from`, each with a fresh well-formed (forged) signature; resolves once all are being read. */
async function stalled(stack: TestStack, from: string, n: number): Promise<Upload[]> {
  const before = stack.bridge.webhookIngress.slots.reading;
  const list = Array.from({ length: n }, () => upload(stack.bridge.httpPort, { 'YCloud-Signature': forgedSignature(), 'Content-Length': '4000' }, { from, initial: '{"id":"evt_slow",' }));
  await whenReading(stack, before + n);
  return list;
}

/** Ends uploads from the client side and waits for the bridge to let go of them. */
async function abandon(stack: TestStack, uploads: Upload[]): Promise<void> {
  const released = whenReading(stack, 0);
  for (const u of uploads) {
    u.answer.catch(() => undefined);
    u.req.destroy();
  }
  await released;
}

/** Posts `body` signed with the bridge's secret, from `from`, optionally with extra headers. */
function signedPost(stack: TestStack, body: string | Buffer, headers: Record<string, string> = {}, from?: string): Promise<Answer> {
  const buf = Buffer.isBuffer(body) ? body : Buffer.from(body);
  return upload(stack.bridge.httpPort, { 'YCloud-Signature': signWebhook(stack.sim.secret, buf), 'Content-Length': String(buf.length), ...headers }, { from, initial: buf, end: true }).answer;
}

async function healthz(stack: TestStack): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${stack.bridge.httpPort}/healthz`);
  await res.arrayBuffer();
  return res.status;
}

describe('hostile webhooks: the door', function () {
  this.timeout(30000);
  let stack: TestStack;
  before(async () => {
    stack = await startStack(LIMITS);
  });
  after(async () => {
    await stack?.stop();
  });

  it('refuses a missing, malformed or stale signature header with 401 and Connection: close before reading the body', async () => {
    const stale = signWebhook(stack.sim.secret, '', Math.floor(Date.now() / 1000) - 3600);
    const headerSets: Array<Record<string, string>> = [{}, { 'YCloud-Signature': 't=abc,s=zz' }, { 'YCloud-Signature': stale }, { 'YCloud-Signature': `${forgedSignature()},${'x'.repeat(300)}` }];
    for (const headers of headerSets) {
      // The body is declared but never sent: the answer cannot have waited for it.
      const u = upload(stack.bridge.httpPort, { ...headers, 'Content-Length': String(WEBHOOK_MAX_BODY_BYTES) });
      const a = await u.answer;
      assert.equal(a.status, 401, JSON.stringify(headers));
      assert.equal(a.headers.connection, 'close');
      assert.ok((JSON.parse(a.body) as { error: string }).error, 'a clear error');
      u.req.destroy();
    }
    assert.equal(stack.bridge.webhookIngress.slots.reading, 0, 'no body read was started');
  });

  it('refuses a declared length over the 64 KiB cap with 413 before reading, and a chunked body past it with 413', async () => {
    const declared = upload(stack.bridge.httpPort, { 'YCloud-Signature': forgedSignature(), 'Content-Length': String(1024 * 1024) });
    const a = await declared.answer;
    assert.equal(a.status, 413);
    assert.equal(a.headers.connection, 'close');
    declared.req.destroy();

    // No Content-Length (chunked): refused as soon as the 64 KiB are passed, without waiting for the end.
    const chunked = upload(stack.bridge.httpPort, { 'YCloud-Signature': forgedSignature(), 'Transfer-Encoding': 'chunked' }, { initial: 'x'.repeat(WEBHOOK_MAX_BODY_BYTES + 1024) });
    const b = await chunked.answer;
    assert.equal(b.status, 413);
    assert.equal(b.headers.connection, 'close');
    chunked.req.destroy();
  });

  it('answers a stalled upload 408 after the read timeout, and /healthz meanwhile', async () => {
    const uploads = await stalled(stack, '127.0.0.2', 3);
    assert.equal(await healthz(stack), 200, 'the event loop is free while bodies are held');
    for (const u of uploads) {
      const a = await u.answer;
      assert.equal(a.status, 408);
      assert.equal(a.headers.connection, 'close');
    }
    await whenReading(stack, 0);
  });

  it('reads at most 3 bodies per client and 8 in all: beyond, the read waiting longest makes way (503, Retry-After), never queueing', async () => {
    const held = [...await stalled(stack, '127.0.0.2', 3)];
    const evicted = (list: Upload[]) => Promise.any(list.map((u, i) => u.answer.then((a) => ({ a, i }))));
    // A fourth from the same address: one of its three ends, the newcomer is read.
    const fourth = upload(stack.bridge.httpPort, { 'YCloud-Signature': forgedSignature(), 'Content-Length': '10' }, { from: '127.0.0.2' });
    const first = await evicted(held);
    assert.equal(first.a.status, 503);
    assert.equal(first.a.headers['retry-after'], '1');
    assert.equal(first.a.headers.connection, 'close');
    assert.match((JSON.parse(first.a.body) as { error: string }).error, /from this address/);
    held.splice(first.i, 1, fourth);
    assert.equal(stack.bridge.webhookIngress.slots.reading, 3);
    held.push(...await stalled(stack, '127.0.0.3', 3), ...await stalled(stack, '127.0.0.4', 2));
    assert.equal(stack.bridge.webhookIngress.slots.reading, 8);
    // A ninth from another address: the total is full, one of the eight makes way.
    const ninth = upload(stack.bridge.httpPort, { 'YCloud-Signature': forgedSignature(), 'Content-Length': '10' }, { from: '127.0.0.5' });
    const second = await evicted(held);
    assert.equal(second.a.status, 503);
    assert.match((JSON.parse(second.a.body) as { error: string }).error, /in all/);
    held.splice(second.i, 1, ninth);
    assert.equal(stack.bridge.webhookIngress.slots.reading, 8, 'never more than 8 at once');
    assert.equal(await healthz(stack), 200);
    // Clients that give up release their reads at once (not after the timeout).
    await abandon(stack, held);
    assert.equal(stack.bridge.webhookIngress.slots.clients, 0);
  });

  it('a legitimate event is stored and processed during a flood of forged ones from another address', async () => {
    const held = await stalled(stack, '127.0.0.2', 3);
    const port = stack.bridge.httpPort;
    const flood = Array.from({ length: 300 }, (_, i) => {
      const body = JSON.stringify({ id: `evt_forged_${i}`, type: 'whatsapp.call.terminate', callingTerminate: { wacid: `w${i}` } });
      return upload(port, { 'YCloud-Signature': forgedSignature(body), 'Content-Length': String(body.length) }, { from: '127.0.0.2', initial: body, end: true }).answer
        .then((a) => a.status, () => 0);
    });
    const ev = stack.sim.event('whatsapp.call.status.updated', { callingStatusUpdated: { wacid: newWacid(), status: 'RINGING' } });
    assert.equal(await deliverAndProcess(stack, ev), 200);
    const statuses = await Promise.all(flood);
    assert.ok(statuses.every((s) => s === 503 || s === 401 || s === 0), `forged requests: ${[...new Set(statuses)].join(', ')}`);
    assert.ok(statuses.filter((s) => s === 401).length > 0, 'forged bodies were read and refused');
    assert.equal(await rows().WebhookEventRecord.count({ where: { id: String(ev.id) } }), 1);
    await abandon(stack, held);
  });
});

describe('hostile webhooks: signed events that can never be valid', function () {
  this.timeout(30000);
  let stack: TestStack;
  before(async () => {
    stack = await startStack(LIMITS);
  });
  after(async () => {
    await stack?.stop();
  });

  const connect = (over: Record<string, unknown>) => stack.sim.event('whatsapp.call.connect', {
    callingConnect: {
      wacid: newWacid(), phoneId: '461269257068831', from: '+6281361905133', to: '+6283138205150', direction: 'USER_INITIATED', sdpType: 'offer',
      sdp: 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\nc=IN IP4 127.0.0.1\r\n', ...over,
    },
  });

  const cases: Array<[string, () => string | Buffer, RegExp]> = [
    ['NUL in an inbound message', () => JSON.stringify(stack.sim.event('whatsapp.inbound_message.received', { whatsappInboundMessage: { text: { body: 'a\u0000b' } } })), /NUL/],
    ['an unpaired surrogate in the id', () => JSON.stringify({ ...stack.sim.event('custom.event', {}), id: `evt_${crypto.randomUUID()}\ud800` }), /surrogate/],
    ['bytes that are not UTF-8', () => Buffer.concat([Buffer.from(`{"id":"evt_${crypto.randomUUID()}","type":"custom.event","x":"`), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]), /UTF-8/],
    ['a 101-character type', () => JSON.stringify(stack.sim.event(`custom.${'t'.repeat(94)}`, {})), /type/],
    ['10,000 levels of nesting', () => `{"id":"evt_${crypto.randomUUID()}","type":"custom.event","n":${'['.repeat(10_000)}${']'.repeat(10_000)}}`, /nested/],
    ['a CRLF and a header in the wacid', () => JSON.stringify(connect({ wacid: 'wacid.x\r\nX-Injected: yes' })), /wacid/],
    ['a CRLF in the phoneId', () => JSON.stringify(connect({ phoneId: '461269257068831\r\nRoute: <sip:evil>' })), /phoneId/],
    ['a 60,000-character wacid', () => JSON.stringify(connect({ wacid: 'w'.repeat(60_000) })), /wacid/],
    ['SIP header syntax in the caller number', () => JSON.stringify(connect({ from: '+6281361905133>;tag=x' })), /from/],
    ['650 audio m-lines', () => JSON.stringify(connect({ sdp: `v=0\r\ns=-\r\nt=0 0\r\nc=IN IP4 127.0.0.1\r\n${'m=audio 9 RTP/AVP 0\r\n'.repeat(650)}` })), /audio sections/],
    ['control bytes in the SDP', () => JSON.stringify(connect({ sdp: 'v=0\r\ns=\u0001\u0002\u0003\r\nm=audio 9 RTP/AVP 0\r\n' })), /control/],
    ['an over-long status', () => JSON.stringify(stack.sim.event('whatsapp.call.status.updated', { callingStatusUpdated: { wacid: newWacid(), status: 'RINGING'.repeat(10) } })), /status/],
  ];

  for (const [what, make, reason] of cases) {
    it(`${what}: 202 (so YCloud stops redelivering), kept in quarantine as sent, not in webhook_events; a redelivery is counted, not stored twice`, async () => {
      const body = make();
      const a = await signedPost(stack, body);
      assert.equal(a.status, 202, a.body);
      assert.equal((JSON.parse(a.body) as { quarantined: boolean }).quarantined, true);
      assert.match((JSON.parse(a.body) as { error: string }).error, reason);
      const kept = await stack.bridge.webhookQuarantine.find(Buffer.from(body));
      assert.ok(kept, 'quarantined');
      assert.deepEqual(kept.body, Buffer.from(body), 'the exact bytes');
      assert.match(kept.reason, reason);
      assert.equal(kept.clientIp, '127.0.0.1');
      assert.equal(kept.deliveries, 1);
      assert.equal((await signedPost(stack, body)).status, 202);
      assert.equal((await stack.bridge.webhookQuarantine.find(Buffer.from(body)))?.deliveries, 2);
    });
  }

  it('a megabyte wacid is refused at the door (413), the stack answering on', async () => {
    const body = JSON.stringify(connect({ wacid: 'w'.repeat(1024 * 1024) }));
    assert.equal((await signedPost(stack, body)).status, 413);
    assert.equal(await healthz(stack), 200);
  });

  it('nothing of it reached webhook_events or the calls', async () => {
    assert.equal(await rows().WebhookEventRecord.count({ where: { wacid: 'wacid.x\r\nX-Injected: yes' } }), 0);
    assert.equal(await rows().CallRecord.count({ where: { customer_number: '+6281361905133>;tag=x' } }), 0);
  });
});

describe('hostile webhooks: the client address behind a proxy', function () {
  this.timeout(30000);
  let stack: TestStack | null = null;
  afterEach(async () => {
    await stack?.stop();
    stack = null;
  });

  /** The client address kept with a signed-but-refused event sent with this X-Forwarded-For. */
  async function keptAddress(s: TestStack, xff: string): Promise<string | null> {
    const body = JSON.stringify({ ...s.sim.event('custom.event', {}), bad: 'a\u0000' });
    assert.equal((await signedPost(s, body, { 'X-Forwarded-For': xff })).status, 202);
    return (await s.bridge.webhookQuarantine.find(Buffer.from(body)))?.clientIp ?? null;
  }

  it('TRUST_PROXY unset: X-Forwarded-For is ignored, the socket peer is the client', async () => {
    const s = stack = await startStack(LIMITS);
    assert.equal(await keptAddress(s, '203.0.113.7'), '127.0.0.1');
    // Nor can the header spread one address's reads over many per-client budgets.
    const held = await stalled(s, '127.0.0.2', 3);
    const u = upload(s.bridge.httpPort, { 'YCloud-Signature': forgedSignature(), 'Content-Length': '10', 'X-Forwarded-For': '198.51.100.1' }, { from: '127.0.0.2' });
    // Its address's share is full: one of its own reads makes way (another address's share would not).
    const a = await Promise.any(held.map((h) => h.answer));
    assert.equal(a.status, 503);
    assert.match((JSON.parse(a.body) as { error: string }).error, /from this address/);
    await abandon(s, [...held, u]);
  });

  it('TRUST_PROXY=true: the address the proxy appended (the rightmost) is the client', async () => {
    stack = await startStack({ ...LIMITS, TRUST_PROXY: 'true' });
    assert.equal(await keptAddress(stack, '203.0.113.7'), '203.0.113.7');
    assert.equal(await keptAddress(stack, '198.51.100.66, 203.0.113.8'), '203.0.113.8', 'a client-supplied entry on the left is not believed');
  });
});

/** A call in progress keeps working while the webhook endpoint is flooded (needs drachtio-server). */
describe('hostile webhooks: a call during a flood', function () {
  this.timeout(45000);
  const parts = callParts();

  it('the user hangs up an answered call during a flood of forged webhooks: the terminate is processed and the PBX gets its BYE', async () => {
    parts.phone = new RtpPhone(1000, 440);
    const rtpPort = await parts.phone.start();
    parts.sipp = await startSippUas('uas-answer.xml', { rtpPort });
    const s = parts.stack = await startStack({ ...LIMITS, PBX_TARGET: parts.sipp.uri });
    parts.user = new WaUser(440, 1000);
    const { wacid, status } = await s.sim.userCalls(parts.user);
    assert.equal(status, 200);
    await s.sim.waitForRequest('/calls/accept', wacid);

    const held = await stalled(s, '127.0.0.2', 3);
    const flood = Array.from({ length: 300 }, (_, i) => {
      const body = JSON.stringify({ id: `evt_flood_${i}`, type: 'whatsapp.call.terminate', callingTerminate: { wacid } });
      return upload(s.bridge.httpPort, { 'YCloud-Signature': forgedSignature(body), 'Content-Length': String(body.length) }, { from: '127.0.0.2', initial: body, end: true }).answer
        .then((a) => a.status, () => 0);
    });
    assert.equal(await s.sim.userHangsUp(wacid), 200);
    const id = await whenEnded(s.bridge, wacid);
    assert.ok((await Promise.all(flood)).every((x) => x === 503 || x === 401 || x === 0));
    await abandon(s, held);
    assert.equal(await parts.sipp.done, 0, `SIPp saw the call through to BYE:\n${parts.sipp.proc.output.slice(-1500)}`);
    const row = await rows().CallRecord.findByPk(id);
    assert.equal(row?.outcome, 'answered');
    assert.equal(row?.hangup_by, 'whatsapp');
  });
});
