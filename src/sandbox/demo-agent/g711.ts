/**
 * G.711 encoders for the demo agent's prompts (16-bit linear PCM -> one byte per sample). The
 * recorder only decodes G.711 (src/recording/decoders.ts), so the encoding half lives here.
 */

export type G711Codec = 'PCMU' | 'PCMA';

/** The byte each codec sends for digital silence (linear 0). */
export const SILENCE_BYTE: Record<G711Codec, number> = { PCMU: 0xff, PCMA: 0xd5 };

const ULAW_BIAS = 0x84;
const ULAW_CLIP = 32635;

/** ITU-T G.711 µ-law of one 16-bit sample. */
export function linearToUlaw(sample: number): number {
  let s = Math.max(-ULAW_CLIP, Math.min(ULAW_CLIP, Math.round(sample)));
  const sign = s < 0 ? 0x80 : 0;
  if (s < 0) s = -s;
  s += ULAW_BIAS;
  let exponent = 7;
  for (let mask = 0x4000; (s & mask) === 0 && exponent > 0; exponent--, mask >>= 1);
  const mantissa = (s >> (exponent + 3)) & 0x0f;
  return ~(sign | (exponent << 4) | mantissa) & 0xff;
}

/** ITU-T G.711 A-law of one 16-bit sample. */
export function linearToAlaw(sample: number): number {
  let s = Math.max(-32768, Math.min(32767, Math.round(sample))) >> 3; // 13-bit magnitude domain
  let sign = 0x80;
  if (s < 0) {
    sign = 0;
    s = -s - 1;
  }
  let code: number;
  if (s < 32) {
    code = s >> 1;
  } else {
    let seg = 1;
    while (seg < 7 && s >= 64 << (seg - 1)) seg++;
    code = (seg << 4) | ((s >> seg) & 0x0f);
  }
  return (sign | code) ^ 0x55;
}

/** The whole of `samples` in one codec. */
export function encodeG711(samples: Int16Array, codec: G711Codec): Buffer {
  const out = Buffer.alloc(samples.length);
  const encode = codec === 'PCMU' ? linearToUlaw : linearToAlaw;
  for (let i = 0; i < samples.length; i++) out[i] = encode(samples[i]!);
  return out;
}
