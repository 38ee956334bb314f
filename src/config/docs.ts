import { ComposeEntry, ENV_HEADER, ENV_LAYOUT, EnvLine, SettingEntry } from './env-layout';
import { AnySetting, shownDefault } from './setting';
import { SETTINGS, SettingName } from './settings';

/**
 * The README's configuration table and .env.example, written from the settings' declarations
 * (settings.ts) and .env.example's layout (env-layout.ts). `npm run docs:config` (src/cli/config-docs.ts)
 * writes them; test/unit/config-docs.test.ts fails when the committed ones differ.
 */

export const README_TABLE_START = '<!-- settings table: written by `npm run docs:config` from src/config/settings.ts; edit the settings there -->';
export const README_TABLE_END = '<!-- end of settings table -->';

const settingNames = (): SettingName[] => Object.keys(SETTINGS) as SettingName[];

/** The README's table of settings, one row per variable, in the order settings.ts declares them. */
export function readmeTable(): string {
  const cell = (s: string) => s.replace(/\|/g, '\\|');
  const rows = settingNames().map((name) => {
    const d = shownDefault(SETTINGS[name] as AnySetting);
    return `| \`${name}\` | ${cell(d.literal ? `\`${d.text}\`` : d.text)} | ${cell(SETTINGS[name].doc)} |`;
  });
  return ['| variable | default | meaning |', '|---|---|---|', ...rows].join('\n');
}

/** `readme` with the text between its table markers replaced by readmeTable(). */
export function withReadmeTable(readme: string): string {
  const start = readme.indexOf(README_TABLE_START);
  const end = readme.indexOf(README_TABLE_END);
  if (start < 0 || end < start) throw new Error(`README.md has no "${README_TABLE_START}" ... "${README_TABLE_END}" markers`);
  return `${readme.slice(0, start + README_TABLE_START.length)}\n${readmeTable()}\n${readme.slice(end)}`;
}

/** The text between the README's table markers, or null without them. */
export function readmeTableIn(readme: string): string | null {
  const start = readme.indexOf(README_TABLE_START);
  const end = readme.indexOf(README_TABLE_END);
  if (start < 0 || end < start) return null;
  return readme.slice(start + README_TABLE_START.length, end).trim();
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
