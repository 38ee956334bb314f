import assert from 'node:assert/strict';
import { ConfigError, loadConfig } from '../../src/config';
import { CodecPolicy, MediaPlan, offeredAudioCodecs } from '../../src/media/profiles';
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

/** A WhatsApp offer as Meta sends it since adding G.711: opus first, then the G.711 codecs and telephone-event. */
const WA_OFFER_WITH_G711 = [
  'v=0', 'o=- 1 2 IN IP4 127.0.0.1', 's=-', 't=0 0', 'm=audio 40000 UDP/TLS/RTP/SAVPF 111 0 8 126', 'c=IN IP4 157.240.1.1',
  'a=rtpmap:111 opus/48000/2', 'a=fmtp:111 minptime=10;useinbandfec=1', 'a=rtpmap:126 telephone-event/8000', 'a=sendrecv', '',
].join('\r\n');
const PBX_OFFER = ['v=0', 'o=pbx 1 1 IN IP4 10.0.0.10', 's=-', 'c=IN IP4 10.0.0.10', 't=0 0', 'm=audio 4000 RTP/AVP 0 8 9 101',
  'a=rtpmap:101 telephone-event/8000', 'a=sendrecv', ''].join('\r\n');

describe('media plan: codec policy', () => {
  const plan = (codecPolicy?: CodecPolicy, pbxCodecs = ['PCMU', 'PCMA']) => new MediaPlan({ interfaces: { whatsapp: 'ext', pbx: 'int' }, pbxCodecs, pbxSrtp: 'off', codecPolicy });
  const transcoded = { mask: ['opus'], transcode: ['PCMU', 'PCMA'] };

  it('reads the codecs of an audio line, by rtpmap or static payload type', () => {
    assert.deepEqual(offeredAudioCodecs(WA_OFFER_WITH_G711), ['OPUS', 'PCMU', 'PCMA', 'TELEPHONE-EVENT']);
    assert.deepEqual(offeredAudioCodecs(PBX_OFFER), ['PCMU', 'PCMA', 'G722', 'TELEPHONE-EVENT']);
    assert.deepEqual(plan('prefer-g711').g711InCommon(WA_OFFER_WITH_G711), ['PCMU', 'PCMA']);
    assert.deepEqual(offeredAudioCodecs('v=0\r\n'), []);
  });

  it('transcode (the default) offers WhatsApp opus only, as before the policy existed', () => {
    for (const p of [plan(), plan('transcode')]) {
      assert.deepEqual(p.pbxOfferToWa(PBX_OFFER).codec, { transcode: ['opus/48000/2'], mask: ['G722', 'PCMU', 'PCMA'] });
      assert.deepEqual(p.g711InCommon(PBX_OFFER), []);
    }
  });

  it('leaves a WhatsApp user\'s offer to rtpengine under either policy (it passes offered G.711 through itself)', () => {
    assert.deepEqual(plan('prefer-g711').waOfferToPbx(), plan('transcode').waOfferToPbx());
    assert.deepEqual(plan('prefer-g711').waOfferToPbx().codec, transcoded);
  });

  it('prefer-g711 offers WhatsApp the PBX\'s G.711 as it is beside a transcoded opus, and never G.722', () => {
    assert.deepEqual(plan('prefer-g711').pbxOfferToWa(PBX_OFFER).codec, { transcode: ['opus/48000/2'], mask: ['G722'] });
    assert.deepEqual(plan('prefer-g711', ['PCMA']).pbxOfferToWa(PBX_OFFER).codec, { transcode: ['opus/48000/2'], mask: ['G722', 'PCMU'] });
    const g722Only = PBX_OFFER.replace(' 0 8 9 101', ' 9 101');
    assert.deepEqual(plan('prefer-g711').pbxOfferToWa(g722Only).codec, { transcode: ['opus/48000/2'], mask: ['G722', 'PCMU', 'PCMA'] });
  });

  it('MEDIA_CODEC_POLICY: transcode unless set, prefer-g711 when asked, anything else refused at start-up', () => {
    const env = { DATABASE_URL: 'postgres://u@h/db', YCLOUD_API_KEY: 'k', YCLOUD_WEBHOOK_SECRET: 's', DRACHTIO_SECRET: 'x', RTPENGINE_NG: '127.0.0.1:22222', PBX_TARGET: 'sip:pbx.example.com', PUBLIC_IP: '203.0.113.7' };
    assert.equal(loadConfig(env).media.codecPolicy, 'transcode');
    assert.equal(loadConfig({ ...env, MEDIA_CODEC_POLICY: 'prefer-g711' }).media.codecPolicy, 'prefer-g711');
    assert.throws(() => loadConfig({ ...env, MEDIA_CODEC_POLICY: 'g711' }), (err: unknown) => err instanceof ConfigError && err.problems.some((p) => p.includes('MEDIA_CODEC_POLICY')));
  });
});
