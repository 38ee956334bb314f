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

/** DATABASE_URL as it can be shown: the password replaced by `****` (an unparseable URL: not shown at all). */
export function maskedDatabaseUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '****';
    return u.toString();
  } catch {
    return '(DATABASE_URL, unparseable)';
  }
}

/** The Postgres SQLSTATE of a connection error (pg's `code`, under Sequelize's `parent`/`original`). */
function sqlState(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 4; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
    e = (e as { parent?: unknown; original?: unknown }).parent ?? (e as { original?: unknown }).original;
  }
  return undefined;
}

/** The innermost message (Postgres's own words). */
function innerMessage(err: unknown): string {
  const inner = (err as { parent?: unknown }).parent ?? (err as { original?: unknown }).original;
  return ((inner ?? err) as Error).message ?? String(err);
}

/**
 * What is wrong, when connecting failed in a way retrying will not fix; null when Postgres may just
 * not be up yet (refused, unreachable, timed out, starting up, too many connections).
 */
export function databaseSetupProblem(err: unknown, url: string): string | null {
  const shown = maskedDatabaseUrl(url);
  const said = innerMessage(err);
  let user = '';
  let db = '';
  try {
    const u = new URL(url);
    user = decodeURIComponent(u.username);
    db = decodeURIComponent(u.pathname.replace(/^\//, ''));
  } catch { /* shown as unparseable */ }
  switch (sqlState(err)) {
    case '28P01':
      return `Postgres refused the password of user "${user}" in DATABASE_URL (${shown}): ${said}. Fix the password in DATABASE_URL, or the role's (ALTER ROLE ... PASSWORD)`;
    case '28000':
      return `Postgres refused user "${user}" from this host (DATABASE_URL: ${shown}): ${said}. Check that the role exists and that pg_hba.conf lets it in from here`;
    case '3D000':
      return `the database "${db}" does not exist (DATABASE_URL: ${shown}): ${said}. Create it (createdb -O ${user || '<owner>'} ${db || '<name>'}), then run \`npm run migrate\``;
    case '42501':
      return `Postgres refused user "${user}" the database (DATABASE_URL: ${shown}): ${said}. GRANT CONNECT on it to the role`;
  }
  // pg's own words when the server asks for a password and the URL gives none (Debian's default scram-sha-256).
  if (/client password must be a string|SASL|password authentication/i.test(said)) {
    return `Postgres asks for a password and DATABASE_URL gives ${/must be a string/.test(said) ? 'none' : 'one it does not accept'} (${shown}): ${said}. Put the role's password in DATABASE_URL (postgres://user:password@host:5432/db)`;
  }
  return null;
}

/** The message a schema behind this build stops start-up with. */
export function schemaBehindMessage(pending: readonly string[], url: string): string {
  return `the database schema is behind: run \`npm run migrate\` (or start with MIGRATE_ON_START=true). `
    + `${pending.length} migration${pending.length === 1 ? '' : 's'} of this build not applied to ${maskedDatabaseUrl(url)}: ${pending.join(', ')}`;
}
