import fs from 'node:fs';

/**
 * A settings file for running the bridge outside docker compose (`ENV_FILE=/etc/wa-sip-bridge/bridge.env`
 * or `--env-file <path>`): the syntax of .env.example, read as docker compose reads it, so one file serves
 * both. Lines are `KEY=VALUE` (an `export ` before the key is allowed); blank lines and lines starting with
 * `#` are skipped. A value is
 * - unquoted: up to a ` #` comment, trimmed;
 * - in single quotes: taken literally (the way to write a `$` or a `#`);
 * - in double quotes: with `\n \r \t \\ \" \$` escapes.
 * Unquoted and double-quoted values substitute `${NAME}`, `$NAME`, `${NAME:-default}` (and `-`, `:?`,
 * `?`, `:+`, `+`) from the environment or the file's earlier lines; `$$` is a `$`. Quoted values may span lines.
 * Problems name the line and the key, never a value (the file holds secrets).
 */

export class EnvFileError extends Error {
  constructor(readonly file: string, readonly problems: string[]) {
    super(`${file}: ${problems.join('; ')}`);
    this.name = 'EnvFileError';
  }
}

export interface ParsedEnvFile {
  /** The file's variables in file order (a key given twice: its last value). */
  values: Map<string, string>;
  /** One per line that could not be read ("line 4: ..."); the other lines are still read. */
  problems: string[];
}

const KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
type Lookup = (name: string) => string | undefined;

/** Reads a file's text; `env` resolves `${NAME}` before the file's own earlier lines do (the environment wins there too). */
export function parseEnvFile(text: string, env: Record<string, string | undefined> = {}): ParsedEnvFile {
  const values = new Map<string, string>();
  const problems: string[] = [];
  const lookup: Lookup = (name) => env[name] ?? values.get(name);
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const line = lines[i]!.trimStart();
    if (line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    const key = (eq < 0 ? line : line.slice(0, eq)).trim().replace(/^export\s+/, '');
    if (eq < 0 || !KEY.test(key)) {
      problems.push(`line ${lineNo}: not KEY=VALUE${KEY.test(key) ? ` (${key} has no "=")` : ''}`);
      continue;
    }
    let rest = line.slice(eq + 1).trimStart();
    const quote = rest[0];
    if (quote === '"' || quote === "'") {
      // A quoted value ends at its closing quote, on this line or a later one.
      let body = rest.slice(1);
      let end = closingQuote(body, quote);
      while (end < 0 && i + 1 < lines.length) {
        i++;
        body += `\n${lines[i]!}`;
        end = closingQuote(body, quote);
      }
      if (end < 0) {
        problems.push(`line ${lineNo}: ${key}'s value has no closing ${quote}`);
        continue;
      }
      const after = body.slice(end + 1).trim();
      if (after !== '' && !after.startsWith('#')) {
        problems.push(`line ${lineNo}: ${key} has text after its quoted value (quote the whole value)`);
        continue;
      }
      const inner = body.slice(0, end);
      const r = quote === "'" ? { ok: true as const, value: inner } : substitute(unescape(inner), lookup);
      if (r.ok) values.set(key, r.value);
      else problems.push(`line ${lineNo}: ${key}: ${r.problem}`);
      continue;
    }
    const comment = rest.search(/\s#/);
    if (comment >= 0) rest = rest.slice(0, comment);
    const r = substitute(rest.trim(), lookup);
    if (r.ok) values.set(key, r.value);
    else problems.push(`line ${lineNo}: ${key}: ${r.problem}`);
  }
  return { values, problems };
}

/** Where `body`'s closing quote is (a double quote escaped with \ does not close), or -1. */
function closingQuote(body: string, quote: string): number {
  for (let i = 0; i < body.length; i++) {
    if (quote === '"' && body[i] === '\\') i++;
    else if (body[i] === quote) return i;
  }
  return -1;
}

/** A double-quoted value's escapes; `\$` is kept as `$$` so substitution leaves it a `$`. */
function unescape(s: string): string {
  return s.replace(/\\(.)/gs, (_, c: string) => {
    switch (c) {
      case 'n': return '\n';
      case 'r': return '\r';
      case 't': return '\t';
      case '$': return '$$';
      default: return c;
    }
  });
}

/** `${NAME}`, `$NAME`, `${NAME<op>word}` and `$$`, as docker compose substitutes them. */
function substitute(s: string, lookup: Lookup): { ok: true; value: string } | { ok: false; problem: string } {
  let problem: string | null = null;
  const value = s.replace(/\$(\$|\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))/g, (whole, _m: string, braced: string | undefined, bare: string | undefined) => {
    if (whole === '$$') return '$';
    if (bare !== undefined) return lookup(bare) ?? '';
    const m = /^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?$/s.exec(braced ?? '');
    if (!m) {
      problem ??= `"\${${braced ?? ''}}" is not a variable reference (write $$ for a literal $, or single-quote the value)`;
      return '';
    }
    const [, name, op, word = ''] = m as unknown as [string, string, string | undefined, string | undefined];
    const v = lookup(name);
    const empty = v === undefined || (op?.startsWith(':') === true && v === '');
    switch (op) {
      case undefined: return v ?? '';
      case ':-': case '-': return empty ? word : v!;
      case ':+': case '+': return empty ? '' : word;
      default:
        if (empty) problem ??= `${name} is required here${word ? ` (${word})` : ''}`;
        return v ?? '';
    }
  });
  return problem === null ? { ok: true, value } : { ok: false, problem };
}

/** The file a command names: `--env-file <path>` or `--env-file=<path>` in `argv`, else ENV_FILE; null: none. */
export function envFileFrom(argv: readonly string[], env: Record<string, string | undefined>): string | null {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--env-file') {
      const next = argv[i + 1];
      if (next === undefined || next === '') throw new EnvFileError('--env-file', ['needs a path: --env-file /etc/wa-sip-bridge/bridge.env']);
      return next;
    }
    if (a.startsWith('--env-file=')) return a.slice('--env-file='.length);
  }
  const e = env.ENV_FILE?.trim();
  return e ? e : null;
}

/**
 * Reads the settings file named on the command line or by ENV_FILE into `env`, where a variable is not
 * already set (the real environment wins, even when set empty). Returns the file and the keys it set
 * (never their values), or null when no file is named. Throws EnvFileError when the file cannot be read
 * or has lines that are not settings: start-up stops rather than run with half a configuration.
 */
export function applyEnvFile(argv: readonly string[], env: Record<string, string | undefined> = process.env): { file: string; set: string[]; fromEnvironment: string[] } | null {
  const file = envFileFrom(argv, env);
  if (file === null) return null;
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new EnvFileError(file, [code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'not readable by this user' : (err as Error).message]);
  }
  const { values, problems } = parseEnvFile(text, env);
  if (problems.length) throw new EnvFileError(file, problems);
  const set: string[] = [];
  const fromEnvironment: string[] = [];
  for (const [k, v] of values) {
    if (env[k] !== undefined) fromEnvironment.push(k);
    else {
      env[k] = v;
      set.push(k);
    }
  }
  return { file, set, fromEnvironment };
}

/**
 * Runs an operator's command (settings, preflight, doctor): first the settings file ENV_FILE names,
 * applied as the bridge applies it, so the command sees the configuration the bridge runs with (a bad
 * file ends it, exit 2, with its problems); then `main`, whose result is the exit code. A failure `main`
 * did not answer for exits 1 with `describe`'s words (default: "<name> failed: <message>").
 */
export function runCommand(name: string, main: () => Promise<number>, describe: (err: unknown) => string = (err) => `${name} failed: ${(err as Error).message}`): void {
  try {
    applyEnvFile([]);
  } catch (err) {
    if (!(err instanceof EnvFileError)) throw err;
    console.error(`${name}: fix the settings file ${err.file}:\n${err.problems.map((p) => `  - ${p}`).join('\n')}`);
    process.exit(2);
  }
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(describe(err));
      process.exit(1);
    },
  );
}
