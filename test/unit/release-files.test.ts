import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

/**
 * The release's files agree (docs/development.md, "Versions and tags"): package.json's version is
 * package-lock.json's and the newest entry of CHANGELOG.md, in the 0.x scheme; LICENSE is the license
 * package.json names.
 */

const ROOT = findRoot();
const read = (rel: string): string => fs.readFileSync(path.join(ROOT, rel), 'utf8');
const pkg = JSON.parse(read('package.json')) as { version: string; license: string };

describe('release files (version, changelog, license)', () => {
  it('package.json\'s version is a 0.MINOR.PATCH version, and package-lock.json\'s', () => {
    assert.match(pkg.version, /^0\.(0|[1-9]\d*)\.(0|[1-9]\d*)$/, 'v0.MINOR.PATCH until the first real-account proof');
    const lock = JSON.parse(read('package-lock.json')) as { version: string; packages: Record<string, { version?: string }> };
    assert.equal(lock.version, pkg.version, 'package-lock.json: npm version <v> --no-git-tag-version writes both');
    assert.equal(lock.packages['']?.version, pkg.version);
  });

  it('CHANGELOG.md opens with Unreleased, then the version package.json names, versions newest first', () => {
    const headings = [...read('CHANGELOG.md').matchAll(/^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$/gm)].map((m) => ({ v: m[1]!, date: m[2] }));
    assert.equal(headings[0]?.v, 'Unreleased');
    assert.equal(headings[1]?.v, pkg.version, 'the newest released entry is package.json\'s version');
    const released = headings.slice(1);
    assert.ok(released.every((h) => h.date !== undefined), 'every released entry has its date');
    const key = (v: string) => v.split('.').map(Number);
    for (let i = 1; i < released.length; i++) {
      const [a, b] = [key(released[i - 1]!.v), key(released[i]!.v)];
      const newer = a[0]! - b[0]! || a[1]! - b[1]! || a[2]! - b[2]!;
      assert.ok(newer > 0, `${released[i - 1]!.v} is listed above ${released[i]!.v}`);
    }
  });

  it('LICENSE is the MIT license package.json names', () => {
    assert.equal(pkg.license, 'MIT');
    const license = read('LICENSE');
    assert.match(license, /^MIT License\n\nCopyright \(c\) \d{4} wa-sip-bridge contributors\n/);
    assert.match(license, /THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND/);
  });
});

function findRoot(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'CHANGELOG.md')) && fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) return process.cwd();
  }
}
