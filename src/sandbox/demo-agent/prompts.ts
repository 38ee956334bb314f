import fs from 'node:fs';
import path from 'node:path';
import { encodeG711, type G711Codec, SILENCE_BYTE } from './g711';
import { readWav } from './wav-reader';

/** Samples per 20 ms packet at 8 kHz. */
export const FRAME_SAMPLES = 160;
const PROMPT_RATE = 8000;

/** The key each digit's prompt file is named after (a file name cannot hold `*` or `#` everywhere). */
export const DIGIT_FILES: Record<string, string> = {
  '0': '0', '1': '1', '2': '2', '3': '3', '4': '4', '5': '5', '6': '6', '7': '7', '8': '8', '9': '9',
  '*': 'star', '#': 'pound', A: 'A', B: 'B', C: 'C', D: 'D',
};

/** The prompts as linear PCM, encoded to a codec's 20 ms frames on first use. */
export class PromptSet {
  private readonly encoded = new Map<string, Buffer[]>();

  constructor(private readonly pcm: ReadonlyMap<string, Int16Array>) {}

  /** The greeting in `codec`, as 160-byte frames (the last padded with silence). */
  greeting(codec: G711Codec): Buffer[] {
    return this.frames('greeting', codec);
  }

  /** A digit's spoken name ('0'-'9', '*', '#', 'A'-'D'); empty for anything else. */
  digit(digit: string, codec: G711Codec): Buffer[] {
    const name = DIGIT_FILES[digit];
    return name ? this.frames(name, codec) : [];
  }

  private frames(name: string, codec: G711Codec): Buffer[] {
    const key = `${codec}:${name}`;
    let frames = this.encoded.get(key);
    if (!frames) {
      const pcm = this.pcm.get(name) ?? new Int16Array(0);
      const bytes = encodeG711(pcm, codec);
      frames = [];
      for (let at = 0; at < bytes.length; at += FRAME_SAMPLES) {
        const frame = Buffer.alloc(FRAME_SAMPLES, SILENCE_BYTE[codec]);
        bytes.copy(frame, 0, at, Math.min(bytes.length, at + FRAME_SAMPLES));
        frames.push(frame);
      }
      this.encoded.set(key, frames);
    }
    return frames;
  }
}

/**
 * Where the prompts are: the compiled code runs from dist/src/sandbox/demo-agent/, the WAVs stay in
 * src/sandbox/prompts/ (tsc does not copy them); a build that copies them next to the code is found too.
 */
export function defaultPromptsDir(): string {
  const candidates = [path.resolve(__dirname, '../../../../src/sandbox/prompts'), path.resolve(__dirname, '../prompts')];
  return candidates.find((dir) => fs.existsSync(path.join(dir, 'greeting.wav'))) ?? candidates[0]!;
}

/** Reads every prompt; throws naming the directory and the file when one is missing or unusable. */
export async function loadPrompts(dir: string): Promise<PromptSet> {
  const names = ['greeting', ...Object.values(DIGIT_FILES)];
  const pcm = new Map<string, Int16Array>();
  for (const name of names) {
    const file = path.join(dir, `${name}.wav`);
    let data: Buffer;
    try {
      data = await fs.promises.readFile(file);
    } catch (e) {
      throw new Error(`demo agent: prompt ${file} is missing (run scripts/make-demo-prompts.sh): ${(e as Error).message}`);
    }
    let audio;
    try {
      audio = readWav(data);
    } catch (e) {
      throw new Error(`demo agent: prompt ${file} is unusable: ${(e as Error).message}`);
    }
    if (audio.rate !== PROMPT_RATE) throw new Error(`demo agent: prompt ${file} is ${audio.rate} Hz, need ${PROMPT_RATE} Hz`);
    pcm.set(name, audio.samples);
  }
  return new PromptSet(pcm);
}
