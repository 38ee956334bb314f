#!/bin/bash
# Runs inside a systemd-nspawn container booted by test/native-systemd.test.ts (the host's /usr, /etc
# and /opt under overlays, /run/wasb bound from the test's folder): docs/deploy-native.md's steps, then
# the units of deploy/systemd started, reloaded and stopped by systemd itself. Writes its transcript to
# /run/wasb/out/check.log (the test reads it) and powers the container off.
set -uo pipefail
R=/run/wasb
exec > "$R/out/check.log" 2>&1
step() { echo "=== $(date +%T) $*"; }

step users and folders
useradd --system --user-group --home-dir /var/lib/wa-sip-bridge --shell /usr/sbin/nologin wa-sip-bridge
useradd --system --user-group --no-create-home --shell /usr/sbin/nologin drachtio
install -d -o wa-sip-bridge -g wa-sip-bridge -m 0755 /var/lib/wa-sip-bridge /var/lib/wa-sip-bridge/media
install -d -o wa-sip-bridge -g wa-sip-bridge -m 0700 /var/lib/wa-sip-bridge/cdr-spill
install -d -o root -g wa-sip-bridge -m 0750 /etc/wa-sip-bridge
install -d -m 0755 /etc/drachtio
# The rtpengine package makes these; /var is empty in the container.
install -d -o rtpengine -g rtpengine -m 0770 /var/spool/rtpengine /var/lib/rtpengine-recording

step tree
cp -a "$R/tree" /opt/wa-sip-bridge-test && ln -sfn /opt/wa-sip-bridge-test /opt/wa-sip-bridge

step settings
install -o root -g wa-sip-bridge -m 0640 "$R/bridge.env" /etc/wa-sip-bridge/bridge.env
(umask 077 && printf 'DRACHTIO_SECRET=%s\n' "$(openssl rand -hex 24)" > /etc/wa-sip-bridge/drachtio.env)
LOCAL_IP=127.0.0.1 PUBLIC_IP=203.0.113.7
sed "s/LOCAL_IP/$LOCAL_IP/g" "$R/deploy/drachtio.conf.xml" > /etc/drachtio/drachtio.conf.xml
sed -e "s/LOCAL_IP/$LOCAL_IP/g" -e "s/PUBLIC_IP/$PUBLIC_IP/g" "$R/deploy/rtpengine.conf" > /etc/rtpengine/rtpengine.conf

step units
cp "$R/deploy/wa-sip-bridge.service" "$R/deploy/drachtio.service" /etc/systemd/system/
mkdir -p /etc/systemd/system/rtpengine-daemon.service.d
cp "$R/deploy/rtpengine-daemon.service.d/wa-sip-bridge.conf" /etc/systemd/system/rtpengine-daemon.service.d/
systemctl daemon-reload

step migrate
(cd /opt/wa-sip-bridge && runuser -u wa-sip-bridge -- node dist/src/cdr/migrate-cli.js --env-file /etc/wa-sip-bridge/bridge.env)

step start
t0=$(date +%s%N)
systemctl start drachtio rtpengine-daemon wa-sip-bridge
for _ in $(seq 1 60); do
  curl -sf 127.0.0.1:3000/readyz > "$R/out/readyz.json" && break
  sleep 0.5
done
echo "readyz after $(( ($(date +%s%N) - t0) / 1000000 )) ms: $(cat "$R/out/readyz.json")"
for u in drachtio rtpengine-daemon wa-sip-bridge; do
  echo "unit $(systemctl show -p Id,ActiveState,SubState,User,NRestarts "$u" | tr '\n' ' ')"
done
for u in drachtio rtpengine wa-sip-bridge; do ps -o user:14=,pid=,args= -u "$u" || true; done

step reload
systemctl reload wa-sip-bridge
for _ in $(seq 1 20); do
  journalctl -u wa-sip-bridge --no-pager -o cat | grep -q 'SIGHUP' && break
  sleep 0.25
done
echo "sighup seen: $(journalctl -u wa-sip-bridge --no-pager -o cat | grep -c 'SIGHUP')"

step stop
t0=$(date +%s%N)
systemctl stop wa-sip-bridge
echo "stopped in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
echo "after stop $(systemctl show -p Result,ExecMainStatus,ActiveState wa-sip-bridge | tr '\n' ' ')"

step schema behind
mkdir -p /etc/systemd/system/wa-sip-bridge.service.d
printf '[Service]\nEnvironment=DATABASE_URL=%s\n' "$(cat "$R/behind-url")" > /etc/systemd/system/wa-sip-bridge.service.d/behind.conf
systemctl daemon-reload
systemctl start wa-sip-bridge
for _ in $(seq 1 40); do
  [ "$(systemctl show -p ActiveState --value wa-sip-bridge)" = failed ] && break
  sleep 0.25
done
# Restart=on-failure would try again after RestartSec=2s: wait past it, then count.
sleep 3
echo "behind $(systemctl show -p Result,ExecMainStatus,ActiveState,NRestarts wa-sip-bridge | tr '\n' ' ')"
journalctl -u wa-sip-bridge --no-pager -o cat | grep -E 'cannot start' | tail -1

step journal
journalctl -u wa-sip-bridge -u drachtio -u rtpengine-daemon --no-pager -o short-monotonic | tail -40
echo CHECK-DONE
systemctl poweroff
