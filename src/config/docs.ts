import { ComposeEntry, ENV_HEADER, ENV_LAYOUT, EnvLine, SettingEntry } from './env-layout';
import { AnySetting, shownDefault } from './setting';
import { NOT_SETTINGS, SETTINGS, SettingName } from './settings';

/**
 * docs/configuration.md's tables and .env.example, written from the settings' declarations
 * (settings.ts), .env.example's layout with the variables only docker compose reads (env-layout.ts)
 * and the variables that are not settings (NOT_SETTINGS). `npm run docs:config` (src/cli/config-docs.ts)
 * writes them; test/unit/config-docs.test.ts fails when the committed ones differ.
 */

/** The document the tables live in, from the project root. */
export const CONFIG_DOC = 'docs/configuration.md';

/** A generated table: the markers around it in CONFIG_DOC, and how it is written. */
export interface GeneratedTable {
  readonly start: string;
  readonly end: string;
  readonly make: () => string;
}

const settingNames = (): SettingName[] => Object.keys(SETTINGS) as SettingName[];
const cell = (s: string) => s.replace(/\|/g, '\\|');
/** The descriptions link docs from the project root (`docs/x.md`); the tables live in docs/ themselves. */
const fromDocs = (md: string) => md.replace(/\]\(docs\//g, '](');
const header = ['| variable | default | meaning |', '|---|---|---|'];

/** The bridge's settings, one row per variable, in the order settings.ts declares them. */
export function settingsTable(): string {
  const rows = settingNames().map((name) => {
    const d = shownDefault(SETTINGS[name] as AnySetting);
    return `| \`${name}\` | ${cell(d.literal ? `\`${d.text}\`` : d.text)} | ${cell(fromDocs(SETTINGS[name].doc))} |`;
  });
  return [...header, ...rows].join('\n');
}

/** The variables only docker compose reads (never the bridge), in .env.example's order. */
export function composeTable(): string {
  const rows = ENV_LAYOUT.flatMap((b) => b.entries.filter((e): e is ComposeEntry => 'variable' in e)).map((e) => {
    const d = e.required ? '(required)' : e.default === undefined ? '(none)' : /^\(.*\)$/.test(e.default) ? e.default : `\`${e.default}\``;
    return `| \`${e.variable}\` | ${cell(d)} | ${cell(fromDocs(e.doc))} |`;
  });
  return [...header, ...rows].join('\n');
}

/** The other variables the code reads (NOT_SETTINGS): the sandbox's, the tools', Node's. */
export function otherVariablesTable(): string {
  const rows = Object.entries(NOT_SETTINGS).map(([name, why]) => `| \`${name}\` | ${cell(fromDocs(why))} |`);
  return ['| variable | read by |', '|---|---|', ...rows].join('\n');
}

const marker = (what: string) => ({
  start: `<!-- ${what}: written by \`npm run docs:config\` from src/config/settings.ts and env-layout.ts; edit them there -->`,
  end: `<!-- end of ${what} -->`,
});

/** The tables of CONFIG_DOC, in the order they appear there. */
export const GENERATED_TABLES: readonly GeneratedTable[] = [
  { ...marker('settings table'), make: settingsTable },
  { ...marker('compose variables table'), make: composeTable },
  { ...marker('other variables table'), make: otherVariablesTable },
];

/** `doc` with the text between each table's markers replaced by the table. */
export function withGeneratedTables(doc: string): string {
  let out = doc;
  for (const t of GENERATED_TABLES) {
    const start = out.indexOf(t.start);
    const end = out.indexOf(t.end);
    if (start < 0 || end < start) throw new Error(`${CONFIG_DOC} has no "${t.start}" ... "${t.end}" markers`);
    out = `${out.slice(0, start + t.start.length)}\n${t.make()}\n${out.slice(end)}`;
  }
  return out;
}

/** The text between a table's markers in `doc`, or null without them. */
export function tableIn(doc: string, t: GeneratedTable): string | null {
  const start = doc.indexOf(t.start);
  const end = doc.indexOf(t.end);
  if (start < 0 || end < start) return null;
  return doc.slice(start + t.start.length, end).trim();
}

const WIDTH = 100;
const RULE = `# ${'-'.repeat(WIDTH - 1)}`;

/** .env.example as ENV_LAYOUT lays it out. */
export function envExample(): string {
  const out = ENV_HEADER.map((l) => `# ${l}`);
  for (const block of ENV_LAYOUT) {
    out.push('');
    if (block.title) out.push(RULE, `# ${block.title}`, RULE);
    if (block.intro) out.push(...comment(block.intro), '#');
    for (const entry of block.entries) out.push(...('setting' in entry ? settingLines(entry) : composeLines(entry)));
  }
  return `${out.join('\n')}\n`;
}

function settingLines(e: SettingEntry): string[] {
  const s = SETTINGS[e.setting] as AnySetting;
  const required = s.fallback.kind === 'required';
  const line = e.line ?? (required || s.secret ? 'blank' : { example: s.fallback.kind === 'default' ? s.fallback.written : '' });
  const doc = plain(sentence(s.doc)) + (e.note ? ` ${e.note}` : '');
  return [...comment(required && line === 'blank' ? `REQUIRED. ${doc}` : doc), variableLine(e.setting, line)];
}

function composeLines(e: ComposeEntry): string[] {
  const line = e.line ?? (e.required ? 'blank' : { example: e.default ?? '' });
  return [...comment(e.required && line === 'blank' ? `REQUIRED. ${e.doc}` : e.doc), variableLine(e.variable, line)];
}

function variableLine(name: string, line: EnvLine): string {
  if (line === 'blank') return `${name}=`;
  if ('set' in line) return `${name}=${quoted(line.set)}`;
  return `# ${name}=${quoted(line.example)}`;
}

/** docker compose takes a value literally except for $: such a value goes in single quotes. */
const quoted = (v: string) => (v.includes('$') ? `'${v}'` : v);

/** Markdown as plain text: links as their text (and address), code without its backticks. */
function plain(md: string): string {
  return md.replace(/\[([^\]]+)\]\(([^)]+)\)/g, (_m, label: string, href: string) => (label === href ? label : `${label} (${href})`)).replace(/`/g, '');
}

/** A description as a sentence: capitalised (unless it starts with code, such as a value), ending in a full stop. */
function sentence(s: string): string {
  const t = /^[a-z]/.test(s) ? s.charAt(0).toUpperCase() + s.slice(1) : s;
  return /[.!?]$/.test(t) ? t : `${t}.`;
}

/** `text` as comment lines of at most WIDTH characters. */
function comment(text: string): string[] {
  const lines: string[] = [];
  let line = '#';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line.length + 1 + word.length > WIDTH && line !== '#') {
      lines.push(line);
      line = '#';
    }
    line += ` ${word}`;
  }
  if (line !== '#') lines.push(line);
  return lines;
}
