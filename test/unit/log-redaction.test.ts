import assert from 'node:assert/strict';
import pino from 'pino';
import { loadConfig } from '../../src/config';
import { callLogger, configSecrets, createLogger, isWordLike, LoggerOptions, maskPhoneNumber, REDACTED, scrubLine, setCallLogFields } from '../../src/log';

/** A pino destination that keeps every line. */
class MemoryStream {
  readonly lines: string[] = [];
  write(s: string): void {
    for (const l of s.split('\n')) if (l) this.lines.push(l);
  }
  get text(): string {
    return this.lines.join('\n');
  }
  json(): Array<Record<string, unknown>> {
    return this.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  }
}

function logger(opts: LoggerOptions = {}): { log: pino.Logger; out: MemoryStream } {
  const out = new MemoryStream();
  return { log: createLogger('debug', {}, { ...opts, destination: out }), out };
}

const SDP = [
  'v=0', 'o=- 1 1 IN IP4 10.0.0.1', 's=-', 'c=IN IP4 10.0.0.1', 't=0 0', 'm=audio 4000 RTP/SAVP 0',
  'a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:32',
  'a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj',
  'a=ice-ufrag:abcd', 'a=ice-pwd:Sup3rS3cretIcePassw0rdXYZ', '',
].join('\r\n');

const SIP_WITH_DIGEST = [
  'INVITE sip:6283138205150@10.0.0.9 SIP/2.0',
  'Call-ID: abc@host',
  'Proxy-Authorization: Digest username="wa-bridge", realm="pbx", nonce="n1", uri="sip:x@y", response="0123456789abcdef0123456789abcdef"',
  'Authorization: Digest username="wa-bridge", realm="pbx", nonce="n2", uri="sip:x@y", response="fedcba9876543210fedcba9876543210"',
  'Content-Length: 0', '', '',
].join('\r\n');

describe('log redaction', () => {
  it('redacts the usual header and credential fields (pino redact paths)', () => {
    const { log, out } = logger();
    log.info({ headers: { authorization: 'Bearer tok-aaaaaaaaaaaa', 'X-API-Key': 'key-bbbbbbbbbbbb', 'content-type': 'application/json' } }, 'req');
    log.info({ req: { headers: { 'proxy-authorization': 'Digest xyz', 'YCloud-Signature': 't=1,s=ffff' } } }, 'nested');
    log.info({ apiKey: 'key-cccccccccccc', password: 'pw-dddddddddddd', token: 'tok-eeeeeeeeeeee' }, 'fields');
    for (const s of ['tok-aaaaaaaaaaaa', 'key-bbbbbbbbbbbb', 'Digest xyz', 't=1,s=ffff', 'key-cccccccccccc', 'pw-dddddddddddd', 'tok-eeeeeeeeeeee']) {
      assert.ok(!out.text.includes(s), `${s} leaked: ${out.text}`);
    }
    const [first] = out.json();
    assert.deepEqual(first!.headers, { authorization: REDACTED, 'X-API-Key': REDACTED, 'content-type': 'application/json' });
  });

  it('redacts secret-named fields at any depth, in arrays, and never changes the logged object', () => {
    const { log, out } = logger();
    const config = { ycloud: { apiKey: 'deep-key-1234567', webhookSecret: 'deep-secret-1234' }, pbx: { auth: { username: 'u', password: 'deep-pass-123456' } } };
    const list = [{ meta: { x: { y: { SIP_AUTH_PASSWORD: 'deep-pass-abcdef', adminToken: 'deep-token-12345' } } } }];
    log.warn({ config, list }, 'should never happen, but must not leak');
    for (const s of ['deep-key-1234567', 'deep-secret-1234', 'deep-pass-123456', 'deep-pass-abcdef', 'deep-token-12345']) assert.ok(!out.text.includes(s), `${s} leaked`);
    assert.equal(config.ycloud.apiKey, 'deep-key-1234567', 'the caller\'s object is untouched');
    const line = out.json()[0]!;
    assert.equal((line.config as { pbx: { auth: { username: string } } }).pbx.auth.username, 'u', 'other fields stay');
  });

  it('errors: message and plain fields kept; attached requests/responses (SIP, HTTP) and secret fields dropped', () => {
    const { log, out } = logger();
    class FakeSrfResponse {
      msg = { raw: SIP_WITH_DIGEST };
      socket = { big: 'object' };
    }
    const sipErr = Object.assign(new Error('Proxy Authentication Required'), { status: 407, res: new FakeSrfResponse(), failure: { kind: 'status', raw: SIP_WITH_DIGEST } });
    class FakeHttpError extends Error {
      config = { headers: { 'X-API-Key': 'http-key-12345678' }, url: 'https://api.ycloud.com/v2/whatsapp/calls/accept' };
      request = { _header: 'POST /v2 HTTP/1.1\r\nX-API-Key: http-key-87654321\r\n' };
      code = 'ECONNRESET';
    }
    const httpErr = new FakeHttpError('socket hang up', { cause: Object.assign(new Error('inner'), { apiKey: 'cause-key-123456' }) });
    log.warn({ err: sipErr }, 'SIP failure');
    log.error(httpErr, 'HTTP failure');
    log.error({ err: new AggregateError([httpErr], 'many') }, 'aggregate');
    for (const s of ['0123456789abcdef0123456789abcdef', 'fedcba9876543210', 'http-key-12345678', 'http-key-87654321', 'cause-key-123456']) {
      assert.ok(!out.text.includes(s), `${s} leaked: ${out.text}`);
    }
    const [a, b] = out.json();
    const ea = a!.err as Record<string, unknown>;
    assert.equal(ea.message, 'Proxy Authentication Required');
    assert.equal(ea.status, 407);
    assert.equal(ea.res, undefined, 'the SIP response object is not logged');
    assert.equal((ea.failure as Record<string, unknown>).kind, 'status', 'plain data on an error is kept (credentials in it scrubbed)');
    const eb = b!.err as Record<string, unknown>;
    assert.equal(eb.code, 'ECONNRESET');
    assert.equal(eb.type, 'FakeHttpError');
    assert.match(String(eb.stack), /socket hang up/);
    assert.equal((eb.cause as Record<string, unknown>).apiKey, REDACTED);
  });

  it('SDP keys (a=crypto inline keys, ICE passwords) and raw SIP/HTTP credentials are scrubbed from strings and messages', () => {
    const { log, out } = logger();
    log.debug({ sdp: SDP }, 'offer');
    log.debug(`raw message:\n${SIP_WITH_DIGEST}`);
    log.debug({ dump: 'GET /metrics HTTP/1.1\r\nAuthorization: Bearer abcdefghijklmnop\r\n' }, 'http');
    log.debug({ body: JSON.stringify({ headers: { Authorization: 'Basic dXNlcjpwYXNz' } }) }, 'json in a string');
    for (const s of ['WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz', 'NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj', 'Sup3rS3cretIcePassw0rdXYZ',
      '0123456789abcdef0123456789abcdef', 'fedcba9876543210fedcba9876543210', 'abcdefghijklmnop', 'dXNlcjpwYXNz']) {
      assert.ok(!out.text.includes(s), `${s} leaked: ${out.text}`);
    }
    const sdp = String(out.json()[0]!.sdp);
    assert.match(sdp, /a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:\[Redacted\]/);
    assert.match(sdp, /m=audio 4000 RTP\/SAVP 0/, 'the rest of the SDP stays readable');
    assert.match(sdp, /a=ice-ufrag:abcd/);
    assert.match(String(out.json()[1]!.msg), /Call-ID: abc@host/);
    for (const l of out.lines) JSON.parse(l); // every line is still valid JSON
  });

  it('configured secret values never appear, in any field or message, raw or JSON-escaped', () => {
    const weird = 'pa"ss\\word-123';
    const { log, out } = logger({ secrets: ['ycloud-api-key-0123456789', weird, 'short', null, ''] });
    log.info({ note: 'key is ycloud-api-key-0123456789 here', odd: `x${weird}y` }, 'the key ycloud-api-key-0123456789 again');
    log.info({ w: 'short' }, 'short secrets are not searched for');
    assert.ok(!out.text.includes('ycloud-api-key-0123456789'));
    assert.ok(!out.text.includes(JSON.stringify(weird).slice(1, -1)));
    const [line, second] = out.json();
    assert.equal(line!.msg, `the key ${REDACTED} again`);
    assert.equal(line!.odd, `x${REDACTED}y`);
    assert.equal(second!.w, 'short');
  });

  it('configSecrets lists every secret of a configuration', () => {
    const c = loadConfig({
      DATABASE_URL: 'postgres://bridge:db-pass-9876@h/db', YCLOUD_API_KEY: 'ycloud-key-1', YCLOUD_WEBHOOK_SECRET: 'whsec-1',
      DRACHTIO_SECRET: 'cymru-1', RTPENGINE_NG: '127.0.0.1:22222', PBX_TARGET: 'sip:pbx.example.com', PUBLIC_IP: '203.0.113.7',
      PBX_AUTH_USERNAME: 'u', PBX_AUTH_PASSWORD: 'pbx-pass-1', SIP_AUTH_USERNAME: 'a', SIP_AUTH_PASSWORD: 'sip-pass-1',
      SIP_TRUSTED_SOURCES: '10.0.0.0/8', ADMIN_API_TOKEN: 'admin-token-0123456789', REPORTING_API_TOKENS: 'report-token-0123456789',
      METRICS_TOKEN: 'metrics-token-1',
    });
    assert.deepEqual(new Set(configSecrets(c)), new Set([
      'cymru-1', 'ycloud-key-1', 'whsec-1', 'pbx-pass-1', 'sip-pass-1', 'admin-token-0123456789', 'report-token-0123456789', 'metrics-token-1', 'db-pass-9876',
    ]));
  });

  it('a secret that reads as a word or a number (the compose database password "bridge") leaves ordinary text alone, and is still kept out of URLs and secret fields', () => {
    const c = loadConfig({
      DATABASE_URL: 'postgres://bridge:bridge@127.0.0.1:55432/bridge', YCLOUD_API_KEY: 'ycloud-key-0123456789', YCLOUD_WEBHOOK_SECRET: 'whsec-0123456789',
      DRACHTIO_SECRET: 'sandbox', RTPENGINE_NG: '127.0.0.1:22222', PBX_TARGET: 'sip:pbx.example.com', PUBLIC_IP: '203.0.113.7',
      PBX_AUTH_USERNAME: 'u', PBX_AUTH_PASSWORD: '12345678',
    });
    const { log, out } = logger({ secrets: configSecrets(c) });
    const pg = 'connect to postgres://bridge:bridge@127.0.0.1:55432/bridge failed';
    log.info({ callId: 'c-12345678-1', at: 1733512345678 }, 'sandbox: the bridge is ready');
    log.warn({ url: 'postgres://bridge:bridge@127.0.0.1:55432/bridge', password: 'bridge', drachtio: { secret: 'sandbox' } }, pg);
    log.info({ note: 'key ycloud-key-0123456789 and whsec-0123456789' }, 'strong secrets still go');
    const [first, second, third] = out.json();
    assert.equal(first!.name, 'wa-sip-bridge', 'the logger\'s own name');
    assert.equal(first!.msg, 'sandbox: the bridge is ready');
    assert.equal(first!.callId, 'c-12345678-1');
    assert.equal(first!.at, 1733512345678);
    assert.equal(second!.msg, `connect to postgres://bridge:${REDACTED}@127.0.0.1:55432/bridge failed`);
    assert.equal(second!.url, `postgres://bridge:${REDACTED}@127.0.0.1:55432/bridge`);
    assert.equal(second!.password, REDACTED);
    assert.deepEqual(second!.drachtio, { secret: REDACTED });
    assert.equal(third!.note, `key ${REDACTED} and ${REDACTED}`);
    assert.ok(!out.text.includes(':bridge@'));
    // A word-like secret is one only while short: a long one is searched for like any other.
    assert.ok(!isWordLike('wasipbridgepasswordx') && isWordLike('bridge') && isWordLike('123456') && !isWordLike('bridge1'));
  });

  it('scrubLine leaves ordinary lines alone', () => {
    const line = '{"level":30,"msg":"call ended","outcome":"answered","callId":"c1"}';
    assert.equal(scrubLine(line, ['not-present-secret']), line);
  });
});

describe('phone numbers in log lines', () => {
  const WACID = 'wacid.HBgNNjI4MTM2MTkwNTEzMxUCABEYEjQ4+1234567/QkE2RTFBRkEA';

  it('masks numbers in phone-named fields and E.164 numbers in messages, at info and warn, keeping prefix and last 4', () => {
    const { log, out } = logger();
    log.info({ from: '+15550000001', to: '6283138205150', businessNumber: '+62 831-3820-5150', customer_number: '+6281361905133', wa_id: '6281361905133' }, 'call from +15550000002 to +6283138205150');
    log.warn({ nested: { caller: '+4915112345678', callee: '004915112345679' }, target: 'sip:6283138205150@10.0.0.9:5060', uri: 'tel:+15550000003' }, 'refused');
    log.error({ detail: { phone: '+15550000004' } }, 'numbers at error too');
    for (const n of ['15550000001', '6283138205150', '831-3820', '6281361905133', '15550000002', '4915112345678', '4915112345679', '15550000003', '15550000004']) {
      assert.ok(!out.text.includes(n), `${n} leaked: ${out.text}`);
    }
    const [a, b] = out.json();
    assert.equal(a!.from, '+1555****0001');
    assert.equal(a!.to, '6283****5150');
    assert.equal(a!.businessNumber, '+6283****5150');
    assert.equal(a!.msg, 'call from +1555****0002 to +6283****5150');
    assert.equal((b!.nested as Record<string, unknown>).caller, '+4915****5678');
    assert.equal(b!.target, 'sip:6283****5150@10.0.0.9:5060');
    assert.equal(b!.uri, 'tel:+1555****0003');
    for (const l of out.lines) JSON.parse(l);
  });

  it('leaves wacids, ids, ports, timestamps and dates alone', () => {
    const { log, out } = logger();
    const fields = {
      wacid: WACID, phoneId: '461269257068831', callId: '5f0c9a7e-1b2c-4d3e-8f90-123456789012', port: 40000, rtpPort: '40002',
      time: 1733557123456, at: '2026-12-07T07:34:49.123+00:00', from: 'offered', to: 'pre_accepted', number: 3, eventId: 'evt_1234567890123',
      range: { from: '2026-12-01', to: '2026-12-07' }, sipCallId: '1234567890@127.0.0.1',
    };
    log.info(fields, `state offered -> pre_accepted on port 40000 for ${WACID}`);
    const [line] = out.json();
    for (const [k, v] of Object.entries(fields)) assert.deepEqual(line![k], v, `${k} changed`);
    assert.equal(line!.msg, `state offered -> pre_accepted on port 40000 for ${WACID}`);
  });

  it('LOG_PHONE_NUMBERS=full writes them as they are', () => {
    const { log, out } = logger({ phoneNumbers: 'full' });
    log.info({ from: '+15550000001', target: 'sip:6283138205150@h' }, 'from +15550000001');
    const [line] = out.json();
    assert.deepEqual([line!.from, line!.target, line!.msg], ['+15550000001', 'sip:6283138205150@h', 'from +15550000001']);
  });

  it('maskPhoneNumber keeps short numbers\' ends only, and leaves non-numbers alone', () => {
    assert.equal(maskPhoneNumber('+15550000001'), '+1555****0001');
    assert.equal(maskPhoneNumber('1234567'), '12****4567');
    assert.equal(maskPhoneNumber('123'), '123');
  });
});

describe('call log fields', () => {
  it('every line of a call carries callId, and wacid / sipCallId from the moment each is named, in children made before and after', () => {
    const { log, out } = logger();
    const call = callLogger(log, 'call-1');
    const early = call.child({ part: 'session' });
    call.info('offered');
    setCallLogFields(call, { wacid: 'wacid.1' });
    early.info('from a child made before');
    setCallLogFields(call, { sipCallId: 'sip-1@host' });
    call.child({ part: 'late' }).info('from a child made after');
    setCallLogFields(call, { sipCallId: 'sip-2@host' }); // a transfer's new leg
    call.info({ extra: 1 }, 'renamed');
    early.info({ sdp: 'a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:c2VjcmV0a2V5c2VjcmV0a2V5c2VjcmV0a2V5' }, 'children are scrubbed too');
    log.info('not a call');
    const [a, b, c, d] = out.json();
    assert.equal(a!.callId, 'call-1');
    assert.equal(a!.wacid, undefined);
    assert.deepEqual([b!.callId, b!.wacid, b!.part, b!.sipCallId], ['call-1', 'wacid.1', 'session', undefined]);
    assert.deepEqual([c!.wacid, c!.sipCallId, c!.part], ['wacid.1', 'sip-1@host', 'late']);
    assert.equal(d!.sipCallId, 'sip-2@host');
    assert.equal(out.lines[3]!.split('"sipCallId"').length, 2, 'renaming does not duplicate the key');
    assert.ok(!out.lines[4]!.includes('c2VjcmV0a2V5c2VjcmV0a2V5c2VjcmV0a2V5'));
    const f = out.json()[5]!;
    assert.equal(f.callId, undefined);
    assert.equal(f.wacid, undefined);
  });

  it('also works on a plain pino logger (fields bound once)', () => {
    const out = new MemoryStream();
    const call = callLogger(pino({ level: 'info' }, out), 'call-2', { sipCallId: 's@h' });
    setCallLogFields(call, { wacid: 'w2' });
    call.info('x');
    const [line] = out.json();
    assert.deepEqual([line!.callId, line!.sipCallId, line!.wacid], ['call-2', 's@h', 'w2']);
  });
});
