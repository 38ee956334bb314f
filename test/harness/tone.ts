/** Tone generation and detection (Goertzel) used to prove audio crossed the bridge. */

export function sineFrame(freq: number, sampleRate: number, samples: number, startSample: number, amplitude = 8000): Int16Array {
  const out = new Int16Array(samples);
  for (let i = 0; i < samples; i++) {
    out[i] = Math.round(amplitude * Math.sin((2 * Math.PI * freq * (startSample + i)) / sampleRate));
  }
  return out;
}

/** Share of the frame's energy that sits at `freq` (0..1), and the frame's RMS. */
export function toneShare(samples: Int16Array, freq: number, sampleRate: number): { share: number; rms: number } {
  const n = samples.length;
  if (n === 0) return { share: 0, rms: 0 };
  const k = Math.round((n * freq) / sampleRate);
  const w = (2 * Math.PI * k) / n;
  const coeff = 2 * Math.cos(w);
  let s1 = 0;
  let s2 = 0;
  let energy = 0;
  for (let i = 0; i < n; i++) {
    const x = samples[i]!;
    energy += x * x;
    const s0 = x + coeff * s1 - s2;
    s2 = s1;
    s1 = s0;
  }
  const power = s1 * s1 + s2 * s2 - coeff * s1 * s2; // |X(k)|^2
  // A pure tone of amplitude A puts (A n / 2)^2 in its bin and A^2 n / 2 in total energy.
  const share = energy > 0 ? (2 * power) / (n * energy) : 0;
  return { share: Math.min(1, share), rms: Math.sqrt(energy / n) };
}

/** Tracks whether, and from when, a tone has been heard in a stream of frames. */
export class ToneDetector {
  firstHeardAt: number | null = null;
  framesWithTone = 0;
  frames = 0;
  loudFrames = 0;
  firstLoudAt: number | null = null;

  private waiters: Array<{ frames: number; resolve: () => void }> = [];

  constructor(readonly freq: number, private readonly minRms = 300, private readonly minShare = 0.5) {}

  /** Resolves once `frames` frames carrying the tone have been heard. */
  whenHeard(frames: number): Promise<void> {
    if (this.framesWithTone >= frames) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ frames, resolve }));
  }

  feed(samples: Int16Array, sampleRate: number, at: number): void {
    this.frames++;
    const { share, rms } = toneShare(samples, this.freq, sampleRate);
    if (rms >= this.minRms) {
      this.loudFrames++;
      this.firstLoudAt ??= at;
    }
    if (rms >= this.minRms && share >= this.minShare) {
      this.framesWithTone++;
      this.firstHeardAt ??= at;
      this.waiters = this.waiters.filter((w) => (w.frames <= this.framesWithTone ? (w.resolve(), false) : true));
    }
  }
}

// G.711 µ-law / A-law codecs for the PBX-side RTP endpoint: the encoders are the demo agent's.
export { linearToAlaw, linearToUlaw } from '../../src/sandbox/demo-agent/g711';

export function ulawToLinear(u: number): number {
  u = ~u & 0xff;
  const sign = u & 0x80;
  const exponent = (u >> 4) & 0x07;
  const mantissa = u & 0x0f;
  let s = ((mantissa << 3) + 0x84) << exponent;
  s -= 0x84;
  return sign ? -s : s;
}

export function alawToLinear(a: number): number {
  a ^= 0x55;
  const sign = a & 0x80;
  const exponent = (a >> 4) & 0x07;
  const mantissa = a & 0x0f;
  let s = exponent === 0 ? (mantissa << 4) + 8 : ((mantissa << 4) + 0x108) << (exponent - 1);
  return sign ? s : -s;
}
