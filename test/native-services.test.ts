import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Srf from 'drachtio-srf';
import { Client } from 'rtpengine-client';
import { QueryTypes } from 'sequelize';
import { parseEnvFile } from '../src/config/env-file';
import { BridgeProcess } from './harness/bridge-process';
import { scratchDatabase } from './harness/db-rows';
import { findDrachtio } from './harness/drachtio';
import { infra } from './harness/infra';
import { freePort, ManagedProcess } from './harness/processes';
import { parseUnit, unitValue } from './harness/systemd-unit';

const ROOT = path.join(__dirname, '..', '..');
const DIR = path.join(ROOT, 'deploy', 'systemd');

/** A unit's ExecStart, split as systemd splits it (no quoting in ours). */
function execStart(unitFile: string): string[] {
  return unitValue(parseUnit(fs.readFileSync(path.join(DIR, unitFile), 'utf8')), 'Service', 'ExecStart')!.split(/\s+/);
}

/**
 * The native deployment's programs run as its units run them, without systemd (the CI has none to
 * boot): drachtio-server and rtpengine from deploy/systemd's config files rendered as
 * docs/deploy-native.md renders them (loopback addresses, free ports), and the bridge from a tree
 * packed by scripts/package.sh and installed with `npm ci --omit=dev`, so without a dev dependency.
 */
describe('native deployment: the services from their shipped config files', function () {
  this.timeout(240000);
  let tmp = '';
  const procs: ManagedProcess[] = [];
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-native-svc-'));
  });
  after(async () => {
    await Promise.all(procs.map((p) => p.stop()));
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('rtpengine with deploy/systemd/rtpengine.conf: both interfaces up, WhatsApp\'s advertising PUBLIC_IP', async function () {
    const ctl = spawnSync('rtpengine-ctl', ['-h'], { encoding: 'utf8' });
    if (ctl.error) this.skip();
    const [ng, cli, dtmf] = [await freePort('udp'), await freePort('tcp'), await freePort('udp')];
    const spool = path.join(tmp, 'spool');
    fs.mkdirSync(spool);
    const conf = fs.readFileSync(path.join(DIR, 'rtpengine.conf'), 'utf8')
      .replace(/LOCAL_IP/g, '127.0.0.1').replace(/PUBLIC_IP/g, '203.0.113.7')
      .replace(/^listen-ng = .*$/m, `listen-ng = 127.0.0.1:${ng}`).replace(/^listen-cli = .*$/m, `listen-cli = 127.0.0.1:${cli}`)
      .replace(/^dtmf-log-dest = .*$/m, `dtmf-log-dest = 127.0.0.1:${dtmf}`)
      .replace(/^port-min = .*$/m, 'port-min = 36000').replace(/^port-max = .*$/m, 'port-max = 36099')
      .replace(/^recording-dir = .*$/m, `recording-dir = ${spool}`);
    const file = path.join(tmp, 'rtpengine.conf');
    fs.writeFileSync(file, conf);
    // Debian's unit: /usr/bin/rtpengine -f -E --no-log-timestamps --pidfile ... --config-file /etc/rtpengine/rtpengine.conf
    const p = new ManagedProcess('rtpengine', 'rtpengine', ['-f', '-E', '--no-log-timestamps', '--config-file', file]);
    procs.push(p);
    await p.waitFor(/Startup complete/, 15000);
    const list = spawnSync('rtpengine-ctl', ['-ip', '127.0.0.1', '-port', String(cli), 'list', 'interfaces'], { encoding: 'utf8', timeout: 10000 });
    assert.equal(list.status, 0, list.stderr);
    assert.match(list.stdout, /Interface 'wa' address '127\.0\.0\.1'/, list.stdout);
    assert.match(list.stdout, /Interface 'pbx' address '127\.0\.0\.1'/, list.stdout);
    // An offer from the PBX's side to WhatsApp's, with the directions the bridge names: the SDP for
    // WhatsApp carries PUBLIC_IP (advertised), the one back to the PBX the private address.
    const client = new Client({ timeout: 5000 });
    try {
      const sdp = ['v=0', 'o=- 1 1 IN IP4 127.0.0.1', 's=-', 'c=IN IP4 127.0.0.1', 't=0 0', 'm=audio 30000 RTP/AVP 0', 'a=rtpmap:0 PCMU/8000', 'a=sendrecv', ''].join('\r\n');
      const common = { 'call-id': 'native-svc-1', 'from-tag': 'pbx-tag', direction: ['pbx', 'wa'] };
      const offer = await client.offer(ng, '127.0.0.1', { ...common, sdp }) as { result: string; sdp?: string };
      assert.equal(offer.result, 'ok', JSON.stringify(offer));
      assert.match(offer.sdp ?? '', /^c=IN IP4 203\.0\.113\.7\r?$/m, 'WhatsApp is given PUBLIC_IP');
      const answerSdp = sdp.replace('m=audio 30000', 'm=audio 30002');
      const answer = await client.answer(ng, '127.0.0.1', { ...common, 'to-tag': 'wa-tag', direction: ['wa', 'pbx'], sdp: answerSdp }) as { result: string; sdp?: string };
      assert.equal(answer.result, 'ok', JSON.stringify(answer));
      assert.match(answer.sdp ?? '', /^c=IN IP4 127\.0\.0\.1\r?$/m, 'the PBX is given the private address');
      await client.delete(ng, '127.0.0.1', { 'call-id': 'native-svc-1', 'from-tag': 'pbx-tag' });
    } finally {
      client.close();
    }
  });

  it('drachtio-server with deploy/systemd/drachtio.conf.xml takes DRACHTIO_SECRET from drachtio.env\'s line, and only that secret', async function () {
    const bin = findDrachtio();
    if (!bin) this.skip();
    assert.equal(execStart('drachtio.service')[0], '/usr/local/bin/drachtio');
    const [admin, sip] = [await freePort('tcp'), await freePort('udp')];
    const conf = fs.readFileSync(path.join(DIR, 'drachtio.conf.xml'), 'utf8')
      .replace('<admin port="9022">', `<admin port="${admin}">`).replace('sip:LOCAL_IP:5060;transport=udp,tcp', `sip:127.0.0.1:${sip};transport=udp`);
    const file = path.join(tmp, 'drachtio.conf.xml');
    fs.writeFileSync(file, conf);
    // drachtio.env as docs/deploy-native.md writes it, read as systemd's EnvironmentFile would.
    const secret = 'a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4';
    const env = Object.fromEntries(parseEnvFile(`DRACHTIO_SECRET=${secret}\n`).values);
    const p = new ManagedProcess('drachtio', bin!, ['--file', file], undefined, { PATH: process.env.PATH ?? '', ...env });
    procs.push(p);
    await p.waitFor(/Starting sofia event loop/, 15000);
    const connects = (s: string) => new Promise<boolean>((resolve) => {
      const srf = new Srf();
      const done = (ok: boolean) => {
        clearTimeout(t);
        srf.disconnect();
        resolve(ok);
      };
      const t = setTimeout(() => done(false), 10000);
      // drachtio-srf tells a refused secret as 'connect' with an error ("failed to authenticate to server").
      srf.on('connect', (err?: Error) => done(!err));
      srf.on('error', () => undefined);
      srf.connect({ host: '127.0.0.1', port: admin, secret: s });
    });
    assert.equal(await connects(secret), true, `the bridge's connection with the secret:\n${p.output.slice(-1500)}`);
    assert.equal(await connects('not-the-secret'), false, 'refused with another');
  });

  it('the bridge from a packed tree installed with npm ci --omit=dev: migrates and starts, no dev dependency present', async function () {
    const out = path.join(tmp, 'release');
    const pack = spawnSync('bash', [path.join(ROOT, 'scripts', 'package.sh'), '--no-build', out], { cwd: ROOT, encoding: 'utf8', timeout: 60000 });
    assert.equal(pack.status, 0, pack.stderr + pack.stdout);
    const version = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    const tarball = path.join(out, `wa-sip-bridge-${version}.tar.gz`);
    const opt = path.join(tmp, 'opt');
    fs.mkdirSync(opt);
    assert.equal(spawnSync('tar', ['-xzf', tarball, '-C', opt]).status, 0);
    const tree = path.join(opt, `wa-sip-bridge-${version}`);
    assert.ok(!fs.existsSync(path.join(tree, 'dist', 'test')), 'no tests in the tree');
    assert.ok(!fs.existsSync(path.join(tree, 'node_modules')), 'no node_modules in the tarball');
    // Offline, from npm's cache: the tests run with no network.
    const ci = spawnSync('npm', ['ci', '--omit=dev', '--offline', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: tree, encoding: 'utf8', timeout: 180000 });
    if (ci.status !== 0 && /ENOTCACHED|offline/i.test(ci.stderr)) this.skip(); // a cache without these packages: nothing to install from
    assert.equal(ci.status, 0, ci.stderr);
    const pkg = JSON.parse(fs.readFileSync(path.join(tree, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    for (const d of Object.keys(pkg.dependencies)) assert.ok(fs.existsSync(path.join(tree, 'node_modules', d)), `${d} is installed`);
    // Nothing the lockfile marks dev-only (tsc, mocha, wrtc, the browser driver and what only they pull in);
    // a dev dependency a production one also needs (@types/node) is not dev-only.
    const lock = JSON.parse(fs.readFileSync(path.join(tree, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
    const devOnly = Object.entries(lock.packages).filter(([p, e]) => p.startsWith('node_modules/') && e.dev === true).map(([p]) => p);
    assert.ok(devOnly.includes('node_modules/typescript') && devOnly.includes('node_modules/mocha'));
    const present = devOnly.filter((p) => fs.existsSync(path.join(tree, p)));
    assert.deepEqual(present, [], 'no dev-only package is installed');

    const { db, drop } = await scratchDatabase('wasb_packed');
    try {
      const [{ name }] = await db.query<{ name: string }>('SELECT current_database() AS name', { type: QueryTypes.SELECT }) as [{ name: string }];
      const u = new URL(infra.databaseUrl);
      u.pathname = `/${name}`;
      const envFile = path.join(tmp, 'bridge.env');
      const httpPort = await freePort('tcp');
      const d = infra.drachtio;
      fs.writeFileSync(envFile, [
        `DATABASE_URL='${u.toString()}'`, 'YCLOUD_API_KEY=packed-key', 'YCLOUD_WEBHOOK_SECRET=packed-secret', "YCLOUD_API_BASE_URL=http://127.0.0.1:9/v2",
        `DRACHTIO_SECRET=${d?.secret ?? 'none'}`, `DRACHTIO_PORT=${d?.adminPort ?? 9}`,
        `RTPENGINE_NG=${infra.rtpengineNg ? `${infra.rtpengineNg.host}:${infra.rtpengineNg.port}` : '127.0.0.1:9'}`,
        'PBX_TARGET=sip:127.0.0.1:5099', 'PUBLIC_IP=203.0.113.7', 'HTTP_HOST=127.0.0.1', `HTTP_PORT=${httpPort}`,
        `MEDIA_DIR=${path.join(tmp, 'media')}`, `CDR_SPILL_DIR=${path.join(tmp, 'spill')}`,
      ].join('\n'));
      // As docs/deploy-native.md migrates, then as wa-sip-bridge.service starts it (ExecStart, ENV_FILE).
      const migrate = spawnSync(process.execPath, ['dist/src/cdr/migrate-cli.js', '--env-file', envFile], { cwd: tree, encoding: 'utf8', timeout: 60000, env: { PATH: process.env.PATH ?? '' } });
      assert.equal(migrate.status, 0, migrate.stderr);
      assert.match(migrate.stdout, /^applied: 20261125000001-create-cdr\.js, /);
      const exec = execStart('wa-sip-bridge.service');
      const entry = exec[exec.length - 1]!;
      assert.equal(entry, '/opt/wa-sip-bridge/dist/src/index.js');
      const b = new BridgeProcess({ ENV_FILE: envFile, NODE_ENV: 'production' }, path.join(tree, path.relative('/opt/wa-sip-bridge', entry)));
      try {
        await b.started(30000);
        const res = await fetch(`http://127.0.0.1:${httpPort}/healthz`);
        assert.equal(res.status, 200);
        const { code } = await b.signal('SIGTERM');
        assert.equal(code, 0, b.proc.output.slice(-2000));
      } finally {
        await b.stop();
      }
    } finally {
      await drop();
    }
  });
});
