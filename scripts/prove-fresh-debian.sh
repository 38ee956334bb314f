#!/usr/bin/env bash
# The fresh-machine proof behind docs/try-it.md: a minimal Debian 12 root filesystem (debootstrap), in a
# network namespace of its own (slirp4netns: the internet through the host, its own loopback, so its
# Postgres and SIP ports clash with nothing on the host) and a chroot with /proc, /sys and /dev, where only
# the README's commands run, each timed: scripts/setup.sh, npm ci, npm run sandbox (until it says it is
# ready, then stopped), npm test. As root, on a Debian or Ubuntu host.
#
# Usage: scripts/prove-fresh-debian.sh WORKDIR [REPO [BRANCH]]
#   WORKDIR  holds base/ (debootstrap's, made when absent), rootfs/ (a fresh copy of it) and transcript.txt
#   REPO     the git repository to clone into the machine (default: this one), BRANCH (default: HEAD)
# Environment: DRACHTIO_MIRRORS: a directory of bare mirrors (<owner>+<name>/repo) bound into the machine
#   at /mirror, and drachtio-server built from /mirror/drachtio+drachtio-server/repo (for hosts that
#   cannot reach GitHub); PROOF_TEST: the test command (default `npm test`).
set -euo pipefail
WORK=${1:?usage: $0 WORKDIR [REPO [BRANCH]]}
REPO=${2:-$(cd "$(dirname "$0")/.." && pwd)}
BRANCH=${3:-}
ROOT=$WORK/rootfs
NS=wasb-proof-$$
TEST_CMD=${PROOF_TEST:-npm test}
mkdir -p "$WORK"
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
if ! command -v debootstrap >/dev/null || ! command -v slirp4netns >/dev/null; then
  apt-get install -y -qq debootstrap slirp4netns >/dev/null
fi

# A pristine base made once (WORKDIR/base), copied afresh for each run
if [ ! -x "$WORK/base/usr/bin/apt-get" ]; then
  echo "debootstrap --variant=minbase bookworm $WORK/base"
  debootstrap --variant=minbase bookworm "$WORK/base" http://deb.debian.org/debian >"$WORK/debootstrap.log"
fi
rm -rf "$ROOT"
cp -a "$WORK/base" "$ROOT"
# what a Debian 12 cloud image has besides: the updates and security suites
cat >"$ROOT/etc/apt/sources.list" <<'EOF'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
echo "nameserver 10.0.2.3" >"$ROOT/etc/resolv.conf"   # slirp4netns's DNS forwarder
echo wasb-fresh >"$ROOT/etc/hostname"
grep -q wasb-fresh "$ROOT/etc/hosts" 2>/dev/null || printf '127.0.0.1 localhost\n127.0.1.1 wasb-fresh\n::1 localhost\n' >"$ROOT/etc/hosts"

# A host whose egress intercepts TLS (its CA in /usr/local/share/ca-certificates, NODE_EXTRA_CA_CERTS
# set, as here) needs that CA in the machine too, or npm fails with SELF_SIGNED_CERT_IN_CHAIN: the CA
# files are copied in (ca-certificates, which setup.sh installs, adds them to the system bundle) and
# NODE_EXTRA_CA_CERTS passed on. A machine on the open internet needs neither.
EXTRA_ENV=()
if [ -n "${NODE_EXTRA_CA_CERTS:-}" ] && compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  mkdir -p "$ROOT/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
  EXTRA_ENV=("NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt")
  echo "the host's egress CA copied in ($(cd /usr/local/share/ca-certificates && echo ./*.crt)); NODE_EXTRA_CA_CERTS passed on"
fi

# The README's first step, clone (done from the host: the machine needs no git for the rest)
rm -rf "$ROOT/root/wa-sip-bridge"
git clone -q ${BRANCH:+--branch "$BRANCH"} "$REPO" "$ROOT/root/wa-sip-bridge"
echo "cloned $REPO ${BRANCH:-HEAD} ($(git -C "$ROOT/root/wa-sip-bridge" rev-parse --short HEAD))"
mkdir -p "$ROOT/mirror"

DRACHTIO_ARG=""
[ -n "${DRACHTIO_MIRRORS:-}" ] && DRACHTIO_ARG="--drachtio-source /mirror/drachtio+drachtio-server/repo"
cat >"$ROOT/root/proof.sh" <<EOF
#!/bin/bash
# runs inside the fresh machine: the README's commands, each timed
set -uo pipefail
export HOME=/root LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
cd /root/wa-sip-bridge
T0=\$SECONDS
run() { local s=\$SECONDS; echo; echo "### \$ \$*   [\$(date -u +%H:%M:%S)]"; "\$@"; local rc=\$?; echo "### exit \$rc, \$((SECONDS - s)) s"; return \$rc; }
echo "### environment: \$(env | grep -E '^NODE_EXTRA_CA_CERTS=' || echo 'no extra CA')"
echo "### a fresh Debian \$(cat /etc/debian_version) (debootstrap minbase): node \$(command -v node || echo absent), psql \$(command -v psql || echo absent), drachtio \$(command -v drachtio || echo absent); \$(dpkg -l | grep -c '^ii') packages"
run scripts/setup.sh $DRACHTIO_ARG || exit 1
run scripts/setup.sh $DRACHTIO_ARG >/tmp/setup-again.log 2>&1; echo "### again (idempotence): \$(tail -n +1 /tmp/setup-again.log | grep -E '^== |^  [a-z]' | head -6 | tr '\n' ';')"
run npm ci || exit 1
sandbox() {
  echo "(npm run sandbox until it says it is ready; then GET /sandbox; then Ctrl-C)"
  setsid npm run sandbox >/tmp/sandbox.log 2>&1 &
  local pid=\$! s=\$SECONDS
  until grep -q 'sandbox is ready' /tmp/sandbox.log; do
    kill -0 \$pid 2>/dev/null || { cat /tmp/sandbox.log; return 1; }
    [ \$((SECONDS - s)) -lt 600 ] || { echo "not ready within 600 s"; cat /tmp/sandbox.log; kill -TERM -- -\$pid; return 1; }
    sleep 1
  done
  grep -v '^{' /tmp/sandbox.log
  node -e "fetch('http://127.0.0.1:3000/sandbox').then(async r => console.log('GET /sandbox:', r.status, (await r.text()).match(/<title>[^<]*/)?.[0] ?? ''))"
  kill -INT -- -\$pid
  for _ in \$(seq 1 30); do kill -0 \$pid 2>/dev/null || break; sleep 1; done
  kill -0 \$pid 2>/dev/null && { echo "still running 30 s after Ctrl-C"; kill -KILL -- -\$pid; return 1; }
  echo "(stopped with Ctrl-C)"
}
run sandbox
# the test run's own lines, less each passing test's, and the last 150 of those
s=\$SECONDS; echo; echo "### \$ $TEST_CMD   [\$(date -u +%H:%M:%S)]"
$TEST_CMD 2>&1 | grep -vE '^\s+✔' | tail -n 150; echo "### exit \${PIPESTATUS[0]}, \$((SECONDS - s)) s"
echo; echo "### total \$((SECONDS - T0)) s"
EOF
chmod +x "$ROOT/root/proof.sh"

# The network namespace, with the internet through slirp4netns (NAT; the host's loopback not reachable)
mkdir -p /run/netns
ip netns add "$NS"
cleanup() {
  [ -n "${SLIRP:-}" ] && kill "$SLIRP" 2>/dev/null
  ip netns delete "$NS" 2>/dev/null || true
}
trap cleanup EXIT
ip netns exec "$NS" ip link set lo up
slirp4netns --configure --mtu=65520 --disable-host-loopback --netns-type=path "/run/netns/$NS" tap0 >"$WORK/slirp.log" 2>&1 &
SLIRP=$!
for _ in $(seq 1 20); do ip netns exec "$NS" ip -4 addr show tap0 2>/dev/null | grep -q inet && break; sleep 0.5; done

# A private mount and PID namespace: proc, sys, dev, a fresh /dev/shm and /run, the mirrors read-only;
# everything the machine started ends with it.
echo "entering the machine at $(date -u +%H:%M:%S) UTC; transcript: $WORK/transcript.txt"
# shellcheck disable=SC2016 # expanded by the inner shell
nsenter --net="/run/netns/$NS" unshare --mount --pid --fork --uts --ipc bash -c '
  set -e
  R=$1; M=$2
  mount --make-rprivate /
  hostname wasb-fresh
  mount -t proc proc "$R/proc"
  mount -t sysfs sysfs "$R/sys"
  mount --rbind /dev "$R/dev"
  mount -t tmpfs -o mode=1777 tmpfs "$R/dev/shm"
  mount -t tmpfs -o mode=755 tmpfs "$R/run"
  mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
  if [ -n "$M" ]; then mount --bind "$M" "$R/mirror"; mount -o remount,bind,ro "$R/mirror"; fi
  shift 2
  exec chroot "$R" /usr/bin/env -i TERM=dumb "$@" /bin/bash /root/proof.sh
' proof "$ROOT" "${DRACHTIO_MIRRORS:-}" "${EXTRA_ENV[@]}" 2>&1 | tee "$WORK/transcript.txt"
