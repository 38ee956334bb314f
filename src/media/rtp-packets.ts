/** RTP (RFC 3550) packets as received, and RFC 4733's event codes: shared by recordings, rtpengine's DTMF log and the sandbox's demo agent. */

export interface RtpPacket { payloadType: number; seq: number; timestamp: number; ssrc: number; payload: Buffer }

/** An RTP packet's header fields and payload; null for RTCP (rtcp-mux) and anything malformed. */
export function parseRtp(b: Buffer): RtpPacket | null {
  if (b.length < 12 || b[0]! >> 6 !== 2) return null;
  const pt = b[1]! & 0x7f;
  if (pt >= 72 && pt <= 79) return null; // RTCP 200-207 multiplexed on the RTP port
  const cc = b[0]! & 0x0f;
  let off = 12 + cc * 4;
  if (b[0]! & 0x10) {
    if (b.length < off + 4) return null;
    off += 4 + b.readUInt16BE(off + 2) * 4;
  }
  let end = b.length;
  if (b[0]! & 0x20) end -= b[b.length - 1]!;
  if (off > end) return null;
  return { payloadType: pt, seq: b.readUInt16BE(2), timestamp: b.readUInt32BE(4), ssrc: b.readUInt32BE(8), payload: b.subarray(off, end) };
}

/** The keys RFC 4733 events 0-15 stand for. */
const EVENT_DIGITS = '0123456789*#ABCD';

/** The key an RFC 4733 event code stands for; null for the other events (tones, flash). */
export function eventDigit(event: number): string | null {
  return Number.isInteger(event) && event >= 0 && event < EVENT_DIGITS.length ? EVENT_DIGITS[event]! : null;
}
