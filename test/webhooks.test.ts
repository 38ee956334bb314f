import assert from 'node:assert/strict';
import { assertMediaServed } from './harness/call-media';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { QueryTypes } from 'sequelize';
import { rows, testDb } from './harness/db-rows';
import { signWebhook } from '../src/providers/ycloud/signature';
import { deliverAndProcess, startStack, TestStack } from './harness/bridge';
import { cannedWaUser } from './harness/canned-offer';
import { newWacid } from './harness/ycloud-sim';
import { parsePromText, sampleSum } from './harness/prom-text';
import { nextObserved, whenEnded } from './harness/watch';

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


/**
 * YCloud's own files of a call (`whatsapp.call.recording.updated`, `whatsapp.call.transcription.updated`)
 * fetched as Meta's are (test/meta-webhooks.test.ts "files WhatsApp makes of a call"): the simulator's
 * YCloud face sends the event and serves GET /v2/whatsapp/calls/media/{mediaAssetId}.
 */
describe("YCloud's files of a call (RECORDING=all)", function () {
  this.timeout(60000);
  const METRICS_TOKEN = 'ycloud-media-metrics-token';
  const ADMIN_API_TOKEN = 'ycloud-media-admin-token';
  let stack: TestStack;
  let recordingDir: string;
  let base: string;
  before(async () => {
    recordingDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-ycloud-media-'));
    stack = await startStack({ METRICS_TOKEN, ADMIN_API_TOKEN, RECORDING: 'all', RECORDING_DIR: recordingDir });
    base = `http://127.0.0.1:${stack.bridge.httpPort}`;
  });
  after(async () => {
    await stack?.stop();
    if (recordingDir) fs.rmSync(recordingDir, { recursive: true, force: true });
  });

  const admin = (p: string) => fetch(`${base}${p}`, { headers: { Authorization: `Bearer ${ADMIN_API_TOKEN}` } });
  const metrics = async () => {
    const res = await fetch(`${base}/metrics`, { headers: { Authorization: `Bearer ${METRICS_TOKEN}` } });
    assert.equal(res.status, 200);
    return parsePromText(await res.text());
  };
  /** The simulator's requests for a media asset id (YCloud: the download only). */
  const mediaRequests = (mediaId: string) => stack.sim.requests.filter((r) => r.path.includes(mediaId)).map((r) => `${r.method} ${r.path} ${r.op}`);

  /** A call the simulator placed and the bridge refused (an unusable offer): its CDR row exists. */
  async function refusedCall(): Promise<{ wacid: string; callId: string }> {
    const user = { createOffer: async () => 'v=0\r\nthis is not sdp\r\n', applyAnswer: async () => undefined };
    const { wacid, status } = await stack.sim.userCalls(user);
    assert.equal(status, 200);
    return { wacid, callId: await whenEnded(stack.bridge, wacid) };
  }

  const cases = [
    { kind: 'recording', type: 'whatsapp.call.recording.updated', mimeType: 'audio/ogg', ext: '.ogg' },
    { kind: 'transcription', type: 'whatsapp.call.transcription.updated', mimeType: 'application/json', ext: '.json' },
  ] as const;
  for (const { kind, type, mimeType, ext } of cases) {
    it(`${kind} (${type}, AVAILABLE): downloaded from /whatsapp/calls/media/{id}, stored on disk and in call_media, linked to the CDR, listed and served by the calls API; a redelivery fetches nothing`, async () => {
      const { wacid, callId } = await refusedCall();
      const body = kind === 'recording'
        ? Buffer.concat([Buffer.from('OggS'), crypto.randomBytes(64)])
        : Buffer.from(JSON.stringify({ wacid, segments: [{ speaker: 'user', text: crypto.randomBytes(8).toString('hex') }] }));
      const processed = nextObserved(stack.bridge, 'event-processed', (_id, t) => t === type);
      const m = await stack.sim.mediaAvailable(wacid, kind, { body, mimeType });
      assert.equal(m.status, 200);
      assert.match(m.mediaId, /^[0-9a-f]{24}$/, "YCloud's media asset id");
      const [, , ok] = await processed;
      assert.equal(ok, true);
      assert.deepEqual(mediaRequests(m.mediaId), [`GET /calls/media/${m.mediaId} media_download`], 'one download, nothing else asked of YCloud');

      const [row] = await testDb().query<{ id: number; call_id: string | null; provider: string | null; kind: string; path: string | null; bytes: string | null; mime_type: string | null; error: string | null }>(
        `SELECT id::int AS id, call_id, provider, kind, path, bytes, mime_type, error FROM call_media WHERE wacid = :wacid AND media_id = :mediaId`,
        { replacements: { wacid, mediaId: m.mediaId }, type: QueryTypes.SELECT });
      assert.ok(row, 'a call_media row');
      assert.equal(row.error, null);
      assert.equal(row.kind, kind);
      assert.equal(row.call_id, callId, 'linked to the CDR');
      assert.equal(row.provider, 'ycloud');
      assert.equal(row.mime_type, mimeType, 'the type the download answered with (the event names none)');
      assert.equal(Number(row.bytes), body.length);
      assert.ok(row.path && row.path.startsWith(recordingDir) && row.path.endsWith(ext), `${row.path} under RECORDING_DIR, ending ${ext}`);
      assert.deepEqual(fs.readFileSync(row.path), body, 'the bytes on disk are the ones the simulator served');

      await assertMediaServed(admin, { callId, mediaId: m.mediaId, rowId: row.id, kind, body, contentType: new RegExp(`^${mimeType}`) });

      // A redelivered event is a duplicate: not fetched again.
      assert.equal(await stack.sim.redeliver(), 200);
      assert.deepEqual(mediaRequests(m.mediaId), [`GET /calls/media/${m.mediaId} media_download`], 'nothing fetched again');
      assert.equal(Number((await testDb().query<{ n: string }>('SELECT count(*) AS n FROM call_media WHERE wacid = :wacid', { replacements: { wacid }, type: QueryTypes.SELECT }))[0]!.n), 1);
      const s = await metrics();
      assert.ok(sampleSum(s, 'wasb_webhook_events_total', { type, result: 'processed' }) >= 1, `${type} counted by name`);
      assert.ok(sampleSum(s, 'wasb_ycloud_requests_total', { endpoint: 'media', result: 'ok' }) >= 1, 'the download counted as YCloud endpoint media');
    });
  }

  it('FAILED (YCloud could not make the file): stored (id and type) and marked processed, not acted on: no download, no call_media row', async () => {
    const { wacid } = await refusedCall();
    const before = stack.sim.requests.length;
    for (const [type, key] of [['whatsapp.call.recording.updated', 'callingRecording'], ['whatsapp.call.transcription.updated', 'callingTranscription']] as const) {
      const ev = stack.sim.event(type, {
        [key]: { wacid, phoneId: '461269257068831', mediaAssetId: crypto.randomBytes(12).toString('hex'), status: 'FAILED' },
        error: { code: 'CALLING_RECORDING_PROCESSING_FAILED', retryable: false },
      });
      assert.equal(await deliverAndProcess(stack, ev), 200);
      const row = await rows().WebhookEventRecord.findByPk(String(ev.id));
      assert.ok(row, `${type} stored`);
      assert.equal(row.type, type);
      assert.deepEqual(row.payload, { id: ev.id, type, redacted: true }, 'kept as its id and type, as every event the bridge does not act on');
      assert.ok(row.processed_at, 'and marked processed');
      const s = await metrics();
      assert.ok(sampleSum(s, 'wasb_webhook_events_total', { type, result: 'ignored' }) >= 1, `${type} FAILED counted as ignored`);
    }
    assert.equal(stack.sim.requests.length, before, 'nothing asked of YCloud');
    assert.equal(Number((await testDb().query<{ n: string }>('SELECT count(*) AS n FROM call_media WHERE wacid = :wacid', { replacements: { wacid }, type: QueryTypes.SELECT }))[0]!.n), 0);
  });
});
