import OpusScript from 'opusscript';
import { linearToUlaw, sineFrame } from './tone';

/**
 * Builds pcap files shaped like rtpengine's --recording-method=pcap output (raw IPv4, each packet as
 * rtpengine received it), for the recorder's unit tests and benchmark.
 */
export class PcapWriter {
  private readonly records: Buffer[] = [];

  constructor() {
    const h = Buffer.alloc(24);
    h.writeUInt32LE(0xa1b2c3d4, 0);
    h.writeUInt16LE(2, 4);
    h.writeUInt16LE(4, 6);
    h.writeUInt32LE(65535, 16);
    h.writeUInt32LE(101, 20); // LINKTYPE_RAW
    this.records.push(h);
  }

  udp(at: number, dstPort: number, payload: Buffer): void {
    const ip = Buffer.alloc(28);
    ip[0] = 0x45;
    ip.writeUInt16BE(28 + payload.length, 2);
    ip[8] = 64;
    ip[9] = 17;
    ip.writeUInt32BE(0x7f000001, 12);
    ip.writeUInt32BE(0x7f000001, 16);
    ip.writeUInt16BE(40000, 20);
    ip.writeUInt16BE(dstPort, 22);
    ip.writeUInt16BE(8 + payload.length, 24);
    const frame = Buffer.concat([ip, payload]);
    const rec = Buffer.alloc(16);
    rec.writeUInt32LE(Math.floor(at), 0);
    rec.writeUInt32LE(Math.round((at % 1) * 1e6), 4);
    rec.writeUInt32LE(frame.length, 8);
    rec.writeUInt32LE(frame.length, 12);
    this.records.push(rec, frame);
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.records);
  }
}

export function rtp(pt: number, seq: number, ts: number, ssrc: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(12);
  h[0] = 0x80;
  h[1] = pt;
  h.writeUInt16BE(seq & 0xffff, 2);
  h.writeUInt32BE(ts >>> 0, 4);
  h.writeUInt32BE(ssrc >>> 0, 8);
  return Buffer.concat([h, payload]);
}

/** `seconds` of a call: the WhatsApp user's opus (48 kHz clock, PT 111) and the PBX's PCMU, 20 ms frames, with RTCP mixed in. */
export function syntheticCall(seconds: number, o: { waPort: number; pbxPort: number; userTone: number; agentTone: number; start?: number }): Buffer {
  const w = new PcapWriter();
  const enc = new OpusScript(48000, 1, OpusScript.Application.VOIP);
  const t0 = o.start ?? 1_800_000_000;
  try {
    for (let i = 0; i < seconds * 50; i++) {
      const at = t0 + i * 0.02;
      const pcm48 = sineFrame(o.userTone, 48000, 960, i * 960);
      const opus = enc.encode(Buffer.from(pcm48.buffer, pcm48.byteOffset, pcm48.byteLength), 960);
      w.udp(at + 0.003, o.waPort, rtp(111, 1000 + i, 5000 + i * 960, 0x11111111, Buffer.from(opus)));
      const pcm8 = sineFrame(o.agentTone, 8000, 160, i * 160);
      w.udp(at + 0.011, o.pbxPort, rtp(0, 7000 + i, 9000 + i * 160, 0x22222222, Buffer.from(Array.from(pcm8, linearToUlaw))));
      if (i % 250 === 0) w.udp(at + 0.015, o.waPort, Buffer.from([0x81, 201, 0, 7, ...new Array(28).fill(0)])); // an RTCP RR
    }
  } finally {
    enc.delete();
  }
  return w.toBuffer();
}

/** The SDPs rtpengine would have written toward each side of such a call. */
export function syntheticSdps(waPort: number, pbxPort: number): string[] {
  return [
    `v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio ${waPort} UDP/TLS/RTP/SAVPF 111 126\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:126 telephone-event/8000\r\na=ice-ufrag:abcd\r\na=fingerprint:sha-256 00\r\n`,
    `v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio ${pbxPort} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n`,
  ];
}
