import assert from 'node:assert/strict';
import Srf from 'drachtio-srf';
import { NumberRoute } from '../../src/calls/numbers-port';
import { displayName, durationOf, offerFromInvite, uriHost, uriUser } from '../../src/providers/meta-sip/headers';
import { sessionRefreshAnswer } from '../../src/providers/meta-sip/session-refresh';

/** A request or response as the SIP border reads it: headers by name, case-insensitive. */
function message(headers: Record<string, string>, extra: Partial<{ uri: string; body: string }> = {}): Srf.SrfRequest {
  const h = new Map(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  return {
    uri: extra.uri ?? 'sip:+15550001111@sip.bridge.test:5061;transport=tls',
    body: extra.body ?? 'v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n',
    has: (n: string) => h.has(n.toLowerCase()),
    get: (n: string) => h.get(n.toLowerCase()) ?? '',
  } as unknown as Srf.SrfRequest;
}

const route = {
  name: 'support', providerName: 'meta-main', providerKind: 'meta-sip',
  line: { number: '+15550001111', phoneId: '1001', wabaId: null },
} as unknown as NumberRoute;

describe('Meta SIP: reading Meta\'s requests', () => {
  it('an INVITE with every x-wa-meta header becomes the offer a webhook would have made', () => {
    const offer = offerFromInvite(message({
      From: '"Ana Lima" <sip:+6281361905133@wa.meta.vc>;tag=abc',
      'Call-ID': 'c-1',
      'x-wa-meta-wacid': 'wacid.HBgLNjI4MTM2MTkwNTEzMxUC',
      'x-wa-meta-phone-number-id': '2002',
      'x-wa-meta-country-code': '62',
      'x-wa-meta-cta-payload': 'spring-sale',
      'x-wa-meta-deeplink-payload': 'order-42',
    }), route);
    assert.equal(offer.wacid, 'wacid.HBgLNjI4MTM2MTkwNTEzMxUC');
    assert.equal(offer.phoneId, '2002');
    assert.equal(offer.from, '+6281361905133');
    assert.equal(offer.to, '+15550001111');
    assert.equal(offer.sdpType, 'offer');
    assert.deepEqual(offer.user, { number: '+6281361905133', userId: null, profileName: 'Ana Lima', username: null });
    assert.equal(offer.ctaPayload, 'spring-sale');
    assert.equal(offer.deeplinkPayload, 'order-42');
    assert.equal(offer.countryCode, '62');
  });

  it('without Meta\'s headers: the Call-ID names the call, the number\'s phone id is used, no country code', () => {
    const offer = offerFromInvite(message({ From: '<sip:6281361905133@wa.meta.vc>;tag=x', 'Call-ID': 'abc@meta', 'x-wa-meta-country-code': 'sixty-two' }), route);
    assert.equal(offer.wacid, 'sip-abc@meta');
    assert.equal(offer.phoneId, '1001');
    assert.equal(offer.from, '+6281361905133');
    assert.equal(offer.user.profileName, null);
    assert.equal(offer.countryCode, null);
  });

  it('a caller known only by a BSUID keeps the BSUID as their address', () => {
    const offer = offerFromInvite(message({ From: '<sip:US.13491208655302741918@wa.meta.vc>;tag=x', 'Call-ID': 'b' }), route);
    assert.equal(offer.from, 'US.13491208655302741918');
    assert.equal(offer.user.userId, 'US.13491208655302741918');
    assert.equal(offer.user.number, null);
  });

  it('reads URIs, display names and the BYE\'s duration', () => {
    assert.equal(uriUser('sip:+15550001111@wa.meta.vc;transport=tls'), '+15550001111');
    assert.equal(uriUser('<sips:%2B1555@h>'), '+1555');
    assert.equal(uriUser('sip:wa.meta.vc'), null);
    assert.equal(uriHost('<sip:+1@Sip.Example.COM:5061;transport=tls>'), 'sip.example.com');
    assert.equal(displayName('"A \\"B\\" C" <sip:x@y>'), 'A "B" C');
    assert.equal(displayName('Plain Name <sip:x@y>'), 'Plain Name');
    assert.equal(displayName('<sip:x@y>'), null);
    assert.equal(durationOf(message({ 'x-wa-meta-call-duration': '37' })), 37);
    assert.equal(durationOf(message({ 'x-wa-meta-call-duration': 'soon' })), null);
    assert.equal(durationOf(undefined), null);
  });
});

describe('Meta SIP: a re-INVITE or UPDATE from Meta', () => {
  const agreed = 'v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=fingerprint:sha-256 AA\r\n';
  const local = 'v=0\r\no=- 9 9 IN IP4 127.0.0.1\r\nm=audio 5000 UDP/TLS/RTP/SAVPF 111\r\n';

  it('a refresh (only the origin changed) or one without SDP is answered with the session as it stands', () => {
    assert.deepEqual(sessionRefreshAnswer(local, agreed, agreed.replace('o=- 1 1', 'o=- 1 2')), { ok: true, sdp: local });
    assert.deepEqual(sessionRefreshAnswer(local, agreed, ''), { ok: true, sdp: local });
    assert.deepEqual(sessionRefreshAnswer(local, agreed, undefined), { ok: true, sdp: local });
  });

  it('one that moves the media (port, address, codec or keys) is refused', () => {
    for (const moved of [agreed.replace('4000', '4002'), agreed.replace(/10\.0\.0\.1/g, '10.0.0.2'), agreed.replace('opus/48000/2', 'PCMU/8000'), agreed.replace('AA', 'BB')]) {
      assert.equal(sessionRefreshAnswer(local, agreed, moved).ok, false, moved);
    }
  });
});
