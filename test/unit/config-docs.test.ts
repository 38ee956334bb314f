import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError, loadConfig } from '../../src/config';
import { CONFIG_DOC, GENERATED_TABLES, composeTable, envExample, settingsTable, tableIn } from '../../src/config/docs';
import { ComposeEntry, ENV_LAYOUT, SettingEntry } from '../../src/config/env-layout';
import { AnySetting, readSetting } from '../../src/config/setting';
import { NOT_SETTINGS, SETTINGS, SettingName } from '../../src/config/settings';
import { configSecrets } from '../../src/log';

/**
 * Issue 18, "configuration declared once": src/config/settings.ts declares every setting, and
 * docs/configuration.md's tables and .env.example are written from it (`npm run docs:config`), so
 * neither can drift.
 */

const ROOT = findRoot();
const read = (rel: string): string => fs.readFileSync(path.join(ROOT, rel), 'utf8');
const NAMES = Object.keys(SETTINGS) as SettingName[];
const GOOD = {
  DATABASE_URL: 'postgres://u@h/db', YCLOUD_API_KEY: 'k', YCLOUD_WEBHOOK_SECRET: 's', DRACHTIO_SECRET: 'cymru',
  RTPENGINE_NG: '127.0.0.1:22222', PBX_TARGET: 'sip:pbx.example.com:5060', PUBLIC_IP: '203.0.113.7',
};
const settingEntries = ENV_LAYOUT.flatMap((b) => b.entries.filter((e): e is SettingEntry => 'setting' in e));
const composeEntries = ENV_LAYOUT.flatMap((b) => b.entries.filter((e): e is ComposeEntry => 'variable' in e));

describe('configuration declared once (src/config/settings.ts)', () => {
  describe('the documents written from it', () => {
    it('docs/configuration.md\'s tables are the ones the declarations give (else: npm run docs:config)', () => {
      const doc = read(CONFIG_DOC);
      for (const t of GENERATED_TABLES) {
        const table = tableIn(doc, t);
        assert.ok(table !== null, `${CONFIG_DOC} has the markers ${t.start}`);
        assert.equal(table, t.make(), `${CONFIG_DOC}'s table differs from src/config/settings.ts: run npm run docs:config`);
      }
    });

    it('the README links the configuration instead of holding a copy of the table', () => {
      const readme = read('README.md');
      assert.ok(readme.includes(`(${CONFIG_DOC})`), 'README.md links docs/configuration.md');
      assert.ok(GENERATED_TABLES.every((t) => !readme.includes(t.start)), 'no generated table in README.md');
    });

    it('the compose table has one row per docker compose variable of .env.example, required ones marked', () => {
      const rows = composeTable().split('\n').slice(2).map((r) => /^\| `([A-Z0-9_]+)` \| (.*?) \| /.exec(r));
      assert.ok(rows.every(Boolean), 'every row names one variable');
      assert.deepEqual(rows.map((m) => m![1]), composeEntries.map((e) => e.variable));
      for (const [i, e] of composeEntries.entries()) if (e.required) assert.equal(rows[i]![2], '(required)', e.variable);
    });

    it('.env.example is the one the settings give (else: npm run docs:config)', () => {
      assert.equal(read('.env.example'), envExample(), '.env.example differs from src/config/settings.ts: run npm run docs:config');
    });

    it('the table has one row per setting, with its default or "(required)"', () => {
      const rows = settingsTable().split('\n').slice(2).map((r) => /^\| `([A-Z0-9_]+)` \| (.*?) \| /.exec(r));
      assert.ok(rows.every(Boolean), 'every row names one variable');
      assert.deepEqual(rows.map((m) => m![1]), NAMES);
      for (const m of rows) {
        const f = SETTINGS[m![1] as SettingName].fallback;
        if (f.kind === 'required') assert.equal(m![2], '(required)', m![1]);
        if (f.kind === 'default') assert.equal(m![2], `\`${f.written.replace(/\|/g, '\\|')}\``, m![1]);
      }
    });

    it('.env.example places every setting exactly once, and declares no docker compose variable that is a setting', () => {
      const placed = settingEntries.map((e) => e.setting);
      assert.deepEqual([...placed].sort(), [...NAMES].sort(), 'each setting once in src/config/env-layout.ts');
      const variables = composeEntries.map((e) => e.variable);
      assert.deepEqual(variables.filter((v) => v in SETTINGS), []);
      assert.equal(new Set(variables).size, variables.length, 'each compose variable once');
    });

    it('.env.example\'s docker compose variables are ones docker compose reads, with the compose files\' defaults (and the settings\' too)', () => {
      const compose = `${read('docker-compose.yml')}\n${read('docker/compose.tls.yml')}`;
      for (const e of composeEntries) {
        assert.ok(compose.includes(`\${${e.variable}`) || e.variable.startsWith('COMPOSE_'), `${e.variable} is used by a compose file (or is docker compose's own)`);
      }
      const byName = new Map(composeEntries.map((e) => [e.variable, e]));
      let compared = 0;
      for (const m of compose.matchAll(/\$\{([A-Z_][A-Z0-9_]*):-([^}$]+)\}/g)) {
        const [, name, value] = m as unknown as [string, string, string];
        const declared = name in SETTINGS ? SETTINGS[name as SettingName].fallback : undefined;
        if (declared) {
          assert.ok(declared.kind === 'default' && declared.written === value, `${name}: the compose default ${value} is the setting's`);
        } else {
          assert.equal(byName.get(name)?.default, value, `${name}: the compose default ${value} is the one .env.example shows`);
        }
        compared++;
      }
      assert.ok(compared >= 10, `compared ${compared} defaults`);
      for (const m of compose.matchAll(/\$\{([A-Z_][A-Z0-9_]*):\?/g)) {
        const name = m[1]!;
        const e = byName.get(name);
        const required = name in SETTINGS ? SETTINGS[name as SettingName].fallback.kind === 'required' : Boolean(e?.required || /REQUIRED/.test(e?.doc ?? ''));
        assert.ok(required, `${name} is required by a compose file: .env.example says so`);
      }
    });
  });

  describe('the declarations', () => {
    it('every default passes its own setting\'s checks', () => {
      for (const name of NAMES) {
        const r = readSetting(name, SETTINGS[name] as AnySetting, undefined);
        if (SETTINGS[name].fallback.kind === 'required') assert.deepEqual(r, { ok: false, problems: [`${name} is required`] });
        else assert.ok(r.ok, `${name}'s default: ${r.ok ? '' : r.problems.join('; ')}`);
      }
    });

    it('an empty or blank variable counts as unset', () => {
      assert.equal(loadConfig({ ...GOOD, HTTP_PORT: '', TRUST_PROXY: '  ' }).httpPort, 3000);
      assert.throws(() => loadConfig({ ...GOOD, PUBLIC_IP: ' ' }), /PUBLIC_IP is required/);
    });

    it('never repeats a secret\'s value in a problem', () => {
      const secrets = NAMES.filter((n) => SETTINGS[n].secret);
      assert.ok(secrets.length >= 9, secrets.join(', '));
      let refused = 0;
      for (const name of secrets) {
        for (const value of ['sekrit-Q7', 'sekrit-Q7, sekrit-Q8', 'postgres:/sekrit-Q7']) {
          try {
            loadConfig({ ...GOOD, PBX_AUTH_USERNAME: 'u', SIP_AUTH_USERNAME: 'u', PBX_AUTH_PASSWORD: 'p', SIP_AUTH_PASSWORD: 'p', [name]: value });
          } catch (err) {
            assert.ok(err instanceof ConfigError);
            refused++;
            assert.ok(err.problems.some((p) => p.startsWith(name)), `${name} is named: ${err.problems.join('; ')}`);
            assert.doesNotMatch(err.message, /sekrit/, `${name}'s value is not repeated`);
          }
        }
      }
      assert.ok(refused >= 6, `the tokens and the database URL were refused (${refused})`);
    });

    it('log.ts\'s configSecrets lists every secret setting, so none is ever logged', () => {
      const env: Record<string, string> = { ...GOOD, PBX_AUTH_USERNAME: 'u', SIP_AUTH_USERNAME: 'u' };
      for (const name of NAMES) if (SETTINGS[name].secret) env[name] = `${name.toLowerCase()}-value-0123456789`;
      env.DATABASE_URL = 'postgres://bridge:database_url-value-0123456789@h/db';
      const secrets = configSecrets(loadConfig(env));
      for (const name of NAMES) {
        if (SETTINGS[name].secret) assert.ok(secrets.some((s) => env[name]!.includes(s)), `${name} is in configSecrets`);
      }
    });

    it('every variable src/ reads is a setting, or listed in NOT_SETTINGS with why it is not one', () => {
      const read = new Map<string, string>();
      const dynamic: string[] = [];
      for (const file of walk(path.join(ROOT, 'src'))) {
        const rel = path.relative(ROOT, file);
        if (rel.startsWith(path.join('src', 'config'))) continue;
        const text = fs.readFileSync(file, 'utf8');
        for (const re of [
          /process\.env\.([A-Z_][A-Z0-9_]*)/g, /process\.env\[\s*['"]([A-Z_][A-Z0-9_]*)['"]\s*\]/g,
          /\benv\.([A-Z_][A-Z0-9_]*)/g, /\benv\[\s*['"]([A-Z_][A-Z0-9_]*)['"]\s*\]/g,
          /findProgram\(\s*'[^']*'\s*,\s*'([A-Z_][A-Z0-9_]*)'\s*\)/g,
        ]) {
          for (const m of text.matchAll(re)) read.set(m[1]!, rel);
        }
        if (/process\.env\[\s*[^'"\s]/.test(text) && !/export function findProgram\(/.test(text)) dynamic.push(rel);
      }
      assert.deepEqual(dynamic, [], 'process.env[...] with a computed name only in findProgram (whose names are scanned at its callers)');
      assert.ok(read.size >= 10, `found ${read.size} variables`);
      const unknown = [...read].filter(([name]) => !(name in SETTINGS) && !(name in NOT_SETTINGS)).map(([n, f]) => `${n} (${f})`);
      assert.deepEqual(unknown, [], 'declare them in src/config/settings.ts (SETTINGS, or NOT_SETTINGS)');
      const stale = Object.keys(NOT_SETTINGS).filter((n) => !read.has(n));
      assert.deepEqual(stale, [], 'NOT_SETTINGS entries nothing in src/ reads');
    });
  });
});

function walk(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const p = path.join(dir, d.name);
    return d.isDirectory() ? walk(p) : d.name.endsWith('.ts') ? [p] : [];
  });
}

function findRoot(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, '.env.example')) && fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) return process.cwd();
  }
}
