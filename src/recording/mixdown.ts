import fs from 'node:fs';
import { wavHeader } from '../media/wav';
import { AudioDecoder, decoderFor, isSignalling } from './decoders';
import { parseRtp } from '../media/rtp-packets';
import { udpPackets } from './pcap';
import { LegMedia } from './recording-meta';

export const RECORDING_RATE = 8000;
/** Audio that arrives later than this behind the newest packet is dropped (it would be out of order). */
const WINDOW_S = 5;

export interface MixdownResult { bytes: number; seconds: number; packets: number; skipped: number }

interface Stream { decoder: AudioDecoder; clock: number; firstTs: number; anchor: number; channel: 0 | 1 }

/**
 * Writes a stereo WAV (left: the WhatsApp user, right: the PBX side) from a pcap of what rtpengine
 * received on each leg. Each RTP stream is placed on the call's timeline by its RTP timestamps from its
 * first packet's arrival, so jitter does not stretch it; audio is written out in one-second blocks as
 * the pcap goes on, so memory stays flat however long the call was.
 */
export function mixdown(pcap: Buffer, legs: LegMedia[], outFile: string): MixdownResult {
  const byPort = new Map(legs.map((l) => [l.port, l]));
  const streams = new Map<string, Stream>();
  const blocks = new Map<number, Int16Array>();
  const rate = RECORDING_RATE;
  const fd = fs.openSync(outFile, 'w');
  let written = 0; // blocks written so far
  let t0: number | null = null;
  let packets = 0;
  let skipped = 0;
  let lastSample = 0;
  const flushBefore = (block: number) => {
    for (; written < block; written++) {
      const b = blocks.get(written) ?? new Int16Array(rate * 2);
      blocks.delete(written);
      fs.writeSync(fd, Buffer.from(b.buffer, b.byteOffset, b.byteLength), 0, b.byteLength, 44 + written * rate * 4);
    }
  };
  try {
    fs.writeSync(fd, Buffer.alloc(44), 0, 44, 0);
    for (const p of udpPackets(pcap)) {
      const leg = byPort.get(p.dstPort);
      const rtp = leg ? parseRtp(p.payload) : null;
      if (!leg || !rtp) continue;
      const codec = leg.codecs.get(rtp.payloadType);
      if (!codec || isSignalling(codec.name)) continue;
      t0 ??= p.at;
      const key = `${leg.port}/${rtp.ssrc}`;
      let s = streams.get(key);
      if (!s) {
        s = { decoder: decoderFor(codec, rate), clock: codec.clock, firstTs: rtp.timestamp, anchor: (p.at - t0) * rate, channel: leg.side === 'whatsapp' ? 0 : 1 };
        streams.set(key, s);
      }
      const samples = s.decoder.decode(rtp.payload);
      const ticks = (rtp.timestamp - s.firstTs) >>> 0; // wraps at 2^32
      let start = Math.round(s.anchor + (ticks * rate) / s.clock);
      const arrival = (p.at - t0) * rate;
      if (Math.abs(start - arrival) > WINDOW_S * rate) {
        // A jump in the stream's timestamps (a new source behind the same SSRC): re-anchor on arrival.
        s.firstTs = rtp.timestamp;
        s.anchor = arrival;
        start = Math.round(arrival);
      }
      flushBefore(Math.max(0, Math.floor(arrival / rate) - WINDOW_S));
      if (start < written * rate) {
        skipped++;
        continue;
      }
      for (let i = 0; i < samples.length; i++) {
        const at = start + i;
        const block = Math.floor(at / rate);
        let b = blocks.get(block);
        if (!b) blocks.set(block, (b = new Int16Array(rate * 2)));
        const k = (at - block * rate) * 2 + s.channel;
        b[k] = Math.max(-32768, Math.min(32767, b[k]! + samples[i]!));
      }
      lastSample = Math.max(lastSample, start + samples.length);
      packets++;
    }
    flushBefore(Math.ceil(lastSample / rate));
    const frames = Math.min(written * rate, lastSample);
    const dataBytes = frames * 4;
    fs.ftruncateSync(fd, 44 + dataBytes);
    fs.writeSync(fd, wavHeader(dataBytes, rate, 2), 0, 44, 0);
    return { bytes: 44 + dataBytes, seconds: lastSample / rate, packets, skipped };
  } finally {
    fs.closeSync(fd);
    for (const s of streams.values()) s.decoder.close();
  }
}
