import net from 'node:net';
import { z } from 'zod';
import { isHttpUrl, parseHostPort } from './addresses';
import { Parser } from './setting';

/**
 * The zod schemas settings are made of. Each takes a variable's trimmed text; each problem's message
 * completes a sentence that starts with the variable's name, and repeats the value only where the
 * setting is no secret (the parsers that secrets use never repeat it).
 */

function fail(ctx: z.RefinementCtx, message: string): never {
  ctx.addIssue({ code: z.ZodIssueCode.custom, message });
  return z.NEVER;
}

/** Any text. */
export const text: Parser<string> = z.string();

/** Text that `ok` accepts; otherwise `why(value)` is the problem. */
export function textWhere(ok: (value: string) => boolean, why: (value: string) => string): Parser<string> {
  return z.string().transform((value, ctx) => (ok(value) ? value : fail(ctx, why(value))));
}

/** A whole number from `min` to `max`. */
export function integer(min: number, max: number): Parser<number> {
  return z.string().transform((value, ctx) => {
    const n = Number(value);
    return Number.isInteger(n) && n >= min && n <= max ? n : fail(ctx, `must be an integer between ${min} and ${max} (got "${value}")`);
  });
}

/** A number (fractions allowed) from `min` to `max`. */
export function decimal(min: number, max: number): Parser<number> {
  return z.string().transform((value, ctx) => {
    const n = Number(value);
    return n >= min && n <= max ? n : fail(ctx, `must be a number between ${min} and ${max} (got "${value}")`);
  });
}

/** One of `values`, as written. */
export function oneOf<const V extends readonly [string, ...string[]]>(values: V): Parser<V[number]> {
  const choices = values.length === 2 ? `"${values[0]}" or "${values[1]}"` : `one of ${values.map((v) => `"${v}"`).join(', ')}`;
  return z.enum(values, { errorMap: (_issue, ctx) => ({ message: `must be ${choices} (got "${String(ctx.data)}")` }) });
}

/** `true` or `false`. */
export const flag: Parser<boolean> = oneOf(['true', 'false']).transform((v) => v === 'true');

/** An IPv4 or IPv6 address; `why(value)` is the problem otherwise. */
export function ipAddress(why: (value: string) => string): Parser<string> {
  return textWhere((v) => net.isIP(v) !== 0, why);
}

/** An http:// or https:// URL, trailing slashes removed. */
export const httpUrl: Parser<string> = z.string().transform((value, ctx) => {
  const url = value.replace(/\/+$/, '');
  return isHttpUrl(url) ? url : fail(ctx, `must be an http(s) URL (got "${value}")`);
});

/** `host:port` (IPv6 in brackets); `why(value)` is the problem otherwise. */
export function hostPort(why: (value: string) => string): Parser<{ host: string; port: number }> {
  return z.string().transform((value, ctx) => parseHostPort(value) ?? fail(ctx, why(value)));
}

/** A regular expression made by `compile` from the text. */
export function regExp(compile: (source: string) => RegExp): Parser<RegExp> {
  return z.string().transform((value, ctx) => {
    try {
      return compile(value);
    } catch {
      return fail(ctx, `is not a regular expression (got "${value}")`);
    }
  });
}

/** `off` (null), or what `parser` makes of the text. */
export function orOff<T>(parser: Parser<T>): Parser<T | null> {
  return z.string().transform((value, ctx) => {
    if (value === 'off') return null;
    const r = parser.safeParse(value);
    if (r.success) return r.data;
    for (const issue of r.error.issues) ctx.addIssue({ code: z.ZodIssueCode.custom, message: issue.message });
    return z.NEVER;
  });
}

/**
 * Comma-separated entries, each read by `entry` (whose problems complete "entry "x" ..."); empty entries
 * are skipped. `atLeastOne`: the problem when none is left. `secret`: a bad entry is named by its
 * position, never by its value.
 */
export function listOf<T>(entry: Parser<T>, o: { atLeastOne?: string; secret?: boolean } = {}): Parser<T[]> {
  return z.string().transform((value, ctx) => {
    const items = value.split(',').map((s) => s.trim()).filter(Boolean);
    const out: T[] = [];
    items.forEach((item, i) => {
      const r = entry.safeParse(item);
      if (r.success) out.push(r.data);
      else for (const issue of r.error.issues) ctx.addIssue({ code: z.ZodIssueCode.custom, message: `entry ${o.secret ? i + 1 : `"${item}"`} ${issue.message}` });
    });
    if (!items.length && o.atLeastOne) return fail(ctx, o.atLeastOne);
    return out;
  });
}
