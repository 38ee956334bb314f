import assert from 'node:assert/strict';
import { IllegalTransition, Lifecycle, TRANSITIONS } from '../../src/calls/lifecycle';
import { parseDtmfLog } from '../../src/media/dtmf-log';
import { answerDirectionFor, audioDirection, eventClockFor, isHoldOffer, plainRtpSdp, withAudioDirection } from '../../src/media/sdp';
import { parseReferTo } from '../../src/sip/refer';

const sdp = (extra: string[], conn = 'c=IN IP4 10.0.0.5') => ['v=0', 'o=pbx 1 1 IN IP4 10.0.0.5', 's=-', conn, 't=0 0', 'm=audio 4000 RTP/AVP 0 101', 'a=rtpmap:0 PCMU/8000', 'a=rtpmap:101 telephone-event/8000', ...extra, ''].join('\r\n');

describe('call lifecycle table', () => {
  it('allows the moves of a held and transferred call, and ending from anywhere', () => {
    const l = new Lifecycle();
    for (const to of ['pre_accepted', 'ringing', 'answered', 'accepted', 'held', 'transferring', 'accepted', 'ended'] as const) l.to(to);
    assert.equal(l.state, 'ended');
    for (const [from, moves] of Object.entries(TRANSITIONS)) {
      if (from !== 'ended') assert.ok(moves.includes('ended'), `${from} can end`);
    }
  });

  it('refuses a move the table does not list, and nothing leaves ended', () => {
    const l = new Lifecycle();
    assert.throws(() => l.to('held'), IllegalTransition);
    assert.equal(l.state, 'offered');
    l.to('ended');
    assert.equal(l.can('accepted'), false);
  });
});

describe('mid-call SDP', () => {
  it('reads hold offers: sendonly, inactive, old-style c=0.0.0.0 (session or media level)', () => {
    assert.equal(audioDirection(sdp([])), 'sendrecv');
    assert.equal(audioDirection(sdp(['a=sendonly'])), 'sendonly');
    assert.equal(audioDirection(sdp(['a=inactive'])), 'inactive');
    assert.equal(audioDirection(sdp([], 'c=IN IP4 0.0.0.0')), 'sendonly');
    assert.equal(audioDirection(sdp([]).replace('t=0 0', 't=0 0\r\na=recvonly')), 'recvonly');
    assert.equal(isHoldOffer(sdp(['a=sendonly'])), true);
    assert.equal(isHoldOffer(sdp(['a=sendrecv'])), false);
  });

  it('answers as RFC 3264 says and rewrites the direction once', () => {
    assert.equal(answerDirectionFor('sendonly'), 'recvonly');
    assert.equal(answerDirectionFor('inactive'), 'inactive');
    const out = withAudioDirection(sdp(['a=sendrecv']), 'recvonly');
    assert.equal(out.match(/a=(sendrecv|recvonly|sendonly|inactive)/g)?.join(), 'a=recvonly');
  });

  it('keeps WebRTC-only attributes away from the PBX', () => {
    const out = plainRtpSdp(sdp(['a=mid:0', 'a=msid:- x', 'a=ssrc:1 cname:y', 'a=extmap:1 urn:x', 'a=sendrecv']));
    assert.doesNotMatch(out, /a=(mid|msid|ssrc|extmap)/);
    assert.match(out, /a=rtpmap:101 telephone-event\/8000/);
  });

  it('relabels the event clock for rtpengine and back for WhatsApp, keeping CRLF', () => {
    const wa = 'v=0\r\nm=audio 1 UDP/TLS/RTP/SAVPF 111 126\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:126 telephone-event/8000\r\n';
    const toRe = eventClockFor.toRtpengine(wa);
    assert.match(toRe, /a=rtpmap:126 telephone-event\/48000\r\n/);
    assert.equal(eventClockFor.toWhatsApp(toRe), wa);
  });
});

describe('REFER targets and rtpengine DTMF log', () => {
  it('parses Refer-To with Replaces (attended transfer) and keeps only allowed embedded headers', () => {
    const t = parseReferTo('<sip:200@pbx.example.com:5070;transport=udp?Replaces=abc%40h%3Bto-tag%3D1%3Bfrom-tag%3D2&Evil=x>');
    assert.ok(t);
    assert.equal(t.uri, 'sip:200@pbx.example.com:5070;transport=udp');
    assert.equal(t.user, '200');
    assert.deepEqual(t.headers, { Replaces: 'abc@h;to-tag=1;from-tag=2' });
    assert.equal(parseReferTo('not a uri'), null);
  });

  it('parses rtpengine DTMF log datagrams and ignores anything else', () => {
    const ev = parseDtmfLog('{"callid":"c1","source_tag":"wa-1","tags":["wa-1","pbx-1"],"type":"DTMF","timestamp":1,"source_ip":"127.0.0.1","event":11,"duration":19,"volume":10}');
    assert.deepEqual(ev, { callId: 'c1', sourceTag: 'wa-1', digit: '#', durationMs: 19, volume: 10 });
    assert.equal(parseDtmfLog('{"type":"other"}'), null);
    assert.equal(parseDtmfLog('junk'), null);
  });
});
