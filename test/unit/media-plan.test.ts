import assert from 'node:assert/strict';
import { MediaPlan } from '../../src/media/profiles';
import { hasSdesKeys, mediaAddresses, withoutDtls } from '../../src/media/sdp';

const SAVP_OFFER = [
  'v=0', 'o=pbx 1 1 IN IP4 10.0.0.10', 's=-', 'c=IN IP4 10.0.0.10', 't=0 0', 'm=audio 4000 RTP/SAVP 0',
  'a=rtpmap:0 PCMU/8000', 'a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz',
  'a=setup:actpass', 'a=fingerprint:sha-256 11:22:33', 'a=tls-id:abc', 'a=sendrecv', '',
].join('\r\n');

describe('media plan', () => {
  const plan = (pbxSrtp: 'off' | 'sdes') => new MediaPlan({ interfaces: { whatsapp: 'ext', pbx: 'int' }, pbxCodecs: ['PCMU'], pbxSrtp });

  it('names the interfaces in every offer and answer, the SDP sender\'s side first', () => {
    const p = plan('off');
    assert.deepEqual(p.waOfferToPbx().direction, ['ext', 'int']);
    assert.deepEqual(p.waAnswerToPbx().direction, ['ext', 'int']);
    assert.deepEqual(p.pbxOfferToWa(SAVP_OFFER).direction, ['int', 'ext']);
    assert.deepEqual(p.pbxAnswerToWa().direction, ['int', 'ext']);
  });

  it('offers the PBX plain RTP, or SRTP with SDES keys when configured', () => {
    assert.equal(plan('off').waOfferToPbx()['transport-protocol'], 'RTP/AVP');
    assert.deepEqual(plan('off').waOfferToPbx().SDES, ['off']);
    assert.equal(plan('sdes').waOfferToPbx()['transport-protocol'], 'RTP/SAVP');
    assert.equal(plan('sdes').waOfferToPbx().SDES, undefined);
  });

  it('with SDES configured, takes DTLS out of a PBX offer that also carries SDES keys, and nothing else', () => {
    const out = String(plan('sdes').pbxOfferToWa(SAVP_OFFER).sdp);
    assert.ok(hasSdesKeys(out));
    assert.doesNotMatch(out, /a=(setup|fingerprint|tls-id):/);
    assert.equal(plan('off').pbxOfferToWa(SAVP_OFFER).sdp, SAVP_OFFER);
    const dtlsOnly = withoutDtls(SAVP_OFFER).replace(/a=crypto:.*\r\n/, '');
    assert.equal(plan('sdes').pbxOfferToWa(dtlsOnly).sdp, dtlsOnly, 'an offer without SDES keys is left alone');
  });

  it('finds every address an SDP sends media to (c= lines and ICE candidates)', () => {
    const sdp = ['v=0', 'c=IN IP4 203.0.113.7', 'm=audio 9 UDP/TLS/RTP/SAVPF 111', 'c=IN IP4 203.0.113.7',
      'a=candidate:1 1 UDP 2130706431 203.0.113.7 40000 typ host', 'a=candidate:2 1 UDP 2130706431 10.0.0.5 40000 typ host', ''].join('\r\n');
    assert.deepEqual(mediaAddresses(sdp), ['203.0.113.7', '10.0.0.5']);
  });
});
