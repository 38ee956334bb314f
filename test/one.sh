#!/bin/sh
# Runs only the compiled test files named, with .mocharc.json's settings (require, reporter, timeout, exit):
#   sh test/one.sh dist/test/webhooks.test.js [more files] [mocha options, e.g. --grep restart]
# (`npm run test:one -- <files>` builds first). mocha ADDS the files named on its command line to the
# config's "spec" (the whole suite), so the config is left out here (--no-config) and its other
# settings are passed from .mocharc.json itself: left out with it, mocha's 2 s timeout would apply.
set -ef
if [ $# -eq 0 ]; then
  echo "usage: sh test/one.sh dist/test/<name>.test.js ... [mocha options]" >&2
  exit 2
fi
here=$(dirname "$0")
settings=$(node -e '
  const rc = require(require("path").resolve(process.argv[1]));
  const out = [];
  for (const [k, v] of Object.entries(rc)) {
    if (k === "spec") continue;
    for (const x of [].concat(v)) {
      if (/\s/.test(String(x))) throw new Error(`.mocharc.json: ${k} has a space, which test/one.sh cannot pass on`);
      out.push(x === true ? `--${k}` : x === false ? `--no-${k}` : `--${k}=${x}`);
    }
  }
  console.log(out.join("\n"));
' "$here/../.mocharc.json")
exec sh "$here/run-isolated.sh" npx mocha --no-config $settings "$@"
