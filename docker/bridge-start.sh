#!/bin/sh
# The bridge image's start: apply pending migrations, then run the bridge (as PID 1, so it gets
# docker's SIGTERM and drains). Postgres may still be starting (a host reboot starts every container
# at once, whatever depends_on says): the migration is retried for DATABASE_STARTUP_WAIT_S seconds,
# the same bound the bridge itself waits for its database.
set -u
trap 'exit 143' TERM INT

wait_s="${DATABASE_STARTUP_WAIT_S:-60}"
case "$wait_s" in ''|*[!0-9]*) wait_s=60 ;; esac
deadline=$(( $(date +%s) + wait_s ))

while :; do
  node dist/src/cdr/migrate-cli.js
  rc=$?
  [ "$rc" -eq 0 ] && break
  # 2: DATABASE_URL missing, nothing to wait for.
  [ "$rc" -eq 2 ] && exit 2
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "wa-sip-bridge: migrations still failing after ${wait_s} s (DATABASE_STARTUP_WAIT_S): giving up" >&2
    exit 1
  fi
  echo "wa-sip-bridge: migration failed (Postgres not up yet?), retrying in 2 s" >&2
  sleep 2
done

exec node dist/src/index.js
