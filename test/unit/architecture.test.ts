import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

/**
 * The rules of the house (docs/architecture.md), read off the source: which folder may import which.
 * A folder is a directory under src/; a file directly in src/ is a unit of its own.
 */
const ROOT = path.resolve(__dirname, '../../..');
const SRC = path.join(ROOT, 'src');

function tsFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return tsFiles(p);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

function unitOf(file: string): string {
  const rel = path.relative(SRC, file).split(path.sep);
  return rel.length > 1 ? rel[0]! : rel[0]!.replace(/\.ts$/, '');
}

/** Every relative import in src/: from file, to file (resolved, .ts). */
function imports(): Array<{ from: string; to: string }> {
  const out: Array<{ from: string; to: string }> = [];
  for (const file of tsFiles(SRC)) {
    const text = fs.readFileSync(file, 'utf8');
    for (const m of text.matchAll(/^(?:import|export)\s[^'";]*?from\s+'(\.[^']+)'|^import\s+'(\.[^']+)'/gm)) {
      const spec = m[1] ?? m[2]!;
      const base = path.resolve(path.dirname(file), spec);
      const to = [`${base}.ts`, path.join(base, 'index.ts')].find((p) => fs.existsSync(p)) ?? `${base}.ts`;
      out.push({ from: file, to });
    }
  }
  return out;
}

/** The folder graph: unit -> units it imports. */
function folderGraph(): Map<string, Set<string>> {
  const g = new Map<string, Set<string>>();
  for (const { from, to } of imports()) {
    const a = unitOf(from);
    const b = unitOf(to);
    if (a === b) continue;
    if (!g.has(a)) g.set(a, new Set());
    g.get(a)!.add(b);
  }
  return g;
}

/** Strongly connected components with more than one unit: the folder cycles. */
function cycles(g: Map<string, Set<string>>): string[][] {
  let n = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, n);
    low.set(v, n++);
    stack.push(v);
    on.add(v);
    for (const w of g.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const comp: string[] = [];
      for (let w = stack.pop(); ; w = stack.pop()) {
        on.delete(w!);
        comp.push(w!);
        if (w === v) break;
      }
      if (comp.length > 1) out.push(comp.sort());
    }
  };
  for (const v of g.keys()) if (!index.has(v)) visit(v);
  return out;
}

/** Exported names that only tests use (never another file of src/, nor the file itself). */
function testOnlyExports(): string[] {
  const src = new Map(tsFiles(SRC).map((f) => [f, fs.readFileSync(f, 'utf8')]));
  const tests = tsFiles(path.join(ROOT, 'test')).map((f) => fs.readFileSync(f, 'utf8')).join('\n');
  const out: string[] = [];
  for (const [file, text] of src) {
    for (const m of text.matchAll(/^export (?:async )?(?:abstract )?(?:function|class|const|let|interface|type) (\w+)/gm)) {
      const name = m[1]!;
      const word = new RegExp(`\\b${name}\\b`, 'g');
      const inFile = (text.match(word) ?? []).length > 1;
      const elsewhere = [...src].some(([f, t]) => f !== file && new RegExp(`\\b${name}\\b`).test(t));
      if (!inFile && !elsewhere && new RegExp(`\\b${name}\\b`).test(tests)) out.push(`${path.relative(ROOT, file)}: ${name}`);
    }
  }
  return out.sort();
}

/** Exports that exist for the docs drift test by design: the settings' layout is checked, not used, by src/. */
const TEST_ONLY_ALLOWED = new Set([
  'src/config/docs.ts: tableIn',
]);

describe('architecture (docs/architecture.md)', () => {
  const graph = folderGraph();

  it('has no folder cycle: every import between folders runs one way', () => {
    assert.deepEqual(cycles(graph), []);
  });

  it('the calls and the event store know no provider: nothing under calls/ or events/ imports providers/', () => {
    const offenders = imports().filter(({ from, to }) => ['calls', 'events'].includes(unitOf(from)) && unitOf(to) === 'providers');
    assert.deepEqual(offenders.map(({ from, to }) => `${path.relative(ROOT, from)} -> ${path.relative(ROOT, to)}`), []);
  });

  it('the layers below the calls (sip, media, cdr, metrics, config, util) import nothing above them', () => {
    const above = new Set(['app', 'index', 'http', 'providers', 'events', 'cluster', 'calls', 'sandbox', 'cli', 'reports', 'observer']);
    const below = ['sip', 'media', 'cdr', 'metrics', 'config', 'util', 'recording'];
    const up = below.flatMap((b) => [...(graph.get(b) ?? [])].filter((t) => above.has(t)).map((t) => `${b} -> ${t}`));
    assert.deepEqual(up, []);
  });

  it('src/ exports nothing only the tests use (test hooks live in test/harness)', () => {
    assert.deepEqual(testOnlyExports().filter((e) => !TEST_ONLY_ALLOWED.has(e)), []);
  });
});
