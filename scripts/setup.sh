#!/usr/bin/env bash
# Sets up a Debian (12 or later) or Ubuntu (22.04 or later) machine for wa-sip-bridge: the sandbox
# (`npm run sandbox`), the tests (`npm test`) and a native deployment all need the same things.
# Run once as root; running it again installs only what is missing and takes seconds.
#
#   system packages  Postgres, rtpengine (rtpengine-daemon), SIPp (sip-tester), chromium, baresip,
#                    Kamailio (the tests run it in front of two bridge nodes; the packaged service is
#                    stopped and disabled when this installs it), nftables, openssl, iproute2, util-linux
#   node             Node.js >= 22: the distribution's when it is new enough, else the `node` package
#                    from the npm registry (npm install -g node@22, which fetches the node-linux-<arch>
#                    binary package), installed under /usr/local, ahead of /usr/bin on PATH
#   postgres         the cluster started; roles `bridge` (may create databases) for the bridge and the
#                    sandbox, and `wasb_test` (a superuser: the tests create databases and roles) for
#                    the tests, both with the password `localdev` (a role that exists keeps its own);
#                    databases `bridge` (the bridge's), `wasb_sandbox` (the sandbox's) and `test` (the
#                    tests make theirs from it); both roles allowed their password on the local socket
#   drachtio         drachtio-server built at the pinned release by scripts/install-drachtio.sh, unless
#                    a `drachtio` is on PATH already (any version: it says which)
#
# Usage: sudo scripts/setup.sh [--check] [--drachtio-source SRC] [--no-drachtio]
#   --check              say what is there and what is missing; change nothing (exit 1 if anything is)
#   --drachtio-source    a git URL, bare mirror or source tree for scripts/install-drachtio.sh
#                        (default: its upstream repository); also DRACHTIO_SOURCE
#   --no-drachtio        do not build drachtio-server (the SIP tests are then skipped; the sandbox needs
#                        DRACHTIO_HOST/DRACHTIO_PORT/DRACHTIO_SECRET of a running one)
# Environment: SETUP_DB_PASSWORD (the new roles' password; then give the tests TEST_DATABASE_URL and
#   the sandbox DATABASE_URL), JOBS (drachtio's make -j).
set -euo pipefail
cd "$(dirname "$0")/.."

NODE_MAJOR=22
DB_ROLE=bridge
TEST_ROLE=wasb_test
DB_PASSWORD=${SETUP_DB_PASSWORD:-localdev}
CHECK=""
NO_DRACHTIO=""
DRACHTIO_SOURCE=${DRACHTIO_SOURCE:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --check) CHECK=1 ;;
    --no-drachtio) NO_DRACHTIO=1 ;;
    --drachtio-source) DRACHTIO_SOURCE=${2:?--drachtio-source needs a value}; shift ;;
    --drachtio-source=*) DRACHTIO_SOURCE=${1#*=} ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$CHECK" ] && [ "$(id -u)" != 0 ]; then
  echo "setup.sh installs packages and configures Postgres: run it as root (sudo scripts/setup.sh), or --check" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
T_START=$SECONDS

# --- progress and summary ------------------------------------------------------------------------------
STEP_NAMES=(); STEP_SECS=(); STEP_RESULTS=(); FAILED=""; MISSING=""
STEP_T0=0
step() { STEP_T0=$SECONDS; echo "==> [$(( ${#STEP_NAMES[@]} + 1 ))/4] $1"; STEP_NAMES+=("$1"); }
result() { STEP_SECS+=("$((SECONDS - STEP_T0))"); STEP_RESULTS+=("$1"); echo "    $1"; }
note() { echo "    $*"; }
has() { command -v "$1" >/dev/null 2>&1; }
apt_updated=""
apt_install() {
  [ -n "$apt_updated" ] || { note "apt-get update"; apt-get update -qq; apt_updated=1; }
  note "apt-get install $*"
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
# shellcheck source=/dev/null
. /etc/os-release 2>/dev/null || true

# --- 1. system packages ----------------------------------------------------------------------------------
step "system packages"
chromium_pkg=chromium
[ "${ID:-}" = ubuntu ] && chromium_pkg=chromium-browser   # a snap on Ubuntu: needs snapd
declare -A want=(
  [pg_ctlcluster]=postgresql [rtpengine]=rtpengine-daemon [sipp]=sip-tester [baresip]=baresip [kamailio]=kamailio
  [nft]=nftables [openssl]=openssl [ip]=iproute2 [unshare]=util-linux [runuser]=util-linux
)
need=(); found=()
for cmd in pg_ctlcluster rtpengine sipp baresip kamailio nft openssl ip unshare runuser; do
  if has "$cmd"; then found+=("$cmd"); else need+=("${want[$cmd]}"); fi
done
if has chromium || has chromium-browser || has google-chrome; then found+=(chromium); else need+=("$chromium_pkg"); fi
dpkg-query -W -f='${Status}' ca-certificates 2>/dev/null | grep -q 'ok installed' || need+=(ca-certificates)
mapfile -t need < <(printf '%s\n' "${need[@]}" | awk 'NF && !seen[$0]++')
if [ ${#need[@]} -eq 0 ]; then
  result "all present (${found[*]})"
elif [ -n "$CHECK" ]; then
  MISSING=1; result "missing: ${need[*]}"
else
  apt_install "${need[@]}"
  # Debian's kamailio package starts its own service with its stock configuration on *:5060, where a
  # native bridge's drachtio-server listens: the tests start their own Kamailio, so the packaged one
  # is stopped and disabled (only when this run installed it: a Kamailio that was here is left alone).
  if printf '%s\n' "${need[@]}" | grep -qx kamailio && has systemctl && [ -d /run/systemd/system ]; then
    systemctl disable --now kamailio >/dev/null 2>&1 || true
    note "kamailio's packaged service stopped and disabled (the tests run their own)"
  fi
  result "installed: ${need[*]}${found[*]:+; found: ${found[*]}}"
fi

# --- 2. Node.js >= 22 -------------------------------------------------------------------------------------
step "node >= $NODE_MAJOR"
node_major() { node -v 2>/dev/null | sed -E 's/^v([0-9]+).*/\1/'; }
candidate_major() { apt-cache policy nodejs 2>/dev/null | awk '/Candidate:/ {print $2}' | sed -E 's/^([0-9]+:)?([0-9]+).*/\2/; s/^\(none\)$/0/'; }
have_major=$(node_major || true)
if [ -n "$have_major" ] && [ "$have_major" -ge "$NODE_MAJOR" ]; then
  result "found $(node -v) at $(command -v node); npm $(npm -v 2>/dev/null || echo missing)"
elif [ -n "$CHECK" ]; then
  MISSING=1; result "missing: node ${have_major:+v$have_major is too old, }>= $NODE_MAJOR needed"
else
  [ -n "$apt_updated" ] || { note "apt-get update"; apt-get update -qq; apt_updated=1; }
  cand=$(candidate_major); cand=${cand:-0}
  if [ "$cand" -ge "$NODE_MAJOR" ]; then
    if has npm; then apt_install nodejs; else apt_install nodejs npm; fi
    how="the distribution's nodejs package ($(apt-cache policy nodejs | awk '/Installed:/ {print $2}'))"
  else
    # The distribution's is too old (Debian 12: 18; Debian 13: 20): the npm registry's `node` package.
    # The distribution's npm (with its Node) only bootstraps it.
    has npm || apt_install nodejs npm
    note "the distribution's nodejs is ${cand:-absent}: npm install -g node@$NODE_MAJOR (from the npm registry) into /usr/local"
    npm install -g --prefix /usr/local --no-audit --no-fund --loglevel=error "node@$NODE_MAJOR" >/dev/null
    hash -r
    how="the npm registry's node@$NODE_MAJOR package (npm install -g node@$NODE_MAJOR)"
  fi
  hash -r
  got=$(node_major || true)
  if [ -z "$got" ] || [ "$got" -lt "$NODE_MAJOR" ]; then
    echo "node is still $(node -v 2>/dev/null || echo missing) on PATH ($PATH)" >&2; exit 1
  fi
  npm_major=$(npm -v 2>/dev/null | cut -d. -f1 || true)
  if [ "${npm_major:-0}" -lt 10 ]; then
    # Debian 12's npm is 9.2, older than what Node 22 ships with: npm 10 beside the new node
    note "npm ${npm_major:-missing} is older than Node $NODE_MAJOR's: npm install -g npm@10 into /usr/local"
    npm install -g --prefix /usr/local --no-audit --no-fund --loglevel=error npm@10 >/dev/null
    hash -r
  fi
  result "installed $(node -v) at $(command -v node) from $how; npm $(npm -v)"
fi

# --- 3. Postgres: started, roles, databases, authentication -----------------------------------------------
step "postgres"
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
psql_su() { (cd / && runuser -u postgres -- psql -X -q -t -A -v ON_ERROR_STOP=1 "$@"); }
can_login() { # can_login ROLE DATABASE HOST: the password gets ROLE into DATABASE over HOST (127.0.0.1 or the socket dir)
  PGPASSWORD=$DB_PASSWORD PGCONNECT_TIMEOUT=5 psql -X -q -t -A -h "$3" -p 5432 -U "$1" -d "$2" -c 'SELECT 1' >/dev/null 2>&1
}
logins_ok() { can_login "$DB_ROLE" bridge "$1" && can_login "$TEST_ROLE" test "$1"; }
if ! has pg_ctlcluster; then
  MISSING=1; result "missing: postgresql"
elif [ -n "$CHECK" ]; then
  if ! pg_up; then MISSING=1; result "Postgres is not running on 127.0.0.1:5432"
  elif logins_ok 127.0.0.1 && logins_ok /var/run/postgresql; then result "running; roles $DB_ROLE and $TEST_ROLE log in (TCP and socket)"
  else MISSING=1; result "running, but roles $DB_ROLE/$TEST_ROLE cannot log in to databases bridge/test with the setup password"
  fi
else
  did=()
  if ! pg_up; then
    ver=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n1)
    if [ -z "$ver" ]; then
      ver=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n1)
      pg_createcluster "$ver" main >/dev/null; did+=("cluster $ver/main created")
    fi
    if [ -d /run/systemd/system ]; then
      systemctl enable --now "postgresql@$ver-main" >/dev/null 2>&1 || systemctl start postgresql
    else
      # no systemd (a container, a chroot): the cluster directly; start it again after a reboot
      pg_ctlcluster --skip-systemctl-redirect "$ver" main start
    fi
    for _ in $(seq 1 30); do pg_up && break; sleep 1; done
    pg_up || { echo "Postgres $ver/main did not come up on 127.0.0.1:5432 within 30 s: see /var/log/postgresql/" >&2; exit 1; }
    did+=("started $ver/main")
  fi
  # role:attributes; an existing role keeps its password (a deployment may have changed it)
  for spec in "$DB_ROLE:LOGIN CREATEDB" "$TEST_ROLE:LOGIN SUPERUSER"; do
    role=${spec%%:*}; attrs=${spec#*:}
    if [ "$(psql_su -c "SELECT 1 FROM pg_roles WHERE rolname = '$role'")" != 1 ]; then
      psql_su -v pw="$DB_PASSWORD" <<< "CREATE ROLE $role $attrs PASSWORD :'pw'"
      did+=("role $role created")
    else
      psql_su -c "ALTER ROLE $role $attrs"
    fi
  done
  for spec in "bridge:$DB_ROLE" "wasb_sandbox:$DB_ROLE" "test:$TEST_ROLE"; do
    db=${spec%%:*}; owner=${spec#*:}
    if [ "$(psql_su -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]; then
      psql_su -c "CREATE DATABASE $db OWNER $owner"; did+=("database $db created")
    fi
  done
  # Debian's default pg_hba.conf: password (scram) over TCP, but `peer` on the socket, where the tests
  # reach Postgres from their private network namespace. One line lets the two roles use their password there.
  hba=$(psql_su -c 'SHOW hba_file')
  for spec in "local   all   $DB_ROLE,$TEST_ROLE   scram-sha-256|/var/run/postgresql" "host    all   $DB_ROLE,$TEST_ROLE   127.0.0.1/32   scram-sha-256|127.0.0.1"; do
    line=${spec%|*}; via=${spec#*|}
    logins_ok "$via" && continue
    if ! grep -qF "$line" "$hba"; then
      # before the first rule: the first matching line wins
      awk -v l="$line" 'BEGIN{done=0} !done && /^[[:space:]]*(local|host)/ {print "# wa-sip-bridge (scripts/setup.sh): its roles log in with their password"; print l; done=1} {print}' "$hba" > "$hba.new"
      cat "$hba.new" > "$hba"; rm -f "$hba.new"
      psql_su -c 'SELECT pg_reload_conf()' >/dev/null
      did+=("$hba: '$line'")
      for _ in $(seq 1 10); do logins_ok "$via" && break; sleep 0.5; done   # the reload is asynchronous
    fi
    logins_ok "$via" || { echo "roles $DB_ROLE/$TEST_ROLE cannot log in over $via with the setup password (created with another? ALTER ROLE ... PASSWORD '...')" >&2; exit 1; }
  done
  summary="roles $DB_ROLE, $TEST_ROLE and databases bridge, wasb_sandbox, test already there"
  [ ${#did[@]} -eq 0 ] || summary=$(printf '%s; ' "${did[@]}")
  result "PostgreSQL $(psql_su -c 'SHOW server_version' | cut -d' ' -f1) on 127.0.0.1:5432: ${summary%; }"
fi

# --- 4. drachtio-server ------------------------------------------------------------------------------------
step "drachtio-server"
if has drachtio; then
  pinned=$(sed -nE 's/^DRACHTIO_VERSION=\$\{DRACHTIO_VERSION:-(.*)\}$/\1/p' scripts/install-drachtio.sh)
  v=$(drachtio --version 2>/dev/null | head -n1 || true)
  result "found $v at $(command -v drachtio)$([ "$v" = "$pinned" ] && echo ' (the pinned release)' || echo " (not the pinned $pinned: kept)")"
elif [ -n "$NO_DRACHTIO" ]; then
  result "skipped (--no-drachtio): the SIP tests will be skipped"
elif [ -n "$CHECK" ]; then
  MISSING=1; result "missing: drachtio (scripts/install-drachtio.sh builds it)"
else
  if scripts/install-drachtio.sh ${DRACHTIO_SOURCE:+"$DRACHTIO_SOURCE"} 2>&1 | sed -u 's/^/    /'; then
    hash -r
    result "built and installed $(drachtio --version) at $(command -v drachtio) from ${DRACHTIO_SOURCE:-its upstream repository}"
  else
    FAILED=1; result "FAILED: see the lines above (scripts/install-drachtio.sh)"
  fi
fi

# --- summary ------------------------------------------------------------------------------------------------
echo
echo "== wa-sip-bridge setup $([ -n "$CHECK" ] && echo check || echo 'done') in $((SECONDS - T_START)) s"
for i in "${!STEP_NAMES[@]}"; do
  printf '  %-17s %5ss  %s\n' "${STEP_NAMES[$i]}" "${STEP_SECS[$i]}" "${STEP_RESULTS[$i]}"
done
if has asterisk; then echo "  ($(asterisk -V 2>/dev/null | head -n1) found: the real-Asterisk tests will run)"
else echo "  (no asterisk: the real-Asterisk tests will be skipped; not needed for the sandbox or a deployment)"; fi
if [ -z "$CHECK" ] && [ -z "$FAILED" ]; then
  cat <<EOF

  Databases (password $DB_PASSWORD; Postgres listens on loopback only):
    the bridge   DATABASE_URL=postgres://$DB_ROLE:$DB_PASSWORD@127.0.0.1:5432/bridge
    the sandbox  postgres://$DB_ROLE:$DB_PASSWORD@127.0.0.1:5432/wasb_sandbox      (its default)
    the tests    postgres://$TEST_ROLE:$DB_PASSWORD@127.0.0.1:5432/test         (their default; each run makes its own)
  $TEST_ROLE is a superuser (the tests create databases and roles): on a production host,
  DROP ROLE $TEST_ROLE and give $DB_ROLE a password of its own (ALTER ROLE $DB_ROLE PASSWORD '...').
  Next, as your own user in this directory:
    npm ci
    npm run sandbox        # then open http://127.0.0.1:3000/sandbox
    npm test               # as root it runs in a private network namespace
EOF
fi
[ -z "$FAILED" ] || exit 1
[ -z "$MISSING" ] || exit 1
exit 0
