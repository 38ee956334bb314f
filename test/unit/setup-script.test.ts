import assert from 'node:assert/strict';
import { spawnSync, SpawnSyncReturns } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SANDBOX_DATABASE_URL } from '../../src/sandbox/local-services';
import { defaultTestDatabaseUrl } from '../harness/infra';

/**
 * scripts/setup.sh (the one setup command the README gives) and scripts/install-drachtio.sh: the roles
 * and password it makes are the ones the sandbox and the tests log in with, its command line, and the
 * drachtio sources it assembles from a mirror (the pinned submodule commits; the mirror's HEAD, said
 * loudly, when a snapshot lacks one).
 */

const ROOT = path.resolve(__dirname, '../../..');
const script = (name: string): string => path.join(ROOT, 'scripts', name);
const text = (name: string): string => fs.readFileSync(script(name), 'utf8');

function shellVar(src: string, name: string): string {
  const m = new RegExp(`^${name}=(?:\\$\\{[A-Z_]+:-)?([^}\\s]+)\\}?$`, 'm').exec(src);
  assert.ok(m, `${name}= in the script`);
  return m[1]!;
}

function run(cmd: string, args: string[], env: Record<string, string> = {}, cwd = ROOT): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...env } });
}

function git(cwd: string, ...args: string[]): string {
  const r = run('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.invalid', '-c', 'init.defaultBranch=main', '-c', 'protocol.file.allow=always', ...args], {}, cwd);
  assert.equal(r.status, 0, `git ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}

describe('scripts/setup.sh', () => {
  const setup = text('setup.sh');

  it('makes the roles, password and databases the sandbox and the tests log in with', () => {
    const password = shellVar(setup, 'DB_PASSWORD');
    const sandbox = new URL(SANDBOX_DATABASE_URL);
    assert.equal(sandbox.username, shellVar(setup, 'DB_ROLE'));
    assert.equal(sandbox.password, password);
    assert.match(setup, new RegExp(`"${sandbox.pathname.slice(1)}:\\$DB_ROLE"`), 'the sandbox database is created, owned by the bridge role');
    for (const isolated of [false, true]) {
      const t = new URL(defaultTestDatabaseUrl(isolated));
      assert.equal(t.username, shellVar(setup, 'TEST_ROLE'));
      assert.equal(t.password, password);
      assert.match(setup, new RegExp(`"${t.pathname.slice(1)}:\\$TEST_ROLE"`), 'the tests database is created, owned by the test role');
    }
    assert.equal(new URL(defaultTestDatabaseUrl(true)).searchParams.get('host'), '/var/run/postgresql', 'the socket, the only way out of the private network namespace');
  });

  it('--help exits 0 with the usage; an unknown argument exits 2', () => {
    const help = run('bash', [script('setup.sh'), '--help']);
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /Usage: sudo scripts\/setup\.sh/);
    const bad = run('bash', [script('setup.sh'), '--frobnicate']);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /unknown argument: --frobnicate/);
  });

  it('--check changes nothing and reports each step', function () {
    this.timeout(30_000);
    const r = run('bash', [script('setup.sh'), '--check']);
    assert.ok(r.status === 0 || r.status === 1, `exit ${r.status}: ${r.stderr}`);
    for (const step of ['system packages', 'node >= 22', 'postgres', 'drachtio-server']) assert.match(r.stdout, new RegExp(`^  ${step} +\\d+s  `, 'm'));
    assert.equal(r.status === 0, !/missing|cannot|not running/.test(r.stdout), 'exit 1 exactly when something is missing');
  });

  it('is shellcheck-clean (where shellcheck is installed)', function () {
    if (spawnSync('shellcheck', ['--version']).error) return this.skip();
    const r = run('shellcheck', [script('setup.sh'), script('install-drachtio.sh'), script('prove-fresh-debian.sh'), path.join(ROOT, '.ci/run')]);
    assert.equal(r.status, 0, r.stdout);
  });
});

describe('scripts/install-drachtio.sh from a bare mirror', () => {
  let dir = '';
  let mirrors = '';
  let sub1 = '';
  let sub2 = '';

  /** A superproject mirror whose tag v9 pins deps/sub at `pin`, beside a mirror of the submodule. */
  function superproject(pin: string, tag: string): void {
    const work = path.join(dir, `super-${tag}`);
    git(dir, 'init', '-q', work);
    fs.writeFileSync(path.join(work, 'configure.ac'), 'AC_INIT\n');
    fs.writeFileSync(path.join(work, '.gitmodules'), '[submodule "deps/sub"]\n\tpath = deps/sub\n\turl = https://github.com/acme/sub.git\n');
    git(work, 'add', '.');
    git(work, 'update-index', '--add', '--cacheinfo', `160000,${pin},deps/sub`);
    git(work, 'commit', '-qm', 'super');
    git(work, 'tag', tag);
    fs.rmSync(path.join(mirrors, 'acme+super'), { recursive: true, force: true });
    git(dir, 'clone', '-q', '--mirror', work, path.join(mirrors, 'acme+super', 'repo'));
  }

  function install(tag: string): SpawnSyncReturns<string> {
    return run('bash', [script('install-drachtio.sh'), path.join(mirrors, 'acme+super', 'repo')], {
      FORCE: '1', SOURCES_ONLY: '1', DRACHTIO_VERSION: tag, BUILD_DIR: path.join(dir, `build-${tag}`),
    });
  }

  before(function () {
    if (spawnSync('git', ['--version']).error) return this.skip();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-install-drachtio-'));
    mirrors = path.join(dir, 'mirrors');
    const sub = path.join(dir, 'sub');
    git(dir, 'init', '-q', sub);
    fs.writeFileSync(path.join(sub, 'version.txt'), 'one\n');
    git(sub, 'add', '.');
    git(sub, 'commit', '-qm', 'one');
    sub1 = git(sub, 'rev-parse', 'HEAD');
    fs.writeFileSync(path.join(sub, 'version.txt'), 'two\n');
    git(sub, 'commit', '-qam', 'two');
    sub2 = git(sub, 'rev-parse', 'HEAD');
    git(dir, 'clone', '-q', '--mirror', sub, path.join(mirrors, 'acme+sub', 'repo'));
  });
  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('takes the tag and each submodule at the commit the tag pins, from the mirror beside it', () => {
    superproject(sub1, 'v1');
    const r = install('v1');
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const src = path.join(dir, 'build-v1', 'drachtio-server');
    assert.equal(fs.readFileSync(path.join(src, 'deps/sub/version.txt'), 'utf8'), 'one\n', 'the pinned commit, not the newest');
    assert.ok(fs.existsSync(path.join(src, 'configure.ac')));
    assert.doesNotMatch(r.stdout, /WARNING/);
  });

  it("uses the mirror's HEAD when the snapshot lacks the pinned commit, and says so", () => {
    const missing = 'f'.repeat(40);
    superproject(missing, 'v2');
    const r = install('v2');
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.equal(fs.readFileSync(path.join(dir, 'build-v2', 'drachtio-server', 'deps/sub/version.txt'), 'utf8'), 'two\n');
    assert.match(r.stdout, new RegExp(`WARNING: deps/sub: the mirror .* lacks the pinned ffffffffffff; built from its HEAD ${sub2.slice(0, 7)}`));
  });

  it('refuses a tag the mirror does not have', () => {
    superproject(sub1, 'v3');
    const r = install('v404');
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /has no v404/);
  });
});
