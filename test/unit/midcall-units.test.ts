import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import Srf from 'drachtio-srf';
import { IllegalTransition, Lifecycle, TRANSITIONS } from '../../src/calls/lifecycle';
import { parseDtmfLog } from '../../src/media/dtmf-log';
import { answerDirectionFor, audioDirection, eventClockFor, withOfferedEvents, isHoldOffer, plainRtpSdp, withAudioDirection } from '../../src/media/sdp';
import { createLogger } from '../../src/log';
import { LostDialogProbe } from '../../src/sip/lost-dialog';
import { dialogIds, lostDialogRequest, recordRoute, routeRequest } from '../../src/sip/out-of-dialog';
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
    assert.equal(eventClockFor.fromRtpengine(toRe), wa);
  });

  it('puts the offer\'s telephone-event/8000 back into an answer that lost it, after the audio codecs', () => {
    const offer = 'v=0\r\nm=audio 1 RTP/AVP 111 126\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:126 telephone-event/8000\r\na=fmtp:126 0-16\r\n';
    const answer = 'v=0\r\nm=audio 2 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=20\r\na=sendrecv\r\n';
    assert.equal(withOfferedEvents(answer, offer),
      'v=0\r\nm=audio 2 RTP/AVP 111 126\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=20\r\na=rtpmap:126 telephone-event/8000\r\na=fmtp:126 0-16\r\na=sendrecv\r\n');
    const withEvents = answer.replace('RTP/AVP 111', 'RTP/AVP 111 101').replace('a=sendrecv', 'a=rtpmap:101 telephone-event/8000\r\na=sendrecv');
    assert.equal(withOfferedEvents(withEvents, offer), withEvents, 'an answer with events keeps its own');
    assert.equal(withOfferedEvents(answer, answer), answer, 'an offer without events adds none');
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

/** drachtio-srf's own message parser and Dialog class (as Srf builds a dialog from the INVITE and its 200). */
const { SipMessage, Dialog } = Srf as unknown as {
  SipMessage: new (raw: string) => object;
  Dialog: new (srf: object, type: 'uac' | 'uas', o: { req: object; res: object; sent?: object }) => Srf.Dialog;
};
const msg = (lines: string[]) => new SipMessage([...lines, 'Content-Length: 0', '', ''].join('\r\n'));

/** A PBX dialog with proxies p1 (next to the bridge) and p2 (next to the PBX) on its path; the PBX's Contact is elsewhere. */
function pbxDialog(bridge: 'uac' | 'uas', o: { recordRoute?: string[]; agentOnDeadSocket?: boolean } = {}): Srf.Dialog {
  const rr = (o.recordRoute ?? []).map((v) => `Record-Route: ${v}`);
  const via = 'Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1';
  const callId = `Call-ID: c-${bridge}`;
  const agent = { request: (_o: object, cb: (err: Error) => void) => cb(new Error('provided socket has been destroyed')) };
  const fakeSrf = { removeDialog: () => undefined };
  if (bridge === 'uac') {
    // The bridge's INVITE, and the PBX's 200: its Record-Route lists the proxies from the PBX back to the bridge.
    const req = msg(['INVITE sip:100@pbx.example.com SIP/2.0', via, 'From: <sip:+15550001@bridge.example.com>;tag=b1',
      'To: <sip:100@pbx.example.com>', callId, 'CSeq: 1 INVITE', 'Contact: <sip:10.0.0.1:5060>']);
    const res = Object.assign(msg(['SIP/2.0 200 OK', via, ...rr, 'From: <sip:+15550001@bridge.example.com>;tag=b1',
      'To: <sip:100@pbx.example.com>;tag=p9', callId, 'CSeq: 1 INVITE', 'Contact: <sip:agent7@192.0.2.50:5062>']), { agent });
    return new Dialog(fakeSrf, 'uac', { req, res });
  }
  // The agent's INVITE: its Record-Route lists the proxies from the bridge to the PBX.
  const req = msg(['INVITE sip:+15550001@10.0.0.1 SIP/2.0', via, ...rr, 'From: <sip:agent7@pbx.example.com>;tag=p9',
    'To: <sip:+15550001@10.0.0.1>', callId, 'CSeq: 1 INVITE', 'Contact: <sip:agent7@192.0.2.50:5062>']);
  const sent = msg(['SIP/2.0 200 OK', via, 'From: <sip:agent7@pbx.example.com>;tag=p9', 'To: <sip:+15550001@10.0.0.1>;tag=b1',
    callId, 'CSeq: 1 INVITE', 'Contact: <sip:10.0.0.1:5060>']);
  return new Dialog(fakeSrf, 'uas', { req, res: Object.assign(sent, { agent }), sent });
}

/** An Srf that records each out-of-dialog request and answers it with `status` (drachtio-srf's callback and 'response'). */
function recordingSrf(status: (method: string) => number): { srf: Srf; sent: Array<{ uri: string; method: string; headers: Record<string, string>; proxy?: string }> } {
  const sent: Array<{ uri: string; method: string; headers: Record<string, string>; proxy?: string }> = [];
  const srf = {
    request(uri: string, o: { method: string; headers: Record<string, string>; proxy?: string }, cb: (err: Error | null, req?: EventEmitter) => void) {
      sent.push({ uri, ...o });
      const req = new EventEmitter();
      cb(null, req);
      setImmediate(() => req.emit('response', { status: status(o.method) }));
    },
  };
  return { srf: srf as unknown as Srf, sent };
}

describe('dialogs drachtio-server lost: the route set and the requests sent outside the dialog', () => {
  const proxies = ['<sip:p1.example.com;lr>', '"edge, west" <sip:p2.example.com:5070;lr;ftag=x>;rr-param=1'];

  it('reads Record-Route entries whatever the header lines and display names, keeping URI parameters', () => {
    assert.deepEqual(recordRoute('<sip:p1;lr>, "a, <b>" <sip:p2;lr>,<sip:10.0.0.9:5070;lr;ftag=x>;foo=bar'), ['sip:p1;lr', 'sip:p2;lr', 'sip:10.0.0.9:5070;lr;ftag=x']);
    assert.deepEqual(recordRoute(undefined), []);
    assert.deepEqual(recordRoute(''), []);
  });

  it('takes the route set as RFC 3261 12.1 says: the UAS the INVITE\'s Record-Route in order, the UAC the 200\'s reversed', () => {
    // The agent's INVITE came bridge <- p1 <- p2 <- PBX: p1 recorded last, so listed first.
    const uas = dialogIds(pbxDialog('uas', { recordRoute: proxies }));
    assert.deepEqual(uas?.route, ['sip:p1.example.com;lr', 'sip:p2.example.com:5070;lr;ftag=x']);
    assert.equal(uas?.uri, 'sip:agent7@192.0.2.50:5062');
    // The bridge's INVITE went bridge -> p1 -> p2 -> PBX: the 200 lists p2 first; the bridge's route set starts at p1.
    const uac = dialogIds(pbxDialog('uac', { recordRoute: [...proxies].reverse() }));
    assert.deepEqual(uac?.route, ['sip:p1.example.com;lr', 'sip:p2.example.com:5070;lr;ftag=x']);
    assert.equal(uac?.uri, 'sip:agent7@192.0.2.50:5062');
    assert.deepEqual(dialogIds(pbxDialog('uac'))?.route, [], 'no proxy on the path: no route set');
    assert.deepEqual(dialogIds(pbxDialog('uas'))?.route, []);
  });

  it('builds the request as RFC 3261 12.2.1.1 says: loose routers in Route, a strict router in the Request-URI', () => {
    const target = 'sip:agent7@192.0.2.50:5062';
    assert.deepEqual(routeRequest(target, []), { uri: target });
    assert.deepEqual(routeRequest(target, ['sip:p1;lr', 'sip:p2;lr=on']), { uri: target, route: '<sip:p1;lr>, <sip:p2;lr=on>', nextHop: 'sip:p1;lr' });
    // A strict router is the Request-URI (without what a Request-URI may not carry); the target goes last in Route.
    assert.deepEqual(routeRequest(target, ['sip:p1:5070;transport=udp;method=INVITE?Subject=x', 'sip:p2;lr']),
      { uri: 'sip:p1:5070;transport=udp', route: `<sip:p2;lr>, <${target}>` });
    assert.deepEqual(routeRequest(target, ['sip:lrproxy.example.com;transport=udp']), { uri: 'sip:lrproxy.example.com;transport=udp', route: `<${target}>` },
      'a host named lr... is no lr parameter');
    const ids = { callId: 'c1', uri: target, from: '<sip:a@b>;tag=1', to: '<sip:c@d>;tag=2', route: ['sip:p1;lr'] };
    assert.deepEqual(lostDialogRequest(ids, 'BYE', 7, { Reason: 'x' }), {
      uri: target, method: 'BYE', proxy: 'sip:p1;lr',
      headers: { 'Call-ID': 'c1', From: '<sip:a@b>;tag=1', To: '<sip:c@d>;tag=2', CSeq: '7 BYE', Route: '<sip:p1;lr>', Reason: 'x' },
    });
    assert.equal('Route' in lostDialogRequest({ ...ids, route: [] }, 'BYE', 7).headers, false);
    assert.equal(lostDialogRequest({ ...ids, route: [] }, 'BYE', 7).proxy, undefined);
  });

  it('sends the probe and the BYE through the dialog\'s proxies, each probe with a higher CSeq, and nothing shared between bridges', async () => {
    const a = recordingSrf(() => 200);
    const b = recordingSrf(() => 481);
    const probeA = new LostDialogProbe(a.srf, () => true, createLogger('silent'));
    const probeB = new LostDialogProbe(b.srf, () => true, createLogger('silent')); // a second bridge in the same process
    const dialog = pbxDialog('uac', { recordRoute: [...proxies].reverse() });
    assert.equal(await probeA.stillUp(dialog, 1000), 'up');
    assert.equal(await probeA.stillUp(dialog, 1000), 'up');
    assert.equal(await probeB.stillUp(dialog, 1000), 'gone');
    assert.equal(await probeA.bye(dialog, 1000), 'answered 200');
    assert.deepEqual(a.sent.map((r) => [r.method, r.headers.CSeq]), [['OPTIONS', '1900000000 OPTIONS'], ['OPTIONS', '1900000001 OPTIONS'], ['BYE', '2000000000 BYE']]);
    assert.deepEqual(b.sent.map((r) => r.headers.CSeq), ['1900000000 OPTIONS'], 'the other bridge counts its own CSeqs');
    for (const r of [...a.sent, ...b.sent]) {
      assert.equal(r.uri, 'sip:agent7@192.0.2.50:5062', 'Request-URI: the remote target');
      assert.equal(r.headers.Route, '<sip:p1.example.com;lr>, <sip:p2.example.com:5070;lr;ftag=x>');
      assert.equal(r.proxy, 'sip:p1.example.com;lr', 'sent to the first proxy, not to the Contact');
      assert.equal(r.headers['Call-ID'], 'c-uac');
      assert.equal(r.headers.From, '<sip:+15550001@bridge.example.com>;tag=b1');
      assert.equal(r.headers.To, '<sip:100@pbx.example.com>;tag=p9');
    }
  });

  it('sends nothing while drachtio-server is away, and says so for the BYE', async () => {
    const { srf, sent } = recordingSrf(() => 200);
    const probe = new LostDialogProbe(srf, () => false, createLogger('silent'));
    const dialog = pbxDialog('uas');
    assert.equal(await probe.stillUp(dialog, 1000), 'unknown');
    assert.equal(await probe.bye(dialog, 1000), 'not sent: drachtio-server unreachable');
    assert.deepEqual(sent, []);
  });
});
