import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { rows } from './harness/db-rows';
import { openApiDocument, Operation, Parameter, Ref } from '../src/http/openapi';
import { startStack, TestStack } from './harness/bridge';

/**
 * Hostile values in every query parameter of every GET operation under /api that the OpenAPI document
 * lists (GET /api/calls and /api/reports/summary first of all): SQL metacharacters, control characters,
 * unicode, invalid UTF-8, huge values, repeated and bracketed (array) parameters, absurd numbers and
 * dates. Each answer is a documented refusal (400 naming the parameter in `field` on the reporting
 * routes) or the value taken as a plain value; never a 500. A CDR row on record shows that an injection
 * in a text filter matches nothing (it is a value, not SQL).
 */
const ADMIN_TOKEN = 'admin-token-for-hostile-api-test';
/** Routes whose 400 names the parameter in `field` (src/reports/filters.ts). */
const FIELD_ROUTES = new Set(['/api/calls', '/api/reports/summary']);

/** Values given as they go in the query string (already percent-encoded where needed). */
const HOSTILE: Array<[string, string]> = [
  ['quote', enc("' OR '1'='1")],
  ['statement', enc("x'; DROP TABLE calls; --")],
  ['comment', enc('agent101/**/OR/**/1=1')],
  ['sleep', enc("'||pg_sleep(10)||'")],
  ['semicolon', enc('1;SELECT 1')],
  ['backslash', enc('\\\\x00\\')],
  ['like', enc('%_%')],
  ['NUL', '%00'],
  ['NUL inside', 'agent%00101'],
  ['CRLF', '%0D%0AX-Injected:%201'],
  ['tab', '%09'],
  ['DEL', '%7F'],
  ['invalid UTF-8', '%ED%A0%80'],
  ['overlong UTF-8', '%C0%AF'],
  ['lone percent', '%'],
  ['unicode', enc('日本語')],
  ['emoji', enc('😀')],
  ['RTL override', enc('\u202egnp.exe')],
  ['U+FFFF', enc('\uffff')],
  ['fullwidth digits', enc('＋６２８１３')],
  ['huge', 'A'.repeat(8000)],
  ['huge number', '9'.repeat(400)],
  ['negative', '-1'],
  ['exponent', '1e309'],
  ['NaN', 'NaN'],
  ['Infinity', 'Infinity'],
  ['hex', '0x10'],
  ['spaces', enc('   ')],
  ['plus', '+'],
  ['json', enc('{"$ne":null}')],
  ['array literal', enc('[1,2]')],
  ['far future', enc('9999-12-31T23:59:59.999999-23:59')],
  ['far past', enc('1000-01-01T00:00:00+23:59')],
  ['no such day', '2026-02-30'],
  ['hour 24', enc('2026-11-24T24:00:00Z')],
  ['year 275760', '275760-09-13'],
  ['true', 'TRUE'],
];

function enc(s: string): string {
  return encodeURIComponent(s);
}

interface GetOp { path: string; op: Operation; params: Parameter[] }

/** Every GET under /api with query parameters, $refs resolved. */
function getOperations(): GetOp[] {
  const out: GetOp[] = [];
  for (const [path, item] of Object.entries(openApiDocument.paths)) {
    const op = item.get;
    if (!path.startsWith('/api/') || !op) continue;
    const params = [...(item.parameters ?? []), ...(op.parameters ?? [])].map(deref).filter((p) => p.in === 'query');
    if (params.length) out.push({ path, op, params });
  }
  return out;
}

function deref(x: Parameter | Ref): Parameter {
  if (!('$ref' in x)) return x;
  const name = x.$ref.replace('#/components/parameters/', '');
  const p = openApiDocument.components.parameters[name];
  assert.ok(p, `parameter ${x.$ref}`);
  return p;
}

/** A valid value for a required parameter, so that only the parameter under test is hostile. */
function validValue(p: Parameter): string {
  const valid: Record<string, string> = { from: '2025-11-24T00:00:00Z', to: '2025-11-25T00:00:00Z', customer: '+6281234567890' };
  const v = valid[p.name] ?? (typeof p.example === 'string' ? p.example : undefined);
  assert.ok(v !== undefined, `a valid value for required ${p.name}`);
  return enc(v);
}

describe('hostile API filters', function () {
  this.timeout(120000);
  let stack: TestStack;
  const ops = getOperations();
  const callId = crypto.randomUUID();

  before(async () => {
    stack = await startStack({ ADMIN_API_TOKEN: ADMIN_TOKEN });
    await stack.bridge.cdr.createCall(callId, {
      direction: 'inbound', state: 'ended', offered_at: new Date('2025-11-24T10:00:00Z'), agent: 'agent101', pbx_target: 'sip:pbx.example:5060',
      business_number: '+6283138205150', customer_number: '+6281361905133', outcome: 'answered',
    });
  });
  after(async () => {
    await rows().CallRecord.destroy({ where: { id: callId } });
    await stack?.stop();
  });

  async function get(path: string, query: string): Promise<{ status: number; body: unknown; text: string }> {
    const res = await fetch(`http://127.0.0.1:${stack.bridge.httpPort}${path}?${query}`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, Accept: 'application/json' } });
    const text = await res.text();
    let body: unknown = null;
    try {
      body = JSON.parse(text);
    } catch {
      // CSV (format=csv) or an empty body
    }
    return { status: res.status, body, text };
  }

  it('the document lists the reporting filters this test loops over', () => {
    const names = (p: string) => ops.find((o) => o.path === p)?.params.map((x) => x.name) ?? [];
    for (const f of ['from', 'to', 'direction', 'outcome', 'customer', 'business', 'agent', 'pbx_target', 'state', 'mos_below', 'poor_quality', 'recorded', 'limit', 'cursor', 'format']) {
      assert.ok(names('/api/calls').includes(f), `GET /api/calls lists ${f}`);
    }
    for (const f of ['from', 'to', 'group_by', 'tz', 'direction']) assert.ok(names('/api/reports/summary').includes(f), `summary lists ${f}`);
  });

  for (const { path, op, params } of getOperations()) {
    const documented = new Set(Object.keys(op.responses).map(Number));
    for (const p of params) {
      it(`GET ${path}: every hostile ${p.name} is refused naming it, or taken as a plain value; never a 500`, async () => {
        const base = params.filter((x) => x.required && x.name !== p.name).map((x) => `${x.name}=${validValue(x)}`);
        const tries: Array<[string, string]> = [
          ...HOSTILE.map(([what, v]): [string, string] => [what, `${p.name}=${v}`]),
          ['repeated', `${p.name}=a&${p.name}=b`],
          ['brackets', `${p.name}[]=a`],
          ['indexed', `${p.name}[0]=a&${p.name}[1]=b`],
          ['object', `${p.name}[$gt]=`],
          ['empty', `${p.name}=`],
        ];
        const seen: string[] = [];
        for (const [what, q] of tries) {
          const r = await get(path, [...base, q].join('&'));
          seen.push(`${what}:${r.status}`);
          assert.notEqual(r.status, 500, `${what} (${q.slice(0, 80)}) got 500: ${r.text.slice(0, 200)}`);
          assert.ok(r.status < 500 || documented.has(r.status), `${what}: ${r.status} is not documented`);
          if (r.status === 400) {
            const b = r.body as { error?: unknown; field?: unknown } | null;
            assert.equal(typeof b?.error, 'string', `${what}: a clear error`);
            if (FIELD_ROUTES.has(path)) {
              // The parameter itself, or (a range check, e.g. to after from) another one of the same request.
              const field = typeof b?.field === 'string' ? b.field : '';
              assert.ok(field.startsWith(p.name) || base.some((x) => x.startsWith(`${field}=`)), `${what}: field names ${p.name} (got ${field || 'none'})`);
            }
          }
        }
        assert.ok(seen.some((s) => s.endsWith(':400')), `some hostile ${p.name} is refused: ${seen.join(' ')}`);
      });
    }
  }

  it('an injection in a text filter is a plain value: it matches no call, and the calls table is still there', async () => {
    const plain = await get('/api/calls', 'agent=agent101');
    assert.equal(plain.status, 200);
    assert.ok((plain.body as { calls: Array<{ id: string }> }).calls.some((c) => c.id === callId), 'the seeded call matches its agent');
    for (const v of ["' OR '1'='1", "agent101' --", 'agent101%', "x'; DROP TABLE calls; --", '日本語 😀']) {
      for (const f of ['agent', 'pbx_target']) {
        const r = await get('/api/calls', `${f}=${enc(v)}`);
        assert.equal(r.status, 200, `${f}=${v}: ${r.text.slice(0, 200)}`);
        assert.deepEqual((r.body as { calls: unknown[] }).calls, [], `${f}=${v} matches nothing`);
      }
    }
    assert.ok(await rows().CallRecord.findByPk(callId), 'the calls table and its row are intact');
  });

  it('a NUL or control character in any parameter is refused naming it (Postgres would refuse it as text)', async () => {
    for (const f of ['agent', 'pbx_target']) {
      const r = await get('/api/calls', `${f}=agent%00101`);
      assert.equal(r.status, 400);
      assert.deepEqual(r.body, { error: `${f} holds a control character or an invalid character`, field: f });
    }
    const r = await get('/api/calls', 'ag%00ent=1');
    assert.equal(r.status, 400);
    assert.equal((r.body as { field: string }).field, 'ag\ufffdent');
  });
});
