import assert from 'node:assert/strict';
import http from 'node:http';
import Koa from 'koa';
import { loadConfig } from '../../src/config';
import { hasUnsafeText, printable, ReadSlots, VerifiedSenders, WEBHOOK_MAX_BODY_BYTES } from '../../src/http/ingress-guard';
import { plainAddress } from '../../src/util/addresses';
import { RefusalLog } from '../../src/refusal-log';
import { Logger } from '../../src/log';
import { HTTP_LIMITS, listen } from '../../src/http/server';
import { checkStorable, MAX_DEPTH, MAX_SDP_CHARS, parseWebhookEvent, toCallEvent } from '../../src/providers/ycloud/events';

/** The bounds on webhook events, the concurrent-read slots and the HTTP server limits, without a network. */

const SDP = [
  'v=0', 'o=- 1 1 IN IP4 127.0.0.1', 's=-', 't=0 0', 'm=audio 40000 UDP/TLS/RTP/SAVPF 111', 'c=IN IP4 127.0.0.1', 'a=rtpmap:111 opus/48000/2', '',
].join('\r\n');

const connect = (over: Record<string, unknown> = {}, envelope: Record<string, unknown> = {}) => ({
  id: 'evt_1', type: 'whatsapp.call.connect', ...envelope,
  callingConnect: {
    wacid: 'wacid.HBgLMTIzNDU2Nzg5MBUCABEYEjQ2QzU2RjY5RkU4QjE4QzQ1RgA=', phoneId: '461269257068831', from: '+6281361905133', to: '+6283138205150',
    direction: 'USER_INITIATED', sdpType: 'offer', sdp: SDP, ...over,
  },
});
const parse = (ev: unknown) => parseWebhookEvent(Buffer.from(JSON.stringify(ev)));

/** Asserts the event is refused and the reason matches. */
function refused(ev: unknown | Buffer, reason: RegExp): void {
  const p = Buffer.isBuffer(ev) ? parseWebhookEvent(ev) : parse(ev);
  assert.equal(p.ok, false, `accepted: ${JSON.stringify(ev).slice(0, 120)}`);
  if (!p.ok) assert.match(p.reason, reason);
}

describe('webhook event bounds', () => {
  it('accepts real events: a connect with a base64 wacid, an emoji in an inbound message, a 100-character type', () => {
    assert.equal(parse(connect()).ok, true);
    const msg = { id: 'evt_2', type: 'whatsapp.inbound_message.received', whatsappInboundMessage: { text: { body: 'hello 😀 日本' }, interactive: { type: 'call_permission_reply', call_permission_reply: { response: 'accept' } } } };
    assert.equal(parse(msg).ok, true);
    const custom = parse({ id: 'evt_3', type: `x.${'a'.repeat(98)}` });
    assert.ok(custom.ok && custom.event === null);
  });

  it('refuses what Postgres could never store: NUL or an unpaired surrogate anywhere, bytes that are not UTF-8', () => {
    refused({ id: 'evt_4', type: 'whatsapp.inbound_message.received', whatsappInboundMessage: { text: { body: 'a\u0000b' } } }, /NUL or unpaired surrogate/);
    refused({ id: 'evt_\ud800x', type: 'custom.thing' }, /NUL or unpaired surrogate/);
    refused({ id: 'evt_5', type: 'custom.thing', deep: { ['k\u0000']: 1 } }, /in a key/);
    refused({ id: 'evt_6', type: 'custom.thing', lone: 'x\udc00' }, /unpaired surrogate/);
    refused(Buffer.concat([Buffer.from('{"id":"evt_7","type":"custom.thing","x":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]), /not UTF-8/);
  });

  it('refuses deep nesting, over-long strings and keys (iteratively: 10,000 levels do not overflow the stack)', () => {
    let deep: unknown = 'leaf';
    for (let i = 0; i < MAX_DEPTH; i++) deep = { d: deep };
    assert.equal(checkStorable(deep), null, `${MAX_DEPTH} levels are fine`);
    refused({ id: 'evt_8', type: 'custom.thing', nest: deep }, /nested deeper/);
    const body = `{"id":"evt_9","type":"custom.thing","n":${'['.repeat(10_000)}${']'.repeat(10_000)}}`;
    refused(Buffer.from(body), /nested deeper/);
    refused({ id: 'evt_10', type: 'custom.thing', s: 'x'.repeat(16 * 1024 + 1) }, /string longer/);
    refused({ id: 'evt_11', type: 'custom.thing', o: { ['k'.repeat(257)]: 1 } }, /key longer/);
  });

  it('bounds the envelope: type at most 100 safe characters, id at most 200', () => {
    refused({ id: 'evt_12', type: `x.${'a'.repeat(99)}` }, /type/);
    refused({ id: 'evt_13', type: 'custom thing' }, /type/);
    refused({ id: 'e'.repeat(201), type: 'custom.thing' }, /id/);
  });

  it('refuses a wacid or phoneId that could break a SIP header: CR/LF, spaces, quotes, <>, or too long', () => {
    for (const wacid of ['wacid.x\r\nX-Injected: 1', 'wacid x', 'wacid."x"', 'wacid.<x>', "wacid.'x'", 'w'.repeat(201), 'w'.repeat(1024 * 1024), '']) {
      refused(connect({ wacid }), /wacid/);
      refused({ id: 'evt_14', type: 'whatsapp.call.terminate', callingTerminate: { wacid } }, /wacid/);
    }
    for (const phoneId of ['4612\r\nVia: x', '4612 69', '"4612"', '<4612>', '1'.repeat(65)]) refused(connect({ phoneId }), /phoneId/);
  });

  it('refuses numbers with SIP syntax in them (E.164 only) and bounds statuses and times', () => {
    for (const from of ['+6281361905133>;tag=1', '+62813 61905133', 'sip:+6281361905133@evil', '+6281361905133\r\nX: y', '<sip:1@x>', '+6281361905133;user=phone']) {
      refused(connect({ from }), /from/);
      refused(connect({ to: from }), /to/);
    }
    refused({ id: 'evt_15', type: 'whatsapp.call.status.updated', callingStatusUpdated: { wacid: 'w', status: 'R'.repeat(25) } }, /status/);
    refused({ id: 'evt_16', type: 'whatsapp.call.terminate', callingTerminate: { wacid: 'w', status: 'COMPLETED\r\n' } }, /status/);
    refused(Buffer.from(JSON.stringify(connect()).replace('"sdpType"', '"dialTime":1e400,"sdpType"')), /dialTime/);
  });

  it('caps the connect SDP by size, control bytes and media sections (650 audio m-lines are refused)', () => {
    refused(connect({ sdp: SDP + `a=x:${'y'.repeat(MAX_SDP_CHARS)}\r\n` }), /sdp/);
    refused(connect({ sdp: SDP.replace('s=-', 's=\u0001\u0002') }), /control characters/);
    refused(connect({ sdp: SDP + 'm=audio 9 RTP/AVP 0\r\n'.repeat(650) }), /audio sections/);
    refused(connect({ sdp: SDP + 'm=audio 9 RTP/AVP 0\r\nm=audio 9 RTP/AVP 8\r\n' }), /3 audio sections/);
    refused(connect({ sdp: SDP + 'm=video 9 RTP/AVP 96\r\nm=video 9 RTP/AVP 97\r\nm=application 9 DTLS/SCTP 5000\r\nm=video 9 RTP/AVP 98\r\n' }), /5 media sections/);
    assert.equal(parse(connect({ sdp: `${SDP}m=audio 9 RTP/AVP 0\r\nm=video 9 RTP/AVP 96\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n` })).ok, true, '4 sections, 2 audio');
    assert.equal(parse(connect({ sdp: SDP.replace(/\r\n/g, '\n') })).ok, true, 'LF line ends');
  });

  it('takes YCloud\'s BSUID fields on a connect (the caller\'s user id), and refuses one with SIP syntax in it', () => {
    const p = parse(connect({ fromUserId: 'ID.13491208655302741918', fromParentUserId: 'ID.ENT.11815799212886844830' }));
    assert.ok(p.ok && p.event);
    const event = toCallEvent(p.event);
    assert.equal(event?.kind, 'offered');
    if (event?.kind === 'offered') assert.deepEqual(event.user, { number: '+6281361905133', userId: 'ID.13491208655302741918', profileName: null, username: null });
    refused(connect({ fromUserId: 'ID.1349@evil>' }), /fromUserId/);
  });

  it("reads YCloud's recording and transcription events: AVAILABLE is a file to fetch, FAILED is stored and not acted on; the media asset id is bounded", () => {
    const wacid = 'wacid.HBgLMTIzNDU2Nzg5MBUCABEYEjQ2QzU2RjY5RkU4QjE4QzQ1RgA=';
    const media = (type: string, key: string, over: Record<string, unknown> = {}) => ({
      id: 'evt_66b1f0c2', type, apiVersion: 'v2', createTime: '2026-08-04T08:00:00.000Z',
      [key]: { wacid, phoneId: '461269257068832', mediaAssetId: '66b1f0c2e4b05c2d8f1a3b47', status: 'AVAILABLE', ...over },
    });
    for (const [type, key, kind] of [
      ['whatsapp.call.recording.updated', 'callingRecording', 'recording'],
      ['whatsapp.call.transcription.updated', 'callingTranscription', 'transcription'],
    ] as const) {
      const p = parse(media(type, key));
      assert.ok(p.ok && p.event, type);
      assert.equal(p.type, type);
      assert.deepEqual(toCallEvent(p.event), {
        kind: 'media_available', wacid, phoneId: '461269257068832', media: kind, mediaId: '66b1f0c2e4b05c2d8f1a3b47', url: null, mimeType: null, sha256: null,
      });
      const failed = parse(media(type, key, { status: 'FAILED', error: { code: 'CALLING_RECORDING_PROCESSING_FAILED', retryable: false } }));
      assert.ok(failed.ok && failed.event, `${type} FAILED is read (and stored)`);
      assert.equal(toCallEvent(failed.event), null, `${type} FAILED is not acted on`);
      // A FAILED event without an asset id is still one YCloud sends; an AVAILABLE one without it is useless.
      const { mediaAssetId: _, ...withoutId } = media(type, key, { status: 'FAILED' })[key] as Record<string, unknown>;
      assert.equal(parse({ ...media(type, key), [key]: withoutId }).ok, true);
      refused({ ...media(type, key), [key]: { ...withoutId, status: 'AVAILABLE' } }, /mediaAssetId/);
      refused(media(type, key, { mediaAssetId: '../../v2/whatsapp/calls/connect' }), /mediaAssetId/);
      refused(media(type, key, { mediaAssetId: 'x'.repeat(201) }), /mediaAssetId/);
      refused(media(type, key, { wacid: 'wacid\r\nX-Evil: 1' }), /wacid/);
      refused(media(type, key, { status: 'AVAILABLE; drop' }), /status/);
      refused({ id: 'evt_x', type }, new RegExp(key));
    }
  });

  it('a maximal legitimate event fits the 64 KiB body cap', () => {
    const big = connect({ sdp: SDP + `a=x:${'y'.repeat(MAX_SDP_CHARS - SDP.length - 8)}\r\n` });
    assert.equal(parse(big).ok, true);
    assert.ok(JSON.stringify(big).length < WEBHOOK_MAX_BODY_BYTES / 2);
  });
});

describe('concurrent body reads', () => {
  /** A clock the test moves (ms). */
  const clock = () => {
    const c = { t: 0, now: () => c.t };
    return c;
  };

  it('a full share makes its worst read give way (ended at once, told why), never holding more than the limits', () => {
    const c = clock();
    const slots = new ReadSlots(3, 2, 0, c.now);
    const a1 = slots.acquire('a');
    c.t = 5;
    const a2 = slots.acquire('a');
    c.t = 8;
    slots.progress(a1.read, 100);
    c.t = 10;
    // a2 has waited for data longest (a1 just received some): a2 makes way.
    const a3 = slots.acquire('a');
    assert.equal(a2.read.signal.aborted, true);
    assert.equal(a2.read.evictedFor, 'client');
    assert.equal(a1.read.signal.aborted, false);
    const b1 = slots.acquire('b');
    assert.equal(slots.reading, 3);
    // The total is full: the read that has waited longest for data (a1, since 8 ms) makes way.
    const c1 = slots.acquire('c');
    assert.equal(a1.read.evictedFor, 'total');
    assert.equal(a3.read.signal.aborted, false);
    assert.equal(slots.reading, 3);
    assert.equal(slots.evictions, 2);
    for (const r of [a1, a2, a3, b1, c1]) r.release();
    a1.release(); // a second release changes nothing
    assert.equal(slots.reading, 0);
    assert.equal(slots.clients, 0);
  });

  it('past the first second, the slowest on average makes way, not the newest', () => {
    const c = clock();
    const slots = new ReadSlots(2, 2, 0, c.now);
    const fast = slots.acquire('a');
    const slow = slots.acquire('a');
    c.t = 1500;
    slots.progress(fast.read, 6000);
    slots.progress(slow.read, 10);
    const fresh = slots.acquire('a');
    assert.equal(slow.read.signal.aborted, true);
    assert.equal(fast.read.signal.aborted, false);
    for (const r of [fast, slow, fresh]) r.release();
  });

  it('reads of verified senders have their own slots, which other requests never take', () => {
    const c = clock();
    const slots = new ReadSlots(4, 4, 2, c.now);
    const verified = [slots.acquire('ycloud', true), slots.acquire('ycloud', true)];
    assert.deepEqual(verified.map((v) => v.read.pool), ['verified', 'verified']);
    const attackers = Array.from({ length: 200 }, (_, i) => {
      c.t = i;
      return slots.acquire(`10.0.0.${i % 6}`);
    });
    assert.ok(verified.every((v) => !v.read.signal.aborted), 'no verified read was ended');
    assert.equal(attackers.filter((a) => !a.read.signal.aborted).length, 4);
    assert.equal(slots.reading, 6);
    for (const r of [...verified, ...attackers]) r.release();
    assert.equal(slots.reading, 0);
  });

  it('holds at most the total limit of reads and client entries whatever the addresses', () => {
    const slots = new ReadSlots(10, 1);
    const results = Array.from({ length: 10_000 }, (_, i) => slots.acquire(`10.0.${i >> 8}.${i & 255}`));
    assert.equal(results.filter((r) => !r.read.signal.aborted).length, 10);
    assert.equal(slots.reading, 10);
    assert.equal(slots.clients, 10);
  });

  it('remembers verified senders for the TTL, at most so many, the longest unseen forgotten first', () => {
    let t = 0;
    const senders = new VerifiedSenders(2, 1000, () => t);
    senders.add('a');
    senders.add('b');
    senders.add('a');
    senders.add('c');
    assert.equal(senders.has('b'), false, 'b was the longest unseen');
    assert.equal(senders.has('a'), true);
    t = 1000;
    assert.equal(senders.has('a'), false, 'expired');
    assert.ok(senders.size <= 2);
  });
});

describe('query text and log text', () => {
  it('finds control characters and lone surrogates, not ordinary unicode', () => {
    for (const s of ['a\u0000', '\r\n', 'x\u007f', '\ud800', 'a\udfffb']) assert.equal(hasUnsafeText(s), true, JSON.stringify(s));
    for (const s of ['plain', "' OR 1=1 --", '日本語 😀', '\u202e']) assert.equal(hasUnsafeText(s), false, s);
    assert.equal(printable('a\r\nb'.repeat(100), 6), 'a\ufffd\ufffdba\ufffd');
  });
});

describe('refusal log lines', () => {
  it('at most 20 per 10 s window; the next line logged says how many were left out', () => {
    const lines: Array<Record<string, unknown>> = [];
    let now = 0;
    const log = { warn: (fields: Record<string, unknown>) => lines.push(fields) } as unknown as Logger;
    const refusals = new RefusalLog(log, 20, 10_000, () => now);
    for (let i = 0; i < 1000; i++) refusals.warn({ i }, 'webhook refused');
    assert.equal(lines.length, 20);
    now = 10_000;
    refusals.warn({ i: 'next' }, 'webhook refused');
    assert.deepEqual(lines[20], { i: 'next', suppressedBefore: 980 });
  });

  it('one spelling per IPv4 client, whether the socket is dual-stack or not', () => {
    assert.equal(plainAddress('::ffff:127.0.0.2'), '127.0.0.2');
    assert.equal(plainAddress('127.0.0.2'), '127.0.0.2');
    assert.equal(plainAddress('::1'), '::1');
    assert.equal(plainAddress('::ffff:zz'), '::ffff:zz');
  });
});

describe('HTTP server limits and settings', () => {
  it('listen() bounds headers, whole requests, requests per socket and connections', async () => {
    const server: http.Server = await listen(new Koa(), 0, '127.0.0.1', { maxConnections: 50 });
    try {
      assert.equal(server.headersTimeout, HTTP_LIMITS.headersTimeoutMs);
      assert.equal(server.requestTimeout, HTTP_LIMITS.requestTimeoutMs);
      assert.equal(server.maxRequestsPerSocket, HTTP_LIMITS.maxRequestsPerSocket);
      assert.equal(server.keepAliveTimeout, HTTP_LIMITS.keepAliveTimeoutMs);
      assert.equal(server.timeout, HTTP_LIMITS.socketIdleMs);
      assert.equal(server.maxConnections, 50);
      for (const v of Object.values(HTTP_LIMITS)) assert.ok(v > 0 && Number.isFinite(v));
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  const env = {
    DATABASE_URL: 'postgres://u:p@127.0.0.1/db', YCLOUD_API_KEY: 'k', YCLOUD_WEBHOOK_SECRET: 's', DRACHTIO_SECRET: 'd',
    RTPENGINE_NG: '127.0.0.1:2223', PBX_TARGET: 'sip:127.0.0.1:5060', PUBLIC_IP: '203.0.113.10',
  };

  it('TRUST_PROXY is off unless set, "true" is one proxy, a digit is that many; webhook limits have defaults', () => {
    assert.equal(loadConfig(env).trustProxy, 0);
    assert.equal(loadConfig({ ...env, TRUST_PROXY: 'true' }).trustProxy, 1);
    assert.equal(loadConfig({ ...env, TRUST_PROXY: '2' }).trustProxy, 2);
    assert.throws(() => loadConfig({ ...env, TRUST_PROXY: 'yes' }), /TRUST_PROXY/);
    assert.deepEqual(loadConfig(env).ycloud.webhookLimits, { readTimeoutMs: 10000, maxConcurrentReads: 32, maxReadsPerClient: 8, verifiedReads: 8, minBytesPerS: 4096 });
    assert.throws(() => loadConfig({ ...env, WEBHOOK_MAX_CONCURRENT_READS: '0' }), /WEBHOOK_MAX_CONCURRENT_READS/);
    assert.throws(() => loadConfig({ ...env, WEBHOOK_MIN_BYTES_PER_S: '-1' }), /WEBHOOK_MIN_BYTES_PER_S/);
    assert.equal(loadConfig(env).httpMaxConnectionsPerClient, 100);
    assert.throws(() => loadConfig({ ...env, HTTP_MAX_CONNECTIONS_PER_CLIENT: '0' }), /HTTP_MAX_CONNECTIONS_PER_CLIENT/);
  });
});
