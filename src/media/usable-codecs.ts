import { offeredAudioCodecs } from './profiles';
import { SdpError } from './sdp';

/**
 * The audio codecs rtpengine 10.5 both decodes and encodes and can name in SDP (`rtpengine --codecs`:
 * "fully supported"): what it can transcode to and from opus. L16, AMR and iLBC (decode only) are not.
 */
export const RTPENGINE_TWO_WAY = ['PCMU', 'PCMA', 'G722', 'G723', 'G729', 'SPEEX', 'GSM', 'OPUS'] as const;

/** Payload formats that ride beside an audio codec and carry no audio of their own. */
const NOT_AUDIO = new Set(['TELEPHONE-EVENT', 'CN', 'RED', 'ULPFEC', 'COMFORT-NOISE']);

/**
 * An SDP (a PBX's offer or answer) with no audio codec the bridge can use: answering or accepting it
 * would put a codec on the PBX leg the PBX never offered. `offered`: the SDP's codecs as named there.
 */
export class NoUsableCodecError extends SdpError {
  constructor(readonly offered: string[], readonly usable: readonly string[]) {
    super(`no codec the bridge can use (offered: ${offered.length > 0 ? offered.join(', ') : 'none'}; usable: ${usable.join(', ')})`);
    this.name = 'NoUsableCodecError';
  }
}

/** What the bridge can take on the PBX leg: the number's PBX_CODECS, then whatever rtpengine transcodes. */
export function usableCodecs(pbxCodecs: readonly string[]): string[] {
  return [...new Set([...pbxCodecs.map((c) => c.toUpperCase()), ...RTPENGINE_TWO_WAY])];
}

/** The audio codecs (upper case) of the SDP's audio line that the bridge can use; none -> []. */
export function usableAudioCodecs(sdp: string, pbxCodecs: readonly string[]): string[] {
  const usable = new Set(usableCodecs(pbxCodecs));
  return offeredAudioCodecs(sdp).filter((c) => usable.has(c));
}

/** Throws NoUsableCodecError unless the SDP's audio line has a codec the bridge can use. */
export function assertUsableCodec(sdp: string, pbxCodecs: readonly string[]): void {
  if (usableAudioCodecs(sdp, pbxCodecs).length > 0) return;
  const offered = audioEncodings(sdp).filter((c) => !NOT_AUDIO.has(c.split('/')[0]!.toUpperCase()));
  throw new NoUsableCodecError(offered, usableCodecs(pbxCodecs));
}

/** The audio line's encodings as its rtpmaps name them (`L16/16000`), else the payload type number. */
function audioEncodings(sdp: string): string[] {
  const lines = sdp.split(/\r?\n/);
  const audio = lines.find((l) => l.startsWith('m=audio '));
  if (!audio) return [];
  return audio.split(' ').slice(3).filter(Boolean).map((pt) => {
    const rtpmap = lines.find((l) => l.startsWith(`a=rtpmap:${pt} `));
    const name = rtpmap ? rtpmap.slice(`a=rtpmap:${pt} `.length).trim() : pt;
    return /^[A-Za-z0-9_.\/-]{1,32}$/.test(name) ? name : '?';
  });
}
