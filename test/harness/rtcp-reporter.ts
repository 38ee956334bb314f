import dgram from 'node:dgram';

/**
 * The RTCP side of a plain-RTP phone (RTP port + 1), as a PBX's phone has it: answers each sender
 * report with receiver reports about the audio it gets (loss and jitter per RFC 3550, LSR/DLSR so the
 * far end can compute the round trip). rtpengine turns these into the PBX leg's quality figures.
 */
export class RtcpReporter {
  private readonly socket = dgram.createSocket('udp4');
  private timer: NodeJS.Timeout | null = null;
  private peer: { address: string; port: number } | null = null;
  private source: number | null = null;
  private baseSeq = 0;
  private maxSeq = 0;
  private cycles = 0;
  private received = 0;
  private expectedPrior = 0;
  private receivedPrior = 0;
  private jitter = 0;
  private transit: number | null = null;
  private lastSr: { lsr: number; at: number } | null = null;
  /** Sender reports received and receiver reports sent. */
  srIn = 0;
  rrOut = 0;

  constructor(private readonly ssrc: number) {}

  async bind(port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.socket.once('error', reject);
      this.socket.bind(port, '127.0.0.1', () => {
        this.socket.off('error', reject);
        resolve();
      });
    });
    this.socket.on('message', (msg, rinfo) => this.onRtcp(msg, rinfo));
    this.timer = setInterval(() => this.report(), 1000);
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.socket.close();
  }

  /** An audio packet the phone received (8 kHz clock). */
  onRtp(ssrc: number, seq: number, ts: number, arrivalMs: number): void {
    if (this.source !== ssrc) {
      this.source = ssrc;
      this.baseSeq = this.maxSeq = seq;
      this.cycles = this.received = this.expectedPrior = this.receivedPrior = 0;
      this.jitter = 0;
      this.transit = null;
    }
    this.received++;
    const delta = (seq - this.maxSeq) & 0xffff;
    if (delta > 0 && delta < 0x8000) {
      if (seq < this.maxSeq) this.cycles += 0x10000;
      this.maxSeq = seq;
    }
    const transit = (arrivalMs * 8) - ts; // in timestamp units
    if (this.transit !== null) {
      const d = Math.abs(((transit - this.transit) + 2 ** 31) % 2 ** 32 - 2 ** 31);
      this.jitter += (d - this.jitter) / 16;
    }
    this.transit = transit;
  }

  private onRtcp(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    this.peer = { address: rinfo.address, port: rinfo.port };
    for (let off = 0; off + 8 <= msg.length;) {
      const pt = msg[off + 1]!;
      const len = (msg.readUInt16BE(off + 2) + 1) * 4;
      if (pt === 200 && off + 20 <= msg.length) {
        const msw = msg.readUInt32BE(off + 8);
        const lsw = msg.readUInt32BE(off + 12);
        this.lastSr = { lsr: (((msw & 0xffff) << 16) | (lsw >>> 16)) >>> 0, at: Date.now() };
        this.srIn++;
      }
      off += len;
    }
  }

  private report(): void {
    if (!this.peer || this.source === null || !this.lastSr) return;
    const extMax = this.cycles + this.maxSeq;
    const expected = extMax - this.baseSeq + 1;
    const lost = Math.max(0, expected - this.received);
    const expectedInterval = expected - this.expectedPrior;
    const receivedInterval = this.received - this.receivedPrior;
    this.expectedPrior = expected;
    this.receivedPrior = this.received;
    const lostInterval = expectedInterval - receivedInterval;
    const fraction = expectedInterval > 0 && lostInterval > 0 ? Math.floor((lostInterval << 8) / expectedInterval) : 0;
    const rr = Buffer.alloc(32);
    rr[0] = 0x81; // V=2, one report block
    rr[1] = 201;
    rr.writeUInt16BE(7, 2);
    rr.writeUInt32BE(this.ssrc >>> 0, 4);
    rr.writeUInt32BE(this.source >>> 0, 8);
    rr.writeUInt32BE(((fraction & 0xff) << 24 | (Math.min(lost, 0x7fffff) & 0xffffff)) >>> 0, 12);
    rr.writeUInt32BE(extMax >>> 0, 16);
    rr.writeUInt32BE(Math.round(this.jitter) >>> 0, 20);
    rr.writeUInt32BE(this.lastSr.lsr, 24);
    rr.writeUInt32BE(Math.round(((Date.now() - this.lastSr.at) / 1000) * 65536) >>> 0, 28);
    this.socket.send(rr, this.peer.port, this.peer.address);
    this.rrOut++;
  }
}
