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
    codec: { mask: ['opus'], transcode: pbxCodecs },
  };
}

/** The PBX's answer (plain RTP) -> the WebRTC answer for WhatsApp. */
export function pbxAnswerToWa(): NgParams {
  return {
    replace: ['origin', 'session-connection'],
    flags: ['full-rtcp-attribute'],
  };
}
