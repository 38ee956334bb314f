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

  it('refuses a valid signature with one late hex digit changed: every byte is compared, not a prefix', () => {
    const header = signWebhook(secret, body, now);
    const hex = header.slice(header.indexOf('s=') + 2);
    assert.deepEqual(verifyWebhookSignature(secret, header, body, 300, now), { ok: true });
    // A hex digit flipped to another one: same length, same first byte, one nibble apart.
    const flip = (i: number) => `t=${now},s=${hex.slice(0, i)}${hex[i] === '0' ? '1' : '0'}${hex.slice(i + 1)}`;
    for (const i of [63, 62, 32, 33, 2, 1]) {
      const forged = flip(i);
      assert.equal(forged.length, header.length);
      assert.deepEqual(verifyWebhookSignature(secret, forged, body, 300, now), { ok: false, reason: 'signature mismatch' }, `digit ${i} changed`);
    }
    // The first byte kept, all the rest another HMAC's: refused.
    const other = signWebhook('other', body, now);
    const otherHex = other.slice(other.indexOf('s=') + 2);
    const sameFirstByte = `t=${now},s=${hex.slice(0, 2)}${otherHex.slice(2)}`;
    assert.deepEqual(verifyWebhookSignature(secret, sameFirstByte, body, 300, now), { ok: false, reason: 'signature mismatch' });
    // Upper-case hex of the valid signature is the same bytes: accepted.
    assert.deepEqual(verifyWebhookSignature(secret, `t=${now},s=${hex.toUpperCase()}`, body, 300, now), { ok: true });
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
