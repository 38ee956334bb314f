/** Small, strict SDP helpers: enough to refuse unusable SDP early and to read what was negotiated. */

export class SdpError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SdpError';
  }
}

/** Throws SdpError unless the text is a session description with an audio stream we can relay. */
export function assertUsableAudioSdp(sdp: string): void {
  if (sdp.length > 20000) throw new SdpError('SDP is too large');
  const lines = sdp.split(/\r?\n/).filter((l) => l.length > 0);
  if (lines[0] !== 'v=0') throw new SdpError('SDP does not start with v=0');
  for (const l of lines) if (!/^[a-z]=/.test(l)) throw new SdpError(`SDP line is malformed: "${l.slice(0, 40)}"`);
  const audio = lines.find((l) => l.startsWith('m=audio '));
  if (!audio) throw new SdpError('SDP has no audio stream');
  const m = /^m=audio (\d+)(?:\/\d+)? (\S+)((?: \d+)+)$/.exec(audio);
  if (!m) throw new SdpError(`SDP audio line is malformed: "${audio}"`);
  if (Number(m[1]) === 0) throw new SdpError('SDP audio stream is disabled (port 0)');
  if (!lines.some((l) => l.startsWith('c=IN IP'))) throw new SdpError('SDP has no connection address');
}

/** The first codec offered or answered on the audio line, e.g. "opus/48000/2" or "PCMU/8000". */
export function firstAudioCodec(sdp: string): string | null {
  const lines = sdp.split(/\r?\n/);
  const audio = lines.find((l) => l.startsWith('m=audio '));
  if (!audio) return null;
  const pt = audio.split(' ')[3];
  if (pt === undefined) return null;
  const rtpmap = lines.find((l) => l.startsWith(`a=rtpmap:${pt} `));
  if (rtpmap) return rtpmap.slice(`a=rtpmap:${pt} `.length).trim();
  const statics: Record<string, string> = { '0': 'PCMU/8000', '8': 'PCMA/8000', '9': 'G722/8000' };
  return statics[pt] ?? pt;
}

const STATIC_PT: Record<string, number> = { PCMU: 0, PCMA: 8, G722: 9 };

/**
 * The PBX-side answer the bridge writes itself to pre-accept before the PBX has answered: it lets
 * rtpengine produce the WhatsApp-side answer now, so ICE and DTLS complete while the agent's phone rings.
 * Media sent toward it goes to the discard port on loopback and is blocked toward WhatsApp anyway.
 */
export function provisionalPbxAnswer(codecs: string[]): string {
  const pts = codecs.map((c) => STATIC_PT[c]).filter((p): p is number => p !== undefined);
  return [
    'v=0',
    'o=- 1 1 IN IP4 127.0.0.1',
    's=-',
    'c=IN IP4 127.0.0.1',
    't=0 0',
    `m=audio 9 RTP/AVP ${pts.join(' ')}`,
    ...codecs.map((c) => `a=rtpmap:${STATIC_PT[c]} ${c}/8000`),
    'a=sendrecv',
    '',
  ].join('\r\n');
}
