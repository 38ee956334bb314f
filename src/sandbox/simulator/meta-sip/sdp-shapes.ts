import type { MetaSrtp, RtpAddress } from './types';

/**
 * The SDP Meta's SIP gateway sends and expects (reference: meta-cloud-api-calling.md, "Meta's native
 * SIP"): DTLS mode `UDP/TLS/RTP/SAVPF` with ICE-lite, candidates, `setup:actpass`, a fingerprint and
 * rtcp-mux; SDES mode `RTP/SAVP` with one `AES_CM_128_HMAC_SHA1_80` key and no ICE; both opus/48000/2
 * (`maxaveragebitrate=20000;maxplaybackrate=16000`), telephone-event/8000, ptime 20, and with the G.711
 * option PCMA and PCMU after opus. rtpengine writes the SDP; these functions trim it to that shape and
 * say where a given SDP departs from it.
 *
 * Payload type numbers are rtpengine's (opus is usually 96, telephone-event keeps the phone's 101),
 * not Meta's 111 and 126: rtpengine 10.5 has no way to be told a transcoded codec's number, and
 * renumbering the SDP alone would mislabel the media.
 */

export const OPUS_FMTP = 'maxaveragebitrate=20000;maxplaybackrate=16000';
/** The codec rtpengine adds toward the bridge (its ng `transcode` syntax: encoding/clock/channels/bitrate/ptime/fmtp). */
export const OPUS_TRANSCODE = `opus/48000/2///${OPUS_FMTP}`;
/** The telephone-event payload type on the user's plain-RTP side (RtpPhone's default). */
export const PHONE_DTMF_PT = 101;

/** The WhatsApp user's phone as rtpengine is to see it: plain RTP, PCMU, telephone-event 101/8000. */
export function phoneSdp(phone: RtpAddress): string {
  return [
    'v=0', `o=- ${Date.now()} 1 IN IP4 ${phone.address}`, 's=-', `c=IN IP4 ${phone.address}`, 't=0 0',
    `m=audio ${phone.port} RTP/AVP 0 ${PHONE_DTMF_PT}`, 'a=rtpmap:0 PCMU/8000',
    `a=rtpmap:${PHONE_DTMF_PT} telephone-event/8000`, `a=fmtp:${PHONE_DTMF_PT} 0-16`, 'a=ptime:20', 'a=sendrecv', '',
  ].join('\r\n');
}

/** The audio stream's address and port (session or media c= line). */
export function rtpTarget(sdp: string): RtpAddress | null {
  const lines = sdp.split(/\r?\n/);
  const mi = lines.findIndex((l) => l.startsWith('m=audio '));
  if (mi < 0) return null;
  const port = Number(lines[mi]!.split(' ')[1]);
  const mediaC = lines.slice(mi + 1).find((l) => l.startsWith('c=') || l.startsWith('m='));
  const c = mediaC?.startsWith('c=') ? mediaC : lines.slice(0, mi).find((l) => l.startsWith('c='));
  const address = c?.split(' ')[2];
  return address && Number.isInteger(port) && port > 0 ? { address, port } : null;
}

interface AudioCodec { pt: string; name: string; clock: number; channels: number }

/** The audio m-line's codecs, in order (rtpmap, else the static payload types). */
export function audioCodecs(sdp: string): AudioCodec[] {
  const lines = sdp.split(/\r?\n/);
  const m = lines.find((l) => l.startsWith('m=audio '));
  if (!m) return [];
  const statics: Record<string, [string, number]> = { '0': ['PCMU', 8000], '8': ['PCMA', 8000], '9': ['G722', 8000] };
  return m.split(' ').slice(3).filter(Boolean).map((pt) => {
    const r = lines.find((l) => l.startsWith(`a=rtpmap:${pt} `));
    if (!r) return { pt, name: statics[pt]?.[0] ?? pt, clock: statics[pt]?.[1] ?? 0, channels: 1 };
    const [name = '', clock = '0', channels = '1'] = r.slice(`a=rtpmap:${pt} `.length).trim().split('/');
    return { pt, name, clock: Number(clock), channels: Number(channels) };
  });
}

/**
 * An SDP rtpengine wrote toward the bridge, trimmed to Meta's shape: opus, then (with `g711`) PCMA and
 * PCMU, then telephone-event/8000; nothing else (rtpengine also lists the phone's PCMU and a
 * telephone-event/48000), ptime 20. Removing codecs is safe: rtpengine only uses what the bridge answers.
 */
export function toMetaShape(sdp: string, o: { g711: boolean }): string {
  const codecs = audioCodecs(sdp);
  const keep: string[] = [];
  const opus = codecs.find((c) => c.name.toLowerCase() === 'opus' && c.clock === 48000);
  if (opus) keep.push(opus.pt);
  if (o.g711) for (const n of ['PCMA', 'PCMU']) { const c = codecs.find((x) => x.name.toUpperCase() === n); if (c) keep.push(c.pt); }
  const te = codecs.find((c) => c.name.toLowerCase() === 'telephone-event' && c.clock === 8000);
  if (te) keep.push(te.pt);
  const dropped = new Set(codecs.map((c) => c.pt).filter((pt) => !keep.includes(pt)));
  const eol = sdp.includes('\r\n') ? '\r\n' : '\n';
  const out: string[] = [];
  let inAudio = false;
  let ptime = false;
  for (const line of sdp.split(/\r?\n/)) {
    if (line.startsWith('m=')) {
      if (inAudio && !ptime) out.push('a=ptime:20');
      inAudio = line.startsWith('m=audio ');
      ptime = false;
      if (inAudio) {
        const [m, port, proto] = line.split(' ');
        out.push([m, port, proto, ...keep].join(' '));
        continue;
      }
    }
    if (inAudio) {
      const pt = /^a=(?:rtpmap|fmtp|rtcp-fb):(\d+)[ ]/.exec(line)?.[1];
      if (pt && dropped.has(pt)) continue;
      if (line.startsWith('a=ptime:')) {
        ptime = true;
        out.push('a=ptime:20');
        continue;
      }
      if (opus && line.startsWith(`a=fmtp:${opus.pt} `) && !line.includes('maxaveragebitrate')) {
        out.push(`${line};${OPUS_FMTP}`);
        continue;
      }
    }
    if (line === '' ) continue;
    out.push(line);
  }
  if (inAudio && !ptime) out.push('a=ptime:20');
  if (opus && !sdp.includes(`a=fmtp:${opus.pt} `)) {
    const i = out.findIndex((l) => l.startsWith(`a=rtpmap:${opus.pt} `));
    out.splice(i + 1, 0, `a=fmtp:${opus.pt} ${OPUS_FMTP}`);
  }
  return out.join(eol) + eol;
}

/**
 * Where an SDP the sim sends the bridge departs from Meta's shape (empty: it matches). `role`: an
 * offer has `setup:actpass`; an answer `setup:active` or `passive`.
 */
export function metaShapeProblems(sdp: string, mode: MetaSrtp, role: 'offer' | 'answer', g711 = false): string[] {
  const problems: string[] = [];
  const has = (re: RegExp) => re.test(sdp);
  const m = sdp.split(/\r?\n/).find((l) => l.startsWith('m=audio '));
  if (!m) return ['no audio m-line'];
  const proto = m.split(' ')[2];
  const codecs = audioCodecs(sdp);
  const names = codecs.map((c) => `${c.name.toLowerCase()}/${c.clock}`);
  const wanted = ['opus/48000', ...(g711 ? ['pcma/8000', 'pcmu/8000'] : []), 'telephone-event/8000'];
  if (role === 'offer' && names.join(' ') !== wanted.join(' ')) problems.push(`codecs ${names.join(' ')}, not ${wanted.join(' ')}`);
  if (role === 'answer' && !names.every((n) => wanted.includes(n))) problems.push(`codecs ${names.join(' ')} outside ${wanted.join(' ')}`);
  const opus = codecs.find((c) => c.name.toLowerCase() === 'opus');
  if (opus && opus.channels !== 2) problems.push('opus is not opus/48000/2');
  if (opus && role === 'offer' && !sdp.includes(`a=fmtp:${opus.pt} `) ) problems.push('no opus fmtp');
  if (opus && role === 'offer' && !new RegExp(`a=fmtp:${opus.pt} .*maxaveragebitrate=20000`).test(sdp)) problems.push('opus fmtp without maxaveragebitrate=20000');
  if (opus && role === 'offer' && !new RegExp(`a=fmtp:${opus.pt} .*maxplaybackrate=16000`).test(sdp)) problems.push('opus fmtp without maxplaybackrate=16000');
  if (!has(/^a=ptime:20\r?$/m)) problems.push('no ptime 20');
  if (mode === 'dtls') {
    if (proto !== 'UDP/TLS/RTP/SAVPF') problems.push(`transport ${proto}, not UDP/TLS/RTP/SAVPF`);
    if (!has(/^a=ice-lite\r?$/m)) problems.push('no a=ice-lite');
    if (!has(/^a=candidate:/m)) problems.push('no ICE candidate');
    if (!has(/^a=ice-ufrag:/m) || !has(/^a=ice-pwd:/m)) problems.push('no ICE credentials');
    if (!has(/^a=fingerprint:/m)) problems.push('no fingerprint');
    if (!has(/^a=rtcp-mux\r?$/m)) problems.push('no rtcp-mux');
    if (role === 'offer' && !has(/^a=setup:actpass\r?$/m)) problems.push('not setup:actpass');
    if (role === 'answer' && !has(/^a=setup:(active|passive)\r?$/m)) problems.push('no setup:active/passive');
    if (has(/^a=crypto:/m)) problems.push('SDES keys in DTLS mode');
  } else {
    if (proto !== 'RTP/SAVP') problems.push(`transport ${proto}, not RTP/SAVP`);
    const crypto = sdp.split(/\r?\n/).filter((l) => l.startsWith('a=crypto:'));
    if (crypto.length !== 1 || !/^a=crypto:\d+ AES_CM_128_HMAC_SHA1_80 inline:/.test(crypto[0]!)) problems.push(`crypto lines ${JSON.stringify(crypto)}, not one AES_CM_128_HMAC_SHA1_80`);
    if (has(/^a=(ice-|candidate:)/m)) problems.push('ICE in SDES mode');
    if (has(/^a=fingerprint:/m)) problems.push('fingerprint in SDES mode');
  }
  return problems;
}

/** Why Meta would refuse a business's offer in this mode (null: acceptable). Meta answers such an offer 488. */
export function businessOfferProblem(sdp: string, mode: MetaSrtp): string | null {
  const m = sdp.split(/\r?\n/).find((l) => l.startsWith('m=audio '));
  if (!m) return 'no audio stream';
  const proto = m.split(' ')[2] ?? '';
  if (!audioCodecs(sdp).some((c) => c.name.toLowerCase() === 'opus' && c.clock === 48000)) return 'no opus/48000 offered';
  if (mode === 'dtls') {
    if (!/^UDP\/TLS\/RTP\/SAVPF?$/.test(proto)) return `DTLS-SRTP expected, got ${proto}`;
    if (!/^a=fingerprint:/m.test(sdp)) return 'DTLS-SRTP expected, no fingerprint';
    if (!/^a=ice-ufrag:/m.test(sdp)) return 'ICE expected, no ice-ufrag';
  } else {
    if (!/^RTP\/SAVPF?$/.test(proto)) return `SDES-SRTP expected, got ${proto}`;
    if (!/^a=crypto:\d+ AES_CM_128_HMAC_SHA1_80 /m.test(sdp)) return 'SDES-SRTP expected, no AES_CM_128_HMAC_SHA1_80 key';
  }
  return null;
}

/**
 * A business's SDES offer as Meta takes it: only its AES_CM_128_HMAC_SHA1_80 keys (rtpengine would
 * otherwise pick the first suite it knows, e.g. AEAD_AES_256_GCM, which Meta does not use).
 */
export function onlyMetaCrypto(sdp: string): string {
  return sdp.split(/(?<=\n)/).filter((l) => !l.startsWith('a=crypto:') || /^a=crypto:\d+ AES_CM_128_HMAC_SHA1_80 /.test(l)).join('');
}
