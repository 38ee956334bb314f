import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Sequelize } from 'sequelize';
import { connectDatabase } from '../src/cdr/db';
import { MediaRecords } from '../src/cdr/media-records';
import { CdrStore } from '../src/cdr/store';
import { createLogger } from '../src/log';
import { MediaDownload, MediaFetcher, MediaNotice } from '../src/recording/media-fetcher';
import { infra } from './harness/infra';

/**
 * The files WhatsApp makes of a call, fetched from a real HTTP server on loopback (standing in for the
 * provider's short-lived media URLs) into a real RECORDING_DIR, recorded in the real call_media table.
 */
describe('MediaFetcher: recordings, transcriptions and voicemails WhatsApp made of a call', function () {
  this.timeout(30000);
  const log = createLogger('silent');
  let db: Sequelize;
  let records: MediaRecords;
  let cdr: CdrStore;
  let dir: string;
  let server: http.Server;
  let base: string;
  /** What the server answers per path: a queue of status codes before the body, and the body. */
  const files = new Map<string, { failFirst: number; body: Buffer; type: string }>();
  const requests = new Map<string, number>();

  before(async () => {
    db = connectDatabase(infra.databaseUrl, 10000);
    records = new MediaRecords(db);
    cdr = new CdrStore(db);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-media-rec-'));
    server = http.createServer((req, res) => {
      const p = req.url ?? '';
      requests.set(p, (requests.get(p) ?? 0) + 1);
      const f = files.get(p);
      if (!f) return res.writeHead(404).end();
      if (f.failFirst > 0) {
        f.failFirst--;
        return res.writeHead(503).end('try later');
      }
      res.writeHead(200, { 'Content-Type': f.type }).end(f.body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** fetchMedia as an adapter does it: a bounded GET of the URL, an error for anything but 200. */
  const download: MediaDownload = {
    provider: 'meta-test',
    fetch: async ({ url }) => {
      const res = await fetch(url!, { signal: AbortSignal.timeout(2000) });
      if (res.status !== 200) throw new Error(`media download: HTTP ${res.status}`);
      return { body: Buffer.from(await res.arrayBuffer()), mimeType: res.headers.get('content-type') ?? '' };
    },
  };
  /** A fetcher whose handle() downloads with `download` unless told otherwise (null: no provider for the number). */
  const fetcher = (o: Partial<ConstructorParameters<typeof MediaFetcher>[0]> & { via?: MediaDownload | null } = {}) => {
    const { via = download, ...opts } = o;
    const f = new MediaFetcher({ records, dir, log, firstBackoffMs: 20, ...opts });
    return { handle: (n: MediaNotice) => f.handle(n, via), sweep: (days: number) => f.sweep(days) };
  };

  function serve(body: Buffer, o: { failFirst?: number; type?: string } = {}): string {
    const p = `/media/${crypto.randomUUID()}`;
    files.set(p, { failFirst: o.failFirst ?? 0, body, type: o.type ?? 'audio/ogg' });
    return p;
  }
  const sha = (b: Buffer, enc: 'hex' | 'base64' = 'hex') => crypto.createHash('sha256').update(b).digest(enc);
  const notice = (p: string, o: Partial<MediaNotice> = {}): MediaNotice => ({
    wacid: `wacid.${crypto.randomUUID()}`, phoneId: '1234567890', media: 'recording', mediaId: crypto.randomUUID(), url: `${base}${p}`,
    mimeType: 'audio/ogg', sha256: null, ...o,
  });

  it('stores the file (0640, under media/), completes its row and links it to the CDR of its wacid', async () => {
    const body = crypto.randomBytes(20000);
    const n = notice(serve(body), { sha256: sha(body) });
    const callId = crypto.randomUUID();
    await cdr.createCall(callId, { direction: 'inbound', state: 'ended', offered_at: new Date(), wacid: n.wacid });
    const out = await fetcher().handle(n);
    assert.equal(out.result, 'stored', JSON.stringify(out));
    if (out.result !== 'stored') return;
    assert.ok(out.path.startsWith(path.join(dir, 'media') + path.sep), out.path);
    assert.match(path.basename(out.path), new RegExp(`^${out.id}-recording\\.ogg$`));
    assert.deepEqual(fs.readFileSync(out.path), body);
    assert.equal(fs.statSync(out.path).mode & 0o777, 0o640);
    assert.equal(fs.readdirSync(path.dirname(out.path)).filter((f) => f.endsWith('.part')).length, 0, 'no temporary file left');
    const row = (await records.get(out.id))!;
    assert.equal(row.call_id, callId);
    assert.equal(row.provider, 'meta-test');
    assert.equal(row.bytes, 20000);
    assert.equal(row.mime_type, 'audio/ogg');
    assert.equal(row.attempts, 1);
    assert.equal(row.error, null);
    assert.ok(row.fetched_at);
    assert.deepEqual((await records.forCall(callId)).map((r) => r.id), [out.id]);
  });

  it('tries again within its window when the download fails, and takes a base64 SHA-256', async () => {
    const body = crypto.randomBytes(3000);
    const p = serve(body, { failFirst: 2, type: 'audio/mpeg' });
    const out = await fetcher().handle(notice(p, { sha256: sha(body, 'base64'), media: 'voicemail' }));
    assert.equal(out.result, 'stored', JSON.stringify(out));
    assert.equal(requests.get(p), 3);
    if (out.result === 'stored') {
      assert.equal(out.attempts, 3);
      assert.match(out.path, /-voicemail\.mp3$/);
      assert.equal((await records.get(out.id))!.attempts, 3);
    }
  });

  it('gives up after its attempts and keeps the error on the row; never throws', async () => {
    const p = serve(Buffer.from('x'), { failFirst: 100 });
    const out = await fetcher({ attempts: 3 }).handle(notice(p));
    assert.equal(out.result, 'failed');
    assert.equal(requests.get(p), 3);
    if (out.result !== 'failed') return;
    const row = (await records.get(out.id!))!;
    assert.match(row.error ?? '', /HTTP 503/);
    assert.equal(row.attempts, 3);
    assert.equal(row.path, null);
  });

  it('starts no attempt past its window (the provider URLs are short-lived)', async () => {
    const p = serve(Buffer.from('x'), { failFirst: 100 });
    const out = await fetcher({ attempts: 50, firstBackoffMs: 100, windowMs: 350 }).handle(notice(p));
    assert.equal(out.result, 'failed');
    // Attempts at 0, 100, 300 ms; the next would wait 400 ms, past the window.
    assert.equal(requests.get(p), 3);
  });

  it('refuses a file whose SHA-256 is not the one WhatsApp gave, at once, writing nothing', async () => {
    const p = serve(crypto.randomBytes(100));
    const before = fs.existsSync(path.join(dir, 'media')) ? fs.readdirSync(path.join(dir, 'media'), { recursive: true }).length : 0;
    const out = await fetcher().handle(notice(p, { sha256: sha(Buffer.from('something else')) }));
    assert.equal(out.result, 'failed');
    assert.equal(requests.get(p), 1, 'a wrong file is not fetched again');
    if (out.result === 'failed') assert.match(out.error, /SHA-256/);
    const after = fs.existsSync(path.join(dir, 'media')) ? fs.readdirSync(path.join(dir, 'media'), { recursive: true }).length : 0;
    assert.equal(after, before);
    assert.match((await records.get((out as { id: number }).id))!.error ?? '', /SHA-256/);
  });

  it('a redelivered notice of a file on disk is not fetched again; a failed one is', async () => {
    const body = crypto.randomBytes(500);
    const p = serve(body, { type: 'text/plain' });
    const n = notice(p, { media: 'transcription', mimeType: 'text/plain' });
    const first = await fetcher().handle(n);
    assert.equal(first.result, 'stored');
    const again = await fetcher().handle(n);
    assert.deepEqual(again, { result: 'already_stored', id: (first as { id: number }).id });
    assert.equal(requests.get(p), 1);

    const q = serve(body, { failFirst: 1 });
    const m = notice(q);
    assert.equal((await fetcher({ attempts: 1 }).handle(m)).result, 'failed');
    const retried = await fetcher({ attempts: 1 }).handle(m);
    assert.equal(retried.result, 'stored');
    const row = (await records.get((retried as { id: number }).id))!;
    assert.equal(row.error, null, 'the earlier error is cleared');
    assert.equal(row.attempts, 2);
  });

  it('a file that arrives before its CDR is listed with the call and linked once the CDR is there', async () => {
    const body = crypto.randomBytes(64);
    const n = notice(serve(body));
    const out = await fetcher().handle(n);
    assert.equal(out.result, 'stored');
    const id = (out as { id: number }).id;
    assert.equal((await records.get(id))!.call_id, null);
    const callId = crypto.randomUUID();
    await cdr.createCall(callId, { direction: 'outbound', state: 'ended', offered_at: new Date(), wacid: n.wacid });
    assert.deepEqual((await records.forCall(callId)).map((r) => r.id), [id], 'found by wacid before it is linked');
    assert.equal(await records.linkByWacid(n.wacid), 1);
    assert.equal((await records.get(id))!.call_id, callId);
  });

  it('no provider for the number: the notice is recorded with the reason, nothing fetched', async () => {
    const p = serve(Buffer.from('x'));
    const out = await fetcher({ via: null }).handle(notice(p, { phoneId: '999' }));
    assert.equal(out.result, 'failed');
    assert.equal(requests.get(p), undefined);
    if (out.result === 'failed') assert.match(out.error, /no provider account serves the number \(phone id 999\)/);
  });

  it('sweep deletes files past the retention and marks their rows', async () => {
    const out = await fetcher().handle(notice(serve(crypto.randomBytes(10))));
    const id = (out as { id: number; path: string }).id;
    const file = (out as { path: string }).path;
    await db.query("UPDATE call_media SET fetched_at = now() - interval '40 days' WHERE id = :id", { replacements: { id } });
    assert.ok((await fetcher().sweep(30)) >= 1);
    assert.equal(fs.existsSync(file), false);
    assert.ok((await records.get(id))!.deleted_at);
    assert.equal(await fetcher().sweep(0), 0, '0 days keeps the files');
  });
});
