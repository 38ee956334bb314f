/**
 * A WhatsApp-style WebRTC offer (ICE, DTLS-SRTP, opus, telephone-event) that rtpengine accepts, with
 * no peer behind it: for calls a test never lets carry media (refused, terminated, deduplicated).
 */
export const CANNED_WA_OFFER = [
  'v=0', 'o=- 1 1 IN IP4 127.0.0.1', 's=-', 't=0 0', 'a=group:BUNDLE 0', 'a=ice-lite',
  'm=audio 40000 UDP/TLS/RTP/SAVPF 111 126', 'c=IN IP4 127.0.0.1',
  'a=rtpmap:111 opus/48000/2', 'a=fmtp:111 minptime=20;useinbandfec=1', 'a=rtpmap:126 telephone-event/8000',
  'a=ice-ufrag:abcd', 'a=ice-pwd:abcdefghijklmnopqrstuvwx', 'a=setup:actpass',
  'a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF',
  'a=rtcp-mux', 'a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host', 'a=mid:0', 'a=sendrecv', '',
].join('\r\n');

/** A WhatsApp user for the simulator that offers CANNED_WA_OFFER and ignores the answer. */
export const cannedWaUser = { createOffer: async (): Promise<string> => CANNED_WA_OFFER, applyAnswer: async (): Promise<void> => undefined };
