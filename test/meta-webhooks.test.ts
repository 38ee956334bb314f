import assert from 'node:assert/strict';
import { assertMediaServed } from './harness/call-media';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { QueryTypes } from 'sequelize';
import { testDb } from './harness/db-rows';
import { signMetaWebhook } from '../src/providers/meta/signature';
import { MAX_DELIVERIES } from '../src/providers/meta/events';
import { startStack, TestStack } from './harness/bridge';
import { LogTap } from './harness/log-tap';
import { parsePromText, sampleSum } from './harness/prom-text';
import { DEFAULT_LINE, newWacid } from './harness/ycloud-sim';
import { nextObserved, whenEnded } from './harness/watch';

const METRICS_TOKEN = 'meta-door-metrics-token';
const ADMIN_API_TOKEN = 'meta-door-admin-token';
const WABA = DEFAULT_LINE.wabaId;
const PHONE_ID = DEFAULT_LINE.phoneId;
const BUSINESS = DEFAULT_LINE.number.replace(/^\+/, '');
const USER = '6281361905177';

type Json = Record<string, unknown>;

/** Meta's envelope: `whatsapp_business_account` with entries of changes. */
const envelope = (...entries: Json[]): Json => ({ object: 'whatsapp_business_account', entry: entries });
const entry = (changes: Json[], id = WABA, time?: number): Json => ({ id, ...(time !== undefined ? { time } : {}), changes });
const metadata = { display_phone_number: BUSINESS, phone_number_id: PHONE_ID };
const callsChange = (value: Json): Json => ({ field: 'calls', value: { messaging_product: 'whatsapp', metadata, ...value } });
const unix = () => String(Math.floor(Date.now() / 1000));
/** A business-initiated call's status (Meta: `statuses[]` with type call). */
const callStatus = (wacid: string, status = 'RINGING'): Json => ({ id: wacid, type: 'call', status, timestamp: unix(), recipient_id: USER });
/** A user's call ended (for a call this bridge never saw: stored and kept for its connect). */
const terminate = (wacid: string): Json => ({
  id: wacid, from: USER, to: BUSINESS, event: 'terminate', direction: 'USER_INITIATED', timestamp: unix(), status: 'FAILED',
});

/**
 * Meta's webhook door against a real bridge (WA_PROVIDER=meta), the real Postgres and the simulator's
 * Meta face: the subscription check, X-Hub-Signature-256, batches of several entries, changes and items
 * (each stored once as its own event), bounds on a batch, quarantine of the never-valid parts, account
 * notices and the files WhatsApp makes of calls. No SIP is needed: a call the sim places is refused.
 */
describe('Meta webhook endpoint', function () {
  this.timeout(60000);
  let stack: TestStack;
  let tap: LogTap;
  let recordingDir: string;
  let base: string;
  let url: string;

  before(async () => {
    tap = new LogTap();
    recordingDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-meta-door-'));
    stack = await startStack({
      LOG_LEVEL: 'info', METRICS_TOKEN, ADMIN_API_TOKEN, RECORDING: 'all', RECORDING_DIR: recordingDir,
    }, { provider: 'meta', logStream: tap });
    base = `http://127.0.0.1:${stack.bridge.httpPort}`;
    url = stack.sim.webhookUrl;
    assert.equal(url, `${base}/webhooks/meta`);
  });
  after(async () => {
    await stack?.stop();
    if (recordingDir) fs.rmSync(recordingDir, { recursive: true, force: true });
  });

  const stored = async (prefix: string): Promise<Array<{ id: string; provider: string; type: string; processed_at: Date | null }>> =>
    testDb().query(`SELECT id, provider, type, processed_at FROM webhook_events WHERE id LIKE :p ORDER BY id`,
      { replacements: { p: `${prefix}%` }, type: QueryTypes.SELECT });
  // Matched on the bytes: other tests quarantine bodies that are not UTF-8 at all (convert_from would fail on them).
  const quarantined = async (marker: string): Promise<Array<{ reason: string; body: string }>> =>
    (await testDb().query<{ reason: string; body: Buffer }>(`SELECT reason, body FROM webhook_quarantine WHERE position(convert_to(:m, 'UTF8') in body) > 0`,
      { replacements: { m: marker }, type: QueryTypes.SELECT })).map((r) => ({ reason: r.reason, body: r.body.toString('utf8') }));
  const metrics = async () => {
    const res = await fetch(`${base}/metrics`, { headers: { Authorization: `Bearer ${METRICS_TOKEN}` } });
    assert.equal(res.status, 200);
    return parsePromText(await res.text());
  };
  const admin = (p: string) => fetch(`${base}${p}`, { headers: { Authorization: `Bearer ${ADMIN_API_TOKEN}` } });
  /** Resolves once each of `ids` has been processed (from now on): one listener, however many ids. */
  function whenAllProcessed(ids: string[]): Promise<void> {
    const left = new Set(ids);
    return new Promise((resolve) => {
      const on = (id: string) => {
        left.delete(id);
        if (left.size > 0) return;
        stack.bridge.observer.off('event-processed', on);
        resolve();
      };
      stack.bridge.observer.on('event-processed', on);
    });
  }
  /** Posts `body` signed with the App Secret; the answer's status and body. */
  async function post(body: Json): Promise<{ status: number; json: unknown }> {
    const raw = JSON.stringify(body);
    const res = await fetch(url, { method: 'POST', body: raw, headers: { 'Content-Type': 'application/json', 'X-Hub-Signature-256': signMetaWebhook(stack.sim.secret, raw) } });
    return { status: res.status, json: await res.json() };
  }
  /** Posts `body` and resolves with the answer once each of `ids` (every delivery in it) was processed. */
  async function deliverAll(body: Json, ids = stack.sim.deliveryIds(body)): Promise<{ status: number; json: unknown }> {
    const processed = whenAllProcessed(ids);
    const res = await post(body);
    if (res.status === 200) await processed;
    return res;
  }

  describe('the subscription check and the paths', () => {
    it('GET with the verify token echoes hub.challenge (200, text); a wrong token is 403', async () => {
      const ok = await fetch(`${url}?hub.mode=subscribe&hub.verify_token=${stack.sim.verifyToken}&hub.challenge=123`);
      assert.equal(ok.status, 200);
      assert.equal(await ok.text(), '123');
      assert.match(ok.headers.get('content-type') ?? '', /^text\/plain/);
      const wrong = await fetch(`${url}?hub.mode=subscribe&hub.verify_token=not-the-token&hub.challenge=123`);
      assert.equal(wrong.status, 403);
      assert.doesNotMatch(await wrong.text(), /123/, 'the challenge is not echoed');
      await tap.waitFor(/webhook verification refused: wrong verify token/, 1000);
      const noMode = await fetch(`${url}?hub.verify_token=${stack.sim.verifyToken}&hub.challenge=123`);
      assert.equal(noMode.status, 403, 'hub.mode=subscribe is required');
    });

    it('another account name is 404: GET /webhooks/ycloud (no YCloud account here), POST /webhooks/nope', async () => {
      const get = await fetch(`${base}/webhooks/ycloud?hub.mode=subscribe&hub.verify_token=${stack.sim.verifyToken}&hub.challenge=123`);
      assert.equal(get.status, 404);
      const raw = JSON.stringify(envelope(entry([callsChange({ statuses: [callStatus(newWacid())] })])));
      for (const p of ['/webhooks/nope', '/webhooks/ycloud']) {
        const post = await fetch(`${base}${p}`, { method: 'POST', body: raw, headers: { 'Content-Type': 'application/json', 'X-Hub-Signature-256': signMetaWebhook(stack.sim.secret, raw) } });
        assert.equal(post.status, 404, p);
      }
    });
  });

  describe('X-Hub-Signature-256', () => {
    it('missing, wrong secret, truncated and one-digit-changed signatures are 401: nothing stored, the refusals logged', async () => {
      const wacid = newWacid();
      const raw = JSON.stringify(envelope(entry([callsChange({ statuses: [callStatus(wacid)] })])));
      const valid = signMetaWebhook(stack.sim.secret, raw);
      const flip = (i: number) => {
        const p = 'sha256='.length + i;
        return `${valid.slice(0, p)}${valid[p] === 'a' ? 'b' : 'a'}${valid.slice(p + 1)}`;
      };
      const cases: Array<[string, string | null]> = [
        ['missing', null],
        ['wrong secret', signMetaWebhook('not-the-app-secret', raw)],
        ['truncated', valid.slice(0, -1)],
        ['empty hex', 'sha256='],
        ['other algorithm', valid.replace('sha256=', 'sha1=')],
        ['last digit changed', flip(63)],
        ['middle digit changed', flip(32)],
        ['first digit changed', flip(0)],
      ];
      for (const [name, signature] of cases) {
        assert.equal(await stack.sim.deliver(null, { raw, signature }), 401, name);
      }
      assert.deepEqual(await stored(`meta:${wacid}`), [], 'nothing stored');
      await tap.waitFor(/^webhook refused$/, 1000);
      const lines = tap.lines();
      assert.ok(lines.some((l) => l.msg === 'webhook refused' && /missing X-Hub-Signature-256/.test(String(l.reason))), 'the missing header logged');
      assert.ok(lines.some((l) => l.msg === 'webhook refused' && /malformed X-Hub-Signature-256/.test(String(l.reason))), 'the truncated header logged');
      assert.ok(lines.filter((l) => l.msg === 'webhook refused: bad signature' && l.reason === 'signature mismatch').length >= 4, 'the forged ones logged');
      // The same bytes with their signature get in: the refusals were the signatures.
      const processed = whenAllProcessed([`meta:${wacid}:RINGING`]);
      assert.equal(await stack.sim.deliver(null, { raw, signature: valid }), 200);
      await processed;
      assert.deepEqual((await stored(`meta:${wacid}`)).map((r) => r.id), [`meta:${wacid}:RINGING`]);
    });
  });
  describe('batches', () => {
    it('several entries, changes, calls and statuses in one POST: each stored once as its own meta event; the whole batch redelivered is 200, all duplicates, nothing processed twice', async () => {
      const [a, b, c, d, e] = Array.from({ length: 5 }, () => newWacid());
      const body = envelope(
        entry([
          callsChange({ contacts: [{ wa_id: USER, profile: { name: 'Batch User' } }], calls: [terminate(a!), terminate(b!)] }),
          callsChange({ statuses: [callStatus(c!, 'RINGING'), callStatus(c!, 'ACCEPTED')] }),
        ]),
        entry([callsChange({ statuses: [callStatus(d!, 'REJECTED')], calls: [terminate(e!)] })], '288234691048809'),
      );
      const ids = stack.sim.deliveryIds(body);
      assert.equal(ids.length, 6);
      assert.equal(new Set(ids).size, 6, 'six distinct delivery ids (two entries, three changes, three calls and three statuses)');
      const before = await metrics();
      const first = await deliverAll(body);
      assert.equal(first.status, 200);
      assert.deepEqual(first.json, { ok: true, duplicate: false });
      const rowsAfter = await Promise.all(ids.map(async (id) => (await stored(id)).filter((r) => r.id === id)));
      for (const [i, r] of rowsAfter.entries()) {
        assert.equal(r.length, 1, `${ids[i]} stored once`);
        assert.equal(r[0]!.provider, 'meta');
        assert.ok(r[0]!.processed_at, `${ids[i]} processed`);
      }
      assert.deepEqual(rowsAfter.map((r) => r[0]!.type).sort(), ['calls.terminate', 'calls.terminate', 'calls.terminate', 'statuses.call', 'statuses.call', 'statuses.call']);

      // Meta redelivers the same bytes: answered, recognised as a whole, nothing acted on again.
      let again = 0;
      const counting = (id: string) => {
        if (ids.includes(id)) again++;
      };
      stack.bridge.observer.on('event-processed', counting);
      const second = await post(body);
      stack.bridge.observer.off('event-processed', counting);
      assert.equal(second.status, 200);
      assert.deepEqual(second.json, { ok: true, duplicate: true });
      assert.equal(again, 0, 'no event processed a second time');
      const rowsAgain = await Promise.all(ids.map(async (id) => (await stored(id)).filter((r) => r.id === id)));
      assert.deepEqual(rowsAgain.map((r) => r.length), ids.map(() => 1));
      assert.deepEqual(rowsAgain.map((r) => r[0]!.processed_at?.getTime()), rowsAfter.map((r) => r[0]!.processed_at?.getTime()), 'processed_at untouched');

      // Counted under Meta's own types (not "other").
      const after = await metrics();
      const moved = (labels: Record<string, string>) => sampleSum(after, 'wasb_webhook_events_total', labels) - sampleSum(before, 'wasb_webhook_events_total', labels);
      assert.equal(moved({ type: 'statuses.call', result: 'processed' }), 3);
      assert.equal(moved({ type: 'statuses.call', result: 'duplicate' }), 3);
      assert.equal(moved({ type: 'calls.terminate', result: 'processed' }), 3);
      assert.equal(moved({ type: 'calls.terminate', result: 'duplicate' }), 3);
      assert.equal(moved({ type: 'other' }), 0, 'no Meta type counted as other');
    });

    it('a batch larger than YCloud\'s 64 KiB is read (Meta batches: up to 512 KiB); a larger one is refused unread with 413', async () => {
      const wacid = newWacid();
      const send = (raw: string) => fetch(url, { method: 'POST', body: raw, headers: { 'Content-Type': 'application/json', 'X-Hub-Signature-256': signMetaWebhook(stack.sim.secret, raw) } });
      const body = envelope(entry([callsChange({ statuses: [callStatus(wacid)] })]));
      // Whitespace after the JSON is still JSON (and signed): the size is what is tested.
      const processed = whenAllProcessed([`meta:${wacid}:RINGING`]);
      const big = await send(JSON.stringify(body) + ' '.repeat(200 * 1024));
      assert.equal(big.status, 200, await big.text());
      await processed;
      const tooBig = await send(JSON.stringify(body) + ' '.repeat(600 * 1024));
      assert.equal(tooBig.status, 413);
      assert.match(((await tooBig.json()) as { error: string }).error, /larger than 524288 bytes/);
    });

    it(`more than ${MAX_DELIVERIES} changes in one envelope: ${MAX_DELIVERIES} delivered, the rest quarantined; the bridge answers and stays up`, async () => {
      const marker = `bound${crypto.randomBytes(4).toString('hex')}`;
      const wacids = Array.from({ length: MAX_DELIVERIES + 10 }, (_, i) => `wacid.${marker}.${String(i).padStart(2, '0')}`);
      const body = envelope(entry(wacids.map((w) => callsChange({ statuses: [callStatus(w)] }))));
      // Only the first 50 can be processed: the answer is awaited with those.
      const res = await deliverAll(body, stack.sim.deliveryIds(body).slice(0, MAX_DELIVERIES));
      assert.equal(res.status, 200, JSON.stringify(res.json));
      const rowsStored = await stored(`meta:wacid.${marker}.`);
      assert.equal(rowsStored.length, MAX_DELIVERIES);
      assert.deepEqual(rowsStored.map((r) => r.id), wacids.slice(0, MAX_DELIVERIES).map((w) => `meta:${w}:RINGING`), 'the first 50 in order');
      const q = await quarantined(marker);
      assert.equal(q.length, 10, 'the ten beyond the bound are quarantined');
      for (const r of q) assert.match(r.reason, /more than 50 events in one POST/);
      assert.deepEqual(q.map((r) => /wacid\.[a-z0-9]+\.(\d\d)/.exec(r.body)![1]).sort(), wacids.slice(MAX_DELIVERIES).map((w) => w.slice(-2)));
      await tap.waitFor(/part of a webhook refused: malformed \(quarantined\)/, 1000);
      assert.equal((await fetch(`${base}/healthz`)).status, 200);
    });

    it('one valid change beside an absurd one: the valid one is stored and processed, the absurd one quarantined with its reason', async () => {
      const good = newWacid();
      const marker = `absurd${crypto.randomBytes(4).toString('hex')}`;
      const body = envelope(entry([
        callsChange({ statuses: [callStatus(good)] }),
        callsChange({ statuses: [{ id: `wacid.${marker}`, type: 'call', status: 'RINGING'.repeat(8), timestamp: unix() }] }),
      ]));
      const processed = whenAllProcessed([`meta:${good}:RINGING`]);
      const res = await post(body);
      assert.equal(res.status, 200);
      await processed;
      const rowsStored = await stored(`meta:${good}`);
      assert.equal(rowsStored.length, 1);
      assert.ok(rowsStored[0]!.processed_at);
      assert.deepEqual(await stored(`meta:wacid.${marker}`), [], 'the absurd one is not an event');
      const q = await quarantined(marker);
      assert.equal(q.length, 1);
      assert.match(q[0]!.reason, /status/, q[0]!.reason);
    });
  });

  describe('account notices', () => {
    it('account_update (a restriction) and account_settings_update: stored once each (a redelivery does not double), counted, and shown on the number', async () => {
      const before = await metrics();
      const notices = async (field: string) => Number((await testDb().query<{ n: string }>(
        `SELECT count(*) AS n FROM account_notices WHERE provider = 'meta' AND field = :field AND received_at > :since`,
        { replacements: { field, since: startedAt }, type: QueryTypes.SELECT }))[0]!.n);
      const startedAt = new Date(Date.now() - 1000);
      const restricted = nextObserved(stack.bridge, 'event-processed', (_id, type) => type === 'account_update');
      assert.equal(await stack.sim.accountNotice('account_update', {
        event: 'ACCOUNT_RESTRICTION',
        detail: { restriction_info: [{ restriction_type: 'RESTRICTED_CALLING', expiration: Math.floor(Date.now() / 1000) + 7 * 86400 }] },
      }), 200);
      await restricted;
      assert.equal(await stack.sim.redeliver(), 200);
      const settings = nextObserved(stack.bridge, 'event-processed', (_id, type) => type === 'account_settings_update');
      assert.equal(await stack.sim.accountNotice('account_settings_update', { detail: { calling: { status: 'ENABLED', call_icon_visibility: 'DEFAULT' } } }), 200);
      await settings;
      assert.equal(await stack.sim.redeliver(), 200);
      assert.equal(await notices('account_update'), 1);
      assert.equal(await notices('account_settings_update'), 1);

      const after = await metrics();
      const moved = (labels: Record<string, string>) => sampleSum(after, 'wasb_account_notices_total', labels) - sampleSum(before, 'wasb_account_notices_total', labels);
      assert.equal(moved({ provider: 'meta', severity: 'restriction', event: 'ACCOUNT_RESTRICTION' }), 1);
      assert.equal(moved({ provider: 'meta', severity: 'info' }), 1);
      const counted = (type: string, result: string) => sampleSum(after, 'wasb_webhook_events_total', { type, result }) - sampleSum(before, 'wasb_webhook_events_total', { type, result });
      assert.equal(counted('account_update', 'processed'), 1);
      assert.equal(counted('account_update', 'duplicate'), 1);
      assert.equal(counted('account_settings_update', 'duplicate'), 1);

      const res = await admin('/api/numbers');
      assert.equal(res.status, 200);
      const { numbers } = await res.json() as { numbers: Array<{ phoneId: string | null; notices: Array<{ field: string; event: string; severity: string; phone_id: string | null }> }> };
      const mine = numbers.find((n) => n.phoneId === PHONE_ID);
      assert.ok(mine, JSON.stringify(numbers));
      const byField = new Map(mine.notices.map((n) => [n.field, n]));
      assert.equal(byField.get('account_update')?.event, 'ACCOUNT_RESTRICTION');
      assert.equal(byField.get('account_update')?.severity, 'restriction');
      assert.equal(byField.get('account_settings_update')?.phone_id, PHONE_ID);
    });
  });

  describe('files WhatsApp makes of a call (RECORDING=all)', () => {
    /** A call the simulator placed and the bridge refused (an unusable offer): its CDR row exists. */
    async function refusedCall(): Promise<{ wacid: string; callId: string }> {
      const user = { createOffer: async () => 'v=0\r\nthis is not sdp\r\n', applyAnswer: async () => undefined };
      const { wacid, status } = await stack.sim.userCalls(user, { from: `+${USER}` });
      assert.equal(status, 200);
      const callId = await whenEnded(stack.bridge, wacid);
      // The connect is stored whole, its SDP where the retention's scrub looks for Meta's (src/cdr/retention-records.ts SDP_PATHS).
      const [connect] = await testDb().query<{ sdp: string | null }>(
        `SELECT payload #>> '{item,session,sdp}' AS sdp FROM webhook_events WHERE type = 'calls.connect' AND wacid = :wacid`, { replacements: { wacid }, type: QueryTypes.SELECT });
      assert.equal(connect?.sdp, await user.createOffer());
      return { wacid, callId };
    }

    const cases = [
      { kind: 'recording', withUrl: true, ops: ['media_download'] },
      { kind: 'recording', withUrl: false, ops: ['media', 'media_download'] },
      { kind: 'transcription', withUrl: false, ops: ['media', 'media_download'] },
      { kind: 'voicemail', withUrl: false, ops: ['media', 'media_download'] },
    ] as const;
    for (const { kind, withUrl, ops } of cases) {
      const how = withUrl ? 'the URL the webhook carried downloaded' : 'GET /{mediaId} for its URL, then the download';
      it(`${kind} (${how}): stored on disk and in call_media, linked to the CDR, listed and served by the calls API; a redelivery fetches nothing`, async () => {
        const { wacid, callId } = await refusedCall();
        const body = Buffer.from(`${kind} bytes of ${wacid} ${crypto.randomBytes(8).toString('hex')}`);
        const mimeType = kind === 'transcription' ? 'text/plain' : 'audio/ogg';
        const processed = nextObserved(stack.bridge, 'event-processed', (id) => id === `meta:${wacid}` || id.startsWith(`meta:${wacid}:call_${kind}_available:`));
        const m = await stack.sim.mediaAvailable(wacid, kind, { body, mimeType, withUrl });
        assert.equal(m.status, 200);
        const [, type, ok] = await processed;
        assert.equal(type, kind === 'voicemail' ? 'messages.voicemail' : `calls.call_${kind}_available`);
        assert.equal(ok, true);
        assert.deepEqual(mediaRequests(m.mediaId), ops, 'what the bridge asked Graph for');
        assert.ok(stack.sim.requests.filter((r) => r.path.includes(m.mediaId)).every((r) => r.method === 'GET'));

        const [row] = await testDb().query<{ id: number; call_id: string | null; provider: string | null; path: string | null; bytes: string | null; sha256: string | null; error: string | null }>(
          `SELECT id::int AS id, call_id, provider, path, bytes, sha256, error FROM call_media WHERE wacid = :wacid AND media_id = :mediaId`,
          { replacements: { wacid, mediaId: m.mediaId }, type: QueryTypes.SELECT });
        assert.ok(row, 'a call_media row');
        assert.equal(row.error, null);
        assert.equal(row.call_id, callId, 'linked to the CDR');
        assert.equal(row.provider, 'meta');
        assert.equal(row.sha256, m.sha256);
        assert.ok(row.path && row.path.startsWith(recordingDir), `${row.path} under RECORDING_DIR`);
        assert.deepEqual(fs.readFileSync(row.path), body, 'the bytes on disk are the ones the simulator served');

        await assertMediaServed(admin, { callId, mediaId: m.mediaId, rowId: row.id, kind, body, contentType: kind === 'transcription' ? /^text\/plain/ : /^audio\/ogg/ });

        // A redelivered notice is a duplicate: not fetched again.
        assert.equal(await stack.sim.redeliver(), 200);
        assert.deepEqual(mediaRequests(m.mediaId), ops, 'nothing fetched again');
        assert.equal(Number((await testDb().query<{ n: string }>('SELECT count(*) AS n FROM call_media WHERE wacid = :wacid', { replacements: { wacid }, type: QueryTypes.SELECT }))[0]!.n), 1);
      });
    }

    /** The simulator's Graph requests for a media id (its lookup and its download). */
    function mediaRequests(mediaId: string): string[] {
      return stack.sim.requests.filter((r) => r.path.includes(mediaId)).map((r) => r.op);
    }
  });
});
