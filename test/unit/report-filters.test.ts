import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { isApiPath, isPublicRoute, reportingMayUse, tokenRole } from '../../src/http/auth';
import { CALL_COLUMNS, CallRow } from '../../src/reports/columns';
import { csvField, csvHeader, csvRows } from '../../src/reports/csv';
import {
  encodeCursor, LIMIT_DEFAULT, parseCallId, parseCursor, parseFilter, parseListQuery, parseSummaryQuery, parseTime, QueryParams, ReportInputError,
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
    for (const p of ['/api/calls', '/api/calls/', `/api/calls/${id}`, `/api/calls/${id}/recording`, '/api/calls/live', '/api/reports/summary', '/API/Calls']) {
      assert.equal(reportingMayUse('GET', p), true, p);
      assert.equal(reportingMayUse('HEAD', p), true, p);
    }
    for (const [m, p] of [['POST', `/api/calls/${id}/hangup`], ['GET', `/api/calls/${id}/hangup`], ['GET', '/api/settings'], ['POST', '/api/settings'],
      ['GET', '/api/permissions'], ['POST', '/api/calls'], ['DELETE', `/api/calls/${id}`], ['GET', '/api/reports'], ['GET', '/api/reports/a/b']]) {
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
