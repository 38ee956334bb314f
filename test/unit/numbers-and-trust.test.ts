import assert from 'node:assert/strict';
import { normalizeE164 } from '../../src/calls/permissions';
import { SourceAllowList } from '../../src/sip/trust';

describe('number normalization', () => {
  it('turns dialled forms into E.164', () => {
    assert.equal(normalizeE164('+62 813-6190-5133'), '+6281361905133');
    assert.equal(normalizeE164('006281361905133'), '+6281361905133');
    assert.equal(normalizeE164('6281361905133'), '+6281361905133');
    assert.equal(normalizeE164('tel:+14155550100'), '+14155550100');
  });
  it('refuses what is not a complete number', () => {
    for (const bad of ['12345', 'support', '+0123456789', '', '+1234567890123456']) assert.equal(normalizeE164(bad), null, bad);
  });
});

describe('trusted SIP sources', () => {
  it('allows listed addresses and subnets only', () => {
    const list = new SourceAllowList(['10.1.2.0/24', '192.0.2.7', '2001:db8::/32']);
    assert.equal(list.allows('10.1.2.99'), true);
    assert.equal(list.allows('10.1.3.1'), false);
    assert.equal(list.allows('192.0.2.7'), true);
    assert.equal(list.allows('192.0.2.8'), false);
    assert.equal(list.allows('2001:db8::5'), true);
    assert.equal(list.allows('not-an-ip'), false);
  });
  it('allows nobody when nothing is configured', () => {
    assert.equal(new SourceAllowList([]).allows('127.0.0.1'), false);
  });
});
