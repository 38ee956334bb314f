import assert from 'node:assert/strict';
import { outcomeOfPbxFailure, shouldFailover } from '../../src/calls/outcome';
import { assertUsableAudioSdp, firstAudioCodec, provisionalPbxAnswer, SdpError } from '../../src/media/sdp';

describe('SDP checks', () => {
  const ok = 'v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 4000 UDP/TLS/RTP/SAVPF 111 126\r\na=rtpmap:111 opus/48000/2\r\n';

  it('accepts a usable audio offer and reads its first codec', () => {
    assertUsableAudioSdp(ok);
    assert.equal(firstAudioCodec(ok), 'opus/48000/2');
    assert.equal(firstAudioCodec(provisionalPbxAnswer(['PCMA', 'PCMU'])), 'PCMA/8000');
  });

  it('refuses SDP without audio, with a disabled stream, or that is not SDP', () => {
    assert.throws(() => assertUsableAudioSdp('hello'), SdpError);
    assert.throws(() => assertUsableAudioSdp(ok.replace('m=audio 4000', 'm=video 4000')), SdpError);
    assert.throws(() => assertUsableAudioSdp(ok.replace('m=audio 4000', 'm=audio 0')), SdpError);
    assert.throws(() => assertUsableAudioSdp(ok.replace(/c=IN IP4 1.2.3.4\r\n/, '')), SdpError);
  });
});

describe('PBX failure outcomes', () => {
  const status = (s: number, hadProvisional = true) => ({ kind: 'status' as const, status: s, reason: '', hadProvisional });
  it('maps SIP codes to CDR outcomes', () => {
    assert.equal(outcomeOfPbxFailure(status(486)), 'busy');
    assert.equal(outcomeOfPbxFailure(status(600)), 'busy');
    assert.equal(outcomeOfPbxFailure(status(480)), 'no_answer');
    assert.equal(outcomeOfPbxFailure(status(603)), 'rejected');
    assert.equal(outcomeOfPbxFailure(status(503, false)), 'unreachable');
    assert.equal(outcomeOfPbxFailure(status(503, true)), 'failed');
    assert.equal(outcomeOfPbxFailure({ kind: 'no-response' }), 'unreachable');
  });
  it('fails over only when the target was unreachable', () => {
    assert.equal(shouldFailover({ kind: 'no-response' }), true);
    assert.equal(shouldFailover(status(486)), false);
    assert.equal(shouldFailover(status(503, true)), false);
  });
});
