# rtpengine from Debian (userspace forwarding, opus transcoding), as the tests use it; rtpengine-utils
# brings rtpengine-ctl (`docker compose exec rtpengine rtpengine-ctl list interfaces`).
# The daemon runs with --config-file=none (docker-compose.yml gives all its options); Debian's
# /etc/rtpengine/rtpengine.conf is replaced by one that only tells rtpengine-ctl where the daemon's CLI
# is: docker-compose.yml's --listen-cli (Debian's file says 2224, where nothing listens here).
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends rtpengine-daemon rtpengine-utils && rm -rf /var/lib/apt/lists/* \
  && printf '%s\n' '# For rtpengine-ctl only: the daemon runs with --config-file=none.' '[rtpengine]' 'listen-cli = 127.0.0.1:9900' > /etc/rtpengine/rtpengine.conf
ENTRYPOINT ["rtpengine", "--config-file=none", "--table=-1", "--foreground", "--log-stderr"]
