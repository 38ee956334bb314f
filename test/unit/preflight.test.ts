import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { MetaClient } from '../../src/providers/meta/client';
import { trustStore, TrustStore } from '../../src/preflight/certificates';
import { checkAgainstMeta } from '../../src/preflight/meta-settings';
import { CheckResult } from '../../src/preflight/report';
import { checkCertificateFiles, checkSipEndpoint, ProbeOptions } from '../../src/preflight/sip-target';
import { findDrachtio, startDrachtio } from '../harness/drachtio';
import { makeTestPki, CertFiles, TestPki } from '../harness/test-pki';
import { startTlsSipServer } from '../harness/tls-sip-server';
import { DEFAULT_LINE, ProviderSim } from '../harness/ycloud-sim';

const HOST = 'sip.bridge.test';
const CLI = path.join(__dirname, '..', '..', 'src', 'cli', 'preflight.js');

/** The result of one check by its name (asserted present). */
function check(results: CheckResult[], name: string): CheckResult {
  const r = results.find((x) => x.check === name);
  assert.ok(r, `a "${name}" line in:\n${show(results)}`);
  return r;
}

function show(results: CheckResult[]): string {
  return results.map((r) => `${r.status} ${r.check}: ${r.detail}`).join('\n');
}

function failures(results: CheckResult[]): string[] {
  return results.filter((r) => r.status === 'fail').map((r) => r.check);
}

describe('issue 20: the preflight checks what Meta checks', function () {
  this.timeout(30000);
  let pki: TestPki;
  let trust: TrustStore;
  let opts: ProbeOptions;

  before(() => {
    pki = makeTestPki(HOST);
    trust = trustStore([pki.rootCa]);
    opts = { trust, timeoutMs: 3000, now: new Date(), openssl: 'openssl' };
  });
  after(() => pki?.remove());

  /** The endpoint checks against a TLS SIP stand-in serving `certs` on loopback, the names checked on sip.bridge.test. */
  async function probe(certs: CertFiles, server: Parameters<typeof startTlsSipServer>[1] = {}) {
    const s = await startTlsSipServer(certs, server);
    try {
      const results = await checkSipEndpoint({ hostname: HOST, port: 5061, connect: { host: '127.0.0.1', port: s.port } }, opts);
      return { results, server: s };
    } finally {
      await s.stop();
    }
  }

  describe('the TLS port and its certificate', () => {
    it('a correct server passes: chain sent whole and trusted, dates, name, no ALPN, no client certificate, SIP answers', async () => {
      const { results, server } = await probe(pki.good);
      assert.deepEqual(failures(results), [], show(results));
      assert.match(check(results, 'SIP OPTIONS').detail, /200 OK \(test-sip-tls\)/);
      assert.match(check(results, 'full chain sent').detail, /2 certificate\(s\), up to "Preflight Test Root"/);
      assert.match(check(results, 'certificate name').detail, /covers sip\.bridge\.test/);
      assert.equal(check(results, 'no client certificate').status, 'ok');
      // The hostname is not published: the line says so, and the probe went where it was told.
      assert.equal(check(results, 'DNS').status, 'warn');
      assert.equal(server.options.length, 1);
      assert.match(server.options[0]!, /^OPTIONS sip:sip\.bridge\.test:5061;transport=tls SIP\/2\.0\r\n/);
    });

    it('an expired certificate: its end date, and the chain refused for it', async () => {
      const { results } = await probe(pki.expired);
      assert.equal(check(results, 'certificate dates').status, 'fail');
      assert.match(check(results, 'certificate dates').detail, /expired on 2020-03-01.*renew it/);
      assert.match(check(results, 'certificate chain').detail, /CERT_HAS_EXPIRED/);
    });

    it('a certificate expiring within 14 days is a warning, not a failure', async () => {
      const { results } = await probe(pki.expiringSoon);
      assert.equal(check(results, 'certificate dates').status, 'warn');
      assert.match(check(results, 'certificate dates').detail, /expires in [45] day\(s\)/);
      assert.deepEqual(failures(results), []);
    });

    it('a certificate for another name: the names it has, and the name Meta connects to', async () => {
      const { results } = await probe(pki.otherName);
      assert.deepEqual(failures(results), ['certificate name'], show(results));
      assert.match(check(results, 'certificate name').detail, /"other\.bridge\.test" does not cover sip\.bridge\.test \(it names DNS:other\.bridge\.test\)/);
    });

    it('a self-signed certificate', async () => {
      const { results } = await probe(pki.selfSigned);
      assert.equal(check(results, 'certificate chain').status, 'fail');
      assert.match(check(results, 'certificate chain').detail, /self-signed: Meta accepts only a certificate from a public CA/);
    });

    it('a leaf sent without its intermediate: the missing issuer named', async () => {
      const { results } = await probe(pki.leafOnly);
      assert.equal(check(results, 'full chain sent').status, 'fail');
      assert.match(check(results, 'full chain sent').detail,
        /sends 1 certificate\(s\) and stops at "sip\.bridge\.test", issued by "Preflight Test Intermediate".*intermediate certificate is missing/);
      assert.equal(check(results, 'certificate chain').status, 'fail');
    });

    it('a server that asks for a client certificate (Meta has none)', async () => {
      const { results } = await probe(pki.good, { requestCert: true });
      assert.deepEqual(failures(results), ['no client certificate'], show(results));
      assert.match(check(results, 'no client certificate').detail, /asks for a client certificate \(CertificateRequest\)/);
    });

    it('a server offering ALPN "sip": the probe offers none, as Meta, so nothing is selected and the handshake is fine', async () => {
      const { results, server } = await probe(pki.good, { alpn: ['sip'] });
      assert.equal(check(results, 'no ALPN').status, 'ok');
      assert.deepEqual(server.alpn, [false, false], 'neither handshake (Node\'s, openssl\'s) negotiated ALPN');
      assert.deepEqual(failures(results), []);
    });

    it('nothing listening, and a TLS port that is not SIP', async () => {
      const s = await startTlsSipServer(pki.good);
      const port = s.port;
      await s.stop();
      const closed = await checkSipEndpoint({ hostname: HOST, port: 5061, connect: { host: '127.0.0.1', port } }, opts);
      assert.match(check(closed, 'TLS port').detail, /connection refused: nothing listens there/);
      const { results } = await probe(pki.good, { answer: 'HTTP/1.1 400 Bad Request' });
      assert.equal(check(results, 'SIP OPTIONS').status, 'fail');
      assert.match(check(results, 'SIP OPTIONS').detail, /not SIP: "HTTP\/1\.1 400 Bad Request"/);
    });
  });

  describe('the certificate files drachtio-server uses', () => {
    it('the good pair passes', () => {
      const r = checkCertificateFiles(pki.good.cert, pki.good.key, HOST, opts);
      assert.deepEqual(failures(r), [], show(r));
    });

    it('names a key that is not the certificate\'s, an expired file, another name, a chain without its intermediate, a missing file', () => {
      assert.match(check(checkCertificateFiles(pki.good.cert, pki.strayKey, HOST, opts), 'key file').detail, /is not "sip\.bridge\.test"'s/);
      assert.match(check(checkCertificateFiles(pki.expired.cert, pki.expired.key, HOST, opts), 'file dates').detail, /expired on 2020-03-01/);
      assert.equal(check(checkCertificateFiles(pki.otherName.cert, pki.otherName.key, HOST, opts), 'file name').status, 'fail');
      assert.match(check(checkCertificateFiles(pki.leafOnly.cert, pki.leafOnly.key, HOST, opts), 'file chain').detail,
        /issued by "Preflight Test Intermediate", which is not a trusted CA/);
      assert.match(check(checkCertificateFiles(path.join(pki.dir, 'absent.pem'), null, HOST, opts), 'certificate file').detail, /ENOENT/);
    });
  });

  describe('the bridge\'s SIP side against Meta\'s settings', () => {
    const local = { hostname: HOST, port: 5061, password: 'pw' };
    it('equal: passes', () => {
      const r = checkAgainstMeta(local, { status: 'ENABLED', server: { hostname: 'SIP.bridge.test', port: 5061 }, password: 'pw', srtpKeyExchange: 'DTLS' }, '+1');
      assert.deepEqual(failures(r), []);
    });
    it('another server at Meta (the From domain would not match: 403), another password, SIP not enabled', () => {
      const r = checkAgainstMeta(local, { status: 'DISABLED', server: { hostname: 'old.bridge.test', port: 5061 }, password: 'older', srtpKeyExchange: null }, '+1');
      assert.deepEqual(failures(r), ['Meta: SIP server / From domain', 'Meta: SIP password']);
      assert.match(check(r, 'Meta: SIP server / From domain').detail, /Meta sends to old\.bridge\.test:5061 but the bridge is sip\.bridge\.test:5061.*403/);
      assert.equal(check(r, 'Meta: SIP enabled').status, 'warn');
    });
  });

  describe('npm run preflight', () => {
    let sim: ProviderSim;
    before(async () => {
      sim = new ProviderSim({ face: 'meta', apiKey: 'preflight-token', secret: 'unused' });
      await sim.start();
      const meta = new MetaClient({ baseUrl: sim.baseUrl, accessToken: 'preflight-token', authHeader: 'Authorization', timeoutMs: 2000 });
      await meta.updateCallingSettings({ number: DEFAULT_LINE.number, phoneId: DEFAULT_LINE.phoneId, wabaId: null }, { sip: { status: 'ENABLED', hostname: HOST, port: 5061 } });
      sim.sipPasswords.set(DEFAULT_LINE.phoneId, 'meta-pw');
    });
    after(() => sim?.stop());

    const env = (password: string) => ({
      PATH: process.env.PATH ?? '', SIP_PW: password,
      PUBLIC_IP: '127.0.0.1', ALLOW_PRIVATE_PUBLIC_IP: 'true', DRACHTIO_SECRET: 'unused', RTPENGINE_NG: '127.0.0.1:9',
      DATABASE_URL: 'postgres://unused@127.0.0.1:9/unused', PBX_TARGET: 'sip:127.0.0.1:9',
      WA_PROVIDER: 'meta', META_API_BASE_URL: sim.baseUrl, META_ACCESS_TOKEN: 'preflight-token', META_APP_SECRET: 'unused', META_VERIFY_TOKEN: 'unused',
      WA_BUSINESS_NUMBER: DEFAULT_LINE.number, WA_PHONE_ID: DEFAULT_LINE.phoneId,
      META_SIP_TLS_CERT_FILE: pki.good.cert, META_SIP_TLS_KEY_FILE: pki.good.key,
    });

    it('exit 0 with every check on its line when all pass; exit 1 naming the password that differs from Meta\'s', async () => {
      const s = await startTlsSipServer(pki.good);
      try {
        const args = [CLI, '--hostname', HOST, '--port', '5061', '--password-env', 'SIP_PW', '--connect', `127.0.0.1:${s.port}`, '--ca', pki.rootCa];
        const started = Date.now();
        const good = await promisify(execFile)(process.execPath, args, { env: env('meta-pw') });
        assert.ok(Date.now() - started < 15000);
        for (const line of [/^\+\d+ \(default\): sip\.bridge\.test:5061$/m, /^ {2}ok {4}certificate chain\s+verifies/m, /^ {2}ok {4}SIP OPTIONS\s+OPTIONS answered 200 OK/m,
          /^ {2}ok {4}Meta: SIP password\s+the bridge's equals Meta's/m, /^ {2}ok {4}Meta: SIP server \/ From domain/m, /^ {2}ok {4}key file/m, /^preflight passed: \d+ checks/m]) {
          assert.match(good.stdout, line);
        }
        await assert.rejects(promisify(execFile)(process.execPath, args, { env: env('stale-pw') }), (err: { code: number; stdout: string }) => {
          assert.equal(err.code, 1);
          assert.match(err.stdout, /FAIL {2}Meta: SIP password\s+the bridge's differs from Meta's/);
          assert.match(err.stdout, /^preflight FAILED: 1 of \d+ checks failed/m);
          return true;
        });
      } finally {
        await s.stop();
      }
    });

    it('without a number in SIP mode or --hostname: says how to name one (exit 2); --help exits 0', async () => {
      await assert.rejects(promisify(execFile)(process.execPath, [CLI], { env: env('x') }), (err: { code: number; stderr: string }) => {
        assert.equal(err.code, 2);
        assert.match(err.stderr, /no number is in Meta's SIP mode/);
        return true;
      });
      assert.match((await promisify(execFile)(process.execPath, [CLI, '--help'], { env: env('x') })).stdout, /usage: npm run preflight/);
    });
  });

  describe('against a real drachtio-server TLS contact', () => {
    it('passes with the full chain served', async function () {
      const bin = findDrachtio();
      if (!bin) {
        console.log('!!! SKIPPED: drachtio-server not found (/usr/local/bin/drachtio or DRACHTIO_BIN) !!!');
        this.skip();
      }
      const d = await startDrachtio(bin!, { tls: { keyFile: pki.good.key, certFile: pki.good.cert } });
      try {
        const results = await checkSipEndpoint({ hostname: HOST, port: 5061, connect: { host: '127.0.0.1', port: d.tlsPort! } }, opts);
        assert.deepEqual(failures(results), [], show(results));
        assert.match(check(results, 'SIP OPTIONS').detail, /OPTIONS answered \d{3}/);
        console.log(`      drachtio-server answered: ${check(results, 'SIP OPTIONS').detail}`);
      } finally {
        await d.proc.stop();
      }
    });
  });
});
