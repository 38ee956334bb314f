import { z } from 'zod';

/**
 * How one environment variable becomes a value: a zod schema that takes the variable's text (trimmed,
 * never empty: an empty variable counts as unset) and gives the typed value, or issues. Each issue's
 * message completes a sentence that starts with the variable's name ("must be ...", "entry "x" is ...").
 */
export type Parser<T> = z.ZodType<T, z.ZodTypeDef, string>;

/** What an unset (or empty) variable means. */
export type Fallback<T> =
  /** Start-up stops and names it. */
  | { readonly kind: 'required' }
  /** This text, parsed as if it had been set (so a default always passes the setting's own checks). */
  | { readonly kind: 'default'; readonly written: string }
  /** Text that depends on the host (its name, its temporary folder), parsed likewise; `shown` in the docs. */
  | { readonly kind: 'host'; readonly written: () => string; readonly shown: string }
  /** No text: this value (null: off, none), `shown` in the docs. */
  | { readonly kind: 'unset'; readonly value: T; readonly shown: string };

/** One setting: its type and checks (`parse`), what unset means, and its one description. */
export interface Setting<T> {
  readonly parse: Parser<T>;
  readonly fallback: Fallback<T>;
  /** What it does, in Markdown: docs/configuration.md's settings table and .env.example both show this text. */
  readonly doc: string;
  /**
   * A password, key or token: its value is never repeated in a problem, it is left empty in
   * .env.example, and log.ts's configSecrets must list it (test/unit/config-docs.test.ts checks both).
   */
  readonly secret: boolean;
}

/** A setting of any type, for code that walks all of them. */
export type AnySetting = Setting<unknown>;

interface Described<T> { parse: Parser<T>; doc: string; secret?: boolean }

export function setting<T>(o: Described<T> & { required: true }): Setting<T>;
export function setting<T>(o: Described<T> & { default: string }): Setting<T>;
export function setting<T>(o: Described<T> & { hostDefault: () => string; shown: string }): Setting<T>;
export function setting<T, U>(o: Described<T> & { unset: U; shown: string }): Setting<T | U>;
export function setting<T, U>(
  o: Described<T> & ({ required: true } | { default: string } | { hostDefault: () => string; shown: string } | { unset: U; shown: string }),
): Setting<T | U> {
  const fallback: Fallback<T | U> = 'required' in o ? { kind: 'required' }
    : 'default' in o ? { kind: 'default', written: o.default }
    : 'hostDefault' in o ? { kind: 'host', written: o.hostDefault, shown: o.shown }
    : { kind: 'unset', value: o.unset, shown: o.shown };
  return { parse: o.parse, fallback, doc: o.doc, secret: o.secret ?? false };
}

/** A setting's written default as the docs show it, or why there is none: "(required)", "hostname", "(off)". */
export function shownDefault(s: AnySetting): { text: string; literal: boolean } {
  switch (s.fallback.kind) {
    case 'required': return { text: '(required)', literal: false };
    case 'default': return { text: s.fallback.written, literal: true };
    case 'host':
    case 'unset': return { text: s.fallback.shown, literal: false };
  }
}

/** The value a setting takes from `raw` (the variable as set, undefined when unset), or the problems to report. */
export function readSetting<T>(name: string, s: Setting<T>, raw: string | undefined): { ok: true; value: T } | { ok: false; problems: string[] } {
  const text = raw?.trim();
  if (!text) {
    switch (s.fallback.kind) {
      case 'required': return { ok: false, problems: [`${name} is required`] };
      case 'unset': return { ok: true, value: s.fallback.value };
      case 'default': return parsed(name, s, s.fallback.written);
      case 'host': return parsed(name, s, s.fallback.written());
    }
  }
  return parsed(name, s, text);
}

function parsed<T>(name: string, s: Setting<T>, text: string): { ok: true; value: T } | { ok: false; problems: string[] } {
  const r = s.parse.safeParse(text);
  if (r.success) return { ok: true, value: r.data };
  return { ok: false, problems: r.error.issues.map((i) => `${name} ${i.message}`) };
}
