import assert from 'node:assert/strict';
import { InviteRateLimiter } from '../../src/sip/invite-limits';
import { dialledNumber, outboundGuardWarning } from '../../src/sip/outbound-invites';
import { unsafeInviteField } from '../../src/sip/pbx-leg';

describe('INVITE rate limits', () => {
  let clock = 0;
  const limiter = (maxSources?: number) => new InviteRateLimiter({ perSource: { ratePerS: 2, burst: 3 }, global: { ratePerS: 5, burst: 6 }, maxSources }, () => clock);
  beforeEach(() => {
    clock = 1_000_000;
  });

  it('lets a source burst, then holds it to its rate, with a Retry-After in whole seconds', () => {
    const l = limiter();
    for (let i = 0; i < 3; i++) assert.deepEqual(l.take('10.0.0.1'), { ok: true });
    assert.deepEqual(l.take('10.0.0.1'), { ok: false, limit: 'source', retryAfterS: 1 });
    clock += 500; // one token back at 2/s
    assert.deepEqual(l.take('10.0.0.1'), { ok: true });
    assert.equal(l.take('10.0.0.1').ok, false);
  });

  it('a flooding source does not use up another source\'s budget, but the overall limit holds for all', () => {
    const l = limiter();
    for (let i = 0; i < 10; i++) l.take('10.0.0.1');
    assert.deepEqual(l.take('10.0.0.2'), { ok: true }, 'refused INVITEs take no overall tokens');
    for (const s of ['10.0.0.3', '10.0.0.4', '10.0.0.5']) l.take(s);
    const refused = l.take('10.0.0.6');
    assert.equal(refused.ok, false);
    assert.equal(!refused.ok && refused.limit, 'global');
  });

  it('keeps at most maxSources buckets, forgetting the least recently used', () => {
    const l = limiter(2);
    l.take('10.0.0.1');
    l.take('10.0.0.1');
    l.take('10.0.0.1');
    l.take('10.0.0.2');
    l.take('10.0.0.1'); // refused, but most recently used now
    l.take('10.0.0.3');
    assert.equal(l.tracked, 2);
    assert.equal(l.take('10.0.0.1').ok, false, '10.0.0.1 was kept (it is still out of tokens)');
  });
});

describe('SIP input from outside', () => {
  it('reads the dialled number, and refuses a malformed %-escape instead of throwing', () => {
    assert.equal(dialledNumber('sip:%2B6281361905133@10.0.0.1'), '+6281361905133');
    assert.equal(dialledNumber('tel:+6281361905133;phone-context=x'), '+6281361905133');
    assert.equal(dialledNumber('sip:%E0%A4%A@10.0.0.1'), null);
    assert.equal(dialledNumber('sip:10.0.0.1'), '');
  });

  it('sends no INVITE whose From or headers carry anything but a number and plain values', () => {
    const ok = { fromNumber: '+6281361905133', fromHost: 'pbx.example.com', headers: { 'X-WhatsApp-Call-Id': 'wacid.HBgN' } };
    assert.equal(unsafeInviteField(ok), null);
    assert.match(unsafeInviteField({ ...ok, fromNumber: '+62813>;tag=x' }) ?? '', /not E\.164/);
    assert.match(unsafeInviteField({ ...ok, fromNumber: '"Evil" <sip:1@x>' }) ?? '', /not E\.164/);
    assert.match(unsafeInviteField({ ...ok, headers: { 'X-WhatsApp-Call-Id': 'wacid.x\r\nX-Injected: 1' } }) ?? '', /unsafe "X-WhatsApp-Call-Id"/);
    assert.match(unsafeInviteField({ ...ok, headers: { 'X-WhatsApp-Phone-Id': '1\n2' } }) ?? '', /unsafe/);
    assert.match(unsafeInviteField({ ...ok, headers: { 'Bad Name': 'x' } }) ?? '', /unsafe/);
    assert.match(unsafeInviteField({ ...ok, fromHost: 'x>\r\nVia: y' }) ?? '', /From host/);
  });

  it('warns when only source addresses guard agents\' calls out', () => {
    assert.match(outboundGuardWarning({ trustedSources: ['10.0.0.0/24'], auth: null }) ?? '', /SECURITY: .*SIP_AUTH_USERNAME/);
    assert.equal(outboundGuardWarning({ trustedSources: ['10.0.0.0/24'], auth: { username: 'u', password: 'p', realm: 'r' } }), null);
    assert.equal(outboundGuardWarning({ trustedSources: [], auth: null }), null, 'no source may call out at all');
  });
});
