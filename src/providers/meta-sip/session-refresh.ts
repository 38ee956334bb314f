/**
 * Meta supports no re-INVITE: the bridge never sends one, and one from Meta can only be a session
 * refresh (RFC 4028) or a keepalive. It is answered with the session as it stands when its media is
 * what was agreed (the same addresses, ports, codecs and keys: only o= and the ICE/DTLS lines that do not
 * move the media may differ); an offer without SDP gets the bridge's SDP as its offer; any other is
 * refused (488), which RFC 3261 14.2 says leaves the session as it was.
 */
export function sessionRefreshAnswer(localSdp: string, remoteSdp: string, offer: string | undefined): { ok: true; sdp: string } | { ok: false; why: string } {
  if (!offer || !offer.trim()) return { ok: true, sdp: localSdp };
  const before = mediaShape(remoteSdp);
  const now = mediaShape(offer);
  if (before === now) return { ok: true, sdp: localSdp };
  return { ok: false, why: 'the offer moves the media' };
}

/** The lines that say where media goes and how it is keyed, in order. */
function mediaShape(sdp: string): string {
  return sdp.split(/\r?\n/)
    .filter((l) => /^(m=|c=|a=rtpmap:|a=crypto:|a=fingerprint:|a=ice-ufrag:|a=candidate:)/.test(l))
    .map((l) => l.trim())
    .join('\n');
}
