import path from 'node:path';
import { Sequelize } from 'sequelize';
import { SequelizeStorage, Umzug } from 'umzug';

export function connectDatabase(url: string): Sequelize {
  return new Sequelize(url, { logging: false, pool: { max: 10, min: 0, idle: 10000 } });
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
