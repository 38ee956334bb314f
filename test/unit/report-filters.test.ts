import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { once } from 'node:events';
import { ConfigError, loadConfig } from '../../src/config';
import { isApiPath, isPublicRoute, reportingMayUse, tokenRole } from '../../src/http/auth';
import { firstAudioCodec, isCodecName } from '../../src/media/sdp';
import { ReportAdmission } from '../../src/reports/admission';
import { CALL_COLUMNS, CallRow, REPORTING_COLUMNS } from '../../src/reports/columns';
import { csvField, csvHeader, csvRows, neutraliseFormula } from '../../src/reports/csv';
import { CHUNK_BYTES, PagedCsvStream } from '../../src/reports/export-stream';
import {
  checkResolvedBound, encodeCursor, LIMIT_DEFAULT, parseCallId, parseCursor, parseFilter, parseListQuery, parseSummaryQuery, parseTime, QueryParams, ReportInputError,
} from '../../src/reports/filters';
import { listSql, summarySql } from '../../src/reports/sql';

/** Asserts that `fn` throws a ReportInputError naming `field`; returns its message. */
function refuses(fn: () => unknown, field: string): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ReportInputError, String(err));
    assert.equal(err.field, field, err.message);
    return err.message;
  }
  assert.fail(`no error for ${field}`);
}

const list = (q: QueryParams) => parseListQuery(q, 3.5);

describe('report filters: timestamps', () => {
  it('reads instants with Z or an offset, to the microsecond', () => {
    assert.deepEqual(parseTime('2026-11-24T08:00:00Z', 'from'), { kind: 'instant', iso: '2026-11-24T08:00:00.000000Z', micros: Date.parse('2026-11-24T08:00:00Z') * 1000 });
    for (const v of ['2026-11-24T15:00:00+07:00', '2026-11-24T15:00+0700', '2026-11-24T15:00:00+07']) {
      assert.equal((parseTime(v, 'from') as { iso: string }).iso, '2026-11-24T08:00:00.000000Z', v);
    }
    assert.equal((parseTime('2026-11-24T08:00:00.123456-01:30', 'to') as { iso: string }).iso, '2026-11-24T09:30:00.123456Z');
    assert.equal((parseTime('2026-11-24T08:00:00.5Z', 'to') as { micros: number }).micros % 1e6, 500000);
  });

  it('a date, or a time without offset, is local (read in the report time zone)', () => {
    assert.deepEqual(parseTime('2026-11-24', 'from'), { kind: 'local', iso: '2026-11-24T00:00:00.000000' });
    assert.deepEqual(parseTime('2026-11-24T08:30', 'from'), { kind: 'local', iso: '2026-11-24T08:30:00.000000' });
  });

  it('refuses what is no date, or no such date, naming the field', () => {
    for (const v of ['yesterday', '2026-13-01', '2026-02-29', '2026-11-24T24:00:00Z', '2026-11-24T08:60Z', '24/11/2026', '2026-11-24T08:00:00+25:00', '2026-11-24Z', '1570669200']) {
      refuses(() => parseTime(v, 'to'), 'to');
    }
    assert.match(refuses(() => parseTime('2026-11-24T15:00:00 07:00', 'from'), 'from'), /%2B/);
  });
});

describe('report filters: list parameters', () => {
  it('has defaults: no conditions, 100 calls, no cursor', () => {
    const r = list({});
    assert.deepEqual(r.page, { limit: LIMIT_DEFAULT, cursor: null });
    assert.equal(r.format, null);
    assert.deepEqual(r.filter, {
      from: null, to: null, direction: null, outcomes: null, customer: null, business: null, agent: null, pbxTarget: null, state: null, mosBelow: null, recorded: false,
      userId: null, username: null, profileName: null, provider: null, numberName: null, ctaPayload: null,
    });
  });

  it('reads every filter', () => {
    const r = list({
      from: '2026-11-01', to: '2026-11-02T00:00:00+07:00', direction: 'inbound', outcome: 'busy,no_answer,busy', customer: '+6281361905133',
      business: '+6283138205150', agent: 'agent101', pbx_target: 'sip:pbx:5060', state: 'ringing', mos_below: '3', recorded: 'true', limit: '1000', format: 'csv',
    });
    assert.deepEqual(r.filter, {
      from: '2026-11-01T00:00:00.000000Z', to: '2026-11-01T17:00:00.000000Z', direction: 'inbound', outcomes: ['busy', 'no_answer'], customer: '+6281361905133',
      business: '+6283138205150', agent: 'agent101', pbxTarget: 'sip:pbx:5060', state: 'ringing', mosBelow: 3, recorded: true,
      userId: null, username: null, profileName: null, provider: null, numberName: null, ctaPayload: null,
    });
    assert.equal(r.page.limit, 1000);
    assert.equal(r.format, 'csv');
  });

  it('poor_quality=true is mos below the threshold, or below mos_below when that is lower', () => {
    assert.equal(list({ poor_quality: 'true' }).filter.mosBelow, 3.5);
    assert.equal(list({ poor_quality: 'true', mos_below: '2.1' }).filter.mosBelow, 2.1);
    assert.equal(list({ poor_quality: 'true', mos_below: '4.4' }).filter.mosBelow, 3.5);
    assert.equal(parseFilter({ poor_quality: 'true' }, 4).mosBelow, 4);
  });

  it('an empty value counts as absent', () => {
    assert.equal(list({ direction: '', limit: '' }).filter.direction, null);
  });

  it('refuses each bad value naming its field', () => {
    const bad: Array<[QueryParams, string]> = [
      [{ direction: 'both' }, 'direction'], [{ outcome: 'answered,lost' }, 'outcome'], [{ outcome: ',' }, 'outcome'],
      [{ customer: '6281361905133' }, 'customer'], [{ business: '+0281361905133' }, 'business'], [{ customer: '+62813' }, 'customer'],
      [{ state: 'gone' }, 'state'], [{ mos_below: '5.5' }, 'mos_below'], [{ mos_below: '-1' }, 'mos_below'], [{ mos_below: '3e0' }, 'mos_below'],
      [{ poor_quality: 'false' }, 'poor_quality'], [{ recorded: 'yes' }, 'recorded'], [{ limit: '0' }, 'limit'], [{ limit: '1001' }, 'limit'],
      [{ limit: '1.5' }, 'limit'], [{ limit: '-3' }, 'limit'], [{ format: 'pdf' }, 'format'], [{ agent: 'x'.repeat(256) }, 'agent'],
      [{ from: '2026-11-02', to: '2026-11-01' }, 'to'], [{ from: '2026-11-01T10:00:00Z', to: '2026-11-01T17:00:00+07:00' }, 'to'],
      [{ page: '2' }, 'page'], [{ direction: ['inbound', 'outbound'] }, 'direction'], [{ cursor: 'abc' }, 'cursor'],
    ];
    for (const [q, field] of bad) refuses(() => list(q), field);
  });

  it('names the outcomes and the %2B problem in its messages', () => {
    assert.match(refuses(() => list({ outcome: 'lost' }), 'outcome'), /answered, busy, no_answer, rejected, unreachable, caller_hangup, failed/);
    assert.match(refuses(() => list({ customer: ' 6281361905133' }), 'customer'), /%2B/);
    assert.match(refuses(() => list({ sort: 'x' }), 'sort'), /unknown query parameter "sort"/);
  });
});

describe('report filters: issue 19 (providers, numbers, WhatsApp users known by BSUID)', () => {
  it('reads the user, provider, number and CTA filters; customer takes a BSUID too', () => {
    const f = list({
      customer: 'US.13491208655302741918', user_id: 'BR.ENT.abc123', username: '@Ana_Silva', profile_name: 'Ana 100%_\\', provider: 'meta-eu',
      number_name: 'support-id', cta_payload: 'campaign=spring',
    }).filter;
    assert.equal(f.customer, 'US.13491208655302741918');
    assert.equal(f.userId, 'BR.ENT.abc123');
    assert.equal(f.username, 'Ana_Silva', 'the @ is dropped');
    assert.equal(f.profileName, 'Ana 100%_\\');
    assert.deepEqual([f.provider, f.numberName, f.ctaPayload], ['meta-eu', 'support-id', 'campaign=spring']);
  });

  it('refuses a bad user id, username or an overlong value, naming the field', () => {
    for (const [q, field] of [
      [{ user_id: '+6281361905133' }, 'user_id'], [{ user_id: 'us.123' }, 'user_id'], [{ user_id: `US.${'1'.repeat(129)}` }, 'user_id'],
      [{ username: '@' }, 'username'], [{ username: 'two words' }, 'username'], [{ username: 'x'.repeat(101) }, 'username'],
      [{ profile_name: 'x'.repeat(101) }, 'profile_name'], [{ provider: 'p'.repeat(65) }, 'provider'], [{ number_name: 'n'.repeat(65) }, 'number_name'],
      [{ cta_payload: 'c'.repeat(513) }, 'cta_payload'], [{ customer: 'US-123' }, 'customer'],
    ] as Array<[QueryParams, string]>) refuses(() => list(q), field);
  });

  it('the SQL binds them: username case-insensitive, profile_name a substring with LIKE wildcards escaped', () => {
    const f = list({ user_id: 'US.1', username: 'Ana', profile_name: 'a%b_c\\d', provider: 'meta', number_name: 'sales', cta_payload: 'x' }).filter;
    const q = listSql(f, null, 10);
    assert.match(q.sql, /user_id = \$\d+/);
    assert.match(q.sql, /lower\(username\) = lower\(\$\d+\)/);
    assert.match(q.sql, /profile_name ILIKE \$\d+/);
    assert.ok(q.bind.includes('%a\\%b\\_c\\\\d%'), JSON.stringify(q.bind));
    for (const v of ['US.1', 'Ana', 'meta', 'sales', 'x']) assert.ok(q.bind.includes(v), v);
  });
});

describe('report filters: cursor', () => {
  const id = crypto.randomUUID();
  it('round-trips and is opaque', () => {
    const c = { offeredAt: '2026-11-24T08:00:00.123456Z', id };
    const s = encodeCursor(c);
    assert.match(s, /^[A-Za-z0-9_-]+$/);
    assert.deepEqual(parseCursor(s), c);
    assert.deepEqual(list({ cursor: s }).page.cursor, c);
  });
  it('refuses a cursor it did not issue', () => {
    const enc = (t: string) => Buffer.from(t).toString('base64url');
    for (const v of [enc(`2026-11-24T08:00:00Z|${id}`), enc('2026-11-24T08:00:00.123456Z|nope'), enc(`2026-11-24T08:00:00.123456Z|${id}|x`),
      enc(`2026-02-30T08:00:00.123456Z|${id}`), 'a+b/c=', '', 'x'.repeat(200)]) {
      if (v === '') continue;
      refuses(() => parseCursor(v), 'cursor');
    }
  });
});

describe('report filters: summary parameters and call ids', () => {
  it('needs from and to; group_by defaults to day, tz to UTC', () => {
    refuses(() => parseSummaryQuery({}), 'from');
    refuses(() => parseSummaryQuery({ from: '2026-11-01' }), 'to');
    const s = parseSummaryQuery({ from: '2026-11-01', to: '2026-11-02' });
    assert.equal(s.groupBy, 'day');
    assert.equal(s.tz, 'UTC');
    assert.deepEqual(s.from, { kind: 'local', iso: '2026-11-01T00:00:00.000000' });
  });
  it('refuses a bad group_by, tz, direction, a reversed or too long range, and list-only parameters', () => {
    const base = { from: '2026-11-01T00:00:00Z', to: '2026-11-02T00:00:00Z' };
    refuses(() => parseSummaryQuery({ ...base, group_by: 'week' }), 'group_by');
    refuses(() => parseSummaryQuery({ ...base, tz: 'Asia/Jakarta; DROP TABLE calls' }), 'tz');
    refuses(() => parseSummaryQuery({ ...base, direction: 'up' }), 'direction');
    refuses(() => parseSummaryQuery({ from: base.to, to: base.from }), 'to');
    refuses(() => parseSummaryQuery({ from: '2025-01-01T00:00:00Z', to: '2026-02-05T00:00:01Z' }), 'to');
    refuses(() => parseSummaryQuery({ ...base, outcome: 'busy' }), 'outcome');
    assert.equal(parseSummaryQuery({ from: '2025-01-01T00:00:00Z', to: '2026-02-05T00:00:00Z' }).groupBy, 'day', '400 days exactly is allowed');
  });
  it('call ids are UUIDs', () => {
    const id = crypto.randomUUID();
    assert.equal(parseCallId(id.toUpperCase()), id);
    refuses(() => parseCallId('live'), 'id');
  });
});

describe('report SQL', () => {
  it('puts every value in a bind parameter, none in the text', () => {
    const nasty = "x'; DROP TABLE calls; --";
    const f = list({ agent: nasty, pbx_target: nasty, outcome: 'busy,failed', from: '2026-11-01', mos_below: '2' }).filter;
    const q = listSql(f, { offeredAt: '2026-11-24T08:00:00.123456Z', id: crypto.randomUUID() }, 101);
    assert.ok(!q.sql.includes('DROP'));
    assert.ok(q.bind.includes(nasty));
    assert.deepEqual(q.bind.filter((v) => Array.isArray(v)), [['busy', 'failed']]);
    assert.match(q.sql, /ORDER BY offered_at DESC, id DESC/);
    assert.equal((q.sql.match(/\$\d+/g) ?? []).length >= q.bind.length, true);
    const s = summarySql({ from: '2026-11-01T00:00:00Z', to: '2026-11-02T00:00:00Z', groupBy: 'day', tz: "UTC'; --", direction: 'inbound' });
    assert.ok(!s.sql.includes("UTC'"));
    assert.deepEqual(s.bind, ['2026-11-01T00:00:00Z', '2026-11-02T00:00:00Z', 'inbound', "UTC'; --"]);
  });
});

describe('report CSV', () => {
  it('quotes only what needs it, doubling quotes (RFC 4180)', () => {
    assert.equal(csvField('plain'), 'plain');
    assert.equal(csvField('a,b'), '"a,b"');
    assert.equal(csvField('say "hi"'), '"say ""hi"""');
    assert.equal(csvField('two\nlines'), '"two\nlines"');
    assert.equal(csvField('cr\r'), '"cr\r"');
    assert.equal(csvField(''), '');
  });
  it('a header of the fixed columns and rows with ISO timestamps, numbers and empty NULLs, CRLF ended', () => {
    assert.equal(csvHeader(), `${CALL_COLUMNS.map((c) => c.name).join(',')}\r\n`);
    const row = Object.fromEntries(CALL_COLUMNS.map((c) => [c.name, null])) as unknown as CallRow;
    Object.assign(row, { id: 'x', offered_at: new Date('2026-11-24T08:00:00.5Z'), talk_seconds: 12.5, agent: 'a,"b"' });
    const line = csvRows([row]);
    assert.ok(line.endsWith('\r\n'));
    const fields = line.slice(0, -2);
    assert.ok(fields.startsWith('x,'));
    assert.ok(fields.includes(',2026-11-24T08:00:00.500Z,'));
    assert.ok(fields.includes(',12.5,'));
    assert.ok(fields.includes(',"a,""b""",'));
  });
});

describe('API auth rules', () => {
  it('everything under /api, in any spelling, is guarded; only GET /api/openapi.json is public', () => {
    for (const p of ['/api', '/api/', '/api/calls', '/API/settings', '/Api/x']) assert.equal(isApiPath(p), true, p);
    for (const p of ['/apis', '/webhooks/ycloud', '/metrics', '/healthz']) assert.equal(isApiPath(p), false, p);
    assert.equal(isPublicRoute('GET', '/api/openapi.json'), true);
    assert.equal(isPublicRoute('POST', '/api/openapi.json'), false);
    assert.equal(isPublicRoute('GET', '/api/openapi.jsonx'), false);
  });
  it('reporting tokens may GET calls, one call, its recording, live calls and reports, nothing else', () => {
    const id = crypto.randomUUID();
    for (const p of ['/api/calls', '/api/calls/', `/api/calls/${id}`, `/api/calls/${id}/recording`, `/api/calls/${id}/media/7`, '/api/calls/live', '/api/reports/summary', '/API/Calls']) {
      assert.equal(reportingMayUse('GET', p), true, p);
      assert.equal(reportingMayUse('HEAD', p), true, p);
    }
    for (const [m, p] of [['POST', `/api/calls/${id}/hangup`], ['GET', `/api/calls/${id}/hangup`], ['GET', '/api/settings'], ['POST', '/api/settings'],
      ['GET', '/api/permissions'], ['POST', '/api/calls'], ['DELETE', `/api/calls/${id}`], ['GET', '/api/reports'], ['GET', '/api/reports/a/b'],
      ['GET', `/api/calls/${id}/media`], ['GET', `/api/calls/${id}/media/7/x`], ['DELETE', `/api/calls/${id}/media/7`]]) {
      assert.equal(reportingMayUse(m!, p!), false, `${m} ${p}`);
    }
  });
  it('tells the admin token from reporting tokens and from anything else', () => {
    const h = (s: string) => crypto.createHash('sha256').update(s).digest();
    assert.equal(tokenRole('admin-0123456789abcdef', h('admin-0123456789abcdef'), [h('r1-0123456789abcdef')]), 'admin');
    assert.equal(tokenRole('r1-0123456789abcdef', h('admin-0123456789abcdef'), [h('r0-0123456789abcdef'), h('r1-0123456789abcdef')]), 'reporting');
    assert.equal(tokenRole('r1-0123456789abcdef', null, [h('r1-0123456789abcdef')]), 'reporting');
    assert.equal(tokenRole('admin-0123456789abcdeF', h('admin-0123456789abcdef'), []), null);
    assert.equal(tokenRole('', null, []), null);
  });
});

describe('issue 17: CSV formulas and codec names', () => {
  it('a text cell starting with = + - @, a tab or a CR gets a single quote; plain numbers and other text stay', () => {
    for (const [v, out] of [
      ['=HYPERLINK("http://x","y")', `'=HYPERLINK("http://x","y")`], ['+cmd', "'+cmd"], ['-2+3+cmd|calc', "'-2+3+cmd|calc"], ['@SUM(A1)', "'@SUM(A1)"],
      ['\t=1', "'\t=1"], ['\r=1', "'\r=1"], ['+6281361905133', '+6281361905133'], ['-12.5', '-12.5'], ['agent101', 'agent101'], ['a=b', 'a=b'], ['', ''],
    ] as const) assert.equal(neutraliseFormula(v), out, JSON.stringify(v));
  });
  it('csvRows neutralises text columns only, then quotes as RFC 4180 says', () => {
    const row = Object.fromEntries(CALL_COLUMNS.map((c) => [c.name, null])) as unknown as CallRow;
    Object.assign(row, { id: 'x', agent: '=1+1', error: '\r=cmd', customer_number: '+15550100001', talk_seconds: -1 });
    const line = csvRows([row], REPORTING_COLUMNS);
    assert.ok(line.includes(",'=1+1,"));
    assert.ok(line.includes(`,"'\r=cmd",`));
    assert.ok(line.includes(',+15550100001,'));
    assert.ok(line.includes(',-1,'));
    assert.equal(line.split(',').length, REPORTING_COLUMNS.length);
  });
  it('firstAudioCodec takes name/rate[/channels] only; anything else in an rtpmap is left out', () => {
    const sdp = (rtpmap: string) => `v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 ${rtpmap}\r\n`;
    for (const ok of ['opus/48000/2', 'PCMU/8000', 'G722/8000', 'telephone-event/8000', 'x-custom.v2/16000/1']) assert.equal(firstAudioCodec(sdp(ok)), ok, ok);
    for (const bad of ['=HYPERLINK("http://x","y")/8000', '=1+1', '@SUM(1)/8000', '+opus/48000', 'opus', 'opus/48000/2/1', 'opus/abc', 'op us/8000', `${'a'.repeat(40)}/8000`]) {
      assert.equal(firstAudioCodec(sdp(bad)), null, bad);
      assert.equal(isCodecName(bad), false, bad);
    }
  });
});

describe('issue 17: far-future bounds resolved in a time zone', () => {
  it('a bound outside the years 1000 to 9999 in UTC is a 400 naming it', () => {
    const tenThousand = Date.UTC(10000, 0, 1) * 1000;
    assert.match(refuses(() => checkResolvedBound(tenThousand, 'to', 'Etc/GMT+12'), 'to'), /Etc\/GMT\+12 falls outside the years 1000 to 9999/);
    refuses(() => checkResolvedBound(tenThousand + 11 * 3600e6, 'to', 'Etc/GMT+12'), 'to');
    refuses(() => checkResolvedBound(Date.UTC(1000, 0, 1) * 1000 - 1000, 'from', 'Pacific/Kiritimati'), 'from');
    refuses(() => checkResolvedBound(NaN, 'from', 'UTC'), 'from');
    checkResolvedBound(tenThousand - 1000, 'to', 'UTC');
    checkResolvedBound(Date.UTC(1000, 0, 1) * 1000, 'from', 'UTC');
  });
});

describe('issue 17: reporting admission', () => {
  it('admits up to the per-token and total limits, refuses beyond (never queues), and frees a place once released', () => {
    const a = new ReportAdmission({ total: 3, perToken: 2 });
    const t1 = [a.admit('one'), a.admit('one')];
    assert.ok(t1.every((x) => x.ok));
    assert.deepEqual(a.admit('one'), { ok: false, limit: 'per_token', inUse: 2, max: 2 });
    const t2 = a.admit('two');
    assert.ok(t2.ok);
    assert.deepEqual(a.admit('three'), { ok: false, limit: 'total', inUse: 3, max: 3 });
    assert.equal(a.inUse(), 3);
    if (t2.ok) {
      t2.release();
      t2.release(); // twice is once
    }
    assert.equal(a.inUse(), 2);
    assert.equal(a.inUse('two'), 0);
    assert.ok(a.admit('three').ok);
    assert.deepEqual(a.refused, { per_token: 1, total: 1 });
  });
});

describe('issue 17: a paged CSV stream', () => {
  it('fetches a page only when its reader asks, in chunks of at most 16 KiB', async () => {
    let pages = 0;
    const page = 'x'.repeat(40 * 1024);
    const s = new PagedCsvStream('h\r\n', async () => ({ text: page, done: ++pages === 3 }));
    const sizes: number[] = [];
    s.on('data', (c: Buffer) => sizes.push(c.length));
    await once(s, 'end');
    assert.equal(pages, 3);
    assert.ok(sizes.every((n) => n <= CHUNK_BYTES), String(sizes));
    assert.equal(sizes.reduce((a, b) => a + b, 0), 3 + 3 * page.length);
  });
  it('a reader that takes nothing is ended after stallMs, holding at most one page; a slow reader is not', async () => {
    let pages = 0;
    const page = 'y'.repeat(40 * 1024);
    const stalled = new PagedCsvStream('', async () => (pages++, { text: page, done: false }), { stallMs: 100, onStall: () => undefined });
    stalled.pause();
    stalled.read(0); // starts the first fetch, then nobody reads
    await once(stalled, 'close');
    assert.equal(stalled.stalled, true);
    assert.equal(pages, 1, 'no page fetched while the reader took nothing');

    let n = 0;
    const small = 'z'.repeat(10 * 1024);
    const slow = new PagedCsvStream('', async () => ({ text: small, done: ++n === 4 }), { stallMs: 100 });
    let bytes = 0;
    slow.on('readable', () => {
      // Takes one chunk every 60 ms: slower than the stream, faster than the stall bound.
      const take = () => {
        const c = slow.read(4096) as Buffer | null;
        if (c) bytes += c.length;
      };
      take();
    });
    const ticker = setInterval(() => slow.emit('readable'), 60);
    await once(slow, 'end').finally(() => clearInterval(ticker));
    assert.equal(slow.stalled, false);
    assert.equal(bytes, 4 * small.length);
  });
});

describe('issue 17: reporting settings', () => {
  const env = {
    DATABASE_URL: 'postgres://u@h/db', YCLOUD_API_KEY: 'k', YCLOUD_WEBHOOK_SECRET: 's', DRACHTIO_SECRET: 'cymru',
    RTPENGINE_NG: '127.0.0.1:22222', PBX_TARGET: 'sip:pbx.example.com:5060', PUBLIC_IP: '203.0.113.7',
  };
  it('defaults: a pool of 3 with a 15 s statement bound, 6 requests at once and 3 per token, exports ended after 30 s unread', () => {
    assert.deepEqual(loadConfig(env).reporting, { poolMax: 3, statementTimeoutMs: 15000, maxConcurrent: 6, maxConcurrentPerToken: 3, exportStallMs: 30000 });
  });
  it('refuses a per-token limit above the total, and values out of range, naming them', () => {
    assert.throws(() => loadConfig({ ...env, REPORTING_MAX_CONCURRENT: '2', REPORTING_MAX_CONCURRENT_PER_TOKEN: '3' }), (e: Error) => e instanceof ConfigError && /REPORTING_MAX_CONCURRENT_PER_TOKEN must not exceed/.test(e.message));
    for (const k of ['REPORTING_DB_POOL_MAX', 'REPORTING_STATEMENT_TIMEOUT_MS', 'REPORTING_MAX_CONCURRENT', 'REPORTING_EXPORT_STALL_MS']) {
      assert.throws(() => loadConfig({ ...env, [k]: '0' }), (e: Error) => e instanceof ConfigError && e.message.includes(k), k);
    }
  });
});
