import assert from 'node:assert/strict';
import http from 'node:http';
import { AddressInfo } from 'node:net';
import { BusinessLine } from '../../src/calls/provider-port';
import { MetaClient, MetaError } from '../../src/providers/meta/client';

interface Seen { method: string; url: string; headers: http.IncomingHttpHeaders; body: unknown }
type Answer = { status: number; body?: unknown; raw?: Buffer; delayMs?: number; headers?: Record<string, string> };

/** A loopback HTTP server standing in for the Graph API: records each request, answers from a queue (default 200 {}). */
async function graph(): Promise<{ base: string; seen: Seen[]; next: (a: Answer) => void; close: () => Promise<void> }> {
  const seen: Seen[] = [];
  const queue: Answer[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString();
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, body: text ? JSON.parse(text) : undefined });
      const a = queue.shift() ?? { status: 200, body: {} };
      const send = () => {
        if (res.destroyed) return;
        res.writeHead(a.status, { 'Content-Type': a.raw ? 'audio/ogg' : 'application/json', ...a.headers });
        res.end(a.raw ?? JSON.stringify(a.body ?? {}));
      };
      if (a.delayMs) setTimeout(send, a.delayMs).unref();
      else send();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    base: `http://127.0.0.1:${port}/v23.0`, seen, next: (a) => queue.push(a),
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

const LINE: BusinessLine = { number: '+15550001111', phoneId: '1001', wabaId: 'waba-1' };
const REF = { phoneId: '1001', wacid: 'wacid.X' };

describe('Meta client (Graph API)', () => {
  let g: Awaited<ReturnType<typeof graph>>;
  beforeEach(async () => { g = await graph(); });
  afterEach(async () => { await g.close(); });
  const client = (extra: Partial<ConstructorParameters<typeof MetaClient>[0]> = {}) =>
    new MetaClient({ baseUrl: g.base, accessToken: 'tok-1', authHeader: 'Authorization', timeoutMs: 2000, ...extra });

  it('call actions: one /{phone id}/calls endpoint, snake_case, with the bearer token', async () => {
    const c = client();
    await c.preAccept(REF, 'v=0 a');
    await c.accept(REF, 'v=0 b');
    await c.reject(REF);
    await c.terminate(REF);
    assert.deepEqual(g.seen.map((s) => [s.method, s.url]), Array(4).fill(['POST', '/v23.0/1001/calls']));
    assert.deepEqual(g.seen.map((s) => s.body), [
      { messaging_product: 'whatsapp', call_id: 'wacid.X', action: 'pre_accept', session: { sdp_type: 'answer', sdp: 'v=0 a' } },
      { messaging_product: 'whatsapp', call_id: 'wacid.X', action: 'accept', session: { sdp_type: 'answer', sdp: 'v=0 b' } },
      { messaging_product: 'whatsapp', call_id: 'wacid.X', action: 'reject' },
      { messaging_product: 'whatsapp', call_id: 'wacid.X', action: 'terminate' },
    ]);
    assert.ok(g.seen.every((s) => s.headers.authorization === 'Bearer tok-1'));
  });

  it('connect: `to` as digits for a number, `recipient` for a BSUID, the context as biz_opaque_callback_data, the wacid from calls[0].id', async () => {
    const c = client();
    g.next({ status: 200, body: { messaging_product: 'whatsapp', calls: [{ id: 'wacid.NEW' }] } });
    assert.deepEqual(await c.connect({ from: LINE, to: '+4915112345678', sdpOffer: 'v=0', context: 'call-1;ctx' }), { wacid: 'wacid.NEW' });
    assert.deepEqual(await c.connect({ from: LINE, to: 'US.13491208655302741918', sdpOffer: 'v=0', context: null }), { wacid: null });
    assert.deepEqual(g.seen[0]!.body, { messaging_product: 'whatsapp', to: '4915112345678', action: 'connect', session: { sdp_type: 'offer', sdp: 'v=0' }, biz_opaque_callback_data: 'call-1;ctx' });
    assert.deepEqual(g.seen[1]!.body, { messaging_product: 'whatsapp', recipient: 'US.13491208655302741918', action: 'connect', session: { sdp_type: 'offer', sdp: 'v=0' } });
    // Refused before sending: a context Meta would not echo, an address that is neither, a line without phone id.
    await assert.rejects(c.connect({ from: LINE, to: '+4915112345678', sdpOffer: 'v=0', context: 'x'.repeat(513) }), /at most 512/);
    await assert.rejects(c.connect({ from: LINE, to: 'bob', sdpOffer: 'v=0', context: null }), (e: unknown) => e instanceof MetaError && e.httpStatus === 400);
    await assert.rejects(c.connect({ from: { ...LINE, phoneId: null }, to: '+4915112345678', sdpOffer: 'v=0', context: null }), /no phone number id/);
    assert.equal(g.seen.length, 2);
  });

  it('Graph errors become MetaError with WhatsApp\'s code, subcode and trace id; a connect is never repeated', async () => {
    g.next({ status: 400, body: { error: { message: 'No approved call permission', type: 'OAuthException', code: 138006, error_subcode: 2494010, fbtrace_id: 'AbC123' } } });
    const err = await client().connect({ from: LINE, to: '+4915112345678', sdpOffer: 'v=0', context: null }).then(() => null, (e: unknown) => e);
    assert.ok(err instanceof MetaError);
    assert.equal(err.provider, 'Meta');
    assert.equal(err.httpStatus, 400);
    assert.equal(err.whatsappCode, 138006);
    assert.equal(err.subcode, 2494010);
    assert.equal(err.requestId, 'AbC123');
    assert.match(err.message, /No approved call permission \(code 138006\/2494010\)/);
    g.next({ status: 503, body: { error: { message: 'busy', code: 2 } } });
    await assert.rejects(client().connect({ from: LINE, to: '+4915112345678', sdpOffer: 'v=0', context: null }), /503/);
    assert.equal(g.seen.length, 2, 'a failed connect is not retried');
  });

  it('terminate is retried after a 5xx within the timeout; a 4xx is not', async () => {
    g.next({ status: 500, body: { error: { message: 'oops', code: 1 } } });
    await client().terminate(REF);
    assert.equal(g.seen.length, 2);
    g.next({ status: 400, body: { error: { message: 'unknown call', code: 100 } } });
    await assert.rejects(client().terminate(REF), (e: unknown) => e instanceof MetaError && e.whatsappCode === 100);
    assert.equal(g.seen.length, 3);
  });

  it('a Graph that does not answer: timed out within the bound, as an unanswered MetaError', async () => {
    g.next({ status: 200, delayMs: 5000 });
    const started = Date.now();
    const err = await client({ timeoutMs: 300 }).accept(REF, 'v=0').then(() => null, (e: unknown) => e);
    assert.ok(err instanceof MetaError && err.timedOut && err.unanswered, String(err));
    assert.match(err.message, /timed out after 300 ms/);
    assert.ok(Date.now() - started < 1500, `took ${Date.now() - started} ms`);
  });

  it('a provider that proxies Graph with its own header (360dialog\'s D360-API-KEY) gets the raw token', async () => {
    await client({ authHeader: 'D360-API-KEY', accessToken: 'd360-key' }).terminate(REF);
    assert.equal(g.seen[0]!.headers['d360-api-key'], 'd360-key');
    assert.equal(g.seen[0]!.headers.authorization, undefined);
  });

  it('permissions: requests through /messages (interactive, template), the state from /call_permissions', async () => {
    const c = client();
    g.next({ status: 200, body: { messages: [{ id: 'wamid.R1' }] } });
    assert.deepEqual(await c.requestPermission(LINE, '+4915112345678', { kind: 'interactive', text: 'May we call?' }), { messageId: 'wamid.R1' });
    await c.requestPermission(LINE, 'US.13491208655302741918', { kind: 'template', name: 'callme', language: 'en' });
    assert.deepEqual(g.seen[0]!.body, {
      messaging_product: 'whatsapp', recipient_type: 'individual', to: '4915112345678', type: 'interactive',
      interactive: { type: 'call_permission_request', action: { name: 'call_permission_request' }, body: { text: 'May we call?' } },
    });
    assert.deepEqual(g.seen[1]!.body, {
      messaging_product: 'whatsapp', recipient_type: 'individual', recipient: 'US.13491208655302741918', type: 'template', template: { name: 'callme', language: { code: 'en' }, components: [] },
    });
    assert.equal(g.seen[1]!.url, '/v23.0/1001/messages');

    g.next({ status: 200, body: {
      messaging_product: 'whatsapp',
      permission: { status: 'temporary', expiration_time: 1760604800 },
      actions: [
        { action_name: 'send_call_permission_request', can_perform_action: false, limits: [
          { time_period: 'PT24H', max_allowed: 1, current_usage: 1, limit_expiration_time: 1760086400 },
          { time_period: 'P7D', max_allowed: 2, current_usage: 1, limit_expiration_time: 1760604800 },
        ] },
        { action_name: 'start_call', can_perform_action: true },
      ],
    } });
    assert.deepEqual(await c.permissionState(LINE, '+4915112345678'), {
      status: 'temporary', expiresAt: new Date(1760604800000), canCall: true, canRequest: false,
      requestQuota: { used: 1, allowed: 1, period: 'PT24H', resetsAt: new Date(1760086400000) },
    });
    g.next({ status: 200, body: { permission: { status: 'no_permission' } } });
    assert.deepEqual(await c.permissionState(LINE, 'US.13491208655302741918'), { status: 'no_permission', expiresAt: null, canCall: null, canRequest: null, requestQuota: null });
    assert.deepEqual(g.seen.slice(2).map((s) => [s.method, s.url]), [
      ['GET', '/v23.0/1001/call_permissions?user_wa_id=4915112345678'], ['GET', '/v23.0/1001/call_permissions?recipient=US.13491208655302741918'],
    ]);
    g.next({ status: 200, body: { permission: { status: 'maybe' } } });
    await assert.rejects(c.permissionState(LINE, '+4915112345678'), /without a readable permission/);
  });

  it('media: the id\'s URL, then the file with the same credential, bounded in size', async () => {
    const c = client({ maxMediaBytes: 1000 });
    g.next({ status: 200, body: { url: `${g.base}/files/rec-1`, mime_type: 'audio/ogg' } });
    g.next({ status: 200, raw: Buffer.alloc(600, 1) });
    const got = await c.fetchMedia(LINE, { mediaId: 'rec-1', url: null });
    assert.equal(got.body.length, 600);
    assert.equal(got.mimeType, 'audio/ogg');
    assert.deepEqual(g.seen.map((s) => [s.url, s.headers.authorization]), [['/v23.0/rec-1', 'Bearer tok-1'], ['/v23.0/files/rec-1', 'Bearer tok-1']]);
    g.next({ status: 200, raw: Buffer.alloc(2000, 1) });
    await assert.rejects(c.fetchMedia(LINE, { mediaId: 'rec-2', url: `${g.base}/files/rec-2` }), /at most 1000|more than 1000/);
    // Never the credential to a plain-http URL on another host.
    await assert.rejects(c.fetchMedia(LINE, { mediaId: 'rec-3', url: 'http://127.0.0.2:9/x' }), /refused/);
    assert.equal(g.seen.length, 3);
  });

  it('settings by phone number id, the change written in Meta\'s snake_case', async () => {
    const c = client();
    g.next({ status: 200, body: { calling: { status: 'ENABLED' } } });
    assert.deepEqual(await c.getCallingSettings(LINE), { calling: { status: 'ENABLED' } });
    await c.updateCallingSettings(LINE, { status: 'DISABLED', iconVisibility: 'DISABLE_ALL', callbackPermissionStatus: 'ENABLED' });
    assert.deepEqual(g.seen.map((s) => [s.method, s.url, s.body]), [
      ['GET', '/v23.0/1001/settings', undefined],
      ['POST', '/v23.0/1001/settings', { calling: { status: 'DISABLED', call_icon_visibility: 'DISABLE_ALL', callback_permission_status: 'ENABLED' } }],
    ]);
  });
});
