import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { QueryTypes, Sequelize } from 'sequelize';
import { connectDatabase, knownMigrations, migrate } from '../src/cdr/db';
import { BridgeProcess } from './harness/bridge-process';
import { scratchDatabase } from './harness/db-rows';
import { infra } from './harness/infra';
import { startPrivatePostgres, PrivatePostgres } from './harness/private-postgres';
import { freePort, ManagedProcess } from './harness/processes';

const MIGRATE_CLI = path.join(__dirname, '..', 'src', 'cdr', 'migrate-cli.js');

/**
 * Starting the bridge natively (`node dist/src/index.js`, as wa-sip-bridge.service does) against
 * databases as an operator meets them: fresh, behind, shared by two nodes starting together, refusing
 * the credentials, missing. What waiting cannot fix stops start-up at once with exit 2 (which the
 * systemd unit does not restart), named as what it is, with DATABASE_URL's password masked.
 */
describe('native start-up and the database', function () {
  this.timeout(90000);
  const running: Array<BridgeProcess | ManagedProcess> = [];
  const drops: Array<() => Promise<void>> = [];
  let tmp = '';

  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-native-'));
  });
  afterEach(async () => {
    await Promise.all(running.splice(0).map((p) => p.stop()));
  });
  after(async () => {
    for (const d of drops.splice(0)) await d();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** Everything but the database: the run's drachtio-server and rtpengine, a provider on loopback that is never called. */
  async function baseEnv(): Promise<Record<string, string>> {
    const d = infra.drachtio;
    return {
      YCLOUD_API_KEY: 'native-start-key', YCLOUD_WEBHOOK_SECRET: 'native-start-secret', YCLOUD_API_BASE_URL: 'http://127.0.0.1:9/v2',
      DRACHTIO_SECRET: d?.secret ?? 'no-drachtio', DRACHTIO_PORT: String(d?.adminPort ?? (await freePort('tcp'))),
      RTPENGINE_NG: infra.rtpengineNg ? `${infra.rtpengineNg.host}:${infra.rtpengineNg.port}` : '127.0.0.1:9',
      PBX_TARGET: 'sip:127.0.0.1:5099', PUBLIC_IP: '203.0.113.7', HTTP_HOST: '127.0.0.1', HTTP_PORT: String(await freePort('tcp')),
      MEDIA_DIR: path.join(tmp, 'media'), CDR_SPILL_DIR: path.join(tmp, 'spill'), LOG_LEVEL: 'info', DATABASE_STARTUP_WAIT_S: '30',
    };
  }

  function bridge(env: Record<string, string>): BridgeProcess {
    const b = new BridgeProcess(env);
    running.push(b);
    return b;
  }

  /** Exit code, time to exit, and what it said, of a bridge that must stop by itself. */
  async function stopsWith(env: Record<string, string>): Promise<{ code: number | null; ms: number; said: string }> {
    const at = Date.now();
    const b = bridge(env);
    const code = await Promise.race([b.proc.exited, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`still running after 20 s:\n${b.proc.output.slice(-2000)}`)), 20000))]);
    return { code, ms: Date.now() - at, said: b.proc.output };
  }

  async function freshDatabase(prefix: string): Promise<{ db: Sequelize; url: string }> {
    const s = await scratchDatabase(prefix);
    drops.push(s.drop);
    const [{ url }] = await s.db.query<{ url: string }>('SELECT current_database() AS url', { type: QueryTypes.SELECT }) as [{ url: string }];
    const u = new URL(infra.databaseUrl);
    u.pathname = `/${url}`;
    return { db: s.db, url: u.toString() };
  }

  it('a schema behind stops start-up at once: "run npm run migrate", not "relation does not exist"', async () => {
    const { url } = await freshDatabase('wasb_behind');
    const r = await stopsWith({ ...(await baseEnv()), DATABASE_URL: url });
    assert.equal(r.code, 2, r.said);
    assert.match(r.said, /the database schema is behind: run `npm run migrate`/);
    assert.match(r.said, new RegExp(`${knownMigrations().length} migrations of this build not applied`));
    assert.doesNotMatch(r.said, /does not exist/);
    assert.ok(r.ms < 15000, `stopped in ${r.ms} ms`);
  });

  it('MIGRATE_ON_START: two bridges starting together on a fresh database both start, the schema applied once', async () => {
    const { db, url } = await freshDatabase('wasb_race');
    // One reads its settings from a file (--env-file), the other from ENV_FILE: the way wa-sip-bridge.service gives them.
    const fileA = path.join(tmp, 'a.env');
    const fileB = path.join(tmp, 'b.env');
    const write = async (file: string, node: string) => {
      const env = { ...(await baseEnv()), DATABASE_URL: url, MIGRATE_ON_START: 'true', NODE_ID: node };
      fs.writeFileSync(file, `# ${node}\n${Object.entries(env).map(([k, v]) => `${k}='${v}'`).join('\n')}\n`, { mode: 0o600 });
    };
    await write(fileA, 'native-a');
    await write(fileB, 'native-b');
    const a = new BridgeProcess({ ENV_FILE: fileA });
    const b = new BridgeProcess({ ENV_FILE: fileB });
    running.push(a, b);
    await Promise.all([a.started(60000), b.started(60000)]);
    const applied = [a, b].map((p) => p.logLines().find((l) => l.msg === 'migrations applied (MIGRATE_ON_START)')?.applied as string[] | undefined);
    assert.equal(applied.filter(Boolean).length, 1, `one node applied the migrations: ${JSON.stringify(applied)}`);
    assert.deepEqual(applied.find(Boolean), knownMigrations());
    const rows = await db.query<{ name: string; n: string }>('SELECT name, count(*) AS n FROM schema_migrations GROUP BY name ORDER BY name', { type: QueryTypes.SELECT });
    assert.deepEqual(rows.map((r) => r.name), knownMigrations());
    assert.ok(rows.every((r) => Number(r.n) === 1));
    for (const p of [a, b]) {
      const read = p.logLines().find((l) => l.msg === 'settings file read');
      assert.ok(read, 'the file was read and said so');
      assert.ok(!JSON.stringify(p.logLines()).includes('native-start-secret'), 'no value of the file is logged');
    }
  });

  it('two `npm run migrate` at once on a fresh database: one applies, the other waits for its lock and finds nothing to do', async () => {
    const { db, url } = await freshDatabase('wasb_migr2');
    const run = () => {
      const p = new ManagedProcess('migrate', process.execPath, [MIGRATE_CLI], undefined, { PATH: process.env.PATH ?? '', DATABASE_URL: url });
      running.push(p);
      return p;
    };
    const [p1, p2] = [run(), run()];
    const codes = await Promise.all([p1.exited, p2.exited]);
    assert.deepEqual(codes, [0, 0], p1.output + p2.output);
    const outs = [p1.output, p2.output];
    assert.equal(outs.filter((o) => o.startsWith('applied: ')).length, 1, outs.join('\n'));
    assert.equal(outs.filter((o) => o.startsWith('schema is up to date')).length, 1, outs.join('\n'));
    const [{ n }] = await db.query<{ n: string }>('SELECT count(*) AS n FROM schema_migrations', { type: QueryTypes.SELECT }) as [{ n: string }];
    assert.equal(Number(n), knownMigrations().length);
  });

  it('a database that does not exist is named at once, not retried as unreachable', async () => {
    const u = new URL(infra.databaseUrl);
    u.pathname = '/wasb_no_such_database';
    const r = await stopsWith({ ...(await baseEnv()), DATABASE_URL: u.toString() });
    assert.equal(r.code, 2, r.said);
    assert.match(r.said, /has no database "wasb_no_such_database" \(DATABASE_URL \(postgres:\/\//);
    assert.doesNotMatch(r.said, /not reachable yet/);
    assert.ok(r.ms < 10000, `stopped in ${r.ms} ms`);
  });

  describe('against a Postgres that asks for passwords (scram-sha-256)', () => {
    let pg: PrivatePostgres | null = null;
    before(async function () {
      pg = await startPrivatePostgres();
      if (!pg) this.skip();
      const db = connectDatabase(pg.url());
      await migrate(db);
      await db.close();
    });
    after(async () => {
      await pg?.stop();
    });

    it('a wrong password: refused credentials, named at once with the URL masked', async () => {
      const r = await stopsWith({ ...(await baseEnv()), DATABASE_URL: pg!.url({ password: 'wrong-password-xyz' }) });
      assert.equal(r.code, 2, r.said);
      assert.match(r.said, /Postgres refused DATABASE_URL \(postgres:\/\/bridge:\*\*\*@127\.0\.0\.1:\d+\/bridge\)/);
      assert.doesNotMatch(r.said, /wrong-password-xyz|not reachable yet/);
      assert.ok(r.ms < 10000, `stopped in ${r.ms} ms`);
    });

    it('a role pg_hba.conf rejects (28000): named at once', async () => {
      const r = await stopsWith({ ...(await baseEnv()), DATABASE_URL: pg!.url({ user: 'refused' }) });
      assert.equal(r.code, 2, r.said);
      assert.match(r.said, /Postgres refused DATABASE_URL \(postgres:\/\/refused:\*\*\*@/);
      assert.match(r.said, /pg_hba\.conf/);
      assert.doesNotMatch(r.said, /right-password/);
    });

    it('no password in DATABASE_URL where Postgres asks for one (Debian\'s default): named, not "SASL" retried for a minute', async () => {
      const r = await stopsWith({ ...(await baseEnv()), DATABASE_URL: pg!.url({ password: null }) });
      assert.equal(r.code, 2, r.said);
      assert.match(r.said, /it needs a password, and the URL has none/);
      assert.doesNotMatch(r.said, /not reachable yet/);
    });

    it('`npm run migrate` with refused credentials exits 2 (docker/bridge-start.sh does not retry it)', async () => {
      const p = new ManagedProcess('migrate', process.execPath, [MIGRATE_CLI], undefined, { PATH: process.env.PATH ?? '', DATABASE_URL: pg!.url({ password: 'nope-nope' }) });
      running.push(p);
      assert.equal(await p.exited, 2, p.output);
      assert.match(p.output, /cannot migrate: Postgres refused DATABASE_URL/);
    });

    it('the right credentials: the bridge starts', async () => {
      const b = bridge({ ...(await baseEnv()), DATABASE_URL: pg!.url() });
      await b.started(30000);
    });
  });
});
