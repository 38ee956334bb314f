import assert from 'node:assert/strict';
import { normalizeE164 } from '../../src/util/numbers';
import Srf from 'drachtio-srf';
import { ConfigError, loadConfig } from '../../src/config';
import { InDialogGuard, peerAddress, RefusedInDialog } from '../../src/sip/dialog-guard';
import { parseReferTo } from '../../src/sip/refer';
import { specialRange, targetHosts, TransferPolicy, TransferPolicyOptions } from '../../src/sip/transfer-policy';
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

describe('requests inside a call (issue 17: outsiders acting in a live call)', () => {
  /** A stand-in for drachtio-srf's Dialog: records what its own handle() was given. */
  function fakeDialog(type: 'uas' | 'uac', peer: string) {
    const handled: string[] = [];
    const d = {
      type,
      req: { source_address: type === 'uas' ? peer : '10.9.9.9' },
      res: { source_address: type === 'uac' ? peer : '' },
      handle: (req: { method: string }) => void handled.push(req.method),
    };
    return { dialog: d as unknown as Srf.Dialog, handled };
  }
  function request(method: string, source: string, from: 'network' | 'application' = 'network') {
    const sent: number[] = [];
    const req = { method, source_address: source, source: from } as unknown as Srf.SrfRequest;
    const res = { send: (status: number) => void sent.push(status) } as unknown as Srf.SrfResponse;
    return { req, res, sent };
  }
  const deliver = (dialog: Srf.Dialog, r: { req: Srf.SrfRequest; res: Srf.SrfResponse }) =>
    (dialog as unknown as { handle: (q: Srf.SrfRequest, s: Srf.SrfResponse) => void }).handle(r.req, r.res);

  it('takes BYE, re-INVITE, REFER from the dialog\'s peer and trusted sources; refuses everyone else with 403 and drops their ACK', () => {
    const refused: RefusedInDialog[] = [];
    const guard = new InDialogGuard(['10.1.0.0/16'], (r) => refused.push(r));
    for (const [type, peer] of [['uas', '192.0.2.10'], ['uac', '192.0.2.20']] as const) {
      const { dialog, handled } = fakeDialog(type, peer);
      guard.protect(dialog);
      assert.equal(peerAddress(dialog), peer);
      const outsider = ['BYE', 'INVITE', 'REFER', 'INFO', 'UPDATE'].map((m) => request(m, '198.51.100.7'));
      for (const r of outsider) deliver(dialog, r);
      const ack = request('ACK', '198.51.100.7');
      deliver(dialog, ack);
      assert.deepEqual(handled, [], `${type}: nothing from the outsider reached the dialog`);
      assert.deepEqual(outsider.map((r) => r.sent), [[403], [403], [403], [403], [403]]);
      assert.deepEqual(ack.sent, [], 'an ACK gets no response');
      for (const source of [peer, '10.1.3.4', `::ffff:${peer}`]) deliver(dialog, request('INFO', source));
      deliver(dialog, request('BYE', '', 'application')); // drachtio-server's own (session timer)
      assert.deepEqual(handled, ['INFO', 'INFO', 'INFO', 'BYE']);
    }
    assert.equal(refused.length, 12);
    assert.deepEqual(refused[0], { method: 'BYE', source: '198.51.100.7', peer: '192.0.2.10' });
  });
});

describe('transfer targets (issue 17: REFER to arbitrary hosts and ports)', () => {
  const policy = (o: Partial<TransferPolicyOptions> = {}) => new TransferPolicy({
    pbxHosts: ['10.0.0.5', 'pbx.example.com'],
    trusted: ['10.0.1.0/24'],
    pattern: null,
    ownAddresses: () => ['203.0.113.9'],
    ownPorts: () => [5060, 9022, 3000],
    lookup: async (host) => ({ 'pbx.example.com': ['10.0.0.5'], 'evil.example.net': ['127.0.0.1'], 'queue.example.org': ['198.51.100.44'] })[host] ?? [],
    ...o,
  });
  const verdict = async (p: TransferPolicy, uri: string) => {
    const t = parseReferTo(`<${uri}>`);
    assert.ok(t, uri);
    const v = await p.check(t);
    return v.ok ? 'ok' : v.reason;
  };

  it('allows the configured PBX (PBX_TARGET hosts, SIP_TRUSTED_SOURCES) and nothing else by default', async () => {
    const p = policy();
    assert.equal(await verdict(p, 'sip:200@10.0.0.5:5070'), 'ok');
    assert.equal(await verdict(p, 'sip:200@pbx.example.com'), 'ok');
    assert.equal(await verdict(p, 'sip:queue@10.0.1.77;transport=tcp'), 'ok');
    assert.match(await verdict(p, 'sip:200@198.51.100.44'), /not the configured PBX/);
    assert.match(await verdict(p, 'sip:200@queue.example.org'), /not the configured PBX/);
  });

  it('TRANSFER_TARGET_PATTERN applies to the whole URI (a user part alone does not match)', async () => {
    const p = policy({ pattern: new RegExp('^(?:sip:[0-9]{3}@queue\\.example\\.org)$', 'i') });
    assert.equal(await verdict(p, 'sip:300@queue.example.org'), 'ok');
    assert.match(await verdict(p, 'sip:300@198.51.100.44'), /not the configured PBX/);
    assert.match(await verdict(p, 'sip:300@queue.example.org:5080'), /not the configured PBX/);
  });

  it('never loopback, link-local, unspecified or the bridge\'s own ports, whatever the pattern; maddr refused', async () => {
    const p = policy({ pattern: /^.*$/ });
    for (const uri of ['sip:x@127.0.0.1:9022', 'sip:x@127.0.0.2', 'sip:x@169.254.169.254', 'sip:x@0.0.0.0:5080', 'sip:x@224.0.0.1', 'sip:x@evil.example.net']) {
      assert.match(await verdict(p, uri), /loopback|link-local|unspecified|multicast/, uri);
    }
    assert.match(await verdict(p, 'sip:x@203.0.113.9:3000'), /bridge's own ports/);
    assert.match(await verdict(p, 'sip:x@203.0.113.9'), /bridge's own ports/, 'port 5060 by default');
    assert.equal(await verdict(p, 'sip:x@203.0.113.9:5080'), 'ok');
    assert.match(await verdict(p, 'sip:200@10.0.0.5;maddr=127.0.0.1'), /maddr/);
    assert.match(await verdict(p, 'sip:200@nowhere.invalid'), /does not resolve/);
  });

  it('a PBX on loopback (a lab) stays a target, except on the bridge\'s own ports', async () => {
    const p = policy({ pbxHosts: ['127.0.0.1'], trusted: [], pattern: /^.*$/ });
    assert.equal(await verdict(p, 'sip:200@127.0.0.1:5070'), 'ok');
    assert.match(await verdict(p, 'sip:200@127.0.0.1:9022'), /own ports/);
    assert.match(await verdict(p, 'sip:200@127.0.0.1'), /own ports/, 'port 5060 by default');
    assert.match(await verdict(p, 'sip:200@127.0.0.2:5070'), /loopback/, 'other loopback addresses are not the PBX');
  });

  it('TRANSFER_TARGET_PATTERN is anchored to the whole URI and checked at start', () => {
    const env = {
      DATABASE_URL: 'postgres://x@127.0.0.1/x', YCLOUD_API_KEY: 'k', YCLOUD_WEBHOOK_SECRET: 's', RTPENGINE_NG: '127.0.0.1:2223',
      DRACHTIO_SECRET: 'x', PBX_TARGET: 'sip:10.0.0.5', PUBLIC_IP: '127.0.0.1', ALLOW_PRIVATE_PUBLIC_IP: 'true',
    };
    assert.equal(loadConfig(env).pbx.transferTargetPattern, null);
    const p = loadConfig({ ...env, TRANSFER_TARGET_PATTERN: 'sip:[0-9]+@queue\\.example\\.org' }).pbx.transferTargetPattern;
    assert.ok(p?.test('sip:300@QUEUE.example.org'));
    assert.ok(!p?.test('sip:300@queue.example.org.evil.net'), 'anchored at the end');
    assert.ok(!p?.test('x;sip:300@queue.example.org'), 'anchored at the start');
    assert.throws(() => loadConfig({ ...env, TRANSFER_TARGET_PATTERN: '(' }), (err: unknown) => err instanceof ConfigError && /TRANSFER_TARGET_PATTERN/.test(err.message));
  });

  it('reads PBX_TARGET hosts and classifies special addresses', () => {
    assert.deepEqual(targetHosts(['sip:10.0.0.5:5070', 'sips:agents@PBX.example.com;transport=tls']), ['10.0.0.5', 'pbx.example.com']);
    assert.equal(specialRange('::1'), 'loopback');
    assert.equal(specialRange('fe80::1'), 'link-local');
    assert.equal(specialRange('::ffff:127.0.0.1'), 'loopback');
    assert.equal(specialRange('8.8.8.8'), null);
  });
});
