# rtpengine's recording daemon from Debian, for RECORDING_METHOD=proc (docs/recording.md): it reads the
# packets rtpengine's kernel module exports under /proc/rtpengine and writes <call id>-mix.wav.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends rtpengine-recording-daemon && rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["rtpengine-recording", "--config-file=none", "--foreground", "--log-stderr"]
