import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './processes';

/**
 * A Postgres of a test's own that asks for passwords (scram-sha-256), as Debian's default does, unlike
 * the run's trusting one: for start-up tests that need credentials refused. Its pg_hba.conf rejects the
 * role `refused` outright (SQLSTATE 28000). Runs as the `postgres` user (so the tests must run as root,
 * or as that user); null when that or initdb is not available.
 */
export interface PrivatePostgres {
  /** postgres://USER:PASSWORD@127.0.0.1:PORT/DB for the role `bridge` (password `right-password`), database `bridge`. */
  url(o?: { user?: string; password?: string | null; database?: string }): string;
  stop(): Promise<void>;
}

function initdbPath(): string | null {
  for (const c of ['/usr/local/bin/initdb', ...globPgBin('initdb')]) if (fs.existsSync(c)) return c;
  return null;
}

function globPgBin(name: string): string[] {
  const base = '/usr/lib/postgresql';
  if (!fs.existsSync(base)) return [];
  return fs.readdirSync(base).sort().reverse().map((v) => path.join(base, v, 'bin', name));
}

export async function startPrivatePostgres(): Promise<PrivatePostgres | null> {
  const initdb = initdbPath();
  if (!initdb) return null;
  const pgUser = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const uid = Number(pgUser.stdout.trim());
  const gid = Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout.trim());
  const me = process.getuid?.() ?? -1;
  if (pgUser.status !== 0 || (me !== 0 && me !== uid)) return null;
  const bin = path.dirname(fs.realpathSync(initdb));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-pg-'));
  fs.chownSync(dir, uid, gid);
  const data = path.join(dir, 'data');
  const pwfile = path.join(dir, 'pw');
  fs.writeFileSync(pwfile, 'superuser-password\n');
  fs.chownSync(pwfile, uid, gid);
  const init = spawnSync(path.join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--pwfile', pwfile, '-A', 'scram-sha-256', '--no-sync'], { uid, gid, encoding: 'utf8', cwd: dir, timeout: 60000 });
  if (init.status !== 0) throw new Error(`initdb failed: ${init.stderr}`);
  fs.writeFileSync(path.join(data, 'pg_hba.conf'), [
    'local all all scram-sha-256',
    'host all refused 127.0.0.1/32 reject',
    'host all all 127.0.0.1/32 scram-sha-256',
  ].join('\n'));
  const port = await freePort('tcp');
  const child = spawn(path.join(bin, 'postgres'), ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off'], { uid, gid, cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`private Postgres not ready within 30 s:\n${output.slice(-2000)}`)), 30000);
    const check = (b: Buffer) => {
      output += b.toString();
      if (/ready to accept connections/.test(output)) {
        clearTimeout(t);
        resolve();
      }
    };
    child.stdout?.on('data', check);
    child.stderr?.on('data', check);
    void exited.then(() => {
      clearTimeout(t);
      reject(new Error(`private Postgres exited:\n${output.slice(-2000)}`));
    });
  });
  const psql = (sql: string) => {
    const r = spawnSync(path.join(bin, 'psql'), ['-h', dir, '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-v', 'ON_ERROR_STOP=1', '-c', sql], {
      uid, gid, encoding: 'utf8', env: { ...process.env, PGPASSWORD: 'superuser-password' }, timeout: 20000,
    });
    if (r.status !== 0) throw new Error(`psql: ${r.stderr}`);
  };
  psql("CREATE ROLE bridge LOGIN PASSWORD 'right-password'");
  psql("CREATE ROLE refused LOGIN PASSWORD 'right-password'");
  psql('CREATE DATABASE bridge OWNER bridge');
  return {
    url: (o = {}) => {
      const u = new URL(`postgres://127.0.0.1:${port}/${o.database ?? 'bridge'}`);
      u.username = o.user ?? 'bridge';
      const pw = o.password === undefined ? 'right-password' : o.password;
      if (pw !== null) u.password = pw;
      return u.toString();
    },
    stop: async () => {
      // SIGINT: Postgres's fast shutdown (clients disconnected).
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGINT');
        const t = setTimeout(() => child.kill('SIGKILL'), 10000);
        await exited;
        clearTimeout(t);
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

