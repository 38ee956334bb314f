import { ConnectionError, TimeoutError } from 'sequelize';

/**
 * What a failed CDR write may say in a log line: the message and a code. Sequelize's errors carry
 * the SQL and its parameters (`sql`, `parameters`, `original`), which hold phone numbers: never log
 * the error object itself.
 */
export function describeDbError(err: unknown): { message: string; code: string } {
  const e = err as { message?: unknown; name?: unknown; parent?: { code?: unknown }; original?: { code?: unknown }; code?: unknown };
  const code = e?.parent?.code ?? e?.original?.code ?? e?.code ?? e?.name ?? 'unknown';
  const message = typeof e?.message === 'string' ? e.message : String(err);
  return { message: message.slice(0, 300), code: String(code) };
}

/** Postgres SQLSTATEs that say "try again": connection exceptions, shutdowns, too many connections, cancelled statements, lost races. */
const TRANSIENT_CODES = /^(08...|57P0[123]|57014|53300|53400|40001|40P01)$/;
const TRANSIENT_MESSAGE = /timeout|timed out|terminated|ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT|EHOSTUNREACH|not queryable|connection (is )?(closed|lost|ended)|socket/i;

/**
 * Whether a failed write may succeed if tried again unchanged: Postgres unreachable, slow or
 * restarting. A write Postgres refused for what it says (a constraint, a bad value) is not.
 */
export function isTransientDbError(err: unknown): boolean {
  if (err instanceof ConnectionError || err instanceof TimeoutError) return true;
  const { code } = describeDbError(err);
  if (TRANSIENT_CODES.test(code)) return true;
  const parent = (err as { parent?: { message?: unknown } })?.parent?.message;
  const text = `${(err as Error)?.message ?? ''} ${typeof parent === 'string' ? parent : ''}`;
  return TRANSIENT_MESSAGE.test(text);
}

/**
 * Whether a failed INSERT says its row's primary key is taken (SQLSTATE 23505 on `<table>_pkey`). For a
 * create retried after an attempt that timed out here, it means that attempt reached Postgres and
 * committed after all (it was waiting on a lock): the row is there, the create is done.
 */
export function isPrimaryKeyTaken(err: unknown, table: string): boolean {
  const e = err as { parent?: { code?: unknown; constraint?: unknown }; original?: { code?: unknown; constraint?: unknown } };
  const pg = e?.parent ?? e?.original;
  return pg?.code === '23505' && pg.constraint === `${table}_pkey`;
}

/** Each string column's width (VARCHAR(n)) in a model's attribute definitions; TEXT and other types are absent. */
export function stringWidths(attrs: Record<string, unknown>): ReadonlyMap<string, number> {
  const widths = new Map<string, number>();
  for (const [name, attr] of Object.entries(attrs)) {
    const type = (attr as { type?: unknown } | null)?.type as { key?: unknown; options?: { length?: unknown }; _length?: unknown } | undefined;
    const length = type?.options?.length ?? type?._length;
    if (type?.key === 'STRING' && typeof length === 'number' && length > 0) widths.set(name, length);
  }
  return widths;
}

export interface Clamped { field: string; length: number; max: number }

/**
 * Cuts every string longer than its column to the column's width, so one over-long value (a 70
 * character phone id) cannot cost the whole write. Returns the fields to write and what was cut.
 */
export function clampToWidths<T extends object>(fields: T, widths: ReadonlyMap<string, number>): { fields: T; clamped: Clamped[] } {
  const clamped: Clamped[] = [];
  const out: Record<string, unknown> = { ...(fields as Record<string, unknown>) };
  for (const [field, value] of Object.entries(out)) {
    const max = widths.get(field);
    if (max !== undefined && typeof value === 'string' && value.length > max) {
      out[field] = value.slice(0, max);
      clamped.push({ field, length: value.length, max });
    }
  }
  return { fields: out as T, clamped };
}
