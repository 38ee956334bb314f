import { applyEnvFile, EnvFileError } from '../config/env-file';
import { connectDatabase, migrate } from './db';
import { databaseSetupProblem, maskedDatabaseUrl } from './db-problems';

/**
 * `npm run migrate` (`node dist/src/cdr/migrate-cli.js [--env-file <path>]`): applies pending migrations
 * to DATABASE_URL, under the migration lock (a node starting with MIGRATE_ON_START waits for it, and the
 * other way round). Reads ENV_FILE / --env-file as the bridge does. Exit 2: something to fix first
 * (no DATABASE_URL, a bad settings file, credentials refused, no such database); 1: anything else
 * (Postgres not up yet: docker/bridge-start.sh retries that).
 */
async function main(): Promise<void> {
  if (process.argv.slice(2).some((a) => a === '--help' || a === '-h')) {
    console.log('usage: npm run migrate [-- --env-file <path>]\napplies the pending database migrations (dist/migrations) to the database DATABASE_URL names, '
      + 'under the migration lock; reads ENV_FILE / --env-file as the bridge does. Exit 0 when the schema is up to date, 1 when a migration failed, '
      + '2 when something must be fixed first (no DATABASE_URL, a bad settings file, credentials refused, no such database).');
    return;
  }
  try {
    applyEnvFile(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof EnvFileError)) throw err;
    console.error(`cannot migrate, fix the settings file ${err.file}:\n${err.problems.map((p) => `  - ${p}`).join('\n')}`);
    process.exit(2);
  }
  const url = process.env.DATABASE_URL;
  if (!url) {
    console.error('DATABASE_URL is required');
    process.exit(2);
  }
  const db = connectDatabase(url);
  try {
    const applied = await migrate(db);
    console.log(applied.length ? `applied: ${applied.join(', ')}` : `schema is up to date (${maskedDatabaseUrl(url)})`);
  } catch (err) {
    const problem = databaseSetupProblem(err, url);
    if (problem) {
      console.error(`cannot migrate: ${problem}`);
      process.exitCode = 2;
      return;
    }
    throw err;
  } finally {
    await db.close();
  }
}

main().catch((err: unknown) => {
  console.error(`migration failed: ${(err as Error).message}`);
  process.exit(1);
});
