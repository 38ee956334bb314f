import path from 'node:path';
import { Sequelize } from 'sequelize';
import { SequelizeStorage, Umzug } from 'umzug';

/** A pool whose every wait is bounded: getting a connection, opening it, and each statement. */
export function connectDatabase(url: string, timeoutMs = 5000): Sequelize {
  return new Sequelize(url, {
    logging: false,
    pool: { max: 10, min: 0, idle: 10000, acquire: timeoutMs },
    dialectOptions: { connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs },
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
