import assert from 'node:assert/strict';
import { CallEvent } from '../../src/calls/call-events';
import { Delivery, ParsedWebhook } from '../../src/events/webhook-source';
import { MAX_DELIVERIES } from '../../src/providers/meta/events';
import { signMetaWebhook } from '../../src/providers/meta/signature';
import { MetaWebhooks } from '../../src/providers/meta/webhook-source';

const SECRET = 'app-secret';
const source = new MetaWebhooks({ name: 'meta', appSecret: SECRET, verifyToken: 'verify-me' });
const SDP = 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n';
const METADATA = { display_phone_number: '15550001111', phone_number_id: '1001' };

const body = (v: unknown) => Buffer.from(JSON.stringify(v));
const envelope = (...entries: unknown[]) => ({ object: 'whatsapp_business_account', entry: entries });
const entry = (id: string, ...changes: unknown[]) => ({ id, changes });
const callsChange = (value: Record<string, unknown>) => ({ field: 'calls', value: { messaging_product: 'whatsapp', metadata: METADATA, ...value } });
const offer = (wacid: string, extra: Record<string, unknown> = {}) => ({
  id: wacid, from: '4915112345678', to: '15550001111', event: 'connect', timestamp: '1760000000', direction: 'USER_INITIATED',
  session: { sdp_type: 'offer', sdp: SDP }, ...extra,
});

function ok(p: ParsedWebhook): { deliveries: Delivery[]; rejected: Array<{ reason: string; payload: unknown }> } {
  assert.ok(p.ok, p.ok ? '' : p.reason);
  return { deliveries: p.deliveries, rejected: p.rejected ?? [] };
}
const events = (p: ParsedWebhook): Array<CallEvent | null> => ok(p).deliveries.map((d) => d.event);

describe('Meta webhooks', () => {
  describe('X-Hub-Signature-256', () => {
    const raw = body(envelope(entry('waba', callsChange({ calls: [offer('wacid.A')] }))));
    const good = signMetaWebhook(SECRET, raw);

    it('accepts the HMAC-SHA256 of the raw bytes keyed with the App Secret', () => {
      assert.match(good, /^sha256=[0-9a-f]{64}$/);
      assert.deepEqual(source.checkHeader(good), { ok: true });
      assert.deepEqual(source.verify(good, raw), { ok: true });
      assert.deepEqual(source.verify(good.toUpperCase().replace('SHA256=', 'sha256='), raw), { ok: true }, 'hex in either case');
    });

    it('refuses a missing, malformed or truncated header before the body, and is never "stale"', () => {
      for (const h of [undefined, '', 'sha1=abc', good.slice(0, -1), `${good}0`, good.replace('sha256=', ''), `sha256=${'g'.repeat(64)}`]) {
        const c = source.checkHeader(h);
        assert.equal(c.ok, false, `header ${h}`);
        assert.equal(!c.ok && c.stale, undefined);
        assert.equal(source.verify(h, raw).ok, false);
      }
    });

    it('refuses a wrong secret, an altered body, and one hex digit changed anywhere', () => {
      assert.deepEqual(source.verify(signMetaWebhook('other', raw), raw), { ok: false, reason: 'signature mismatch' });
      assert.deepEqual(source.verify(good, Buffer.concat([raw, Buffer.from(' ')])), { ok: false, reason: 'signature mismatch' });
      const hex = good.slice('sha256='.length);
      for (const i of [0, 1, 31, 32, 62, 63]) {
        const forged = `sha256=${hex.slice(0, i)}${hex[i] === '0' ? '1' : '0'}${hex.slice(i + 1)}`;
        assert.deepEqual(source.checkHeader(forged), { ok: true });
        assert.deepEqual(source.verify(forged, raw), { ok: false, reason: 'signature mismatch' }, `digit ${i}`);
      }
    });
  });

  describe('subscription check (GET)', () => {
    it('echoes hub.challenge for the right token, 403 for a wrong or missing one or another mode', () => {
      assert.deepEqual(source.verifyChallenge({ 'hub.mode': 'subscribe', 'hub.verify_token': 'verify-me', 'hub.challenge': '1158201444' }), { status: 200, body: '1158201444' });
      for (const q of [
        { 'hub.mode': 'subscribe', 'hub.verify_token': 'verify-mf', 'hub.challenge': '1' },
        { 'hub.mode': 'subscribe', 'hub.verify_token': 'verify-me-too', 'hub.challenge': '1' },
        { 'hub.mode': 'subscribe', 'hub.challenge': '1' },
        { 'hub.mode': 'unsubscribe', 'hub.verify_token': 'verify-me', 'hub.challenge': '1' },
        { 'hub.mode': 'subscribe', 'hub.verify_token': ['verify-me', 'verify-me'], 'hub.challenge': '1' },
      ]) assert.equal(source.verifyChallenge(q).status, 403, JSON.stringify(q));
    });

    it('never echoes a challenge that is not short printable text', () => {
      for (const c of ['', 'a\r\nSet-Cookie: x', 'x'.repeat(257), '<b> </b>']) {
        assert.equal(source.verifyChallenge({ 'hub.mode': 'subscribe', 'hub.verify_token': 'verify-me', 'hub.challenge': c }).status, 400);
      }
    });
  });

  describe('the envelope', () => {
    it('takes every entry, change, call and status apart, each with its dedupe id, and decodes each stored payload alone', () => {
      const raw = body(envelope(
        entry('waba1',
          callsChange({
            contacts: [{ wa_id: '4915112345678', profile: { name: 'Ana\r\nX-Evil: 1', username: 'ana' } }],
            calls: [
              offer('wacid.A', { cta_payload: 'summer-sale', deeplink_payload: 'dl-1' }),
              { id: 'wacid.B', from: '4915100000000', to: '15550001111', event: 'terminate', timestamp: '1760000100', direction: 'USER_INITIATED', status: 'Completed', start_time: '1760000010', end_time: '1760000100', duration: 90 },
            ],
          }),
          callsChange({ statuses: [{ id: 'wacid.C', type: 'call', status: 'RINGING', timestamp: '1760000200', recipient_id: '4915111111111' }, { id: 'wacid.C', type: 'call', status: 'accepted', timestamp: '1760000201' }] })),
        entry('waba2', callsChange({
          calls: [{ id: 'wacid.C', from: '15550001111', to: '4915111111111', event: 'connect', timestamp: '1760000202', direction: 'BUSINESS_INITIATED', session: { sdp_type: 'answer', sdp: SDP }, biz_opaque_callback_data: 'call-42' }],
        })),
      ));
      const { deliveries, rejected } = ok(source.parse(raw));
      assert.deepEqual(rejected, []);
      assert.deepEqual(deliveries.map((d) => d.id), [
        'meta:wacid.A:connect:1760000000', 'meta:wacid.B:terminate:1760000100', 'meta:wacid.C:RINGING', 'meta:wacid.C:ACCEPTED', 'meta:wacid.C:connect:1760000202',
      ]);
      const [offered, ended, ringing, accepted, answered] = deliveries.map((d) => d.event);
      assert.deepEqual(offered, {
        kind: 'offered', wacid: 'wacid.A', phoneId: '1001', from: '+4915112345678', to: '+15550001111', sdpType: 'offer', sdp: SDP, dialTime: 1760000000000,
        user: { number: '+4915112345678', userId: null, profileName: 'AnaX-Evil: 1', username: 'ana' }, ctaPayload: 'summer-sale', deeplinkPayload: 'dl-1',
      });
      assert.deepEqual(ended, { kind: 'ended', wacid: 'wacid.B', phoneId: '1001', cause: 'COMPLETED', durationS: 90, startedAt: 1760000010000, endedAt: 1760000100000 });
      assert.deepEqual(ringing, { kind: 'status', wacid: 'wacid.C', phoneId: '1001', status: 'RINGING', progress: 'ringing' });
      assert.equal(accepted?.kind === 'status' && accepted.progress, 'accepted');
      assert.deepEqual(answered, { kind: 'answered', wacid: 'wacid.C', phoneId: '1001', from: '+15550001111', to: '+4915111111111', sdpType: 'answer', sdp: SDP, context: 'call-42' });
      // Each stored payload decodes alone, after a round trip through JSON (webhook_events.payload).
      for (const d of deliveries) assert.deepEqual(source.decodeStored(JSON.parse(JSON.stringify(d.payload))), d.event);
      // The stored offer keeps only its own contact and call.
      const stored = deliveries[0]!.payload as Record<string, unknown>;
      assert.deepEqual(Object.keys(stored).sort(), ['contact', 'entry', 'field', 'item', 'metadata', 'part', 'provider']);
    });

    it('both casings of terminate statuses read the same', () => {
      const term = (status: string, id: string) => ({ id, from: '4915100000000', to: '15550001111', event: 'terminate', timestamp: '1760000100', status });
      const got = events(source.parse(body(envelope(entry('w', callsChange({ calls: [term('COMPLETED', 'wacid.1'), term('Completed', 'wacid.2'), term('failed', 'wacid.3')] }))))));
      assert.deepEqual(got.map((e) => e?.kind === 'ended' && e.cause), ['COMPLETED', 'COMPLETED', 'FAILED']);
    });

    it('a caller known only by BSUID: from is the BSUID, the profile comes from contacts', () => {
      const call = offer('wacid.U', { from: undefined, from_user_id: 'US.13491208655302741918' });
      const got = events(source.parse(body(envelope(entry('w', callsChange({
        contacts: [{ user_id: 'US.13491208655302741918', profile: { name: 'Bea', username: 'bea.k' } }, { wa_id: '4915199999999', profile: { name: 'Someone else' } }],
        calls: [call],
      }))))));
      const e = got[0];
      assert.ok(e?.kind === 'offered');
      assert.equal(e.from, 'US.13491208655302741918');
      assert.deepEqual(e.user, { number: null, userId: 'US.13491208655302741918', profileName: 'Bea', username: 'bea.k' });
    });

    it('a permission reply, a voicemail and other messages: each its own delivery', () => {
      const raw = body(envelope(entry('w', {
        field: 'messages',
        value: {
          messaging_product: 'whatsapp', metadata: METADATA,
          contacts: [{ wa_id: '4915112345678', profile: { name: 'Ana' } }],
          messages: [
            { id: 'wamid.P1', from: '4915112345678', timestamp: '1760000300', type: 'interactive', interactive: { type: 'call_permission_reply', call_permission_reply: { response: 'accept', is_permanent: false, expiration_timestamp: '1760604800', response_source: 'user_action' } } },
            { id: 'wacid.V1', from: '4915112345678', timestamp: '1760000400', type: 'audio', audio: { id: 'media-9', mime_type: 'audio/ogg', sha256: 'abc' } },
            { id: 'wamid.T1', from: '4915112345678', timestamp: '1760000500', type: 'text', text: { body: 'hello' } },
          ],
          statuses: [{ id: 'wamid.S1', status: 'delivered', timestamp: '1760000600', recipient_id: '4915112345678' }],
        },
      })));
      const { deliveries } = ok(source.parse(raw));
      assert.deepEqual(deliveries.map((d) => [d.id, d.type]), [
        ['meta:wamid.S1:DELIVERED', 'statuses.message'], ['meta:wamid.P1', 'messages.interactive'], ['meta:wacid.V1', 'messages.voicemail'], ['meta:wamid.T1', 'messages.text'],
      ]);
      assert.equal(deliveries.shift()!.event, null, 'a message status: stored, not acted on');
      assert.deepEqual(deliveries[0]!.event, {
        kind: 'permission_reply',
        reply: {
          businessNumber: '+15550001111', customerNumber: '+4915112345678', response: 'accept', isPermanent: false, expiresAt: new Date(1760604800000),
          responseSource: 'user_action', repliedAt: new Date(1760000300000), wamid: 'wamid.P1', eventId: 'meta:wamid.P1',
        },
      });
      assert.deepEqual(deliveries[1]!.event, { kind: 'media_available', wacid: 'wacid.V1', phoneId: '1001', media: 'voicemail', mediaId: 'media-9', url: null, mimeType: 'audio/ogg', sha256: 'abc' });
      assert.equal(deliveries[2]!.event, null);
    });

    it('recordings and transcriptions (shape unconfirmed) and account notices with their severity', () => {
      const raw = body(envelope(
        entry('w', callsChange({ calls: [
          { id: 'wacid.R', event: 'call_recording_available', timestamp: '1760000700', recording: { id: 'rec-1', mime_type: 'audio/ogg', sha256: 'd1', url: 'https://lookaside.example/rec-1' } },
          { id: 'wacid.R', event: 'call_transcription_available', timestamp: '1760000701', transcription: { id: 'tr-1', mime_type: 'text/plain' } },
        ] })),
        { id: 'waba9', time: 1760000800, changes: [
          { field: 'account_update', value: { phone_number: '15550001111', event: 'ACCOUNT_RESTRICTION', restriction_info: [{ restriction_type: 'RESTRICTED_BIZ_INITIATED_CALLING' }] } },
          { field: 'account_update', value: { event: 'ACCOUNT_VIOLATION', violation_info: { violation_type: 'LOW_CALL_PICKUP_RATE' } } },
          { field: 'account_settings_update', value: { metadata: METADATA, calling: { status: 'ENABLED' } } },
        ] },
      ));
      const { deliveries } = ok(source.parse(raw));
      const [rec, tr, restriction, violation, settings] = deliveries.map((d) => d.event);
      assert.deepEqual(rec, { kind: 'media_available', wacid: 'wacid.R', phoneId: '1001', media: 'recording', mediaId: 'rec-1', url: 'https://lookaside.example/rec-1', mimeType: 'audio/ogg', sha256: 'd1' });
      assert.equal(tr?.kind === 'media_available' && tr.media, 'transcription');
      assert.deepEqual([restriction, violation, settings].map((e) => e?.kind === 'account_notice' && [e.event, e.severity, e.phoneId]), [
        ['ACCOUNT_RESTRICTION', 'restriction', null], ['ACCOUNT_VIOLATION', 'warning', null], ['settings_changed', 'info', '1001'],
      ]);
      assert.match(deliveries[2]!.id, /^meta:account_update:waba9:1760000800:[0-9a-f]{8}$/);
      assert.notEqual(deliveries[2]!.id, deliveries[3]!.id);
      // The same envelope again: the same ids (a redelivery dedupes).
      assert.deepEqual(ok(source.parse(raw)).deliveries.map((d) => d.id), deliveries.map((d) => d.id));
    });

    it(`more than ${MAX_DELIVERIES} events: the first ${MAX_DELIVERIES} delivered, the rest rejected, nothing thrown`, () => {
      const changes = Array.from({ length: 60 }, (_, i) => callsChange({ calls: [offer(`wacid.N${i}`)] }));
      const { deliveries, rejected } = ok(source.parse(body(envelope(entry('w', ...changes)))));
      assert.equal(deliveries.length, MAX_DELIVERIES);
      assert.equal(rejected.length, 10);
      assert.match(rejected[0]!.reason, /more than 50 events/);
      // Thousands of junk changes cost a bounded answer.
      const junk = ok(source.parse(body(envelope(entry('w', callsChange({ calls: [offer('wacid.ok')] }), ...Array.from({ length: 3000 }, () => 7))))));
      assert.equal(junk.deliveries.length, 1);
      assert.equal(junk.rejected.length, 51);
      assert.match(junk.rejected[50]!.reason, /2950 more rejected events left out/);
    });

    it('one valid change beside absurd ones: the valid one is delivered, each absurd one rejected with its reason', () => {
      const deep: Record<string, unknown> = {};
      let at = deep;
      for (let i = 0; i < 40; i++) at = (at.x = {}) as Record<string, unknown>;
      const raw = body(envelope(
        entry('w',
          callsChange({ calls: [offer('wacid.GOOD')] }),
          callsChange({ calls: [offer('wacid.BAD\r\nX: y')] }),
          callsChange({ calls: [offer('wacid.SDP', { session: { sdp_type: 'offer', sdp: 'v=0\u0001' } })] }),
          { field: 'calls', value: { metadata: METADATA, calls: 'not an array' } },
          { field: 'calls', value: { metadata: { phone_number_id: '1001\r\n' }, calls: [] } },
          { field: 'calls', value: deep },
          { field: 'calls', value: { metadata: METADATA, calls: [offer('wacid.NUL', { cta_payload: 'a\u0000b' })] } },
          'a string',
          callsChange({ calls: [offer('wacid.NOCALLER', { from: undefined })] })),
        { id: 'w2' },
      ));
      const { deliveries, rejected } = ok(source.parse(raw));
      assert.deepEqual(deliveries.map((d) => d.id), ['meta:wacid.GOOD:connect:1760000000']);
      assert.equal(rejected.length, 9);
      const reasons = rejected.map((r) => r.reason).join('\n');
      for (const r of [/wacid/, /control characters in the SDP/, /not an array/, /phoneId/, /nested deeper/, /NUL/, /neither from nor from_user_id/, /changes/]) assert.match(reasons, r);
    });

    it('refuses as a whole what is not an envelope, or has nothing valid', () => {
      for (const raw of [Buffer.from([0xff, 0xfe]), Buffer.from('{'), body({ object: 'page', entry: [] }), body(envelope()), body(envelope(entry('w', callsChange({ calls: [offer('bad id!')] }))))]) {
        assert.equal(source.parse(raw).ok, false, raw.toString());
      }
    });

    it('decodeStored reads nothing out of a payload that is not a stored Meta event', () => {
      for (const p of [null, 'x', { provider: 'ycloud' }, { id: 'evt', type: 'whatsapp.call.connect' }]) assert.equal(source.decodeStored(p), null);
    });
  });
});
