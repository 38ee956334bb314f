import fs from 'node:fs';
import path from 'node:path';
import { QueryTypes, Sequelize } from 'sequelize';
import { SequelizeStorage, Umzug } from 'umzug';

/** The size and bounds of one pool (the calls' pool or the reporting pool). */
export interface PoolOptions {
  /** Connections at most. */
  max?: number;
  /** Bound on each statement on the server (statement_timeout); the other waits use `timeoutMs`. */
  statementTimeoutMs?: number;
  /** Shown in pg_stat_activity, so an operator can tell the pools apart. */
  applicationName?: string;
}

/**
 * A pool whose every wait is bounded by `timeoutMs`: getting a connection from the pool, opening one,
 * each statement on the server, and each round trip on the client (a Postgres behind a dropped
 * network never answers, so the server's statement_timeout alone would not end the wait; Sequelize
 * drops a connection whose round trip timed out). TCP keepalives find connections the network lost
 * while they sat idle in the pool. A longer `statementTimeoutMs` (the reporting pool's) raises the
 * client's round-trip bound with it, so the server cancels the statement first.
 */
export function connectDatabase(url: string, timeoutMs = 5000, o: PoolOptions = {}): Sequelize {
  const statementMs = o.statementTimeoutMs ?? timeoutMs;
  return new Sequelize(url, {
    logging: false,
    pool: { max: o.max ?? 10, min: 0, idle: 10000, acquire: timeoutMs },
    dialectOptions: {
      connectionTimeoutMillis: timeoutMs,
      query_timeout: statementMs === timeoutMs ? timeoutMs : statementMs + 1000,
      statement_timeout: statementMs,
      idle_in_transaction_session_timeout: Math.max(statementMs, 10000),
      keepAlive: true,
      ...(o.applicationName ? { application_name: o.applicationName } : {}),
    },
  });
}

/** REPORTING_DB_POOL_MAX, REPORTING_STATEMENT_TIMEOUT_MS: the reporting API's own pool. */
export interface ReportingPoolSettings { poolMax: number; statementTimeoutMs: number }

/**
 * The reporting API's own pool, apart from the one calls, webhooks, CDR writes and heartbeats use:
 * reports and exports can only ever wait for each other, never make a call wait. Small (`poolMax`),
 * and every statement ends at `statementTimeoutMs` on the server. A request waits for one of its
 * connections at most `acquireTimeoutMs` (then 503).
 */
export function connectReportingDatabase(url: string, s: ReportingPoolSettings, acquireTimeoutMs: number): Sequelize {
  return connectDatabase(url, acquireTimeoutMs, { max: s.poolMax, statementTimeoutMs: s.statementTimeoutMs, applicationName: 'wa-sip-bridge reporting' });
}

/** Where the compiled migrations are (dist/migrations; the sources live in migrations/). */
const MIGRATIONS_DIR = path.join(__dirname, '..', '..', 'migrations');

/**
 * The Postgres advisory lock (one bigint key, this project's own) a migration holds: two nodes that
 * start together with MIGRATE_ON_START, or `npm run migrate` beside a starting node, apply the schema one
 * after the other; the second finds nothing left to do.
 */
export const MIGRATION_LOCK_KEY = '7761736962726964';

/** How long a migration waits for another's lock at most (another node migrating a large table). */
export const MIGRATION_LOCK_WAIT_MS = 10 * 60 * 1000;

/** The migrations this build has, by the name schema_migrations records (the compiled file's name), in order. */
export function knownMigrations(dir = MIGRATIONS_DIR): string[] {
  return fs.readdirSync(dir).filter((f) => f.endsWith('.js')).sort();
}

/**
 * Applies the pending migrations under the migration lock (waiting for it at most `lockWaitMs`), and
 * returns the names applied (none: the schema was up to date, or another node just brought it there).
 */
export async function migrate(sequelize: Sequelize, o: { lockWaitMs?: number } = {}): Promise<string[]> {
  const umzug = new Umzug({
    migrations: { glob: ['*.js', { cwd: MIGRATIONS_DIR }] },
    context: sequelize.getQueryInterface(),
    storage: new SequelizeStorage({ sequelize, tableName: 'schema_migrations' }),
    logger: undefined,
  });
  return withMigrationLock(sequelize, o.lockWaitMs ?? MIGRATION_LOCK_WAIT_MS, async () => (await umzug.up()).map((m) => m.name));
}

/** The part of pg's client the lock uses. */
interface PgClient { query(text: string, values?: unknown[]): Promise<{ rows: Array<Record<string, unknown>> }> }

/**
 * Runs `fn` holding the migration lock: a session lock on one connection taken out of the pool for the
 * time (the migrations run on others). The lock is tried every 250 ms, so no statement outlives the pool's
 * statement timeout while another node migrates; past `lockWaitMs` this gives up. A process that dies
 * holding it loses its connection, and Postgres releases the lock with it.
 */
async function withMigrationLock<T>(sequelize: Sequelize, lockWaitMs: number, fn: () => Promise<T>): Promise<T> {
  const conn = await sequelize.connectionManager.getConnection({ type: 'write' });
  const client = conn as unknown as PgClient;
  try {
    const deadline = Date.now() + lockWaitMs;
    for (;;) {
      const { rows } = await client.query('SELECT pg_try_advisory_lock($1::bigint) AS locked', [MIGRATION_LOCK_KEY]);
      if (rows[0]?.locked === true) break;
      if (Date.now() >= deadline) throw new Error(`another migration has held the migration lock for over ${Math.round(lockWaitMs / 1000)} s (pg_locks, objid of key ${MIGRATION_LOCK_KEY}): is one stuck?`);
      await new Promise((r) => setTimeout(r, 250));
    }
    try {
      return await fn();
    } finally {
      await client.query('SELECT pg_advisory_unlock($1::bigint)', [MIGRATION_LOCK_KEY]).catch(() => undefined);
    }
  } finally {
    sequelize.connectionManager.releaseConnection(conn);
  }
}

/** The schema as this build sees it: the migrations it has that the database has not applied. */
export async function pendingMigrations(sequelize: Sequelize, dir = MIGRATIONS_DIR): Promise<string[]> {
  // Read-only: umzug's own storage would create schema_migrations to answer.
  const [{ t }] = await sequelize.query<{ t: string | null }>("SELECT to_regclass('schema_migrations')::text AS t", { type: QueryTypes.SELECT }) as [{ t: string | null }];
  const applied = new Set(t === null ? [] : (await sequelize.query<{ name: string }>('SELECT name FROM schema_migrations', { type: QueryTypes.SELECT })).map((r) => r.name));
  return knownMigrations(dir).filter((m) => !applied.has(m));
}
