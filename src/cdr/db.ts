import path from 'node:path';
import { Sequelize } from 'sequelize';
import { SequelizeStorage, Umzug } from 'umzug';

/**
 * A pool whose every wait is bounded by `timeoutMs`: getting a connection from the pool, opening one,
 * each statement on the server, and each round trip on the client (a Postgres behind a dropped
 * network never answers, so the server's statement_timeout alone would not end the wait; Sequelize
 * drops a connection whose round trip timed out). TCP keepalives find connections the network lost
 * while they sat idle in the pool.
 */
export function connectDatabase(url: string, timeoutMs = 5000): Sequelize {
  return new Sequelize(url, {
    logging: false,
    pool: { max: 10, min: 0, idle: 10000, acquire: timeoutMs },
    dialectOptions: {
      connectionTimeoutMillis: timeoutMs,
      query_timeout: timeoutMs,
      statement_timeout: timeoutMs,
      idle_in_transaction_session_timeout: Math.max(timeoutMs, 10000),
      keepAlive: true,
    },
  });
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
