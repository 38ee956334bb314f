import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { QueryTypes } from 'sequelize';
import { signMetaWebhook } from '../src/providers/meta/signature';
import { signWebhook } from '../src/providers/ycloud/signature';
import { bridgeEnv, deliverAndProcess, forEachProvider, ProviderName, startStack, TestStack } from './harness/bridge';
import { callParts } from './harness/call-parts';
import { permissionReplyEvent } from './harness/permissions';
import { testDb } from './harness/db-rows';
import { infra } from './harness/infra';
import { parsePromText, sampleSum } from './harness/prom-text';
import { RtpPhone } from './harness/rtp-phone';
import { refusalScenario, runSippUac } from './harness/sipp';
import { within } from './harness/timeline';
import { WaUser } from './harness/wa-user';
import { watch, whenEnded } from './harness/watch';
import { DEFAULT_LINE, SimPermissionRequest, SimRequest } from './harness/ycloud-sim';

const BUSINESS = DEFAULT_LINE.number; // +6283138205150
const WABA = DEFAULT_LINE.wabaId;
const TOKEN = 'admin-test-token-0123456789';
const providerLabel = (p: ProviderName) => (p === 'meta' ? 'Meta' : 'YCloud');

/** Call permissions and calling settings through the real webhook endpoint, admin API and database. */
describe('call permissions and calling settings', function () {
  this.timeout(30000);
  forEachProvider((provider) => permissionsAndSettings(provider));
});

function permissionsAndSettings(provider: ProviderName): void {
  let stack: TestStack;
  before(async () => {
    stack = await startStack({ ADMIN_API_TOKEN: TOKEN, WA_BUSINESS_NUMBER: BUSINESS, WA_WABA_ID: WABA }, { provider });
  });
  after(async () => {
    await stack?.stop();
  });

  let n = 0;
  // Per provider its own customers: both suites share the run's database.
  const customer = () => `+62813${provider === 'meta' ? '2' : '0'}00${String(100 + ++n).padStart(4, '0')}`;

  /** Sends a call_permission_reply webhook and waits until the bridge has acted on it. */
  async function reply(from: string, r: Record<string, unknown>, sendTime = new Date()): Promise<void> {
    assert.equal(await deliverAndProcess(stack, permissionReplyEvent(stack.sim, from, r, sendTime)), 200);
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
    // Whole seconds: Meta's message timestamp is unix seconds.
    const at = new Date(Math.floor((Date.now() - 1000) / 1000) * 1000);
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
    const ev = permanentAccept(stack, c);
    assert.equal(await deliverAndProcess(stack, ev), 200);
    assert.deepEqual(await redeliver(stack, ev), { ok: true, duplicate: true });
    // What the redelivery would have started is under way before its 200; a later reply, acted on, follows it.
    assert.equal(await deliverAndProcess(stack, permanentAccept(stack, customer())), 200);
    assert.equal(await replyRows(eventIdOf(stack, ev)), 1, 'one row for the event');
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

  it('the admin API sends free-form and template permission requests through the provider', async () => {
    const c = customer();
    let res = await api('/permission-requests', { method: 'POST', body: JSON.stringify({ to: c, text: 'May we call you about order 12?' }) });
    assert.equal(res.status, 202);
    res = await api('/permission-requests', {
      method: 'POST',
      body: JSON.stringify({ to: c, template: { name: 'call_permission_request_template', language: 'en_US', components: [{ type: 'body', parameters: [] }] } }),
    });
    assert.equal(res.status, 202);
    const sent = stack.sim.requests.filter((r) => r.op === 'message' && r.to === c);
    assert.equal(sent.length, 2);
    // YCloud names the business number in the body; Meta by its phone number id in the path.
    if (provider === 'ycloud') assert.equal(sent[0]!.from, BUSINESS);
    else assert.equal(sent[0]!.path, `/${DEFAULT_LINE.phoneId}/messages`);
    assert.deepEqual(sent[0]!.body.interactive, {
      type: 'call_permission_request', action: { name: 'call_permission_request' }, body: { text: 'May we call you about order 12?' },
    });
    assert.equal((sent[1]!.body.template as { name: string }).name, 'call_permission_request_template');
    const recorded = await stack.bridge.permissions.requests(BUSINESS, c);
    assert.deepEqual(recorded.map((r) => r.kind).sort(), ['interactive', 'template']);
  });

  it('a request the user answers: the reply comes back through the webhook and is recorded once, redelivered or not', async () => {
    const c = customer();
    const asked = new Promise<SimPermissionRequest>((resolve) => stack.sim.once('permission-request', resolve));
    const res = await api('/permission-requests', { method: 'POST', body: JSON.stringify({ to: c, text: 'May we call you back?' }) });
    assert.equal(res.status, 202);
    const request = await within(asked, 5000, () => 'the permission request at the provider');
    assert.equal(request.customer, c);
    const [sentRow] = await stack.bridge.permissions.requests(BUSINESS, c);
    assert.ok(sentRow?.message_id, 'the request is recorded with the provider\'s message id');
    // Meta's message id is the wamid its reply will name; YCloud answers with its own message id.
    if (provider === 'meta') assert.equal(sentRow.message_id, request.id);

    const w = watch(stack.bridge);
    let eventId = '';
    const delivered = new Promise<void>((resolve) => stack.sim.once('webhook', (d: { event: unknown }) => {
      eventId = stack.sim.deliveryIds(d.event)[0]!;
      resolve();
    }));
    assert.equal(await stack.sim.answerPermission(request.id, 'temporary'), 200);
    await delivered;
    await w.whenProcessed(eventId);
    const state = await check(c);
    assert.equal(state.allowed && state.permanent, false, JSON.stringify(state));
    // The provider's retry, byte for byte: answered as a duplicate, not recorded again.
    assert.equal(await stack.sim.redeliver(), 200);
    await deliverAndProcess(stack, permanentAccept(stack, customer())); // acted on after the redelivery
    assert.equal(await replyRows(eventId), 1, 'one row for the reply');
    const listed = (await (await api(`/permissions?customer=${encodeURIComponent(c)}`)).json()) as { replies: Array<{ response: string }> };
    assert.deepEqual(listed.replies.map((r) => r.response), ['accept']);
  });

  it('the admin API refuses a bad token, a bad number, and an empty request', async () => {
    assert.equal((await api('/permissions', {}, 'wrong')).status, 401);
    assert.equal((await api('/permission-requests', { method: 'POST', body: JSON.stringify({ to: 'bob', text: 'hi' }) })).status, 400);
    assert.equal((await api('/permission-requests', { method: 'POST', body: JSON.stringify({ to: customer() }) })).status, 400);
  });

  /** What the provider returns for calling settings ENABLED / DEFAULT / ENABLED, in its own field names. */
  function enabledSettings(calling: Record<string, unknown>): Record<string, unknown> {
    if (provider === 'ycloud') return calling;
    // Meta's own snake_case names, and more fields (srtp, sip) than the bridge changes.
    return { status: calling.status, iconVisibility: calling.call_icon_visibility, callbackPermissionStatus: calling.callback_permission_status };
  }

  it('reads and updates the calling settings through the admin API', async () => {
    let res = await api('/settings', { method: 'POST', body: JSON.stringify({ status: 'ENABLED', iconVisibility: 'DEFAULT', callbackPermissionStatus: 'ENABLED' }) });
    assert.equal(res.status, 200, await res.text());
    res = await api('/settings');
    const body = (await res.json()) as { calling: Record<string, unknown> };
    assert.deepEqual(enabledSettings(body.calling), { status: 'ENABLED', iconVisibility: 'DEFAULT', callbackPermissionStatus: 'ENABLED' });
    res = await api('/settings', { method: 'POST', body: JSON.stringify({ status: 'ON' }) });
    assert.equal(res.status, 400);
  });

  it('the settings CLI reads and changes the calling settings, and explains bad input', async () => {
    const cli = path.join(__dirname, '..', 'src', 'cli', 'calling-settings.js');
    // The CLI reads the bridge's own configuration (all of it, as the bridge would), and asks the number's provider.
    const env = { ...process.env, ...bridgeEnv(stack.sim), WA_WABA_ID: provider === 'ycloud' ? 'waba-cli' : WABA, WA_BUSINESS_NUMBER: BUSINESS };
    const run = promisify(execFile);
    const set = await run(process.execPath, [cli, 'set', '--status', 'enabled', '--callback-permission', 'ENABLED'], { env });
    assert.equal((JSON.parse(set.stdout) as { calling: { status: string } }).calling.status, 'ENABLED');
    const get = await run(process.execPath, [cli, 'get'], { env });
    assert.deepEqual(enabledSettings((JSON.parse(get.stdout) as { calling: Record<string, unknown> }).calling), { status: 'ENABLED', iconVisibility: 'DEFAULT', callbackPermissionStatus: 'ENABLED' });
    await assert.rejects(run(process.execPath, [cli, 'set', '--status', 'SOMETIMES'], { env }), (err: { code: number; stderr: string }) => {
      assert.equal(err.code, 2);
      assert.match(err.stderr, /status must be one of ENABLED, DISABLED/);
      return true;
    });
  });
}

/** A permanent accept from `customer`. */
function permanentAccept(stack: TestStack, customer: string): Record<string, unknown> {
  return permissionReplyEvent(stack.sim, customer, { response: 'accept', is_permanent: true });
}

/** The bridge's dedupe key for a one-reply webhook (YCloud: the event id; Meta: meta:<message id>). */
function eventIdOf(stack: TestStack, ev: Record<string, unknown>): string {
  const [id] = stack.sim.deliveryIds(ev);
  assert.ok(id, 'the webhook names its event');
  return id;
}

/** Delivers `ev` again, signed afresh as a provider's redelivery is; resolves with the bridge's JSON answer (asserted 200). */
async function redeliver(stack: TestStack, ev: Record<string, unknown>): Promise<unknown> {
  const body = JSON.stringify(ev);
  const signature: Record<string, string> = stack.sim.face === 'meta'
    ? { 'X-Hub-Signature-256': signMetaWebhook(stack.sim.secret, body) }
    : { 'YCloud-Signature': signWebhook(stack.sim.secret, body) };
  const res = await fetch(stack.sim.webhookUrl, { method: 'POST', body, headers: { ...signature, 'Content-Type': 'application/json' } });
  assert.equal(res.status, 200);
  return res.json();
}

async function replyRows(eventId: string): Promise<number> {
  const rows = await testDb().query<{ n: string }>(
    'SELECT count(*) AS n FROM call_permission_replies WHERE event_id = :eventId', { replacements: { eventId }, type: QueryTypes.SELECT });
  return Number(rows[0]!.n);
}

/**
 * A redelivery after a restart: the new process has no memory of the event (its first-seen check is
 * empty) while webhook_events holds it. It is answered as a duplicate and must not be recorded again.
 */
describe('a permission reply redelivered after a restart', function () {
  this.timeout(30000);
  forEachProvider((provider) => redeliveredAfterRestart(provider));
});

function redeliveredAfterRestart(provider: ProviderName): void {
  let stack: TestStack | null = null;
  afterEach(async () => {
    await stack?.stop();
    stack = null;
  });

  it('is answered {duplicate:true}, listed once by the API and not counted again', async () => {
    const env = { ADMIN_API_TOKEN: TOKEN, WA_BUSINESS_NUMBER: BUSINESS, NODE_ID: `perm-restart-${provider}-${process.pid}` };
    const customer = provider === 'meta' ? '+6281300077201' : '+6281300077001';
    stack = await startStack(env, { provider });
    const ev = permanentAccept(stack, customer);
    assert.equal(await deliverAndProcess(stack, ev), 200);
    assert.equal(await replyRows(eventIdOf(stack, ev)), 1);
    await stack.stop();

    stack = await startStack(env, { provider });
    await watch(stack.bridge).whenReplayed();
    const accepts = async () => sampleSum(parsePromText(await stack!.bridge.metrics.registry.metrics()), 'wasb_permission_replies_total', { response: 'accept' });
    assert.equal(await accepts(), 0, 'nothing counted by the new process yet');
    assert.deepEqual(await redeliver(stack, ev), { ok: true, duplicate: true });
    // What the redelivery started is under way before its 200; a later reply, acted on, follows it.
    assert.equal(await deliverAndProcess(stack, permanentAccept(stack, provider === 'meta' ? '+6281300077202' : '+6281300077002')), 200);
    assert.equal(await replyRows(eventIdOf(stack, ev)), 1, 'one row for the event');
    assert.equal(await accepts(), 1, 'only the later reply counted by the new process');
    const res = await fetch(`http://127.0.0.1:${stack.bridge.httpPort}/api/permissions?customer=${encodeURIComponent(customer)}`, { headers: { Authorization: `Bearer ${TOKEN}` } });
    assert.equal(res.status, 200);
    const listed = (await res.json()) as { replies: unknown[] };
    assert.equal(listed.replies.length, 1, JSON.stringify(listed));
  });
}

/**
 * Meta only: before an agent's call the bridge reads Meta's own view of the permission (GET
 * /call_permissions) when its table has no grant. YCloud has no such read (its adapter's
 * permissionState returns null), so there is nothing to run for it here.
 */
describe("an agent's call and Meta's own view of the permission (GET /call_permissions)", function () {
  this.timeout(45000);
  forEachProvider((provider) => providerPermissionView(provider), ['meta']);
});

function providerPermissionView(provider: ProviderName): void {
  const parts = callParts();
  const AGENT_TONE = 1000;
  const USER_TONE = 440;
  let seq = 0;
  // Fresh customers per run: the database is shared, and the local table must have nothing for them.
  const stranger = () => `+62815${String(Date.now()).slice(-6)}${++seq}`;

  async function setUp(): Promise<TestStack> {
    parts.phone = new RtpPhone(AGENT_TONE, USER_TONE);
    await parts.phone.start();
    parts.stack = await startStack({
      SIP_TRUSTED_SOURCES: '127.0.0.0/8', ADMIN_API_TOKEN: TOKEN, WA_BUSINESS_NUMBER: BUSINESS, WA_PHONE_ID: DEFAULT_LINE.phoneId,
      PERMISSION_AUTO_REQUEST: 'interactive', PERMISSION_REQUEST_TEXT: 'May we call you?',
    }, { provider });
    return parts.stack;
  }

  async function dial(scenario: string, number: string): Promise<number | null> {
    const port = (parts.phone as unknown as { socket: { address(): { port: number } } }).socket.address().port;
    parts.sipp = await runSippUac(scenario, { target: `127.0.0.1:${infra.drachtio!.sipPort}`, number, rtpPort: port });
    const code = await within(parts.sipp.done, 20000, () => `SIPp to finish:\n${parts.sipp!.proc.output.slice(-1500)}`);
    return code;
  }

  async function localReplies(customer: string): Promise<Array<{ response: string; is_permanent: boolean; expires_at: Date | null; response_source: string | null }>> {
    return testDb().query(
      'SELECT response, is_permanent, expires_at, response_source FROM call_permission_replies WHERE business_number = :b AND customer_number = :c ORDER BY replied_at',
      { replacements: { b: BUSINESS, c: customer }, type: QueryTypes.SELECT },
    );
  }

  it(`${providerLabel(provider)} says temporary although the local table has nothing: the call goes through, the grant is recorded with ${providerLabel(provider)}'s expiry`, async () => {
    const s = await setUp();
    const c = stranger();
    assert.equal((await s.bridge.permissions.check(BUSINESS, c)).allowed, false, 'nothing on record locally');
    const until = Date.now() + 3 * 24 * 3600 * 1000;
    s.sim.grant(c, until);
    parts.user = new WaUser(USER_TONE, AGENT_TONE);
    s.sim.outboundScript = s.sim.answeredBy(parts.user);
    const code = await dial('uac-call-hangup.xml', c);
    assert.equal(code, 0, `the agent's call was answered and hung up:\n${parts.sipp!.proc.output.slice(-1500)}`);
    const asked = s.sim.requests.filter((r) => r.op === 'call_permissions');
    assert.deepEqual(asked.map((r) => r.to), [c], 'the bridge asked Meta once');
    const connect = s.sim.requests.find((r) => r.op === 'connect');
    assert.equal(connect?.to, c, 'the call was placed');
    assert.equal(s.sim.requests.some((r) => r.op === 'message'), false, 'no permission request spent');
    const invite = s.marks.marks.find((m) => m.name === 'invite_received')!;
    await whenEnded(s.bridge, invite.wacid);

    const replies = await localReplies(c);
    assert.equal(replies.length, 1, JSON.stringify(replies));
    assert.equal(replies[0]!.response, 'accept');
    assert.equal(replies[0]!.response_source, 'provider_state');
    assert.equal(replies[0]!.is_permanent, false);
    assert.equal(replies[0]!.expires_at?.getTime(), Math.floor(until / 1000) * 1000, 'Meta\'s expiration_time (unix seconds)');
    const state = await s.bridge.permissions.check(BUSINESS, c);
    assert.equal(state.allowed && state.expiresAt?.getTime(), Math.floor(until / 1000) * 1000, 'the next call needs no question to Meta');
  });

  it(`${providerLabel(provider)} says permanent: recorded as a permanent grant`, async () => {
    const s = await setUp();
    const c = stranger();
    s.sim.grant(c, null);
    parts.user = new WaUser(USER_TONE, AGENT_TONE);
    s.sim.outboundScript = s.sim.answeredBy(parts.user);
    assert.equal(await dial('uac-call-hangup.xml', c), 0, parts.sipp?.proc.output.slice(-1500));
    const replies = await localReplies(c);
    assert.deepEqual(replies.map((r) => [r.response, r.is_permanent, r.expires_at, r.response_source]), [['accept', true, null, 'provider_state']]);
  });

  it(`${providerLabel(provider)} says no_permission and the request quota is used up: 403 whose Reason names the quota, no request spent`, async () => {
    const s = await setUp();
    s.sim.enforceRequestQuota = true;
    const c = stranger();
    // The day's one permission request, sent earlier (through the admin API).
    const res = await fetch(`http://127.0.0.1:${s.bridge.httpPort}/api/permission-requests`, {
      method: 'POST', headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ to: c, text: 'May we call you?' }),
    });
    assert.equal(res.status, 202);
    const before = s.sim.requests.filter((r) => r.op === 'message').length;
    assert.equal(before, 1);
    const placed = new Promise<never>((_, reject) => s.sim.on('request', (r: SimRequest) => {
      if (r.op === 'connect') reject(new Error(`a WhatsApp call was placed to ${String(r.to)} without permission (no 403)`));
    }));
    const code = await Promise.race([dial(await refusalScenario(403, 'permission requests used 1 of 1'), c), placed]);
    assert.equal(code, 0, `SIPp got the 403 with a Reason naming the quota:\n${parts.sipp!.proc.output.slice(-1500)}`);
    assert.equal(s.sim.requests.filter((r) => r.op === 'message').length, before, 'no permission request was spent');
    const requests = await s.bridge.permissions.requests(BUSINESS, c);
    assert.deepEqual(requests.map((r) => r.trigger), ['api'], 'no automatic request recorded');
    const invite = s.marks.marks.find((m) => m.name === 'invite_received')!;
    const events = await s.bridge.cdr.events(await whenEnded(s.bridge, invite.wacid));
    const refused = events.find((e) => e.type === 'no_permission');
    assert.match(String((refused?.detail as { detail?: string } | undefined)?.detail), /permission requests used 1 of 1 per PT24H until /);
    assert.equal(events.some((e) => e.type === 'permission_requested'), false);
  });
}
