import assert from 'node:assert/strict';
import { QueryTypes } from 'sequelize';
import { rows, testDb } from './harness/db-rows';
import { signWebhook } from '../src/providers/ycloud/signature';
import { deliverAndProcess, startStack, TestStack } from './harness/bridge';
import { cannedWaUser } from './harness/canned-offer';
import { newWacid } from './harness/ycloud-sim';
import { whenEnded } from './harness/watch';

/** The webhook endpoint against a real bridge, database and YCloud simulator (no SIP needed). */
describe('YCloud webhook endpoint', () => {
  let stack: TestStack;
  before(async () => {
    stack = await startStack();
  });
  after(async () => {
    await stack?.stop();
  });

  const statusEvent = () => stack.sim.event('whatsapp.call.status.updated', { callingStatusUpdated: { wacid: 'wacid.x', status: 'RINGING' } });

  it('accepts a correctly signed event and stores it once', async () => {
    const ev = statusEvent();
    assert.equal(await stack.sim.deliver(ev), 200);
    const row = await rows().WebhookEventRecord.findByPk(String(ev.id));
    assert.ok(row, 'event stored');
    assert.equal(row.type, 'whatsapp.call.status.updated');
    assert.equal(row.wacid, 'wacid.x');
  });

  it('answers a redelivery 200 and ignores it', async () => {
    const ev = statusEvent();
    assert.equal(await stack.sim.deliver(ev), 200);
    const res = await fetch(stack.sim.webhookUrl, {
      method: 'POST',
      headers: { 'YCloud-Signature': signWebhook(stack.sim.secret, JSON.stringify(ev)), 'Content-Type': 'application/json' },
      body: JSON.stringify(ev),
    });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { ok: true, duplicate: true });
    assert.equal(await rows().WebhookEventRecord.count({ where: { id: String(ev.id) } }), 1);
  });

  it('refuses a forged signature with 401 and stores nothing', async () => {
    const ev = statusEvent();
    assert.equal(await stack.sim.deliver(ev, { secret: 'not-the-secret' }), 401);
    assert.equal(await rows().WebhookEventRecord.findByPk(String(ev.id)), null);
  });

  it('refuses a valid signature with one hex digit changed (last, middle, second) with 401 and stores nothing', async () => {
    const ev = statusEvent();
    const body = JSON.stringify(ev);
    const valid = signWebhook(stack.sim.secret, body);
    const at = valid.indexOf('s=') + 2;
    for (const i of [63, 32, 1]) {
      const p = at + i;
      const forged = `${valid.slice(0, p)}${valid[p] === 'a' ? 'b' : 'a'}${valid.slice(p + 1)}`;
      assert.equal(forged.length, valid.length);
      assert.equal(await stack.sim.deliver(null, { raw: body, signature: forged }), 401, `digit ${i} changed`);
    }
    assert.equal(await rows().WebhookEventRecord.findByPk(String(ev.id)), null);
    // The unaltered signature still gets the same event in: the refusals were the digit, not the body.
    assert.equal(await stack.sim.deliver(null, { raw: body, signature: valid }), 200);
    assert.ok(await rows().WebhookEventRecord.findByPk(String(ev.id)));
  });

  it('refuses a missing or garbled signature header with 401', async () => {
    const ev = statusEvent();
    assert.equal(await stack.sim.deliver(ev, { signature: null }), 401);
    assert.equal(await stack.sim.deliver(ev, { signature: 't=abc,s=zz' }), 401);
    assert.equal(await rows().WebhookEventRecord.findByPk(String(ev.id)), null);
  });

  it('refuses a stale signature (replay) with 401', async () => {
    const ev = statusEvent();
    assert.equal(await stack.sim.deliver(ev, { timestamp: Math.floor(Date.now() / 1000) - 3600 }), 401);
    assert.equal(await rows().WebhookEventRecord.findByPk(String(ev.id)), null);
  });

  it('refuses a body altered after signing with 401', async () => {
    const ev = statusEvent();
    const body = JSON.stringify(ev);
    const sig = signWebhook(stack.sim.secret, body);
    assert.equal(await stack.sim.deliver(null, { raw: body.replace('RINGING', 'ACCEPTED'), signature: sig }), 401);
  });

  it('signed but malformed bodies (not JSON, no id, bad call payload) are quarantined and answered 202, never acted on', async () => {
    // 202, not 4xx: YCloud redelivers any non-2xx, and these can never become valid.
    assert.equal(await stack.sim.deliver(null, { raw: '{not json' }), 202);
    assert.equal(await stack.sim.deliver({ type: 'whatsapp.call.connect' }), 202);
    const bad = stack.sim.event('whatsapp.call.connect', { callingConnect: { wacid: 'w', from: 'nobody', sdp: 'x' } });
    assert.equal(await stack.sim.deliver(bad), 202);
    assert.equal(await rows().WebhookEventRecord.findByPk(String(bad.id)), null);
  });

  it('accepts a signed body that starts with a UTF-8 byte order mark (signed over the bytes as sent), and stores it', async () => {
    const ev = statusEvent();
    const raw = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify(ev))]);
    const res = await fetch(stack.sim.webhookUrl, {
      method: 'POST', body: raw,
      headers: { 'YCloud-Signature': signWebhook(stack.sim.secret, raw), 'Content-Type': 'application/json' },
    });
    assert.equal(res.status, 200, await res.text());
    assert.equal((await rows().WebhookEventRecord.findByPk(String(ev.id)))?.type, 'whatsapp.call.status.updated');
    assert.equal(await stack.bridge.webhookQuarantine.find(raw), null, 'not quarantined');
    // The signature still covers the mark: signed without it, the same bytes are refused.
    const forged = await fetch(stack.sim.webhookUrl, {
      method: 'POST', body: raw,
      headers: { 'YCloud-Signature': signWebhook(stack.sim.secret, raw.subarray(3)), 'Content-Type': 'application/json' },
    });
    assert.equal(forged.status, 401);
  });

  it('accepts and stores event types it does not act on', async () => {
    const ev = stack.sim.event('whatsapp.message.updated', { whatsappMessage: { id: 'm1' } });
    assert.equal(await stack.sim.deliver(ev), 200);
    assert.ok(await rows().WebhookEventRecord.findByPk(String(ev.id)));
  });

  const chatMessage = (i: number) => stack.sim.event('whatsapp.inbound_message.received', {
    whatsappInboundMessage: {
      id: `chat-${i}`, wamid: `wamid.chat${i}`, wabaId: 'waba-1', from: `+628130090${String(i).padStart(4, '0')}`, to: '+6283138205150',
      customerProfile: { name: `Ms Private Person ${i}` }, sendTime: new Date().toISOString(),
      type: 'text', text: { body: `my account number is 12345-${i}, please call me back about my medical results` },
    },
  });

  it('a chat message the bridge does not act on is stored as its id and type only: no text, profile name or number', async () => {
    const ev = chatMessage(1);
    assert.equal(await deliverAndProcess(stack, ev), 200);
    const row = await rows().WebhookEventRecord.findByPk(String(ev.id));
    assert.ok(row, 'stored (a redelivery is still recognised)');
    assert.deepEqual(row.payload, { id: ev.id, type: 'whatsapp.inbound_message.received', redacted: true });
    const text = JSON.stringify(row);
    for (const s of ['medical', 'Private Person', '62813009', 'wamid.chat1']) assert.ok(!text.includes(s), `${s} stored: ${text}`);
    assert.ok(row.processed_at, 'and marked processed');
    assert.deepEqual(await stack.sim.deliver(ev), 200, 'a redelivery is answered');
    assert.equal(await rows().WebhookEventRecord.count({ where: { id: String(ev.id) } }), 1);
  });

  it('a call permission reply is stored in full (it is acted on, and replayed if the bridge stops first)', async () => {
    const ev = stack.sim.event('whatsapp.inbound_message.received', {
      whatsappInboundMessage: {
        id: 'perm-1', wamid: 'wamid.perm1', from: '+6281361905199', to: '+6283138205150', sendTime: new Date().toISOString(),
        type: 'interactive', interactive: { type: 'call_permission_reply', call_permission_reply: { response: 'accept', is_permanent: true } },
      },
    });
    assert.equal(await deliverAndProcess(stack, ev), 200);
    const row = await rows().WebhookEventRecord.findByPk(String(ev.id));
    assert.deepEqual(row?.payload, ev);
  });

  it('a flood of chat messages: every one stored redacted; print the bytes kept', async () => {
    const n = 200;
    const ids: string[] = [];
    let bodyBytes = 0;
    for (let i = 0; i < n; i++) {
      const ev = chatMessage(1000 + i);
      ids.push(String(ev.id));
      bodyBytes += Buffer.byteLength(JSON.stringify(ev));
      assert.equal(await stack.sim.deliver(ev), 200);
    }
    const [r] = await testDb().query<{ rows: string; bytes: string; leaked: string }>(
      `SELECT count(*) AS rows, sum(pg_column_size(payload)) AS bytes, count(*) FILTER (WHERE payload::text LIKE '%medical%') AS leaked
       FROM webhook_events WHERE id IN (:ids)`, { replacements: { ids }, type: QueryTypes.SELECT });
    console.log(`      chat flood: ${n} messages, ${bodyBytes} bytes received, ${r!.rows} rows kept holding ${r!.bytes} bytes of payload (${Number(r!.leaked)} with message text)`);
    assert.equal(Number(r!.rows), n);
    assert.equal(Number(r!.leaked), 0, 'no message text stored');
  });

  it('keeps running after all of that: health answers', async () => {
    const res = await fetch(`http://127.0.0.1:${stack.bridge.httpPort}/healthz`);
    assert.equal(res.status, 200);
  });

  it('rejects a call with an unusable SDP offer on the WhatsApp side and records it', async function () {
    const user = { createOffer: async () => 'v=0\r\nthis is not sdp\r\n', applyAnswer: async () => undefined };
    const ended = (w: string) => whenEnded(stack.bridge, w);
    const { wacid, status } = await stack.sim.userCalls(user);
    assert.equal(status, 200);
    const id = await ended(wacid);
    const reject = await stack.sim.waitForRequest('/calls/reject', wacid);
    assert.ok(reject);
    assert.equal(stack.sim.requestsFor(wacid).some((r) => r.path === '/calls/preAccept'), false);
    const row = await rows().CallRecord.findByPk(id);
    assert.ok(row);
    assert.equal(row.outcome, 'failed');
    assert.equal(row.hangup_by, 'bridge');
    assert.match(row.error ?? '', /bad SDP|SDP/);
    assert.ok(row.ended_at);
  });

  it('a terminate that overtakes its connect: the late connect is recorded, not bridged', async () => {
    const wacid = newWacid();
    const terminate = stack.sim.event('whatsapp.call.terminate', {
      callingTerminate: { wacid, phoneId: '461269257068831', direction: 'USER_INITIATED', status: 'FAILED', duration: 0 },
    });
    // The terminate is acted on before the connect shows up.
    assert.equal(await deliverAndProcess(stack, terminate), 200);
    const user = cannedWaUser;
    await stack.sim.userCalls(user, { wacid });
    const id = await whenEnded(stack.bridge, wacid);
    const row = await rows().CallRecord.findByPk(id);
    assert.equal(row?.outcome, 'caller_hangup');
    assert.equal(row?.hangup_by, 'whatsapp');
    assert.deepEqual(stack.sim.requestsFor(wacid), [], 'nothing was sent to YCloud for it');
  });
});

