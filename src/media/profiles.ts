import { NgParams } from 'rtpengine-client';

/** rtpengine ng flags for each direction of the bridge (see DESIGN.md, verified with rtpengine 10.5). */

/** WhatsApp offer (WebRTC, opus) -> plain RTP toward the PBX, transcoding to the PBX's codecs. */
export function waOfferToPbx(pbxCodecs: string[]): NgParams {
  return {
    'transport-protocol': 'RTP/AVP',
    ICE: 'remove',
    DTLS: 'off',
    SDES: ['off'],
    'rtcp-mux': ['demux'],
    replace: ['origin', 'session-connection'],
    // Lets the bridge inject the WhatsApp user's digits toward the PBX (see CallMedia.injectDigit).
    flags: ['inject-DTMF'],
    codec: { mask: ['opus'], transcode: pbxCodecs },
  };
}

/** The PBX's answer (plain RTP) -> the WebRTC answer for WhatsApp. */
export function pbxAnswerToWa(): NgParams {
  return {
    replace: ['origin', 'session-connection'],
    flags: ['full-rtcp-attribute', 'inject-DTMF'],
  };
}

/** The PBX's offer (plain RTP, G.711/G.722) -> a WebRTC offer for WhatsApp: ICE, DTLS-SRTP, rtcp-mux, opus. */
export function pbxOfferToWa(): NgParams {
  return {
    'transport-protocol': 'UDP/TLS/RTP/SAVPF',
    ICE: 'force',
    SDES: ['off'],
    'rtcp-mux': ['require'],
    replace: ['origin', 'session-connection'],
    flags: ['generate-mid', 'full-rtcp-attribute', 'inject-DTMF'],
    codec: { transcode: ['opus/48000/2'], mask: ['G722', 'PCMU', 'PCMA'] },
  };
}

/** WhatsApp's answer (WebRTC) -> the plain-RTP answer for the PBX. */
export function waAnswerToPbx(): NgParams {
  return { replace: ['origin', 'session-connection'], flags: ['inject-DTMF'] };
}
