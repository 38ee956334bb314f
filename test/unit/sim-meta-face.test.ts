import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import { AddressInfo } from 'node:net';
import { ProviderSim, SimOutboundCall, SimUser } from '../harness/ycloud-sim';

/** What the bridge's webhook endpoint would receive: raw bytes and headers of each POST. */
interface Received { headers: http.IncomingHttpHeaders; raw: string; body: Record<string, any> }

/** A real HTTP server standing where the bridge's /webhooks/meta is; answers 200 to everything. */
class WebhookReceiver {
  readonly got: Received[] = [];
  private waiters: Array<{ pred: (r: Received) => boolean; resolve: (r: Received) => void }> = [];
  private server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const r: Received = { headers: req.headers, raw, body: JSON.parse(raw) as Record<string, any> };
      this.got.push(r);
      this.waiters = this.waiters.filter((w) => (w.pred(r) ? (w.resolve(r), false) : true));
      res.writeHead(200).end();
    });
  });

  async start(): Promise<string> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/webhooks/meta`;
  }

  stop(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }

  /** The first POST (seen or next) whose body matches. */
  next(pred: (r: Received) => boolean): Promise<Received> {
    const seen = this.got.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => this.waiters.push({ pred, resolve }));
  }
}

const TOKEN = 'meta-test-token';
const APP_SECRET = 'meta-app-secret';
const PHONE_ID = '461269257068831';
const BSUID = 'US.13491208655302741918';

function change(r: Received, i = 0): { field: string; value: Record<string, any> } {
  return r.body.entry[0].changes[i];
}

function validSignature(r: Received, secret = APP_SECRET): boolean {
  const want = `sha256=${crypto.createHmac('sha256', secret).update(r.raw).digest('hex')}`;
  const got = String(r.headers['x-hub-signature-256'] ?? '');
  return got.length === want.length && crypto.timingSafeEqual(Buffer.from(got), Buffer.from(want));
}

/** A phone that offers a fixed SDP and records the answer it is given. */
function fakePhone(): SimUser & { answers: string[] } {
  const answers: string[] = [];
  return { answers, createOffer: async () => 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n', applyAnswer: async (sdp) => void answers.push(sdp) };
}

describe('Provider simulator, Meta face (Graph API and Graph webhooks)', () => {
  let sim: ProviderSim;
  let hook: WebhookReceiver;

  const graph = async (method: string, path: string, body?: unknown, headers: Record<string, string> = { Authorization: `Bearer ${TOKEN}` }) => {
    const res = await fetch(`${sim.baseUrl}${path}`, {
      method, headers: { 'Content-Type': 'application/json', ...headers }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, body: (await res.json()) as Record<string, any> };
  };
  const callAction = (body: Record<string, unknown>) => graph('POST', `/${PHONE_ID}/calls`, { messaging_product: 'whatsapp', ...body });

  beforeEach(async () => {
    sim = new ProviderSim({ face: 'meta', apiKey: TOKEN, secret: APP_SECRET });
    hook = new WebhookReceiver();
    await sim.start();
    sim.webhookUrl = await hook.start();
  });

  afterEach(async () => {
    await sim.stop();
    await hook.stop();
  });

  it('a caller known only by BSUID: signed connect webhook with contacts, accept with context, terminate echoing it', async () => {
    const phone = fakePhone();
    const { wacid, eventId, status } = await sim.userCalls(phone, { caller: { userId: BSUID, profileName: 'Ana', username: 'ana.b' }, ctaPayload: 'cta-7' });
    assert.equal(status, 200);
    const connect = hook.got[0]!;
    assert.ok(validSignature(connect), 'X-Hub-Signature-256 is HMAC-SHA256 of the raw body with the App Secret');
    assert.equal(validSignature(connect, 'other'), false);
    assert.equal(connect.body.object, 'whatsapp_business_account');
    assert.equal(connect.body.entry[0].id, '188234691048809');
    const { field, value } = change(connect);
    assert.equal(field, 'calls');
    assert.deepEqual(value.metadata, { display_phone_number: '6283138205150', phone_number_id: PHONE_ID });
    assert.deepEqual(value.contacts, [{ user_id: BSUID, profile: { name: 'Ana', username: 'ana.b' } }]);
    const c = value.calls[0];
    assert.equal(c.id, wacid);
    assert.equal(c.event, 'connect');
    assert.equal(c.direction, 'USER_INITIATED');
    assert.equal(c.from, undefined, 'no number: no from');
    assert.equal(c.from_user_id, BSUID);
    assert.equal(c.to, '6283138205150');
    assert.equal(c.cta_payload, 'cta-7');
    assert.match(c.timestamp, /^\d{10}$/);
    assert.deepEqual(c.session, { sdp_type: 'offer', sdp: 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n' });
    assert.equal(eventId, `meta:${wacid}:connect:${c.timestamp}`);

    assert.deepEqual((await callAction({ action: 'pre_accept', call_id: wacid, session: { sdp_type: 'answer', sdp: 'v=0\r\nanswer' } })).body, { success: true });
    assert.deepEqual((await callAction({ action: 'accept', call_id: wacid, session: { sdp_type: 'answer', sdp: 'v=0\r\nanswer' }, biz_opaque_callback_data: 'ctx-42' })).body, { success: true });
    assert.deepEqual(phone.answers, ['v=0\r\nanswer'], 'the answer reaches the phone once');
    assert.deepEqual(sim.requestsFor(wacid).map((r) => r.op), ['pre_accept', 'accept']);

    const ended = hook.next((r) => change(r).value.calls?.[0]?.event === 'terminate');
    assert.deepEqual((await callAction({ action: 'terminate', call_id: wacid })).body, { success: true });
    const t = change(await ended).value.calls[0];
    assert.equal(t.status, 'COMPLETED');
    assert.equal(t.biz_opaque_callback_data, 'ctx-42');
    assert.equal(typeof t.duration, 'number');
    assert.match(t.start_time, /^\d{10}$/);
    const again = await callAction({ action: 'terminate', call_id: wacid });
    assert.equal(again.status, 400);
    assert.equal(again.body.error.code, 100);
  });

  it('checks the token: Bearer in Authorization, or the raw token in another header (360dialog)', async () => {
    const none = await graph('GET', `/${PHONE_ID}/settings`, undefined, {});
    assert.equal(none.status, 401);
    assert.equal(none.body.error.code, 190);
    assert.equal(none.body.error.type, 'OAuthException');
    assert.equal((await graph('GET', `/${PHONE_ID}/settings`, undefined, { Authorization: 'Bearer wrong' })).status, 401);
    assert.equal((await graph('GET', `/${PHONE_ID}/settings`)).status, 200);

    const d360 = new ProviderSim({ face: 'meta', apiKey: TOKEN, secret: APP_SECRET, authHeader: 'D360-API-KEY' });
    await d360.start();
    try {
      const get = (headers: Record<string, string>) => fetch(`${d360.baseUrl}/${PHONE_ID}/settings`, { headers }).then((r) => r.status);
      assert.equal(await get({ 'D360-API-KEY': TOKEN }), 200);
      assert.equal(await get({ Authorization: `Bearer ${TOKEN}` }), 401);
    } finally {
      await d360.stop();
    }
  });

  it('dials a BSUID back: recipient must be a known user, whose phone then rings with context echoed', async () => {
    const user = sim.addUser({ userId: BSUID, profileName: 'Ana' });
    const rang: SimOutboundCall[] = [];
    sim.outboundScript = async (call) => {
      rang.push(call);
      await sim.answeredBy({ answer: async () => 'v=0\r\nuser-answer' })(call);
    };
    const accepted = hook.next((r) => change(r).value.statuses?.[0]?.status === 'ACCEPTED');
    const res = await callAction({ action: 'connect', recipient: BSUID, session: { sdp_type: 'offer', sdp: 'v=0\r\noffer' }, biz_opaque_callback_data: 'agent-7' });
    assert.equal(res.status, 200);
    assert.equal(res.body.messaging_product, 'whatsapp');
    const wacid = res.body.calls[0].id as string;
    assert.match(wacid, /^wacid\./);
    const status = change(await accepted).value.statuses[0];
    assert.deepEqual(rang.map((c) => [c.wacid, c.to, c.user]), [[wacid, BSUID, user]]);
    assert.equal(status.recipient_user_id, BSUID);
    assert.equal(status.recipient_id, undefined);
    assert.equal(status.biz_opaque_callback_data, 'agent-7');
    const connect = hook.got.map((r) => change(r).value).find((v) => v.calls?.[0]?.event === 'connect')!;
    assert.equal(connect.calls[0].direction, 'BUSINESS_INITIATED');
    assert.equal(connect.calls[0].to_user_id, BSUID);
    assert.equal(connect.calls[0].from, '6283138205150');
    assert.deepEqual(connect.calls[0].session, { sdp_type: 'answer', sdp: 'v=0\r\nuser-answer' });
    assert.deepEqual(hook.got.map((r) => sim.deliveryIds(r.body)[0]!.replace(wacid, 'W').replace(/:\d{10}$/, ':T')), ['meta:W:connect:T', 'meta:W:RINGING', 'meta:W:ACCEPTED']);

    const stranger = await callAction({ action: 'connect', recipient: 'US.999', session: { sdp_type: 'offer', sdp: 'v=0\r\n' } });
    assert.equal(stranger.status, 400);
    assert.equal(stranger.body.error.code, 138001);
    const plus = await callAction({ action: 'connect', to: '+15550100001', session: { sdp_type: 'offer', sdp: 'v=0\r\n' } });
    assert.equal(plus.status, 400, 'to is digits without +');
    assert.equal(plus.body.error.code, 100);
  });

  it('keeps permission state and the request quota (1 per 24 h, 2 per 7 days) as GET /call_permissions reports them', async () => {
    sim.enforcePermissions = true;
    sim.enforceRequestQuota = true;
    sim.addUser({ number: '+15550100001', profileName: 'Bo' });
    const perms = async () => (await graph('GET', `/${PHONE_ID}/call_permissions?user_wa_id=15550100001`)).body;
    const before = await perms();
    assert.deepEqual(before.permission, { status: 'no_permission' });
    assert.equal(before.actions[0].action_name, 'send_call_permission_request');
    assert.equal(before.actions[0].can_perform_action, true);
    assert.deepEqual(before.actions[0].limits.map((l: any) => [l.time_period, l.max_allowed, l.current_usage]), [['PT24H', 1, 0], ['P7D', 2, 0]]);
    assert.equal(before.actions[1].action_name, 'start_call');
    assert.equal(before.actions[1].can_perform_action, false);

    const denied = await callAction({ action: 'connect', to: '15550100001', session: { sdp_type: 'offer', sdp: 'v=0\r\n' } });
    assert.equal(denied.status, 400);
    assert.equal(denied.body.error.code, 138006);
    assert.match(denied.body.error.fbtrace_id, /\S/);

    const ask = { messaging_product: 'whatsapp', to: '15550100001', type: 'interactive', interactive: { type: 'call_permission_request', action: { name: 'call_permission_request' }, body: { text: 'May we call?' } } };
    const asked = await graph('POST', `/${PHONE_ID}/messages`, ask);
    assert.equal(asked.status, 200);
    const requestId = asked.body.messages[0].id as string;
    assert.deepEqual(asked.body.contacts, [{ input: '15550100001', wa_id: '15550100001' }]);
    const during = await perms();
    assert.equal(during.actions[0].can_perform_action, false);
    const day = during.actions[0].limits[0];
    assert.equal(day.current_usage, 1);
    assert.ok(Math.abs(day.limit_expiration_time - (Date.now() / 1000 + 24 * 3600)) < 60);
    const twice = await graph('POST', `/${PHONE_ID}/messages`, ask);
    assert.equal(twice.status, 400, 'a second request within 24 h is refused');
    assert.equal(twice.body.error.code, 138009);

    const reply = hook.next((r) => change(r).field === 'messages');
    assert.equal(await sim.answerPermission(requestId, 'temporary'), 200);
    const m = change(await reply).value.messages[0];
    assert.equal(m.from, '15550100001');
    assert.equal(m.interactive.type, 'call_permission_reply');
    assert.equal(m.interactive.call_permission_reply.response, 'accept');
    assert.equal(m.context.id, requestId);
    const after = await perms();
    assert.equal(after.permission.status, 'temporary');
    assert.ok(Math.abs(after.permission.expiration_time - (Date.now() / 1000 + 7 * 24 * 3600)) < 60);
    assert.equal(after.actions[1].can_perform_action, true);
    assert.equal((await callAction({ action: 'connect', to: '15550100001', session: { sdp_type: 'offer', sdp: 'v=0\r\n' } })).status, 200);

    const byBsuid = await graph('GET', `/${PHONE_ID}/call_permissions?recipient=${sim.userByAddress('+15550100001')!.userId}`);
    assert.equal(byBsuid.body.permission.status, 'temporary', 'the same user by BSUID');
  });

  it('answers faults as Graph errors, by op name or YCloud path', async () => {
    const { wacid } = await sim.userCalls(fakePhone());
    sim.failNext('/calls/accept', { status: 500, message: 'boom' });
    sim.failNext('accept', { status: 400, whatsappCode: 138004, subcode: 2494100, message: 'connection error' });
    const accept = { action: 'accept', call_id: wacid, session: { sdp_type: 'answer', sdp: 'v=0\r\n' } };
    const first = await callAction(accept);
    assert.equal(first.status, 500);
    assert.equal(first.body.error.code, 131000);
    assert.equal(first.body.error.message, 'boom');
    const second = await callAction(accept);
    assert.deepEqual([second.status, second.body.error.code, second.body.error.error_subcode], [400, 138004, 2494100]);
    assert.equal((await callAction(accept)).status, 200);
    assert.equal((await sim.waitForRequest('/calls/accept', wacid)).op, 'accept');
  });

  it('media: the recording webhook, GET /{mediaId} and the download (authenticated)', async () => {
    const { wacid } = await sim.userCalls(fakePhone(), { from: '+15550100002' });
    const body = Buffer.from('OggS recording bytes');
    const { mediaId, status } = await sim.mediaAvailable(wacid, 'recording', { body, mimeType: 'audio/ogg' });
    assert.equal(status, 200);
    const ev = change(hook.got.at(-1)!).value.calls[0];
    assert.equal(ev.event, 'call_recording_available');
    assert.equal(ev.id, wacid);
    assert.equal(ev.recording.id, mediaId);
    const sha = crypto.createHash('sha256').update(body).digest('hex');
    const info = await graph('GET', `/${mediaId}`);
    assert.equal(info.status, 200);
    assert.equal(info.body.sha256, sha);
    assert.equal(info.body.mime_type, 'audio/ogg');
    const dl = await fetch(info.body.url as string, { headers: { Authorization: `Bearer ${TOKEN}` } });
    assert.equal(dl.status, 200);
    assert.deepEqual(Buffer.from(await dl.arrayBuffer()), body);
    assert.equal((await fetch(info.body.url as string)).status, 401);
    assert.equal((await graph('GET', '/123456')).status, 404);

    await sim.mediaAvailable(wacid, 'voicemail');
    const vm = change(hook.got.at(-1)!);
    assert.equal(vm.field, 'messages');
    assert.equal(vm.value.messages[0].id, wacid, 'a voicemail is an audio message whose id is the wacid');
    assert.equal(vm.value.messages[0].type, 'audio');
  });

  it('batches several events into one signed POST and redelivers it byte for byte', async () => {
    sim.outboundScript = null;
    const res = await callAction({ action: 'connect', to: '15550100003', session: { sdp_type: 'offer', sdp: 'v=0\r\n' } });
    const call = sim.outboundCalls.get(res.body.calls[0].id as string)!;
    const batch = sim.batch(sim.outboundStatus(call, 'RINGING'), sim.outboundStatus(call, 'ACCEPTED'), sim.outboundTerminate(call, 'COMPLETED'));
    assert.equal(batch.entry && (batch.entry as unknown[]).length, 1, 'one WABA: one entry');
    assert.equal(sim.deliveryIds(batch).length, 3);
    assert.equal(await sim.deliver(batch), 200);
    assert.equal(await sim.redeliver(), 200);
    const [a, b] = hook.got.slice(-2);
    assert.equal(a!.raw, b!.raw);
    assert.equal(a!.headers['x-hub-signature-256'], b!.headers['x-hub-signature-256']);
    assert.ok(validSignature(b!));
    assert.deepEqual(a!.body.entry[0].changes.map((c: any) => c.value.statuses?.[0]?.status ?? c.value.calls?.[0]?.event), ['RINGING', 'ACCEPTED', 'terminate']);
  });

  it('settings by phone id, and account webhooks on demand', async () => {
    assert.equal((await graph('GET', `/${PHONE_ID}/settings`)).body.calling.status, 'DISABLED');
    assert.deepEqual((await graph('POST', `/${PHONE_ID}/settings`, { calling: { status: 'ENABLED' } })).body, { success: true });
    assert.equal((await graph('GET', `/${PHONE_ID}/settings`)).body.calling.status, 'ENABLED');
    await sim.accountNotice('account_settings_update');
    const s = hook.got.at(-1)!.body.entry[0];
    assert.equal(s.changes[0].field, 'account_settings_update');
    assert.equal(s.changes[0].value.calling.status, 'ENABLED');
    assert.equal(typeof s.time, 'number');
    await sim.accountNotice('account_update', { event: 'ACCOUNT_RESTRICTION', detail: { restriction_info: [{ restriction_type: 'RESTRICTED_CALLING' }] } });
    const u = hook.got.at(-1)!.body.entry[0].changes[0];
    assert.deepEqual([u.field, u.value.event, u.value.phone_number], ['account_update', 'ACCOUNT_RESTRICTION', '6283138205150']);
    assert.match(sim.deliveryIds(hook.got.at(-1)!.body)[0]!, /^meta:account_update:188234691048809:\d+:[0-9a-f]{8}$/);
  });
});
