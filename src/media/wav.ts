import fs from 'node:fs/promises';
import path from 'node:path';

/** The 44-byte header of a 16-bit PCM WAV file with `dataBytes` of samples. */
export function wavHeader(dataBytes: number, rate: number, channels: number): Buffer {
  const b = Buffer.alloc(44);
  b.write('RIFF', 0);
  b.writeUInt32LE(36 + dataBytes, 4);
  b.write('WAVE', 8);
  b.write('fmt ', 12);
  b.writeUInt32LE(16, 16);
  b.writeUInt16LE(1, 20); // PCM
  b.writeUInt16LE(channels, 22);
  b.writeUInt32LE(rate, 24);
  b.writeUInt32LE(rate * 2 * channels, 28);
  b.writeUInt16LE(2 * channels, 32);
  b.writeUInt16LE(16, 34);
  b.write('data', 36);
  b.writeUInt32LE(dataBytes, 40);
  return b;
}

/** A mono 16-bit PCM WAV file of `samples` at `rate` Hz. */
export function wavFile(samples: Int16Array, rate: number): Buffer {
  const b = Buffer.alloc(44 + samples.length * 2);
  wavHeader(samples.length * 2, rate, 1).copy(b);
  for (let i = 0; i < samples.length; i++) b.writeInt16LE(samples[i]!, 44 + 2 * i);
  return b;
}

/**
 * Writes one second of silence (8 kHz) for rtpengine to play to a WhatsApp user the PBX has left
 * without media. Written once at start; rtpengine must be able to read the path (same host or a
 * shared volume, see docker-compose.yml).
 */
export async function writeSilenceWav(file: string): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.writeFile(file, wavFile(new Int16Array(8000), 8000));
}
