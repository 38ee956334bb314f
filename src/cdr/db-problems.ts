import { classifyPgError, maskedDatabaseUrl } from './pg-errors';

/**
 * Start-up problems with the database that waiting does not fix: Postgres refusing DATABASE_URL's
 * credentials, a database that does not exist, a schema behind this build. Each is reported at once,
 * as what it is, naming DATABASE_URL with its password masked; only an unreachable Postgres is retried.
 */

/** A problem an operator must fix in the configuration or the database; start-up stops (exit 2). */
export class DatabaseSetupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DatabaseSetupError';
  }
}

export { maskedDatabaseUrl } from './pg-errors';

/**
 * What is wrong, when connecting failed in a way retrying will not fix (credentials refused, no such
 * database: see classifyPgError); null when Postgres may just not be up yet.
 */
export function databaseSetupProblem(err: unknown, url: string): string | null {
  const p = classifyPgError(err, url);
  return p.kind === 'auth' || p.kind === 'no-database' ? p.message : null;
}

/** The message a schema behind this build stops start-up with. */
export function schemaBehindMessage(pending: readonly string[], url: string): string {
  return `the database schema is behind: run \`npm run migrate\` (or start with MIGRATE_ON_START=true). `
    + `${pending.length} migration${pending.length === 1 ? '' : 's'} of this build not applied to ${maskedDatabaseUrl(url)}: ${pending.join(', ')}`;
}
