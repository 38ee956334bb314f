# rtpengine from Debian (userspace forwarding, opus transcoding), as the tests use it.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends rtpengine-daemon && rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["rtpengine", "--config-file=none", "--table=-1", "--foreground", "--log-stderr"]
