#!/usr/bin/env bash
# Builds wa-sip-bridge and packs what production runs into a tarball, installable without any dev
# dependency (tsc, mocha, wrtc, the browser driver stay on the build machine):
#   scripts/package.sh [--no-build] [output dir]  -> <output dir>/wa-sip-bridge-<version>.tar.gz (default: ./release)
# --no-build packs the dist/ already built (the tests use it; a release should be built afresh, so
# that no compiled file of a deleted source, a migration above all, lingers in dist/).
# On the target (docs/deploy-native.md):
#   tar -xzf wa-sip-bridge-<version>.tar.gz -C /opt && cd /opt/wa-sip-bridge-<version> && npm ci --omit=dev
#   node dist/src/cdr/migrate-cli.js --env-file /etc/wa-sip-bridge/bridge.env && node dist/src/index.js
# The tree: dist/src and dist/migrations (compiled; no tests), package.json and package-lock.json (so
# `npm ci` installs exactly the locked production dependencies), the sandbox's page and prompts (read at
# run time), deploy/ (systemd units), docs/, README.md, .env.example. Needs the dev dependencies here
# (`npm ci` first). Run it again any time: it rebuilds and rewrites the tarball.
set -euo pipefail

build=yes
if [ "${1:-}" = "--no-build" ]; then
  build=no
  shift
fi
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/release}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$root"

version=$(node -p 'require("./package.json").version')
name="wa-sip-bridge-$version"

if [ "$build" = yes ]; then
  if [ ! -x node_modules/.bin/tsc ]; then
    echo "package: no node_modules/.bin/tsc here: run \`npm ci\` (with the dev dependencies) first" >&2
    exit 2
  fi
  echo "package: building $name (tsc)"
  rm -rf dist
  npm run --silent build
elif [ ! -f dist/src/index.js ] || [ ! -d dist/migrations ]; then
  echo "package: --no-build, but no dist/src/index.js or dist/migrations: run \`npm run build\` first" >&2
  exit 2
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
tree="$stage/$name"
mkdir -p "$tree/dist" "$tree/src/sandbox"

echo "package: staging the production tree"
cp -R dist/src dist/migrations "$tree/dist/"
cp package.json package-lock.json README.md .env.example "$tree/"
[ -f LICENSE ] && cp LICENSE "$tree/"
[ -f CHANGELOG.md ] && cp CHANGELOG.md "$tree/"
cp -R docs deploy "$tree/"
for d in public prompts; do
  [ -d "src/sandbox/$d" ] && cp -R "src/sandbox/$d" "$tree/src/sandbox/"
done

tarball="$out/$name.tar.gz"
tar -C "$stage" -czf "$tarball.tmp" "$name"
mv "$tarball.tmp" "$tarball"
echo "package: wrote $tarball ($(du -h "$tarball" | cut -f1)); install with: npm ci --omit=dev"
