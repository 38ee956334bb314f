import OpusScript from 'opusscript';

/** Turns one RTP payload into 16-bit PCM at the recording's sample rate. */
export interface AudioDecoder {
  decode(payload: Buffer): Int16Array;
  close(): void;
}

export class UnsupportedCodecError extends Error {
  constructor(readonly codec: string) {
    super(`cannot decode ${codec} in a pcap recording (use RECORDING_METHOD=proc with rtpengine-recording for it)`);
    this.name = 'UnsupportedCodecError';
  }
}

function ulaw(u: number): number {
  u = ~u & 0xff;
  const t = (((u & 0x0f) << 3) + 0x84) << ((u & 0x70) >> 4);
  return u & 0x80 ? 0x84 - t : t - 0x84;
}

function alaw(a: number): number {
  a ^= 0x55;
  const seg = (a & 0x70) >> 4;
  let t = (a & 0x0f) << 4;
  t = seg === 0 ? t + 8 : seg === 1 ? t + 0x108 : (t + 0x108) << (seg - 1);
  return a & 0x80 ? t : -t;
}

const ULAW = Int16Array.from({ length: 256 }, (_, i) => ulaw(i));
const ALAW = Int16Array.from({ length: 256 }, (_, i) => alaw(i));

/** G.711 at 8 kHz, repeated sample by sample to reach `rate` (8000 or a multiple of it). */
class G711Decoder implements AudioDecoder {
  constructor(private readonly table: Int16Array, private readonly factor: number) {}
  decode(payload: Buffer): Int16Array {
    const out = new Int16Array(payload.length * this.factor);
    for (let i = 0; i < payload.length; i++) out.fill(this.table[payload[i]!]!, i * this.factor, (i + 1) * this.factor);
    return out;
  }
  close(): void {}
}

class OpusDecoder implements AudioDecoder {
  private readonly opus: OpusScript;
  constructor(rate: 8000 | 16000, private readonly channels: 1 | 2) {
    this.opus = new OpusScript(rate, channels);
  }
  decode(payload: Buffer): Int16Array {
    if (payload.length === 0) return new Int16Array(0);
    const pcm = this.opus.decode(payload);
    const all = new Int16Array(pcm.buffer, pcm.byteOffset, pcm.length / 2);
    if (this.channels === 1) return Int16Array.from(all);
    // Stereo opus (WebRTC signals opus/48000/2): the left channel carries the voice.
    const out = new Int16Array(all.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = all[2 * i]!;
    return out;
  }
  close(): void {
    this.opus.delete();
  }
}

/** A decoder for an encoding name (from a=rtpmap) producing `rate` Hz mono. */
export function decoderFor(codec: { name: string; channels: number }, rate: 8000 | 16000): AudioDecoder {
  switch (codec.name) {
    case 'PCMU': return new G711Decoder(ULAW, rate / 8000);
    case 'PCMA': return new G711Decoder(ALAW, rate / 8000);
    case 'OPUS': return new OpusDecoder(rate, codec.channels === 2 ? 2 : 1);
    default: throw new UnsupportedCodecError(codec.name);
  }
}

/** Payloads that carry no audio to decode (digits, comfort noise). */
export function isSignalling(name: string): boolean {
  return name === 'TELEPHONE-EVENT' || name === 'CN';
}
