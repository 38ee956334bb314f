/** RTP (RFC 3550) packets and RFC 4733 telephone-events, as far as the demo agent needs them. */

export interface RtpPacket {
  payloadType: number;
  marker: boolean;
  sequence: number;
  timestamp: number;
  ssrc: number;
  payload: Buffer;
}

/** Parses an RTP packet; null for anything else (RTCP, STUN, garbage). */
export function parseRtp(b: Buffer): RtpPacket | null {
  if (b.length < 12 || b[0]! >> 6 !== 2) return null;
  const payloadType = b[1]! & 0x7f;
  if (payloadType >= 64 && payloadType <= 95) return null; // RTCP multiplexed on the port (RFC 5761)
  let offset = 12 + 4 * (b[0]! & 0x0f);
  if (b[0]! & 0x10) {
    if (b.length < offset + 4) return null;
    offset += 4 + 4 * b.readUInt16BE(offset + 2);
  }
  let end = b.length;
  if (b[0]! & 0x20) end -= b[b.length - 1]!;
  if (offset > end) return null;
  return {
    payloadType,
    marker: (b[1]! & 0x80) !== 0,
    sequence: b.readUInt16BE(2),
    timestamp: b.readUInt32BE(4),
    ssrc: b.readUInt32BE(8),
    payload: b.subarray(offset, end),
  };
}

export function buildRtp(p: RtpPacket): Buffer {
  const b = Buffer.alloc(12 + p.payload.length);
  b[0] = 0x80;
  b[1] = (p.marker ? 0x80 : 0) | (p.payloadType & 0x7f);
  b.writeUInt16BE(p.sequence & 0xffff, 2);
  b.writeUInt32BE(p.timestamp >>> 0, 4);
  b.writeUInt32BE(p.ssrc >>> 0, 8);
  p.payload.copy(b, 12);
  return b;
}

export interface TelephoneEvent {
  event: number;
  end: boolean;
  volume: number;
  duration: number;
}

/** The first event of an RFC 4733 payload (4 bytes: event, E|R|volume, duration). */
export function parseTelephoneEvent(payload: Buffer): TelephoneEvent | null {
  if (payload.length < 4) return null;
  return { event: payload[0]!, end: (payload[1]! & 0x80) !== 0, volume: payload[1]! & 0x3f, duration: payload.readUInt16BE(2) };
}

const EVENT_DIGITS = '0123456789*#ABCD';

/** The key an RFC 4733 event code (0-15) stands for; null for the other events (tones, flash). */
export function eventDigit(event: number): string | null {
  return event >= 0 && event < EVENT_DIGITS.length ? EVENT_DIGITS[event]! : null;
}
