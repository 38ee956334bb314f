#!/bin/sh
# drachtio-server's start under docker compose (docker-compose.yml mounts this file and runs it with
# the drachtio image's /bin/sh). The conditional arguments are built here rather than in the compose
# file: Compose before v5.0.2 interpolates a `${A:+... ${B:?...}}` eagerly, so a required check nested
# in a conditional fails even when the condition is off, and no compose file can say "SIP_LOCAL_NET is
# required only with SIP_EXTERNAL_IP" in a way every Compose v2 reads alike.
#
# Reads (docker-compose.yml's `environment:`, from .env):
#   LOCAL_IP          the address SIP binds and names (required)
#   SIP_PORT          UDP and TCP (5060)
#   SIP_EXTERNAL_IP   set: a PBX across the NAT; each contact gets --external-ip and --local-net
#   SIP_LOCAL_NET     the private network's CIDR (required with SIP_EXTERNAL_IP)
#   SIP_TLS_PORT      set by docker/compose.tls.yml: a second contact, SIP over TLS, with the
#                     certificate files it mounts under /etc/drachtio/tls/
#   DRACHTIO_SECRET   the admin connection's secret (required); the admin port stays on loopback
# Why --external-ip is off by default (drachtio-server 0.9.10 names it in every request it starts,
# whatever the destination): docs/deploy.md, "drachtio-server".
set -eu

fail() {
  echo "drachtio-start: $*" >&2
  exit 2
}

[ -n "${LOCAL_IP:-}" ] || fail "set LOCAL_IP to this host's private address"
[ -n "${DRACHTIO_SECRET:-}" ] || fail "set DRACHTIO_SECRET (e.g. openssl rand -hex 24)"
external_ip="${SIP_EXTERNAL_IP:-}"
local_net="${SIP_LOCAL_NET:-}"
if [ -n "$external_ip" ] && [ -z "$local_net" ]; then
  fail "set SIP_LOCAL_NET to the CIDR of this host's private network (required with SIP_EXTERNAL_IP)"
fi
sip_port="${SIP_PORT:-5060}"

set -- --contact "sip:${LOCAL_IP}:${sip_port};transport=udp,tcp"
if [ -n "$external_ip" ]; then
  set -- "$@" --external-ip "$external_ip" --local-net "$local_net"
fi
if [ -n "${SIP_TLS_PORT:-}" ]; then
  set -- "$@" --contact "sips:${LOCAL_IP}:${SIP_TLS_PORT};transport=tls"
  if [ -n "$external_ip" ]; then
    set -- "$@" --external-ip "$external_ip" --local-net "$local_net"
  fi
  set -- "$@" --key-file /etc/drachtio/tls/key.pem --cert-file /etc/drachtio/tls/cert.pem --chain-file /etc/drachtio/tls/chain.pem
fi
echo "drachtio-start: SIP on ${LOCAL_IP}:${sip_port} (udp, tcp)${SIP_TLS_PORT:+ and ${LOCAL_IP}:${SIP_TLS_PORT} (tls)}${external_ip:+, named as ${external_ip} outside ${local_net}}; admin on 127.0.0.1:9022" >&2
exec drachtio "$@" --address 127.0.0.1 --port 9022 --secret "$DRACHTIO_SECRET" --loglevel info --sofia-loglevel 3
