/**
 * Reads the pcap files rtpengine writes with --recording-method=pcap: each record is one packet
 * rtpengine received (decrypted), behind a made-up IP/UDP header whose destination is rtpengine's own
 * socket on that leg.
 */
export interface UdpPacket {
  /** Seconds since the epoch, with microseconds. */
  at: number;
  dstPort: number;
  payload: Buffer;
}

const LINKTYPE_ETHERNET = 1;
const LINKTYPE_RAW = [12, 14, 101];
const LINKTYPE_IPV4 = 228;
const LINKTYPE_IPV6 = 229;

export class PcapError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PcapError';
  }
}

/** Every UDP packet in a pcap file's contents, in file order. Truncated trailing records are ignored. */
export function* udpPackets(file: Buffer): Generator<UdpPacket> {
  if (file.length < 24) throw new PcapError('pcap file shorter than its header');
  const magic = file.readUInt32LE(0);
  let le: boolean;
  let nano: boolean;
  if (magic === 0xa1b2c3d4 || magic === 0xa1b23c4d) {
    le = true;
    nano = magic === 0xa1b23c4d;
  } else if (magic === 0xd4c3b2a1 || magic === 0x4d3cb2a1) {
    le = false;
    nano = magic === 0x4d3cb2a1;
  } else {
    throw new PcapError(`not a pcap file (magic ${magic.toString(16)})`);
  }
  const u32 = (o: number) => (le ? file.readUInt32LE(o) : file.readUInt32BE(o));
  const linktype = u32(20) & 0xffff;
  for (let off = 24; off + 16 <= file.length;) {
    const sec = u32(off);
    const frac = u32(off + 4);
    const incl = u32(off + 8);
    const start = off + 16;
    off = start + incl;
    if (off > file.length) return;
    const frame = file.subarray(start, start + incl);
    const ip = ipOf(frame, linktype);
    const udp = ip ? udpOf(ip) : null;
    if (udp) yield { at: sec + frac / (nano ? 1e9 : 1e6), ...udp };
  }
}

function ipOf(frame: Buffer, linktype: number): Buffer | null {
  if (linktype === LINKTYPE_ETHERNET) return frame.length > 14 ? frame.subarray(14) : null;
  if (LINKTYPE_RAW.includes(linktype) || linktype === LINKTYPE_IPV4 || linktype === LINKTYPE_IPV6) return frame;
  throw new PcapError(`unsupported pcap link type ${linktype}`);
}

function udpOf(ip: Buffer): { dstPort: number; payload: Buffer } | null {
  if (ip.length < 1) return null;
  const version = ip[0]! >> 4;
  let l4: number;
  if (version === 4) {
    if (ip.length < 20 || ip[9] !== 17) return null;
    l4 = (ip[0]! & 0x0f) * 4;
  } else if (version === 6) {
    if (ip.length < 40 || ip[6] !== 17) return null;
    l4 = 40;
  } else {
    return null;
  }
  if (ip.length < l4 + 8) return null;
  const len = ip.readUInt16BE(l4 + 4);
  const end = Math.min(ip.length, l4 + Math.max(8, len));
  return { dstPort: ip.readUInt16BE(l4 + 2), payload: ip.subarray(l4 + 8, end) };
}
