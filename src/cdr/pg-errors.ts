/**
 * What a failed connection to Postgres means for whoever started the bridge (or the sandbox): the
 * server is not there (yet), it refused the credentials, the database does not exist, or something
 * else. Only the first is worth waiting for; the others are reported at once, naming Postgres and the
 * setting that holds the URL, with the password masked.
 */

export type PgProblemKind = 'unreachable' | 'auth' | 'no-database' | 'other';

export interface PgProblem {
  kind: PgProblemKind;
  /** One sentence for the operator: what failed, where, and what to do. */
  message: string;
  /** Whether trying again later may succeed (only a server that is not reachable yet). */
  retryable: boolean;
}

/** Socket-level failures: nothing answered at that address (yet). */
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ECONNRESET', 'EPIPE']);
/** Postgres SQLSTATEs of a server that is up but not taking connections yet (starting, shutting down, full). */
const NOT_YET_STATES = new Set(['57P03', '57P01', '53300']);
/** 28P01 invalid_password, 28000 invalid_authorization_specification (pg_hba.conf, unknown role). */
const AUTH_STATES = new Set(['28P01', '28000']);
/** 3D000 invalid_catalog_name: the database does not exist. */
const NO_DATABASE_STATE = '3D000';

/** The URL as it may be shown: the password replaced by `***` (an unparsable URL is not shown). */
export function maskedDatabaseUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(not a URL)';
  }
}

/**
 * Classifies a connection or query error from pg or Sequelize (whose errors carry pg's as `parent` or
 * `original`). `setting` names where the URL came from in the messages, e.g. "DATABASE_URL" or "the
 * sandbox's DATABASE_URL".
 */
export function classifyPgError(err: unknown, url: string, setting = 'DATABASE_URL'): PgProblem {
  const e = innermost(err);
  const code = typeof e.code === 'string' ? e.code : '';
  const text = e.message || String(err);
  const where = `${setting} (${maskedDatabaseUrl(url)})`;
  const target = targetOf(url);
  // pg asks for the password only when the server wants one: without it in the URL, it fails before sending any.
  const clientSide = /password must be a (non-empty )?string/i.test(text);
  if (AUTH_STATES.has(code) || clientSide) {
    const noPassword = !passwordOf(url) && (clientSide || code === '28P01');
    const why = noPassword
      ? `it needs a password, and the URL has none (${text}): put it in the URL (postgres://USER:PASSWORD@${target.hostPort}/${target.database || 'DATABASE'}), `
        + `or give the role "${target.user || 'postgres'}" password-less local access in pg_hba.conf`
      : `${text}: check the user and password in the URL, and that pg_hba.conf lets this role in from here`;
    return { kind: 'auth', retryable: false, message: `Postgres refused ${where}: ${why}` };
  }
  if (code === NO_DATABASE_STATE) {
    return {
      kind: 'no-database', retryable: false,
      message: `Postgres at ${target.hostPort} has no database "${target.database}" (${where}): create it `
        + `(sudo -u postgres createdb -O ${target.user || 'OWNER'} ${target.database || 'DATABASE'}), then npm run migrate; or correct the URL`,
    };
  }
  const timedOut = /timeout|timed out/i.test(text) || /TimedOut/.test(nameOf(err));
  if (UNREACHABLE_CODES.has(code) || NOT_YET_STATES.has(code) || timedOut || /Connection terminated unexpectedly/i.test(text)) {
    return { kind: 'unreachable', retryable: true, message: `Postgres is not reachable at ${target.hostPort} (${where}): ${text}` };
  }
  return { kind: 'other', retryable: false, message: `Postgres (${where}): ${text}` };
}

interface ErrorLike { message: string; code?: unknown }

/** The error pg itself raised, under Sequelize's wrappers. */
function innermost(err: unknown): ErrorLike {
  let e = err as (ErrorLike & { parent?: unknown; original?: unknown }) | null;
  for (let i = 0; i < 5 && e && typeof e === 'object'; i++) {
    const inner = (e.parent ?? e.original) as typeof e | undefined;
    if (!inner || inner === e) break;
    e = inner;
  }
  return e && typeof e === 'object' ? e : { message: String(err) };
}

function nameOf(err: unknown): string {
  return typeof err === 'object' && err !== null && typeof (err as Error).name === 'string' ? (err as Error).name : '';
}

function passwordOf(url: string): string {
  try {
    return decodeURIComponent(new URL(url).password);
  } catch {
    return '';
  }
}

function targetOf(url: string): { hostPort: string; database: string; user: string } {
  try {
    const u = new URL(url);
    return { hostPort: `${u.hostname || 'localhost'}:${u.port || 5432}`, database: decodeURIComponent(u.pathname.replace(/^\//, '')), user: decodeURIComponent(u.username) };
  } catch {
    return { hostPort: '(unknown)', database: '', user: '' };
  }
}
