import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { QueryTypes, Sequelize } from 'sequelize';
import { scratchDatabase } from './harness/db-rows';
import { infra } from './harness/infra';

const ROOT = path.join(__dirname, '..', '..');

/** Where the run's Postgres has its socket (the container reaches it through a bind mount), or null. */
function postgresSocketDir(): string | null {
  const host = new URL(infra.databaseUrl).searchParams.get('host');
  const dir = host ?? '/var/run/postgresql';
  return fs.existsSync(dir) ? fs.realpathSync(dir) : null;
}

/** What this machine lacks to boot a container with systemd in it; null when it has it all. */
function missing(): string | null {
  if (process.getuid?.() !== 0) return 'not root';
  for (const p of ['systemd-nspawn', 'script']) if (spawnSync(p, ['--version']).status !== 0) return `no ${p}`;
  for (const f of ['/lib/systemd/systemd', '/lib/systemd/system/rtpengine-daemon.service', '/usr/local/bin/drachtio']) if (!fs.existsSync(f)) return `no ${f}`;
  if (!['/usr/local/bin/node', '/usr/bin/node'].some((f) => fs.existsSync(f))) return 'no node in /usr/local/bin or /usr/bin';
  if (!postgresSocketDir()) return 'no Postgres socket to bind into the container';
  return null;
}

/**
 * deploy/systemd under a real systemd: the host's own system booted in a systemd-nspawn container
 * (its /usr; /etc and /opt under throwaway overlays; a private network with only loopback), in which
 * test/native/check-units.sh follows docs/deploy-native.md — users, folders, a packed tree installed
 * with `npm ci --omit=dev`, the settings and config files, the units — and has systemd start
 * drachtio-server, rtpengine (Debian's unit with the drop-in) and the bridge, reload and stop it, and
 * start it on a schema behind. Skipped where nspawn cannot run (not root, no systemd-container).
 */
describe('native deployment under systemd (systemd-nspawn)', function () {
  this.timeout(300000);
  let dir = '';
  const drops: Array<() => Promise<void>> = [];
  before(function () {
    const why = missing();
    if (why) {
      console.log(`      (skipped: ${why})`);
      this.skip();
    }
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-nspawn-'));
  });
  after(async () => {
    for (const d of drops) await d();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  async function database(prefix: string, socket: string): Promise<{ db: Sequelize; url: string }> {
    const s = await scratchDatabase(prefix);
    drops.push(s.drop);
    const [{ name }] = await s.db.query<{ name: string }>('SELECT current_database() AS name', { type: QueryTypes.SELECT }) as [{ name: string }];
    // the run's role and its password: Postgres may ask for it on the socket too (scripts/setup.sh's roles)
    const u = new URL(infra.databaseUrl);
    const login = `${u.username || 'postgres'}${u.password ? `:${u.password}` : ''}`;
    void socket;
    return { db: s.db, url: `postgres://${login}@localhost/${name}?host=/run/pghost` };
  }

  it('boots, installs as the docs say, and systemd runs the three units as their users; exit 2 is not restarted', async function () {
    const socket = postgresSocketDir()!;
    const run = path.join(dir, 'run');
    fs.mkdirSync(path.join(run, 'out'), { recursive: true });
    // The tree, as on a production host: packed, then npm ci --omit=dev (offline: the tests have no network).
    const pack = spawnSync('bash', [path.join(ROOT, 'scripts', 'package.sh'), '--no-build', path.join(dir, 'release')], { cwd: ROOT, encoding: 'utf8', timeout: 60000 });
    assert.equal(pack.status, 0, pack.stderr);
    const tarball = fs.readdirSync(path.join(dir, 'release')).find((f) => f.endsWith('.tar.gz'))!;
    assert.equal(spawnSync('tar', ['-xzf', path.join(dir, 'release', tarball), '-C', run]).status, 0);
    fs.renameSync(path.join(run, tarball.replace(/\.tar\.gz$/, '')), path.join(run, 'tree'));
    const ci = spawnSync('npm', ['ci', '--omit=dev', '--offline', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: path.join(run, 'tree'), encoding: 'utf8', timeout: 180000 });
    if (ci.status !== 0 && /ENOTCACHED|offline/i.test(ci.stderr)) this.skip();
    assert.equal(ci.status, 0, ci.stderr);

    const ok = await database('wasb_nspawn_ok', socket);
    const behind = await database('wasb_nspawn_behind', socket);
    fs.writeFileSync(path.join(run, 'bridge.env'), [
      '# bridge.env as docs/deploy-native.md, section 5, writes it (the provider and the PBX on loopback, never called)',
      'PUBLIC_IP=203.0.113.7', `DATABASE_URL='${ok.url}'`, 'YCLOUD_API_KEY=nspawn-key', 'YCLOUD_WEBHOOK_SECRET=nspawn-secret',
      'YCLOUD_API_BASE_URL=http://127.0.0.1:9/v2', 'PBX_TARGET=sip:127.0.0.1:5099', 'DRACHTIO_SECRET=',
      'RTPENGINE_NG=127.0.0.1:22222', 'RTPENGINE_DTMF_LOG=127.0.0.1:22223', 'HTTP_HOST=127.0.0.1', '',
    ].join('\n'));
    fs.writeFileSync(path.join(run, 'behind-url'), behind.url);
    fs.cpSync(path.join(ROOT, 'deploy', 'systemd'), path.join(run, 'deploy'), { recursive: true });
    fs.copyFileSync(path.join(ROOT, 'test', 'native', 'check-units.sh'), path.join(run, 'check.sh'));
    fs.chmodSync(path.join(run, 'check.sh'), 0o755);
    // Boot straight into a target that runs the check alone (not the host's enabled services).
    const etc = path.join(dir, 'etc-upper', 'systemd', 'system');
    fs.mkdirSync(etc, { recursive: true });
    fs.mkdirSync(path.join(dir, 'opt-upper'));
    fs.writeFileSync(path.join(etc, 'wasb-check.service'), '[Unit]\nAfter=basic.target systemd-journald.service\n[Service]\nType=oneshot\nExecStart=/run/wasb/check.sh\n');
    fs.writeFileSync(path.join(etc, 'wasb-check.target'), '[Unit]\nRequires=basic.target\nWants=wasb-check.service\nAfter=basic.target\nAllowIsolate=yes\n');

    const machine = `wasb${process.pid}`;
    const nspawn = [
      'systemd-nspawn', '-D', '/', '--volatile=yes', '--private-network', '--register=no', '--keep-unit', '-M', machine, '--console=read-only',
      `--overlay=/etc:${path.join(dir, 'etc-upper')}:/etc`, `--overlay=/opt:${path.join(dir, 'opt-upper')}:/opt`,
      `--bind=${run}:/run/wasb`, `--bind=${socket}:/run/pghost`, '-b', 'systemd.unit=wasb-check.target',
    ].join(' ');
    // systemd wants a terminal for its console: script(1) gives it one.
    const child = spawn('script', ['-qec', nspawn, path.join(dir, 'console.log')], { stdio: ['ignore', 'ignore', 'ignore'] });
    const code = await new Promise<number | null>((resolve) => {
      const t = setTimeout(() => child.kill('SIGKILL'), 180000);
      child.once('exit', (c) => {
        clearTimeout(t);
        resolve(c);
      });
    });
    fs.rmSync(`/run/systemd/nspawn/propagate/${machine}`, { recursive: true, force: true });
    const log = fs.existsSync(path.join(run, 'out', 'check.log')) ? fs.readFileSync(path.join(run, 'out', 'check.log'), 'utf8') : '';
    const consoleTail = fs.existsSync(path.join(dir, 'console.log')) ? fs.readFileSync(path.join(dir, 'console.log'), 'utf8').slice(-3000) : '';
    assert.equal(code, 0, `nspawn:\n${consoleTail}`);
    const has = (re: RegExp, what: string) => assert.match(log, re, `${what}, in the container's transcript:\n${log.slice(0, 6000)}`);
    has(/CHECK-DONE/, 'the check ran to its end');
    has(/^applied: 20261125000001-create-cdr\.js/m, 'migrated as the bridge user with --env-file');
    has(/readyz after \d+ ms: \{"ok":true,"checks":\{"postgres":true,"sip":true,"rtpengine":true,"draining":false/, 'ready: Postgres, drachtio-server, rtpengine');
    for (const [unit, user] of [['drachtio', 'drachtio'], ['rtpengine-daemon', 'rtpengine'], ['wa-sip-bridge', 'wa-sip-bridge']]) {
      has(new RegExp(`^unit (?=.*Id=${unit}\\.service)(?=.*ActiveState=active SubState=running)(?=.*User=${user}\\b).*$`, 'm'), `${unit} running as ${user}`);
    }
    has(/^wa-sip-bridge\s+\d+ node \/opt\/wa-sip-bridge\/dist\/src\/index\.js$/m, 'the bridge\'s process (node from systemd\'s PATH)');
    has(/^drachtio\s+\d+ \/usr\/local\/bin\/drachtio --file \/etc\/drachtio\/drachtio\.conf\.xml$/m, 'drachtio-server\'s process, no secret on its command line');
    has(/^sighup seen: [1-9]/m, 'systemctl reload sends SIGHUP');
    has(/^after stop Result=success ExecMainStatus=0 ActiveState=inactive/m, 'SIGTERM: drained and exited 0');
    has(/^behind (?=.*Result=exit-code)(?=.*ExecMainStatus=2)(?=.*ActiveState=failed)(?=.*NRestarts=0)/m, 'a schema behind: exit 2, not restarted');
    has(/cannot start: the database schema is behind: run `npm run migrate`/, 'the reason in the journal');
    has(/"settings file read"/, 'the settings file read');
    assert.doesNotMatch(log, /nspawn-secret|nspawn-key/, 'no value of the settings file in the journal');
  });
});
