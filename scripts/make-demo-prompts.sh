#!/bin/sh
# Writes the sandbox demo agent's spoken prompts (src/sandbox/prompts/*.wav): 8 kHz mono 16-bit PCM,
# silence trimmed at both ends and normalised to -3 dBFS. The WAVs are committed; run this again only
# to change a text or a voice. Needs espeak-ng and sox.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out="$here/../src/sandbox/prompts"
voice=${VOICE:-en-us}
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# say NAME WORDS_PER_MINUTE TEXT: speaks TEXT into $out/NAME.wav.
say() {
  espeak-ng -v "$voice" -s "$2" -w "$tmp/raw.wav" "$3"
  # rate/channels/bits: what the agent encodes to G.711 without resampling.
  # silence ... reverse silence ... reverse: trims quiet at the start, then at the end.
  # gain -n -3: every prompt equally loud, with headroom for the G.711 companding.
  sox "$tmp/raw.wav" -r 8000 -c 1 -b 16 -e signed-integer "$out/$1.wav" \
    silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse \
    gain -n -3
}

# The greeting is short rather than fast, so a caller is not kept long before the echo starts and
# still understands it.
say greeting 185 "Hello, this is the bridge's demo agent. Speak, and you will hear yourself. Press a key, and I will read it back."

words="0:zero 1:one 2:two 3:three 4:four 5:five 6:six 7:seven 8:eight 9:nine star:star pound:pound A:ay B:bee C:see D:dee"
for pair in $words; do
  say "${pair%%:*}" 175 "${pair#*:}"
done

for f in "$out"/*.wav; do
  printf '%-12s %6s bytes %5.2f s\n' "$(basename "$f")" "$(wc -c <"$f")" "$(soxi -D "$f")"
done
