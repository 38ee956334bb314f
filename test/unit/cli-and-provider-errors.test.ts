import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net, { AddressInfo } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { BusinessLine, ProviderError } from '../../src/calls/provider-port';
import { MetaClient } from '../../src/providers/meta/client';
import { YCloudClient } from '../../src/providers/ycloud/client';
import { providerErrorText } from '../../src/providers/error-text';

const run = promisify(execFile);
/** dist/ (this file is dist/test/unit/...). */
const DIST = path.join(__dirname, '..', '..');
const ROOT = path.join(DIST, '..');
const LINE: BusinessLine = { number: '+15550001111', phoneId: '1001', wabaId: 'waba-1' };

/** Every command a user runs: package.json's `node dist/src/...` scripts, and everything in src/cli. */
function commands(): string[] {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  const fromScripts = Object.values(pkg.scripts).flatMap((s) => [...s.matchAll(/node (dist\/src\/\S+\.js)/g)].map((m) => path.join(ROOT, m[1]!)));
  const cli = fs.readdirSync(path.join(DIST, 'src', 'cli')).filter((f) => f.endsWith('.js')).map((f) => path.join(DIST, 'src', 'cli', f));
  return [...new Set([...fromScripts, ...cli])].sort();
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

/** A loopback HTTP server answering every request with `status` after `delayMs` (never, when null). */
async function answering(status: number, delayMs: number | null): Promise<{ base: string; close: () => Promise<void> }> {
  const server = http.createServer((req, res) => {
    req.resume();
    if (delayMs === null) return;
    setTimeout(() => {
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'invalid API key', code: 'UNAUTHORIZED' } }));
    }, delayMs).unref();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

async function failure(p: Promise<unknown>): Promise<ProviderError> {
  const err = await p.then(() => null, (e: unknown) => e);
  assert.ok(err instanceof ProviderError, String(err));
  return err;
}

describe('every command answers --help with its usage (exit 0)', function () {
  this.timeout(60000);
  const all = commands();

  it('knows the commands: the settings, preflight, migrate, sandbox, docs and the bridge itself', () => {
    const names = all.map((f) => path.relative(DIST, f));
    for (const n of ['src/cli/calling-settings.js', 'src/cli/preflight.js', 'src/cli/config-docs.js', 'src/cdr/migrate-cli.js', 'src/sandbox/main.js', 'src/index.js']) {
      assert.ok(names.includes(n), `${n} in ${names.join(', ')}`);
    }
  });

  for (const file of commands()) {
    it(`${path.relative(DIST, file)} --help`, async () => {
      // An environment with nothing configured: --help needs none, and starts nothing.
      const r = await run(process.execPath, [file, '--help'], { env: { PATH: process.env.PATH ?? '' }, timeout: 15000 }).catch((e: { code?: unknown; stdout?: string; stderr?: string }) => e);
      assert.equal((r as { code?: unknown }).code ?? 0, 0, `${file} --help: ${(r as { stderr?: string }).stderr ?? ''}`);
      assert.match((r as { stdout: string }).stdout, /^usage: /m);
    });
  }
});

describe('a provider request that got no answer is not called a refusal', function () {
  this.timeout(20000);

  it('nothing listening: "could not reach YCloud", with the network\'s reason', async () => {
    const base = `http://127.0.0.1:${await closedPort()}`;
    const err = await failure(new YCloudClient({ baseUrl: base, apiKey: 'k', timeoutMs: 2000 }).getCallingSettings(LINE));
    assert.equal(err.httpStatus, null);
    assert.equal(err.timedOut, false);
    assert.match(providerErrorText(err), /^could not reach YCloud \(GET \/whatsapp\/phoneNumbers\/.*: fetch failed: connect ECONNREFUSED 127\.0\.0\.1:\d+\)$/);
    const meta = await failure(new MetaClient({ baseUrl: base, accessToken: 't', authHeader: 'Authorization', timeoutMs: 2000 }).getCallingSettings(LINE));
    assert.match(providerErrorText(meta), /^could not reach Meta \(.*ECONNREFUSED/);
  });

  it('no answer in time: "YCloud did not answer", with the bound', async () => {
    const silent = await answering(200, null);
    try {
      const err = await failure(new YCloudClient({ baseUrl: silent.base, apiKey: 'k', timeoutMs: 300 }).getCallingSettings(LINE));
      assert.equal(err.timedOut, true);
      assert.match(providerErrorText(err), /^YCloud did not answer: GET .*: timed out after 300 ms$/);
    } finally {
      await silent.close();
    }
  });

  it('an error status: "YCloud refused", with the status and its message', async () => {
    const refusing = await answering(401, 0);
    try {
      const err = await failure(new YCloudClient({ baseUrl: refusing.base, apiKey: 'k', timeoutMs: 2000 }).getCallingSettings(LINE));
      assert.match(providerErrorText(err), /^YCloud refused: GET .*: 401 invalid API key$/);
    } finally {
      await refusing.close();
    }
  });

  it('npm run settings says so too (exit 1)', async () => {
    const port = await closedPort();
    const env = {
      PATH: process.env.PATH ?? '',
      PUBLIC_IP: '127.0.0.1', ALLOW_PRIVATE_PUBLIC_IP: 'true', DRACHTIO_SECRET: 'unused', RTPENGINE_NG: '127.0.0.1:9',
      DATABASE_URL: 'postgres://unused@127.0.0.1:9/unused', PBX_TARGET: 'sip:127.0.0.1:9',
      YCLOUD_API_BASE_URL: `http://127.0.0.1:${port}/v2`, YCLOUD_API_KEY: 'key', YCLOUD_WEBHOOK_SECRET: 'unused',
      WA_BUSINESS_NUMBER: LINE.number, WA_PHONE_ID: '1001', WA_WABA_ID: 'waba-1',
    };
    const r = await run(process.execPath, [path.join(DIST, 'src', 'cli', 'calling-settings.js'), 'get'], { env, timeout: 15000 })
      .then(() => ({ code: 0, stderr: '' }), (e: { code: number; stderr: string }) => e);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^could not reach YCloud \(GET .*ECONNREFUSED/);
    assert.doesNotMatch(r.stderr, /refused/);
  });
});
