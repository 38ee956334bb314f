/** Reads the 16-bit PCM WAV files the prompts are stored in (src/media/wav.ts only writes them). */

export interface PcmAudio {
  rate: number;
  /** Mono samples (the first channel when the file has more). */
  samples: Int16Array;
}

export class WavFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WavFormatError';
  }
}

/** Walks the RIFF chunks (a `LIST` or `fact` chunk may sit before `data`) and returns the samples. */
export function readWav(file: Buffer): PcmAudio {
  if (file.length < 12 || file.toString('ascii', 0, 4) !== 'RIFF' || file.toString('ascii', 8, 12) !== 'WAVE') {
    throw new WavFormatError('not a RIFF/WAVE file');
  }
  let fmt: { format: number; channels: number; rate: number; bits: number } | null = null;
  let offset = 12;
  while (offset + 8 <= file.length) {
    const id = file.toString('ascii', offset, offset + 4);
    const size = file.readUInt32LE(offset + 4);
    const body = offset + 8;
    if (id === 'fmt ') {
      if (size < 16 || body + 16 > file.length) throw new WavFormatError('short fmt chunk');
      fmt = {
        format: file.readUInt16LE(body),
        channels: file.readUInt16LE(body + 2),
        rate: file.readUInt32LE(body + 4),
        bits: file.readUInt16LE(body + 14),
      };
      // WAVE_FORMAT_EXTENSIBLE carries the real format in its sub-format GUID's first two bytes.
      if (fmt.format === 0xfffe && size >= 26 && body + 26 <= file.length) fmt.format = file.readUInt16LE(body + 24);
    } else if (id === 'data') {
      if (!fmt) throw new WavFormatError('data chunk before fmt chunk');
      if (fmt.format !== 1 || fmt.bits !== 16 || fmt.channels < 1) {
        throw new WavFormatError(`need 16-bit PCM, found format ${fmt.format} with ${fmt.bits} bits`);
      }
      // sox writes 0xffffffff-ish sizes when streaming; trust the file's end then.
      const end = Math.min(file.length, body + size);
      const frameBytes = 2 * fmt.channels;
      const count = Math.floor((end - body) / frameBytes);
      const samples = new Int16Array(count);
      for (let i = 0; i < count; i++) samples[i] = file.readInt16LE(body + i * frameBytes);
      return { rate: fmt.rate, samples };
    }
    offset = body + size + (size & 1); // chunks are word-aligned
  }
  throw new WavFormatError('no data chunk');
}
