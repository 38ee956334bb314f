import { performance } from 'node:perf_hooks';
import OpusScript from 'opusscript';

/**
 * What opus encoder complexity costs and what it does to the audio, for the media cost table in
 * docs/load.md: encodes 10 s of a narrow-band voice-like signal (as rtpengine encodes a G.711 call:
 * 48 kHz stereo, 32 kbit/s, 20 ms frames) at each complexity, decodes it again, and prints the encode
 * time per frame and the signal-to-noise ratio. libopus compiled to WebAssembly (opusscript): absolute
 * times are slower than rtpengine's native libopus, the ratios between complexities are what counts.
 * Usage: node dist/test/load/opus-complexity.js
 */
const RATE = 48000;
const FRAME = 960;
const SECONDS = 10;
const OPUS_SET_COMPLEXITY = 4010;
const OPUS_SET_BITRATE = 4002;

/** A voiced sound: harmonics of a gliding 110-220 Hz pitch up to 3.4 kHz, syllable-like envelope, a little noise. */
function voice(n: number): Int16Array {
  const out = new Int16Array(n);
  let phase = 0;
  for (let i = 0; i < n; i++) {
    const t = i / RATE;
    const f0 = 165 + 55 * Math.sin(2 * Math.PI * 0.7 * t);
    phase += (2 * Math.PI * f0) / RATE;
    let s = 0;
    for (let h = 1; h * f0 < 3400; h++) s += Math.sin(h * phase) / h;
    const env = 0.55 + 0.45 * Math.sin(2 * Math.PI * 4 * t);
    out[i] = Math.round(6000 * env * s + (Math.random() - 0.5) * 300);
  }
  return out;
}

function stereo(mono: Int16Array, from: number): Buffer {
  const b = Buffer.alloc(FRAME * 4);
  for (let i = 0; i < FRAME; i++) {
    b.writeInt16LE(mono[from + i]!, i * 4);
    b.writeInt16LE(mono[from + i]!, i * 4 + 2);
  }
  return b;
}

function main(): void {
  const signal = voice(RATE * SECONDS);
  const frames = Math.floor(signal.length / FRAME);
  let warmed = false;
  console.log('opus encoder (libopus via opusscript/wasm), 48 kHz stereo, 32 kbit/s, 20 ms frames, 10 s of voice-like audio');
  // The first pass warms WebAssembly up and is not printed.
  for (const complexity of [10, 10, 5, 3, 2, 1, 0]) {
    const enc = new OpusScript(RATE, 2, OpusScript.Application.AUDIO);
    const dec = new OpusScript(RATE, 2, OpusScript.Application.AUDIO);
    enc.encoderCTL(OPUS_SET_COMPLEXITY, complexity);
    enc.encoderCTL(OPUS_SET_BITRATE, 32000);
    let encodeMs = 0;
    let sig = 0;
    let noise = 0;
    const decoded: number[] = [];
    for (let f = 0; f < frames; f++) {
      const pcm = stereo(signal, f * FRAME);
      const t = performance.now();
      const pkt = enc.encode(pcm, FRAME);
      encodeMs += performance.now() - t;
      const out = dec.decode(pkt);
      for (let i = 0; i < out.length / 4; i++) decoded.push(out.readInt16LE(i * 4));
    }
    // libopus delays its output by its lookahead (6.5 ms at 48 kHz = 312 samples): align before comparing.
    const delay = 312;
    for (let i = RATE; i < signal.length - delay; i++) {
      const d = decoded[i + delay] ?? 0;
      sig += signal[i]! ** 2;
      noise += (signal[i]! - d) ** 2;
    }
    enc.delete();
    dec.delete();
    const warm = warmed;
    warmed = true;
    if (warm) console.log(`  complexity ${String(complexity).padStart(2)}: ${(encodeMs / frames).toFixed(3)} ms per frame (${((encodeMs / frames / 20) * 100).toFixed(2)} % of one core per stream)  SNR ${(10 * Math.log10(sig / noise)).toFixed(1)} dB`);
  }
}

main();
