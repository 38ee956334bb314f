#!/bin/sh
# Runs a command (the mocha suite, the benchmark) inside a private network namespace where loopback is
# the only interface, when we are root and unshare works: no test traffic can reach another address
# (libwebrtc would otherwise also use the host's other interfaces for ICE). Postgres is then reached
# through its Unix socket.
set -e
if [ -z "$WASB_ISOLATED" ] && [ "$(id -u)" = 0 ] && command -v unshare >/dev/null && unshare -n true 2>/dev/null; then
  exec env WASB_ISOLATED=1 unshare -n sh -c 'ip link set lo up && exec "$@"' sh "$@"
fi
echo "note: not isolated in a network namespace (needs root and unshare): libwebrtc may also pair over this host's own interface addresses" >&2
exec "$@"
