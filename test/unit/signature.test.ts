import assert from 'node:assert/strict';
import { checkSignatureHeader, signWebhook, verifyWebhookSignature } from '../../src/providers/ycloud/signature';

describe('YCloud webhook signature', () => {
  const secret = 'whsec_test';
  const body = Buffer.from('{"id":"evt_1","type":"whatsapp.call.terminate"}');
  const now = 1_800_000_000;

  it('accepts the signature YCloud computes: HMAC-SHA256 of "<t>." + body', () => {
    const header = signWebhook(secret, body, now);
    assert.match(header, /^t=1800000000,s=[0-9a-f]{64}$/);
    assert.deepEqual(verifyWebhookSignature(secret, header, body, 300, now + 10), { ok: true });
  });

  it('refuses a wrong secret, an altered body, a stale or future timestamp, and junk', () => {
    const header = signWebhook(secret, body, now);
    assert.equal(verifyWebhookSignature('other', header, body, 300, now).ok, false);
    assert.equal(verifyWebhookSignature(secret, header, Buffer.from(body.toString().replace('1', '2')), 300, now).ok, false);
    assert.equal(verifyWebhookSignature(secret, header, body, 300, now + 301).ok, false);
    assert.equal(verifyWebhookSignature(secret, header, body, 300, now - 301).ok, false);
    assert.equal(verifyWebhookSignature(secret, undefined, body, 300, now).ok, false);
    assert.equal(verifyWebhookSignature(secret, 't=1,s=abc', body, 300, now).ok, false);
    assert.equal(verifyWebhookSignature(secret, 'garbage', body, 300, now).ok, false);
  });

  it('checks the header alone (before any body is read): present, well formed, short, fresh', () => {
    const header = signWebhook(secret, body, now);
    const h = checkSignatureHeader(header, 300, now + 10);
    assert.ok(h.ok);
    assert.equal(h.t, now);
    assert.equal(h.s.length, 32);
    assert.deepEqual(checkSignatureHeader(undefined, 300, now), { ok: false, reason: 'missing YCloud-Signature header' });
    assert.equal(checkSignatureHeader('t=abc,s=zz', 300, now).ok, false);
    assert.equal(checkSignatureHeader(`${header},${'x'.repeat(500)}`, 300, now).ok, false, 'an over-long header is not split');
    const stale = checkSignatureHeader(header, 300, now + 301);
    assert.ok(!stale.ok && stale.stale);
  });
});
