/** Small, strict SDP helpers: enough to refuse unusable SDP early and to read what was negotiated. */

export class SdpError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SdpError';
  }
}

/**
 * The most media sections (m= lines) an SDP may carry, and of those the most audio ones: the bridge
 * relays one audio stream, and every section makes rtpengine open ports (3 each, counting RTCP), so an
 * SDP with 100 of them would hold 300. WhatsApp's webhook SDP is held to the same bounds.
 */
export const MAX_SDP_MEDIA = 4;
export const MAX_SDP_AUDIO = 2;

/** Throws SdpError when an SDP has more media (or audio) sections than MAX_SDP_MEDIA (MAX_SDP_AUDIO). */
export function assertStreamCap(sdp: string): void {
  const media = sdp.match(/^m=/gm)?.length ?? 0;
  const audio = sdp.match(/^m=audio[ \t]/gm)?.length ?? 0;
  if (media > MAX_SDP_MEDIA) throw new SdpError(`SDP has ${media} media sections; at most ${MAX_SDP_MEDIA}`);
  if (audio > MAX_SDP_AUDIO) throw new SdpError(`SDP has ${audio} audio sections; at most ${MAX_SDP_AUDIO}`);
}

/**
 * Throws SdpError unless the text is a session description with an audio stream we can relay, and at
 * most MAX_SDP_MEDIA media sections: checked before any of it reaches rtpengine.
 */
export function assertUsableAudioSdp(sdp: string): void {
  if (sdp.length > 20000) throw new SdpError('SDP is too large');
  const lines = sdp.split(/\r?\n/).filter((l) => l.length > 0);
  if (lines[0] !== 'v=0') throw new SdpError('SDP does not start with v=0');
  for (const l of lines) if (!/^[a-z]=/.test(l)) throw new SdpError(`SDP line is malformed: "${l.slice(0, 40)}"`);
  assertStreamCap(sdp);
  const audio = lines.find((l) => l.startsWith('m=audio '));
  if (!audio) throw new SdpError('SDP has no audio stream');
  const m = /^m=audio (\d+)(?:\/\d+)? (\S+)((?: \d+)+)$/.exec(audio);
  if (!m) throw new SdpError(`SDP audio line is malformed: "${audio}"`);
  if (Number(m[1]) === 0) throw new SdpError('SDP audio stream is disabled (port 0)');
  if (!lines.some((l) => l.startsWith('c=IN IP'))) throw new SdpError('SDP has no connection address');
}

/**
 * An rtpmap encoding as RFC 4566 has it: `name/rate[/channels]`, the name a token of letters, digits
 * and - _ . (starting with a letter or digit), at most 32 characters in all (the CDR's column).
 */
const CODEC = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,15}\/\d{1,6}(?:\/\d{1,2})?$/;

/** Whether `s` is a codec as firstAudioCodec returns it (name/rate[/channels]). */
export function isCodecName(s: string): boolean {
  return s.length <= 32 && CODEC.test(s);
}

/**
 * The first codec offered or answered on the audio line, e.g. "opus/48000/2" or "PCMU/8000"; null
 * when there is none, or when its rtpmap is not name/rate[/channels] (the codec is informational:
 * the call goes on, the CDR leaves it empty rather than keep text such as `=HYPERLINK(...)`).
 */
export function firstAudioCodec(sdp: string): string | null {
  const lines = sdp.split(/\r?\n/);
  const audio = lines.find((l) => l.startsWith('m=audio '));
  if (!audio) return null;
  const pt = audio.split(' ')[3];
  if (pt === undefined || !/^\d{1,3}$/.test(pt)) return null;
  const rtpmap = lines.find((l) => l.startsWith(`a=rtpmap:${pt} `));
  if (rtpmap) {
    const codec = rtpmap.slice(`a=rtpmap:${pt} `.length).trim();
    return isCodecName(codec) ? codec : null;
  }
  const statics: Record<string, string> = { '0': 'PCMU/8000', '8': 'PCMA/8000', '9': 'G722/8000' };
  return statics[pt] ?? pt;
}

const STATIC_PT: Record<string, number> = { PCMU: 0, PCMA: 8, G722: 9 };

/**
 * The PBX-side answer the bridge writes itself to pre-accept before the PBX has answered: it lets
 * rtpengine produce the WhatsApp-side answer now, so ICE and DTLS complete while the agent's phone rings.
 * Media sent toward it goes to the discard port on loopback and is blocked toward WhatsApp anyway.
 */
export function provisionalPbxAnswer(codecs: string[], telephoneEventPt: string | null = null): string {
  const pts = codecs.map((c) => STATIC_PT[c]).filter((p): p is number => p !== undefined);
  return [
    'v=0',
    'o=- 1 1 IN IP4 127.0.0.1',
    's=-',
    'c=IN IP4 127.0.0.1',
    't=0 0',
    `m=audio 9 RTP/AVP ${[...pts, ...(telephoneEventPt ? [telephoneEventPt] : [])].join(' ')}`,
    ...codecs.map((c) => `a=rtpmap:${STATIC_PT[c]} ${c}/8000`),
    ...(telephoneEventPt ? [`a=rtpmap:${telephoneEventPt} telephone-event/8000`, `a=fmtp:${telephoneEventPt} 0-16`] : []),
    'a=sendrecv',
    '',
  ].join('\r\n');
}

export type Direction = 'sendrecv' | 'sendonly' | 'recvonly' | 'inactive';
const DIRECTIONS: readonly Direction[] = ['sendrecv', 'sendonly', 'recvonly', 'inactive'];

function lines(sdp: string): string[] {
  return sdp.split(/\r?\n/).filter((l) => l.length > 0);
}

/** Index of the first audio m= line and the end (exclusive) of its section. */
function audioSection(ls: string[]): { start: number; end: number } | null {
  const start = ls.findIndex((l) => l.startsWith('m=audio '));
  if (start < 0) return null;
  let end = ls.findIndex((l, i) => i > start && l.startsWith('m='));
  if (end < 0) end = ls.length;
  return { start, end };
}

/**
 * The audio stream's direction as the sender of this SDP means it (media level wins over session
 * level). An old-style hold (RFC 2543: c=0.0.0.0) counts as sendonly.
 */
export function audioDirection(sdp: string): Direction {
  const ls = lines(sdp);
  const sec = audioSection(ls);
  const pick = (from: number, to: number): Direction | null => {
    for (let i = from; i < to; i++) {
      const d = DIRECTIONS.find((x) => ls[i] === `a=${x}`);
      if (d) return d;
    }
    return null;
  };
  const sessionEnd = sec ? sec.start : ls.length;
  const dir = (sec ? pick(sec.start, sec.end) : null) ?? pick(0, sessionEnd) ?? 'sendrecv';
  const media = sec ? ls.slice(sec.start, sec.end) : [];
  const conn = media.find((l) => l.startsWith('c=')) ?? ls.slice(0, sessionEnd).find((l) => l.startsWith('c='));
  if (conn && /^c=IN IP4 0\.0\.0\.0\b/.test(conn) && dir === 'sendrecv') return 'sendonly';
  return dir;
}

/** True when an offer puts the other side on hold (sendonly, inactive, or c=0.0.0.0). */
export function isHoldOffer(sdp: string): boolean {
  const d = audioDirection(sdp);
  return d === 'sendonly' || d === 'inactive';
}

/** What an answer must say to an offer with this direction (RFC 3264 section 6.1). */
export function answerDirectionFor(offer: Direction): Direction {
  if (offer === 'sendonly') return 'recvonly';
  if (offer === 'recvonly') return 'sendonly';
  return offer;
}

/** Sets the audio stream's direction attribute (replacing any session- or media-level one). */
export function withAudioDirection(sdp: string, dir: Direction): string {
  const ls = lines(sdp).filter((l) => !DIRECTIONS.some((d) => l === `a=${d}`));
  const sec = audioSection(ls);
  if (!sec) return sdp;
  ls.splice(sec.end, 0, `a=${dir}`);
  return `${ls.join('\r\n')}\r\n`;
}

/** WebRTC-only attributes that mean nothing on a plain-RTP PBX leg (some PBXs choke on them). */
const WEBRTC_ONLY = /^a=(extmap|extmap-allow-mixed|msid|msid-semantic|ssrc|ssrc-group|mid|rtcp-fb|group|rtcp-rsize)(:|$)/;

/** Removes WebRTC-only attributes from an SDP meant for the PBX. */
export function plainRtpSdp(sdp: string): string {
  return `${lines(sdp).filter((l) => !WEBRTC_ONLY.test(l)).join('\r\n')}\r\n`;
}

/** The payload type and fmtp of `telephone-event/8000` in an SDP, if it has one. */
export function telephoneEvent8k(sdp: string): { pt: string; fmtp: string | null } | null {
  const ls = lines(sdp);
  const map = ls.map((l) => /^a=rtpmap:(\d+) telephone-event\/8000$/i.exec(l)).find((m) => m);
  if (!map) return null;
  const pt = map[1]!;
  return { pt, fmtp: ls.find((l) => l.startsWith(`a=fmtp:${pt} `)) ?? null };
}

/**
 * WhatsApp pairs `telephone-event/8000` with opus/48000: durations in 8 kHz units, timestamps in the
 * audio's 48 kHz clock. rtpengine 10.5 only pairs events with an audio codec of the same clock, so it
 * drops them from an opus leg's answer and never decodes them. Told they run at 48 kHz (`toRtpengine`)
 * it keeps them and decodes every digit, but reads and writes their durations in that clock: its DTMF
 * log reports WhatsApp's digits 6 times too short (RELABELLED_EVENT_DURATION_FACTOR: the bridge re-sends
 * them with their real length), and the PBX's 8 kHz digits it forwards toward WhatsApp carry 6 times
 * their duration (measured on the wire; a known limit). Every SDP leaving rtpengine toward WhatsApp says
 * 8000 again (`fromRtpengine`): what WhatsApp offers.
 */
export const eventClockFor = {
  toRtpengine: (sdp: string): string => sdp.replace(/^(a=rtpmap:\d+ telephone-event)\/8000(\r?)$/gim, '$1/48000$2'),
  fromRtpengine: (sdp: string): string => sdp.replace(/^(a=rtpmap:\d+ telephone-event)\/48000(\r?)$/gim, '$1/8000$2'),
};

/** How much longer a digit really was than rtpengine's log says, for events relabelled to 48 kHz. */
export const RELABELLED_EVENT_DURATION_FACTOR = 6;

/**
 * The answer to `offer` with the offer's telephone-event/8000 put back when the answer has none: an
 * answer to WhatsApp without events would leave it sending and playing no digits. rtpengine 10.5 leaves
 * them out when it was told the answering side's events run at another clock than it offered them
 * (seen with the PBX leg's events relabelled too), while still relaying them.
 */
export function withOfferedEvents(answer: string, offer: string): string {
  const te = telephoneEvent8k(offer);
  if (!te || /^a=rtpmap:\d+ telephone-event\//im.test(answer)) return answer;
  const ls = lines(answer);
  const sec = audioSection(ls);
  if (!sec) return answer;
  const m = ls[sec.start]!;
  if (m.split(' ').slice(3).includes(te.pt)) return answer;
  ls[sec.start] = `${m} ${te.pt}`;
  const at = ls.findIndex((l, i) => i > sec.start && i < sec.end && l.startsWith('a=rtpmap:'));
  const insertAt = at < 0 ? sec.end : ls.slice(0, sec.end).reduce((last, l, i) => (i > sec.start && (l.startsWith('a=rtpmap:') || l.startsWith('a=fmtp:')) ? i : last), at) + 1;
  ls.splice(insertAt, 0, `a=rtpmap:${te.pt} telephone-event/8000`, te.fmtp ?? `a=fmtp:${te.pt} 0-16`);
  return `${ls.join('\r\n')}\r\n`;
}

/** Every address an SDP asks its peer to send media to: c= lines and ICE candidates. */
export function mediaAddresses(sdp: string): string[] {
  const found = new Set<string>();
  for (const l of lines(sdp)) {
    const c = /^c=IN IP[46] ([^\s/]+)/.exec(l);
    if (c) found.add(c[1]!.toLowerCase());
    const cand = /^a=candidate:\S+ \d+ \S+ \d+ (\S+) \d+ typ /i.exec(l);
    if (cand) found.add(cand[1]!.toLowerCase());
  }
  return [...found];
}

/** True when an SDP offers SDES keys (RFC 4568 a=crypto). */
export function hasSdesKeys(sdp: string): boolean {
  return lines(sdp).some((l) => l.startsWith('a=crypto:'));
}

/** The SDP without its DTLS-SRTP attributes (fingerprint, setup, tls-id). */
export function withoutDtls(sdp: string): string {
  return `${lines(sdp).filter((l) => !/^a=(fingerprint|setup|tls-id):/.test(l)).join('\r\n')}\r\n`;
}
