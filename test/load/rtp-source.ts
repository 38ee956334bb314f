import dgram from 'node:dgram';
import { AddressInfo } from 'node:net';
import OpusScript from 'opusscript';
import { linearToUlaw, sineFrame } from '../harness/tone';

/** What the source sends: PCMU (8 kHz, PT 0) or opus (48 kHz stereo, PT 111), 20 ms a packet. */
export type SourceCodec = 'pcmu' | 'opus';
/** The payload type the bridge's rtpengine gives opus in its offers: the same here keeps the WhatsApp side's rtpengine from transcoding. */
export const OPUS_PT = 96;

/** One second of a 400 Hz tone, as 50 payloads of 20 ms, encoded once at start. */
function payloads(codec: SourceCodec): Buffer[] {
  if (codec === 'pcmu') return [Buffer.from(Array.from(sineFrame(400, 8000, 160, 0), (s) => linearToUlaw(s)))];
  const enc = new OpusScript(48000, 2, OpusScript.Application.VOIP);
  const out: Buffer[] = [];
  for (let f = 0; f < 50; f++) {
    const mono = sineFrame(400, 48000, 960, f * 960);
    const stereo = Buffer.alloc(960 * 4);
    for (let i = 0; i < 960; i++) {
      stereo.writeInt16LE(mono[i]!, i * 4);
      stereo.writeInt16LE(mono[i]!, i * 4 + 2);
    }
    out.push(Buffer.from(enc.encode(stereo, 960)));
  }
  enc.delete();
  return out;
}

/**
 * The plain-RTP side of every simulated WhatsApp user: one UDP socket on loopback that sends a tone
 * (PCMU, or opus encoded once up front) to each registered port of the WhatsApp-side rtpengine, and
 * counts what comes back. One socket and no per-packet encoding keep the load generator cheap.
 */
export class RtpSource {
  private readonly socket = dgram.createSocket('udp4');
  private readonly targets = new Map<string, { port: number; seq: number; ts: number; ssrc: number; frame: number }>();
  private timer: NodeJS.Timeout | null = null;
  private readonly frames: Buffer[];
  private readonly pt: number;
  private readonly tsStep: number;
  packetsIn = 0;
  packetsOut = 0;

  constructor(readonly codec: SourceCodec) {
    this.frames = payloads(codec);
    this.pt = codec === 'pcmu' ? 0 : OPUS_PT;
    this.tsStep = codec === 'pcmu' ? 160 : 960;
  }

  async start(): Promise<number> {
    this.socket.on('message', () => {
      this.packetsIn++;
    });
    await new Promise<void>((r) => this.socket.bind(0, '127.0.0.1', r));
    this.timer = setInterval(() => this.tick(), 20);
    return (this.socket.address() as AddressInfo).port;
  }

  /** Starts sending to `port` for the call `id`. */
  add(id: string, port: number): void {
    const rnd = (n: number) => Math.floor(Math.random() * n);
    this.targets.set(id, { port, seq: rnd(0x10000), ts: rnd(0x7fffffff), ssrc: rnd(0x7fffffff), frame: 0 });
  }

  remove(id: string): void {
    this.targets.delete(id);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.socket.close();
  }

  private tick(): void {
    for (const t of this.targets.values()) {
      const payload = this.frames[t.frame % this.frames.length]!;
      const pkt = Buffer.alloc(12 + payload.length);
      pkt[0] = 0x80;
      pkt[1] = this.pt;
      pkt.writeUInt16BE(t.seq, 2);
      pkt.writeUInt32BE(t.ts >>> 0, 4);
      pkt.writeUInt32BE(t.ssrc >>> 0, 8);
      payload.copy(pkt, 12);
      t.seq = (t.seq + 1) & 0xffff;
      t.ts = (t.ts + this.tsStep) >>> 0;
      t.frame++;
      this.socket.send(pkt, t.port, '127.0.0.1');
      this.packetsOut++;
    }
  }
}
