/**
 * A systemd unit file (or drop-in) read as systemd reads it: sections, `Key=value` lines (a key may
 * repeat: its values in order), `#` and `;` comments, a trailing `\` continuing a line.
 */
export type UnitFile = Map<string, Map<string, string[]>>;

export function parseUnit(text: string): UnitFile {
  const unit: UnitFile = new Map();
  let section: Map<string, string[]> | null = null;
  const lines = text.replace(/\\\n/g, ' ').split('\n');
  for (const [i, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const head = /^\[([^\]]+)\]$/.exec(line);
    if (head) {
      section = unit.get(head[1]!) ?? new Map();
      unit.set(head[1]!, section);
      continue;
    }
    const eq = line.indexOf('=');
    if (!section || eq <= 0) throw new Error(`line ${i + 1}: not a section or Key=value: ${line}`);
    const key = line.slice(0, eq).trim();
    section.set(key, [...(section.get(key) ?? []), line.slice(eq + 1).trim()]);
  }
  return unit;
}

/** The values of `key` in `section` (none: []). Space-separated lists (Wants=, ReadWritePaths=) split when `words`. */
export function unitValues(unit: UnitFile, section: string, key: string, words = false): string[] {
  const v = unit.get(section)?.get(key) ?? [];
  return words ? v.flatMap((s) => s.split(/\s+/).filter(Boolean)) : v;
}

/** The one value of `key` (the last, as systemd takes it), or undefined. */
export function unitValue(unit: UnitFile, section: string, key: string): string | undefined {
  const v = unitValues(unit, section, key);
  return v[v.length - 1];
}

/** A systemd time span ("90s", "1min 30s", "2min", "90") in seconds. */
export function timeSpanSeconds(v: string): number {
  let total = 0;
  const units: Record<string, number> = { '': 1, s: 1, sec: 1, second: 1, seconds: 1, m: 60, min: 60, minute: 60, minutes: 60, h: 3600, hr: 3600, hour: 3600, hours: 3600, ms: 0.001 };
  for (const m of v.matchAll(/(\d+(?:\.\d+)?)\s*([a-z]*)/g)) {
    const f = units[m[2]!];
    if (f === undefined) throw new Error(`not a time span: ${v}`);
    total += Number(m[1]) * f;
  }
  return total;
}
