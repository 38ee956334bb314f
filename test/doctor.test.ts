import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { bounded } from '../src/doctor/check';
import { checkClock } from '../src/doctor/clock';
import { checkDatabase } from '../src/doctor/database';
import { checkAccount } from '../src/doctor/providers';
import { checkPublicIp } from '../src/doctor/public-ip';
import { checkRtpengine } from '../src/doctor/rtpengine';
import { checkSip } from '../src/doctor/sip';
import { checkWebhook } from '../src/doctor/webhook';
import { AccountSpec, NumberSpec } from '../src/numbers/spec';
import { trustStore } from '../src/preflight/certificates';
import { CheckResult } from '../src/preflight/report';
import { forEachProvider, infraEnv, providerEnv, startSim, startStack, TestStack } from './harness/bridge';
import { scratchDatabase } from './harness/db-rows';
import { infra } from './harness/infra';
import { freePort } from './harness/processes';
import { SippRun, startSippUas } from './harness/sipp';
import { issueCert, makeTestCa, TestCa } from './harness/test-ca';
import { DEFAULT_LINE, ProviderSim } from './harness/ycloud-sim';

const CLI = path.join(__dirname, '..', 'src', 'cli', 'doctor.js');

/** One printed check line, with the section it is under. */
interface Line { section: string; status: 'ok' | 'WARN' | 'FAIL' | 'skip'; check: string; detail: string }

/** Runs `npm run doctor` (the compiled CLI) with exactly `env` (and PATH): its exit code, output, and lines. */
function runDoctor(env: Record<string, string>, args: string[] = []): Promise<{ code: number; out: string; lines: Line[] }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, '--timeout-ms', '3000', ...args], { env: { PATH: process.env.PATH ?? '', ...env }, timeout: 60000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      if (process.env.SHOW_DOCTOR) console.log(stdout + stderr);
      resolve({ code, out: stdout + stderr, lines: parse(stdout) });
    });
  });
}

function parse(out: string): Line[] {
  const lines: Line[] = [];
  let section = '';
  for (const l of out.split('\n')) {
    const m = /^ {2}(ok {2}|WARN|FAIL|skip) {2}(.+?) {2,}(.*)$/.exec(l) ?? /^ {2}(ok {2}|WARN|FAIL|skip) {2}(\S+) {2}(.*)$/.exec(l);
    if (m) lines.push({ section, status: m[1]!.trim() as Line['status'], check: m[2]!.trim(), detail: m[3]! });
    else if (l && !l.startsWith(' ')) section = l;
  }
  return lines;
}

/** The line of `check` in the section whose title starts with `section` (asserted present). */
function line(lines: Line[], section: string, check: string, out: string): Line {
  const found = lines.find((l) => l.section.startsWith(section) && l.check === check);
  assert.ok(found, `a "${check}" line under "${section}" in:\n${out}`);
  return found;
}

function one(results: CheckResult[], check: string): CheckResult {
  const r = results.find((x) => x.check === check);
  assert.ok(r, `a "${check}" line in ${JSON.stringify(results, null, 1)}`);
  return r;
}

/** A UDP port nothing listens on (a PBX that is down). */
async function deadUdpTarget(): Promise<string> {
  return `sip:127.0.0.1:${await freePort('udp')}`;
}

/** An HTTPS front on loopback for `upstreamPort` (the bridge's HTTP port), with `cert`: what Caddy or nginx does in production. */
async function httpsFront(cert: { keyFile: string; certFile: string }, upstreamPort: number): Promise<{ port: number; close: () => Promise<void> }> {
  const server = https.createServer({ key: fs.readFileSync(cert.keyFile), cert: fs.readFileSync(cert.certFile) }, (req, res) => {
    const up = http.request({ host: '127.0.0.1', port: upstreamPort, path: req.url, method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => {
      res.writeHead(502);
      res.end('bad gateway');
    });
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

describe('issue 21: npm run doctor, the go-live preflight', function () {
  this.timeout(90000);
  let dir: string;
  let ca: TestCa;

  before(function () {
    if (!infra.drachtio) this.skip();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-doctor-'));
    ca = makeTestCa(dir);
  });
  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  describe('a deliberately broken configuration', () => {
    let sim: ProviderSim;
    let scratch: { drop: () => Promise<void> } | null = null;
    let scratchUrl: string;

    before(async () => {
      sim = await startSim();
      // A database that exists and takes the credentials, with no migration applied.
      const s = await scratchDatabase('wasb_doctor');
      scratch = s;
      const u = new URL(infra.databaseUrl);
      u.pathname = `/${s.db.getDatabaseName()}`;
      scratchUrl = u.toString();
    });
    after(async () => {
      await sim?.stop();
      await scratch?.drop();
    });

    it('names each problem: wrong key, calling disabled, private PUBLIC_IP, PBX down, unmigrated database; exits 1', async () => {
      const numbersFile = path.join(dir, 'numbers.yaml');
      const pbx = await deadUdpTarget();
      fs.writeFileSync(numbersFile, [
        'providers:',
        '  ycloud-old:',
        '    kind: ycloud',
        '    apiKey: {env: OLD_API_KEY}',
        '    webhookSecret: {env: OLD_WEBHOOK_SECRET}',
        `    apiBaseUrl: ${sim.baseUrl}`,
        '  ycloud-main:',
        '    kind: ycloud',
        '    apiKey: {env: MAIN_API_KEY}',
        '    webhookSecret: {env: MAIN_WEBHOOK_SECRET}',
        `    apiBaseUrl: ${sim.baseUrl}`,
        'numbers:',
        '  - name: sales',
        '    number: "+14155550100"',
        '    phoneId: "111111111111111"',
        `    wabaId: "${DEFAULT_LINE.wabaId}"`,
        '    provider: ycloud-old',
        `    pbx: { targets: ["${pbx}"] }`,
        '  - name: support',
        `    number: "${DEFAULT_LINE.number}"`,
        `    phoneId: "${DEFAULT_LINE.phoneId}"`,
        `    wabaId: "${DEFAULT_LINE.wabaId}"`,
        '    provider: ycloud-main',
        `    pbx: { targets: ["${pbx}"] }`,
        '    agentDefault: true',
        '',
      ].join('\n'));
      const { PBX_TARGET: _none, ...base } = infraEnv();
      const env = {
        ...base,
        NUMBERS_FILE: numbersFile,
        OLD_API_KEY: 'a-key-that-was-revoked',
        OLD_WEBHOOK_SECRET: 'old-webhook-secret-0123456789',
        MAIN_API_KEY: sim.apiKey,
        MAIN_WEBHOOK_SECRET: sim.secret,
        PUBLIC_IP: '10.0.0.7',
        ALLOW_PRIVATE_PUBLIC_IP: 'false',
        DATABASE_URL: scratchUrl,
      };
      const { code, out, lines } = await runDoctor(env);
      assert.equal(code, 1, out);
      assert.match(line(lines, 'provider account "ycloud-old"', 'credentials', out).detail, /^wrong key: the API refused it \(HTTP 401\).*Check the apiKey of account "ycloud-old"/);
      assert.equal(line(lines, 'provider account "ycloud-old"', 'credentials', out).status, 'FAIL');
      assert.equal(line(lines, 'provider account "ycloud-main"', 'credentials', out).status, 'ok');
      const calling = line(lines, 'provider account "ycloud-main"', `calling ${DEFAULT_LINE.number}`, out);
      assert.equal(calling.status, 'FAIL');
      assert.match(calling.detail, new RegExp(`calling is DISABLED.*npm run settings -- set --phone \\${DEFAULT_LINE.number} --status ENABLED`));
      const ip = line(lines, 'this host', 'PUBLIC_IP', out);
      assert.equal(ip.status, 'FAIL');
      assert.match(ip.detail, /10\.0\.0\.7 is a private\/loopback address/);
      const target = line(lines, 'PBX targets', pbx, out);
      assert.equal(target.status, 'FAIL');
      assert.match(target.detail, /no SIP answer to OPTIONS/);
      const migrations = line(lines, 'Postgres', 'migrations', out);
      assert.equal(migrations.status, 'FAIL');
      assert.match(migrations.detail, /not migrated.*run npm run migrate/);
      // What follows from the private PUBLIC_IP: rtpengine gives WhatsApp another address.
      assert.equal(line(lines, 'rtpengine', 'interface wa', out).status, 'FAIL');
      // The parts that are fine are said to be.
      assert.equal(line(lines, 'drachtio-server', 'connection', out).status, 'ok');
      assert.equal(line(lines, 'Postgres', 'connection', out).status, 'ok');
      assert.equal(line(lines, 'webhook URL', 'URL', out).status, 'WARN');
      assert.match(out, /^doctor FAILED: \d+ of \d+ checks failed/m);
    });

    it('a configuration the bridge refuses is the one finding', async () => {
      const { code, out, lines } = await runDoctor({ ...infraEnv(), YCLOUD_API_KEY: 'k', YCLOUD_WEBHOOK_SECRET: 'secret-0123456789abcdef', RTPENGINE_NG: 'nowhere' });
      assert.equal(code, 1, out);
      assert.deepEqual(lines.map((l) => `${l.section} ${l.status} ${l.check}`), ['configuration FAIL settings']);
      assert.match(lines[0]!.detail, /RTPENGINE_NG/);
    });
  });

  describe('a good configuration', () => {
    forEachProvider((provider) => {
      let stack: TestStack;
      let sipp: SippRun;
      let front: { port: number; close: () => Promise<void> };
      const ids = { WA_BUSINESS_NUMBER: DEFAULT_LINE.number, WA_PHONE_ID: DEFAULT_LINE.phoneId, WA_WABA_ID: DEFAULT_LINE.wabaId };

      before(async () => {
        sipp = await startSippUas('uas-options.xml');
        // A signing secret as the consoles give them (Meta's app secret: 32 hex digits).
        stack = await startStack({ ...ids, PBX_TARGET: sipp.uri }, { provider, webhookSecret: crypto.randomBytes(16).toString('hex') });
        // The simulator's numbers start with calling DISABLED, as real ones do.
        stack.sim.settings.set(provider === 'ycloud' ? `${DEFAULT_LINE.wabaId}/${DEFAULT_LINE.number}` : DEFAULT_LINE.phoneId, { calling: { status: 'ENABLED' } });
        front = await httpsFront(issueCert(ca, `webhooks-${provider}`, ['localhost']), stack.bridge.httpPort);
      });
      after(async () => {
        await front?.close();
        await stack?.stop();
        await sipp?.proc.stop();
      });

      it('passes: each check ok (or a warning that cannot be helped on loopback), exit 0', async () => {
        const env = { ...infraEnv(), ...providerEnv(stack.sim), ...ids, PBX_TARGET: sipp.uri, PUBLIC_WEBHOOK_URL: `https://localhost:${front.port}` };
        const { code, out, lines } = await runDoctor(env, ['--ca', ca.caFile]);
        assert.equal(code, 0, out);
        assert.deepEqual(lines.filter((l) => l.status === 'FAIL'), [], out);
        const account = `provider account "${provider}"`;
        const secrets = provider === 'ycloud' ? ['webhook secret'] : ['app secret', 'verify token'];
        for (const [section, check] of [
          [account, 'credentials'], [account, `calling ${DEFAULT_LINE.number}`], ...secrets.map((c) => [account, c] as const),
          ['webhook URL', 'bridge'], ['webhook URL', `/webhooks/${provider}`],
          ['rtpengine', 'ng ping'], ['rtpengine', 'interfaces'], ['rtpengine', 'interface wa'], ['rtpengine', 'interface pbx'], ['rtpengine', 'media ports'],
          ['drachtio-server', 'connection'], ['drachtio-server', 'SIP contacts'],
          ['PBX targets', sipp.uri], ['Postgres', 'connection'], ['Postgres', 'migrations'],
        ] as const) {
          assert.equal(line(lines, section, check, out).status, 'ok', `${section} ${check}:\n${out}`);
        }
        if (provider === 'meta') assert.match(line(lines, 'webhook URL', '/webhooks/meta', out).detail, /subscription check passes/);
        // The test CA's certificates last 2 days: verified, with renewal due (a WARN).
        assert.match(line(lines, 'webhook URL', 'certificate', out).detail, /^verified for localhost, issued by wasb test CA, valid until /);
        // Loopback stands in for the public address here: said, not failed.
        assert.equal(line(lines, 'this host', 'PUBLIC_IP', out).status, 'WARN');
        assert.notEqual(line(lines, 'clock', 'clock', out).status, 'FAIL');
        assert.match(out, /^doctor passed: \d+ checks/m);
        assert.equal(await sipp.done, 0, 'SIPp got its OPTIONS and answered');
      });
    });
  });

  describe('each check names its failure', () => {
    it('a check that hangs or throws is a FAIL of its own, within its bound', async () => {
      const started = Date.now();
      const hung = await bounded('stuck', 200, () => new Promise<CheckResult[]>(() => undefined));
      assert.deepEqual(hung, [{ check: 'stuck', status: 'fail', detail: 'did not finish within 200 ms (--timeout-ms)' }]);
      assert.ok(Date.now() - started < 1000);
      const threw = await bounded('broken', 200, async () => {
        throw new Error('boom');
      });
      assert.deepEqual(threw, [{ check: 'broken', status: 'fail', detail: 'the check itself failed: boom' }]);
    });

    it('a provider that cannot be reached is a network failure, not a refusal', async () => {
      const port = await freePort('tcp');
      const account: AccountSpec = { kind: 'ycloud', name: 'ycloud', apiKey: 'k', webhookSecret: 's', apiBaseUrl: `http://127.0.0.1:${port}/v2`, timeoutMs: 5000, webhookToleranceSeconds: 300 };
      const number = { name: 'default', number: DEFAULT_LINE.number, phoneId: null, wabaId: DEFAULT_LINE.wabaId, account: 'ycloud', pbx: { targets: [] } } as unknown as NumberSpec;
      const r = await checkAccount(account, [number], 2000, false);
      assert.equal(one(r, 'credentials').status, 'fail');
      assert.match(one(r, 'credentials').detail, /^network failure: 127\.0\.0\.1 port \d+: connection refused/);
      assert.equal(one(r, `calling ${DEFAULT_LINE.number}`).status, 'skip');
    });

    it('drachtio-server refusing the secret, and nothing listening', async () => {
      const d = infra.drachtio!;
      const wrong = await checkSip({ drachtio: { host: '127.0.0.1', port: d.adminPort, secret: 'not-the-secret' }, pbxTargets: [], metaSipPort: null, timeoutMs: 3000 });
      assert.match(one(wrong.drachtio, 'connection').detail, /refused DRACHTIO_SECRET/);
      const none = await checkSip({ drachtio: { host: '127.0.0.1', port: await freePort('tcp'), secret: 'x' }, pbxTargets: [{ number: '+1', targets: ['sip:127.0.0.1:9'] }], metaSipPort: null, timeoutMs: 3000 });
      assert.match(one(none.drachtio, 'connection').detail, /^nothing listens at 127\.0\.0\.1:\d+/);
      assert.equal(one(none.pbx, 'OPTIONS').status, 'skip');
    });

    it('rtpengine: an interface name it does not have (which it would not refuse, but replace by its default)', async () => {
      const r = await checkRtpengine({ ng: infra.rtpengineNg!, interfaces: { whatsapp: 'public', pbx: 'pbx' }, publicIp: '127.0.0.1', timeoutMs: 2000 });
      assert.equal(one(r, 'ng ping').status, 'ok');
      assert.equal(one(r, 'interfaces').status, 'fail');
      assert.match(one(r, 'interfaces').detail, /^rtpengine has no interface "public" \(it has wa\/127\.0\.0\.1, pbx\/127\.0\.0\.1\)/);
      assert.ok(!r.some((x) => x.check === 'interface public'), 'no offer through the default one is taken for it');
      assert.equal(one(r, 'interface pbx').status, 'ok');
    });

    it('Postgres: a database that does not exist is 3D000', async () => {
      const u = new URL(infra.databaseUrl);
      u.pathname = '/wasb_doctor_no_such_db';
      const r = await checkDatabase(u.toString(), 3000);
      assert.equal(one(r, 'connection').status, 'fail');
      assert.match(one(r, 'connection').detail, /database "wasb_doctor_no_such_db" does not exist \(3D000\)/);
    });

    it('Postgres: a refused password is 28P01 (a stand-in answering the start-up as Postgres does, this run\'s trusting every login)', async () => {
      const server = net.createServer((socket) => {
        socket.once('data', () => {
          const fields = Buffer.from('SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user "bridge"\0\0', 'latin1');
          const head = Buffer.alloc(5);
          head.write('E', 0, 'latin1');
          head.writeUInt32BE(fields.length + 4, 1);
          socket.end(Buffer.concat([head, fields]));
        });
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      try {
        const port = (server.address() as net.AddressInfo).port;
        const r = await checkDatabase(`postgres://bridge:wrong@127.0.0.1:${port}/bridge`, 3000);
        assert.match(one(r, 'connection').detail, /^Postgres refused the password of bridge@127\.0\.0\.1:\d+\/bridge \(28P01 invalid_password\)/);
        assert.ok(!one(r, 'connection').detail.includes('wrong'), 'the password is never shown');
      } finally {
        server.close();
      }
    });

    it('the clock: off by a minute from the provider\'s Date is a FAIL; in step is ok', async () => {
      let skewMs = 60000;
      const server = http.createServer((_req, res) => {
        res.sendDate = false;
        res.setHeader('Date', new Date(Date.now() + skewMs).toUTCString());
        res.end('{}');
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/v2`;
      try {
        const off = await checkClock({ urls: [url], timeoutMs: 2000, ntp: async () => true });
        assert.equal(off[0]!.status, 'fail');
        assert.match(off[0]!.detail, /^behind 127\.0\.0\.1:\d+'s Date by (59|60)\.\d s \(more than 5 s/);
        skewMs = 0;
        assert.equal((await checkClock({ urls: [url], timeoutMs: 2000, ntp: async () => true }))[0]!.status, 'ok');
        assert.equal((await checkClock({ urls: [url], timeoutMs: 2000, ntp: async () => false }))[0]!.status, 'warn');
        assert.match((await checkClock({ urls: [], timeoutMs: 2000, ntp: async () => null }))[0]!.detail, /^unknown/);
      } finally {
        server.close();
      }
    });

    it('PUBLIC_IP: on an interface, only behind NAT, private in a lab', () => {
      const interfaces = { eth0: [{ address: '203.0.113.5' }], lo: [{ address: '127.0.0.1' }] };
      assert.equal(checkPublicIp('203.0.113.5', false, interfaces)[0]!.status, 'ok');
      const nat = checkPublicIp('198.51.100.9', false, interfaces)[0]!;
      assert.equal(nat.status, 'warn');
      assert.match(nat.detail, /must be this host's 1:1 NAT address/);
      assert.equal(checkPublicIp('192.168.1.10', false, interfaces)[0]!.status, 'fail');
      assert.equal(checkPublicIp('192.168.1.10', true, interfaces)[0]!.status, 'warn');
    });

    it('the webhook URL: http is refused, an expired certificate and a wrong name are named', async () => {
      const trust = trustStore([ca.caFile]).pem;
      const accounts: AccountSpec[] = [];
      const plain = await checkWebhook({ url: { value: 'http://localhost:1', from: 'PUBLIC_WEBHOOK_URL' }, accounts, ca: trust, timeoutMs: 2000 });
      assert.match(one(plain, 'URL').detail, /is not https:\/\//);
      for (const [names, expired, expected] of [
        [['localhost'], true, /^the certificate has expired \(CERT_HAS_EXPIRED\)/],
        [['elsewhere.test'], false, /^the certificate does not cover this hostname \(ERR_TLS_CERT_ALTNAME_INVALID\)/],
      ] as const) {
        const cert = issueCert(ca, `web-${names[0]}-${expired}`, [...names], { expired });
        const front = await httpsFront(cert, 9);
        try {
          const r = await checkWebhook({ url: { value: `https://localhost:${front.port}`, from: '--webhook-url' }, accounts, ca: trust, timeoutMs: 2000 });
          assert.equal(one(r, 'certificate').status, 'fail');
          assert.match(one(r, 'certificate').detail, expected);
        } finally {
          await front.close();
        }
      }
    });
  });
});
