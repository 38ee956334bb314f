import fs from 'node:fs';
import path from 'node:path';
import { Client } from 'pg';
import { CheckResult, failed, ok, warn } from '../preflight/report';
import { errorCode, messageOf } from './check';

/** Where `npm run migrate` finds the compiled migrations (src/cdr/db.ts migrate): dist/migrations. */
export const MIGRATIONS_DIR = path.join(__dirname, '..', '..', 'migrations');

/**
 * Postgres as DATABASE_URL names it: it takes the credentials, the database exists, and every migration
 * of this build is applied (schema_migrations, umzug's table, against the migrations on disk). Read only:
 * nothing is created (not even umzug's table, which its own check would create).
 */
export async function checkDatabase(url: string, timeoutMs: number, migrationsDir = MIGRATIONS_DIR): Promise<CheckResult[]> {
  const where = describe(url);
  const client = new Client({ connectionString: url, connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs, statement_timeout: timeoutMs });
  client.on('error', () => { /* a connection lost after the checks: nothing to report */ });
  try {
    try {
      await client.connect();
    } catch (err) {
      return [failed('connection', connectProblem(err, where, timeoutMs))];
    }
    const results: CheckResult[] = [ok('connection', `connected to ${where}`)];
    results.push(await migrations(client, migrationsDir));
    return results;
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function migrations(client: Client, dir: string): Promise<CheckResult> {
  const check = 'migrations';
  let onDisk: string[];
  try {
    onDisk = fs.readdirSync(dir).filter((f) => f.endsWith('.js')).map(stem).sort();
  } catch (err) {
    return warn(check, `this build has no migrations to compare (${dir}: ${errorCode(err) ?? messageOf(err)}): run npm run build`);
  }
  const table = await client.query<{ t: string | null }>("SELECT to_regclass('schema_migrations')::text AS t");
  if (table.rows[0]?.t == null) {
    return failed(check, `the database is not migrated (no schema_migrations table; ${onDisk.length} migrations to apply): run npm run migrate`);
  }
  const applied = new Set((await client.query<{ name: string }>('SELECT name FROM schema_migrations')).rows.map((r) => stem(r.name)));
  const pending = onDisk.filter((m) => !applied.has(m));
  const unknown = [...applied].filter((m) => !onDisk.includes(m));
  if (pending.length) {
    return failed(check, `${pending.length} of ${onDisk.length} migrations not applied (${pending.slice(0, 3).join(', ')}${pending.length > 3 ? ', ...' : ''}): run npm run migrate`);
  }
  if (unknown.length) return warn(check, `up to date, and ${unknown.length} applied migration(s) this build does not have (${unknown.join(', ')}): a newer bridge migrated it`);
  return ok(check, `all ${onDisk.length} applied`);
}

/** A migration's name without its extension: the table holds the compiled file's name (".js"). */
const stem = (name: string): string => name.replace(/\.(js|ts)$/, '');

/** user@host:port/database: DATABASE_URL without its password. */
function describe(url: string): string {
  try {
    const u = new URL(url);
    const socket = u.searchParams.get('host');
    return `${decodeURIComponent(u.username) || '(no user)'}@${socket ?? u.hostname}${u.port ? `:${u.port}` : ''}${u.pathname}`;
  } catch {
    return '(DATABASE_URL, unreadable)';
  }
}

/** Postgres's refusal named precisely (28P01, 3D000, 28000), or the network's failure. */
function connectProblem(err: unknown, where: string, timeoutMs: number): string {
  const code = errorCode(err);
  const msg = messageOf(err);
  const db = where.slice(where.lastIndexOf('/') + 1);
  switch (code) {
    case '28P01': return `Postgres refused the password of ${where} (28P01 invalid_password): fix DATABASE_URL's user and password`;
    case '3D000': return `the database "${db}" does not exist (3D000) on ${where}: create it (createdb -O <user> ${db}) or fix DATABASE_URL`;
    case '28000': return `Postgres refused ${where} (28000: ${msg}): no pg_hba.conf entry lets this user in from here, or the role does not exist`;
    case '53300': return `Postgres refused ${where}: too many connections (53300)`;
    case '57P03': return `Postgres at ${where} is starting up or shutting down (57P03): try again`;
    case 'ECONNREFUSED': return `nothing listens at ${where} (connection refused): is Postgres running, on DATABASE_URL's host and port?`;
    case 'ENOTFOUND': case 'EAI_AGAIN': return `DATABASE_URL's host does not resolve (${code})`;
    case 'ENOENT': return `no Postgres socket at ${where} (ENOENT): is Postgres running?`;
    default:
      if (/password must be a string|SASL/i.test(msg)) return `Postgres asks ${where} for a password and DATABASE_URL has none: put it in the URL (postgres://user:password@...)`;
      if (/timeout/i.test(msg)) return `no answer from Postgres at ${where} within ${timeoutMs} ms (a firewall?)`;
      return `cannot connect to ${where}: ${msg}${code ? ` (${code})` : ''}`;
  }
}
