import path from 'node:path';
import { Sequelize } from 'sequelize';
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

/** Applies the compiled migrations in dist/migrations (the sources live in migrations/). */
export async function migrate(sequelize: Sequelize): Promise<string[]> {
  const umzug = new Umzug({
    migrations: { glob: ['*.js', { cwd: path.join(__dirname, '..', '..', 'migrations') }] },
    context: sequelize.getQueryInterface(),
    storage: new SequelizeStorage({ sequelize, tableName: 'schema_migrations' }),
    logger: undefined,
  });
  const done = await umzug.up();
  return done.map((m) => m.name);
}
