import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { QueryTypes } from 'sequelize';
import { signWebhook } from '../src/providers/ycloud/signature';
import { deliverAndProcess, startStack, TestStack } from './harness/bridge';
import { parsePromText, sampleSum } from './harness/prom-text';
import { watch } from './harness/watch';
import { testDb } from './harness/db-rows';

const BUSINESS = '+6283138205150';
const TOKEN = 'admin-test-token-0123456789';

/** Call permissions and calling settings through the real webhook endpoint, admin API and database. */
describe('call permissions and calling settings', () => {
  let stack: TestStack;
  before(async () => {
    stack = await startStack({ ADMIN_API_TOKEN: TOKEN, WA_BUSINESS_NUMBER: BUSINESS, WA_WABA_ID: '188234691048809' });
  });
  after(async () => {
    await stack?.stop();
  });

  let n = 0;
  const customer = () => `+62813000${String(100 + ++n).padStart(4, '0')}`;

  /** Sends a call_permission_reply webhook and waits until the bridge has acted on it. */
  async function reply(from: string, r: Record<string, unknown>, sendTime = new Date()): Promise<void> {
    const ev = stack.sim.event('whatsapp.inbound_message.received', {
      whatsappInboundMessage: {
        id: 'm1', wamid: `wamid.${n}`, wabaId: '188234691048809', from, to: BUSINESS, sendTime: sendTime.toISOString(),
        type: 'interactive', interactive: { type: 'call_permission_reply', call_permission_reply: r },
      },
    });
    assert.equal(await deliverAndProcess(stack, ev), 200);
  }

  const check = (c: string) => stack.bridge.permissions.check(BUSINESS, c);
  const api = (path: string, init: RequestInit = {}, token = TOKEN) =>
    fetch(`http://127.0.0.1:${stack.bridge.httpPort}/api${path}`, { ...init, headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' } });

  it('a temporary accept with a future expiry allows calls until then', async () => {
    const c = customer();
    const expires = Math.floor(Date.now() / 1000) + 3600;
    await reply(c, { response: 'accept', is_permanent: false, expiration_timestamp: String(expires), response_source: 'user_action' });
    const state = await check(c);
    assert.equal(state.allowed, true);
    assert.equal(state.allowed && state.expiresAt?.getTime(), expires * 1000);
    const later = await stack.bridge.permissions.check(BUSINESS, c, new Date((expires + 1) * 1000));
    assert.deepEqual(later.allowed ? 'allowed' : later.reason, 'expired');
  });

  it('an accept whose expiry has passed does not allow calls', async () => {
    const c = customer();
    await reply(c, { response: 'accept', is_permanent: false, expiration_timestamp: Math.floor(Date.now() / 1000) - 60 });
    const state = await check(c);
    assert.equal(state.allowed, false);
    assert.equal(!state.allowed && state.reason, 'expired');
  });

  it('a temporary accept without an expiry lasts 7 days', async () => {
    const c = customer();
    const at = new Date(Date.now() - 1000);
    await reply(c, { response: 'accept', is_permanent: false, response_source: 'automatic' }, at);
    const state = await check(c);
    assert.equal(state.allowed && state.expiresAt?.getTime(), at.getTime() + 7 * 24 * 3600 * 1000);
  });

  it('a permanent accept allows calls with no expiry', async () => {
    const c = customer();
    await reply(c, { response: 'accept', is_permanent: true, response_source: 'user_action' });
    assert.deepEqual(await check(c), { allowed: true, permanent: true, expiresAt: null });
  });

  it('a reject after an accept withdraws the permission; the latest reply decides', async () => {
    const c = customer();
    await reply(c, { response: 'accept', is_permanent: true }, new Date(Date.now() - 5000));
    await reply(c, { response: 'reject', is_permanent: false });
    const state = await check(c);
    assert.equal(!state.allowed && state.reason, 'rejected');
    const res = await api(`/permissions?customer=${encodeURIComponent(c)}`);
    const body = (await res.json()) as { replies: Array<{ response: string }> };
    assert.deepEqual(body.replies.map((r) => r.response), ['reject', 'accept'], 'every reply is kept');
  });

  it('a permission reply delivered twice (same event id) is recorded once and counted once', async () => {
    const c = customer();
    const accepts = async () => sampleSum(parsePromText(await stack.bridge.metrics.registry.metrics()), 'wasb_permission_replies_total', { response: 'accept' });
    const before = await accepts();
    const ev = permissionReplyEvent(stack, c);
    assert.equal(await deliverAndProcess(stack, ev), 200);
    assert.deepEqual(await redeliver(stack, ev), { ok: true, duplicate: true });
    // What the redelivery would have started is under way before its 200; a later reply, acted on, follows it.
    assert.equal(await deliverAndProcess(stack, permissionReplyEvent(stack, customer())), 200);
    assert.equal(await replyRows(stack, String(ev.id)), 1, 'one row for the event');
    assert.equal(await accepts() - before, 2, 'the metric counted the reply once (and the later one)');
    const listed = (await (await api(`/permissions?customer=${encodeURIComponent(c)}`)).json()) as { replies: unknown[] };
    assert.equal(listed.replies.length, 1, JSON.stringify(listed));
  });

  it('a customer who never replied has no permission', async () => {
    const state = await check(customer());
    assert.equal(!state.allowed && state.reason, 'none');
  });

  it('a reply with an unknown response is stored as an event but not as a permission', async () => {
    const c = customer();
    await reply(c, { response: 'maybe' });
    assert.equal(!(await check(c)).allowed, true);
  });

  it('the admin API sends free-form and template permission requests through sendDirectly', async () => {
    const c = customer();
    let res = await api('/permission-requests', { method: 'POST', body: JSON.stringify({ to: c, text: 'May we call you about order 12?' }) });
    assert.equal(res.status, 202);
    res = await api('/permission-requests', {
      method: 'POST',
      body: JSON.stringify({ to: c, template: { name: 'call_permission_request_template', language: 'en_US', components: [{ type: 'body', parameters: [] }] } }),
    });
    assert.equal(res.status, 202);
    const sent = stack.sim.requests.filter((r) => r.path === '/messages/sendDirectly' && r.body.to === c);
    assert.equal(sent.length, 2);
    assert.equal(sent[0]!.body.from, BUSINESS);
    assert.deepEqual(sent[0]!.body.interactive, {
      type: 'call_permission_request', action: { name: 'call_permission_request' }, body: { text: 'May we call you about order 12?' },
    });
    assert.equal((sent[1]!.body.template as { name: string }).name, 'call_permission_request_template');
    const recorded = await stack.bridge.permissions.requests(BUSINESS, c);
    assert.deepEqual(recorded.map((r) => r.kind).sort(), ['interactive', 'template']);
  });

  it('the admin API refuses a bad token, a bad number, and an empty request', async () => {
    assert.equal((await api('/permissions', {}, 'wrong')).status, 401);
    assert.equal((await api('/permission-requests', { method: 'POST', body: JSON.stringify({ to: 'bob', text: 'hi' }) })).status, 400);
    assert.equal((await api('/permission-requests', { method: 'POST', body: JSON.stringify({ to: customer() }) })).status, 400);
  });

  it('reads and updates the calling settings through the admin API', async () => {
    let res = await api('/settings', { method: 'POST', body: JSON.stringify({ status: 'ENABLED', iconVisibility: 'DEFAULT', callbackPermissionStatus: 'ENABLED' }) });
    assert.equal(res.status, 200, await res.text());
    res = await api('/settings');
    const body = (await res.json()) as { calling: Record<string, unknown> };
    assert.deepEqual(body.calling, { status: 'ENABLED', iconVisibility: 'DEFAULT', callbackPermissionStatus: 'ENABLED' });
    res = await api('/settings', { method: 'POST', body: JSON.stringify({ status: 'ON' }) });
    assert.equal(res.status, 400);
  });

  it('the settings CLI reads and changes the calling settings, and explains bad input', async () => {
    const cli = path.join(__dirname, '..', 'src', 'cli', 'calling-settings.js');
    const env = { ...process.env, YCLOUD_API_KEY: stack.sim.apiKey, YCLOUD_API_BASE_URL: stack.sim.baseUrl, WA_WABA_ID: 'waba-cli', WA_BUSINESS_NUMBER: BUSINESS };
    const run = promisify(execFile);
    const set = await run(process.execPath, [cli, 'set', '--status', 'enabled', '--callback-permission', 'ENABLED'], { env });
    assert.equal((JSON.parse(set.stdout) as { calling: { status: string } }).calling.status, 'ENABLED');
    const get = await run(process.execPath, [cli, 'get'], { env });
    assert.deepEqual((JSON.parse(get.stdout) as { calling: unknown }).calling, { status: 'ENABLED', iconVisibility: 'DEFAULT', callbackPermissionStatus: 'ENABLED' });
    await assert.rejects(run(process.execPath, [cli, 'set', '--status', 'SOMETIMES'], { env }), (err: { code: number; stderr: string }) => {
      assert.equal(err.code, 2);
      assert.match(err.stderr, /status must be one of ENABLED, DISABLED/);
      return true;
    });
  });
});

/** A call_permission_reply (a permanent accept) from `customer`, as YCloud sends it. */
function permissionReplyEvent(stack: TestStack, customer: string): Record<string, unknown> {
  return stack.sim.event('whatsapp.inbound_message.received', {
    whatsappInboundMessage: {
      id: `m-${customer}`, wamid: `wamid.${customer}`, wabaId: '188234691048809', from: customer, to: BUSINESS, sendTime: new Date().toISOString(),
      type: 'interactive', interactive: { type: 'call_permission_reply', call_permission_reply: { response: 'accept', is_permanent: true } },
    },
  });
}

/** Delivers `ev` again, signed afresh as YCloud's redelivery is; resolves with the bridge's JSON answer (asserted 200). */
async function redeliver(stack: TestStack, ev: Record<string, unknown>): Promise<unknown> {
  const body = JSON.stringify(ev);
  const res = await fetch(stack.sim.webhookUrl, {
    method: 'POST', body, headers: { 'YCloud-Signature': signWebhook(stack.sim.secret, body), 'Content-Type': 'application/json' },
  });
  assert.equal(res.status, 200);
  return res.json();
}

async function replyRows(_stack: TestStack, eventId: string): Promise<number> {
  const rows = await testDb().query<{ n: string }>(
    'SELECT count(*) AS n FROM call_permission_replies WHERE event_id = :eventId', { replacements: { eventId }, type: QueryTypes.SELECT });
  return Number(rows[0]!.n);
}

/**
 * A redelivery after a restart: the new process has no memory of the event (its first-seen check is
 * empty) while webhook_events holds it. It is answered as a duplicate and must not be recorded again.
 */
describe('a permission reply redelivered after a restart', () => {
  let stack: TestStack | null = null;
  afterEach(async () => {
    await stack?.stop();
    stack = null;
  });

  it('is answered {duplicate:true}, listed once by the API and not counted again', async () => {
    const env = { ADMIN_API_TOKEN: TOKEN, WA_BUSINESS_NUMBER: BUSINESS, NODE_ID: `perm-restart-${process.pid}` };
    const customer = '+6281300077001';
    stack = await startStack(env);
    const ev = permissionReplyEvent(stack, customer);
    assert.equal(await deliverAndProcess(stack, ev), 200);
    assert.equal(await replyRows(stack, String(ev.id)), 1);
    await stack.stop();

    stack = await startStack(env);
    await watch(stack.bridge).whenReplayed();
    const accepts = async () => sampleSum(parsePromText(await stack!.bridge.metrics.registry.metrics()), 'wasb_permission_replies_total', { response: 'accept' });
    assert.equal(await accepts(), 0, 'nothing counted by the new process yet');
    assert.deepEqual(await redeliver(stack, ev), { ok: true, duplicate: true });
    // What the redelivery started is under way before its 200; a later reply, acted on, follows it.
    assert.equal(await deliverAndProcess(stack, permissionReplyEvent(stack, '+6281300077002')), 200);
    assert.equal(await replyRows(stack, String(ev.id)), 1, 'one row for the event');
    assert.equal(await accepts(), 1, 'only the later reply counted by the new process');
    const res = await fetch(`http://127.0.0.1:${stack.bridge.httpPort}/api/permissions?customer=${encodeURIComponent(customer)}`, { headers: { Authorization: `Bearer ${TOKEN}` } });
    assert.equal(res.status, 200);
    const listed = (await res.json()) as { replies: unknown[] };
    assert.equal(listed.replies.length, 1, JSON.stringify(listed));
  });
});
