import dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { AddressInfo } from 'node:net';
import { alawToLinear, linearToUlaw, sineFrame, ToneDetector, ulawToLinear } from './tone';

/**
 * The agent's desk phone media: a plain RTP endpoint on loopback that sends a G.711 tone and listens
 * for another. Symmetric RTP: it answers toward wherever the bridge's media comes from.
 */
export class RtpPhone {
  private readonly socket = dgram.createSocket('udp4');
  private remote: { address: string; port: number } | null = null;
  private timer: NodeJS.Timeout | null = null;
  private seq = 0;
  private ts = 0;
  private readonly ssrc = Math.floor(Math.random() * 0xffffffff);
  readonly heard: ToneDetector;
  packetsIn = 0;
  packetsOut = 0;

  constructor(private readonly sendFreq: number, listenFreq: number) {
    this.heard = new ToneDetector(listenFreq);
  }

  async start(): Promise<number> {
    this.socket.on('message', (msg, rinfo) => this.onPacket(msg, rinfo));
    await new Promise<void>((resolve) => this.socket.bind(0, '127.0.0.1', resolve));
    this.timer = setInterval(() => this.sendFrame(), 20);
    return (this.socket.address() as AddressInfo).port;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.socket.close();
  }

  private onPacket(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (msg.length < 12 || (msg[0]! & 0xc0) !== 0x80) return;
    const pt = msg[1]! & 0x7f;
    if (pt !== 0 && pt !== 8) return;
    this.remote ??= { address: rinfo.address, port: rinfo.port };
    this.packetsIn++;
    const cc = msg[0]! & 0x0f;
    const payload = msg.subarray(12 + cc * 4);
    const pcm = new Int16Array(payload.length);
    for (let i = 0; i < payload.length; i++) pcm[i] = pt === 0 ? ulawToLinear(payload[i]!) : alawToLinear(payload[i]!);
    this.heard.feed(pcm, 8000, performance.now());
  }

  private sendFrame(): void {
    if (!this.remote) return;
    const pcm = sineFrame(this.sendFreq, 8000, 160, this.ts);
    const pkt = Buffer.alloc(12 + 160);
    pkt[0] = 0x80;
    pkt[1] = 0; // PCMU
    pkt.writeUInt16BE(this.seq++ & 0xffff, 2);
    pkt.writeUInt32BE(this.ts >>> 0, 4);
    pkt.writeUInt32BE(this.ssrc >>> 0, 8);
    for (let i = 0; i < 160; i++) pkt[12 + i] = linearToUlaw(pcm[i]!);
    this.ts += 160;
    this.packetsOut++;
    this.socket.send(pkt, this.remote.port, this.remote.address);
  }
}
