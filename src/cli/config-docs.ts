import fs from 'node:fs';
import path from 'node:path';
import { envExample, withReadmeTable } from '../config/docs';

/**
 * `npm run docs:config`: writes the README's configuration table and .env.example from the settings'
 * declarations (src/config/settings.ts, src/config/env-layout.ts). With --check it writes nothing and
 * exits 1 when either file differs from what the declarations give.
 */
function main(argv: string[]): number {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log('usage: npm run docs:config [-- --check]\nwrites README.md\'s settings tables and .env.example from src/config/settings.ts; '
      + 'with --check writes nothing and exits 1 when either is out of date.');
    return 0;
  }
  const check = argv.includes('--check');
  const root = projectRoot();
  const files = [
    { name: 'README.md', make: (current: string) => withReadmeTable(current) },
    { name: '.env.example', make: () => envExample() },
  ];
  const stale: string[] = [];
  for (const f of files) {
    const file = path.join(root, f.name);
    const current = fs.readFileSync(file, 'utf8');
    const wanted = f.make(current);
    if (wanted === current) continue;
    stale.push(f.name);
    if (!check) fs.writeFileSync(file, wanted);
  }
  if (check) {
    if (stale.length) console.error(`out of date with src/config/settings.ts: ${stale.join(', ')} (run npm run docs:config)`);
    return stale.length ? 1 : 0;
  }
  console.log(stale.length ? `wrote ${stale.join(', ')}` : 'README.md and .env.example are up to date');
  return 0;
}

function projectRoot(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, '.env.example'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no project root (package.json and .env.example) above ${__dirname}`);
  }
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (err) {
  console.error(`docs:config failed: ${(err as Error).stack ?? String(err)}`);
  process.exitCode = 1;
}
