#!/bin/sh
# Runs the mocha suite. As root with unshare available, it runs inside a private network namespace
# where loopback is the only interface: no test traffic can reach any other address (libwebrtc would
# otherwise also use the host's other interfaces for ICE). Postgres is then reached through its socket.
set -e
if [ -z "$WASB_ISOLATED" ] && [ "$(id -u)" = 0 ] && command -v unshare >/dev/null && unshare -n true 2>/dev/null; then
  exec env WASB_ISOLATED=1 unshare -n sh -c 'ip link set lo up && exec npx mocha "$@"' sh "$@"
fi
echo "note: not isolated in a network namespace (needs root and unshare); tests still target 127.0.0.1 only" >&2
exec npx mocha "$@"
