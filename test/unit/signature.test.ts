import assert from 'node:assert/strict';
import { signWebhook, verifyWebhookSignature } from '../../src/providers/ycloud/signature';

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
});
