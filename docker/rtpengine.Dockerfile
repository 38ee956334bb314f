# rtpengine from Debian (userspace forwarding, opus transcoding), as the tests use it; rtpengine-utils
# brings rtpengine-ctl (`docker compose exec rtpengine rtpengine-ctl list interfaces`).
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends rtpengine-daemon rtpengine-utils && rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["rtpengine", "--config-file=none", "--table=-1", "--foreground", "--log-stderr"]
