import type { G711Codec } from './g711';

/** What the demo agent needs from an SDP offer: where the caller's audio is and which payloads it offers. */
export interface AudioOffer {
  address: string | null;
  port: number;
  /** Payload type numbers in the offer's order. */
  payloads: number[];
  /** Upper-cased encoding name per payload type (from a=rtpmap, or the static table). */
  names: Map<number, string>;
  /** Clock rate per payload type. */
  rates: Map<number, number>;
  direction: Direction;
}

export type Direction = 'sendrecv' | 'sendonly' | 'recvonly' | 'inactive';

const STATIC: Record<number, [string, number]> = { 0: ['PCMU', 8000], 8: ['PCMA', 8000], 9: ['G722', 8000], 18: ['G729', 8000] };

/** The first audio m-section of an SDP, or null when there is none. */
export function parseAudioOffer(sdp: string): AudioOffer | null {
  const lines = sdp.split(/\r?\n/).map((l) => l.trim());
  let sessionAddress: string | null = null;
  let inAudio = false;
  let seenAudio = false;
  let offer: AudioOffer | null = null;
  let sessionDirection: Direction = 'sendrecv';
  for (const line of lines) {
    if (line.startsWith('m=')) {
      if (seenAudio) break; // only the first audio section
      const m = /^m=audio (\d+)(?:\/\d+)? (\S+)((?: \d+)*)\s*$/.exec(line);
      inAudio = m !== null;
      if (m) {
        seenAudio = true;
        const payloads = m[3]!.trim().split(/\s+/).filter(Boolean).map(Number);
        offer = { address: sessionAddress, port: Number(m[1]), payloads, names: new Map(), rates: new Map(), direction: sessionDirection };
        for (const pt of payloads) {
          const known = STATIC[pt];
          if (known) {
            offer.names.set(pt, known[0]);
            offer.rates.set(pt, known[1]);
          }
        }
      }
      continue;
    }
    const c = /^c=IN IP[46] ([^\s/]+)/.exec(line);
    if (c) {
      if (inAudio && offer) offer.address = c[1]!;
      else if (!seenAudio) sessionAddress = c[1]!;
      continue;
    }
    const dir = /^a=(sendrecv|sendonly|recvonly|inactive)$/.exec(line);
    if (dir) {
      if (inAudio && offer) offer.direction = dir[1] as Direction;
      else if (!seenAudio) sessionDirection = dir[1] as Direction;
      continue;
    }
    const rtpmap = /^a=rtpmap:(\d+) ([^/\s]+)\/(\d+)/.exec(line);
    if (rtpmap && inAudio && offer) {
      offer.names.set(Number(rtpmap[1]), rtpmap[2]!.toUpperCase());
      offer.rates.set(Number(rtpmap[1]), Number(rtpmap[3]));
    }
  }
  return offer;
}

export interface ChosenMedia {
  codec: G711Codec;
  /** The payload type the caller offered it under (0/8, or a dynamic number). */
  pt: number;
  /** telephone-event/8000's payload type when offered. */
  eventPt: number | null;
}

/** The first PCMU or PCMA payload of the offer, plus telephone-event/8000; null when neither G.711 law is offered. */
export function chooseMedia(offer: AudioOffer): ChosenMedia | null {
  let chosen: { codec: G711Codec; pt: number } | null = null;
  let eventPt: number | null = null;
  for (const pt of offer.payloads) {
    const name = offer.names.get(pt);
    const rate = offer.rates.get(pt);
    if (!chosen && (name === 'PCMU' || name === 'PCMA') && rate === 8000) chosen = { codec: name, pt };
    if (eventPt === null && name === 'TELEPHONE-EVENT' && rate === 8000) eventPt = pt;
  }
  return chosen ? { ...chosen, eventPt } : null;
}

/** The answer's direction for an offer's (RFC 3264 6.1): a hold is answered as one. */
export function answerDirection(offer: Direction): Direction {
  return offer === 'sendonly' ? 'recvonly' : offer === 'recvonly' ? 'sendonly' : offer;
}

export interface AnswerParams {
  host: string;
  port: number;
  media: ChosenMedia;
  sessionId: number;
  version: number;
  direction: Direction;
}

/** The agent's SDP (an answer, or an offer to an INVITE that had none). */
export function buildSdp(p: AnswerParams): string {
  const pts = [p.media.pt, ...(p.media.eventPt !== null ? [p.media.eventPt] : [])];
  const lines = [
    'v=0',
    `o=demo-agent ${p.sessionId} ${p.version} IN IP4 ${p.host}`,
    's=wa-sip-bridge demo agent',
    `c=IN IP4 ${p.host}`,
    't=0 0',
    `m=audio ${p.port} RTP/AVP ${pts.join(' ')}`,
    `a=rtpmap:${p.media.pt} ${p.media.codec}/8000`,
  ];
  if (p.media.eventPt !== null) lines.push(`a=rtpmap:${p.media.eventPt} telephone-event/8000`, `a=fmtp:${p.media.eventPt} 0-15`);
  lines.push(`a=${p.direction}`, 'a=ptime:20');
  return `${lines.join('\r\n')}\r\n`;
}
