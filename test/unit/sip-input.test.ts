import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';
import Srf from 'drachtio-srf';
import { loadConfig } from '../../src/config';
import { Logger } from '../../src/log';
import { assertUsableAudioSdp, MAX_SDP_MEDIA } from '../../src/media/sdp';
import { InviteRateLimiter } from '../../src/sip/invite-limits';
import { dialledNumber, maskedNumber, OutboundGate, outboundGuardWarning } from '../../src/sip/outbound-invites';
import { quotedDisplayName, unsafeInviteField } from '../../src/sip/pbx-leg';
import { parseReferTo } from '../../src/sip/refer';
import { sipEndpoints } from '../../src/sip/drachtio';
import { srfCanSend, srfStop } from '../../src/sip/srf-connection';

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
    assert.match(unsafeInviteField({ ...ok, fromNumber: '+62813>;tag=x' }) ?? '', /neither an E\.164 number nor a BSUID/);
    assert.match(unsafeInviteField({ ...ok, fromNumber: '"Evil" <sip:1@x>' }) ?? '', /neither an E\.164 number nor a BSUID/);
    assert.match(unsafeInviteField({ ...ok, headers: { 'X-WhatsApp-Call-Id': 'wacid.x\r\nX-Injected: 1' } }) ?? '', /unsafe "X-WhatsApp-Call-Id"/);
    assert.match(unsafeInviteField({ ...ok, headers: { 'X-WhatsApp-Phone-Id': '1\n2' } }) ?? '', /unsafe/);
    assert.match(unsafeInviteField({ ...ok, headers: { 'Bad Name': 'x' } }) ?? '', /unsafe/);
    assert.match(unsafeInviteField({ ...ok, fromHost: 'x>\r\nVia: y' }) ?? '', /From host/);
    // A caller known only by BSUID is a safe From user; a BSUID-like value with SIP syntax in it is not.
    assert.equal(unsafeInviteField({ ...ok, fromNumber: 'US.13491208655302741918' }), null);
    assert.equal(unsafeInviteField({ ...ok, fromNumber: 'US.ENT.11815799212886844830' }), null);
    assert.match(unsafeInviteField({ ...ok, fromNumber: 'US.1349@evil' }) ?? '', /nor a BSUID/);
  });

  it('puts a WhatsApp profile name in the From as a quoted string that cannot break out of it', () => {
    assert.equal(quotedDisplayName('Ana María'), '"Ana María"');
    assert.equal(quotedDisplayName('Evil" <sip:x@y>\r\nVia: z'), '"Evil\\" <sip:x@y>  Via: z"');
    assert.equal(quotedDisplayName('back\\slash'), '"back\\\\slash"');
    assert.equal([...quotedDisplayName('x'.repeat(200))].length, 66);
  });

  it('warns when only source addresses guard agents\' calls out', () => {
    assert.match(outboundGuardWarning({ trustedSources: ['10.0.0.0/24'], auth: null }) ?? '', /SECURITY: .*SIP_AUTH_USERNAME/);
    assert.equal(outboundGuardWarning({ trustedSources: ['10.0.0.0/24'], auth: { username: 'u', password: 'p', realm: 'r' } }), null);
    assert.equal(outboundGuardWarning({ trustedSources: [], auth: null }), null, 'no source may call out at all');
  });

  it('does not warn when only this machine may call out (every trusted source on loopback, as in the sandbox)', () => {
    for (const loopback of [['127.0.0.1'], ['127.0.0.1/32', '::1'], ['127.0.0.0/8'], ['::ffff:127.0.0.1'], ['::1/128']]) {
      assert.equal(outboundGuardWarning({ trustedSources: loopback, auth: null }), null, loopback.join(','));
    }
    // One address off this machine, or a prefix wider than loopback's, is a network source again.
    for (const mixed of [['127.0.0.1', '10.0.0.10'], ['127.0.0.0/7'], ['::1/64'], ['::2']]) {
      assert.match(outboundGuardWarning({ trustedSources: mixed, auth: null }) ?? '', /SECURITY/, mixed.join(','));
    }
  });
});

describe('untrusted INVITEs (issue 17: refusals logged unthrottled, with the dialled number)', () => {
  const config = loadConfig({
    DATABASE_URL: 'postgres://x@127.0.0.1/x', YCLOUD_API_KEY: 'k', YCLOUD_WEBHOOK_SECRET: 's', RTPENGINE_NG: '127.0.0.1:2223',
    DRACHTIO_SECRET: 'x', PBX_TARGET: 'sip:127.0.0.1:5080', PUBLIC_IP: '127.0.0.1', ALLOW_PRIVATE_PUBLIC_IP: 'true', SIP_TRUSTED_SOURCES: '10.0.0.2',
  });

  it('masks the dialled number to its last 4 digits', () => {
    assert.equal(maskedNumber('sip:+6281361905133@10.0.0.1'), '***5133');
    assert.equal(maskedNumber('tel:+62%20813-6190-5133'), '***5133');
    assert.equal(maskedNumber('sip:123@10.0.0.1'), '***');
    assert.equal(maskedNumber('sip:10.0.0.1'), null);
  });

  it('refuses untrusted sources with 403 and logs at most 20 lines per 10 s, none with the number', () => {
    const lines: Array<Record<string, unknown>> = [];
    const log = { warn: (f: Record<string, unknown>) => void lines.push(f), error: () => undefined } as unknown as Logger;
    const gate = new OutboundGate(config.outbound, log);
    const sent: number[] = [];
    const res = { send: (status: number) => void sent.push(status) } as unknown as Srf.SrfResponse;
    const invite = (source: string) => ({
      source_address: source, uri: 'sip:+6281361905133@127.0.0.1', getParsedHeader: () => ({ uri: 'sip:agent7@x' }), get: () => '',
    }) as unknown as Srf.SrfRequest;
    let admitted = 0;
    for (let i = 0; i < 1000; i++) if (gate.fromTrustedSource(invite(`127.0.${1 + (i % 49)}.1`), res)) admitted++;
    assert.equal(admitted, 0);
    assert.equal(sent.length, 1000);
    assert.ok(sent.every((x) => x === 403));
    assert.equal(lines.length, 20, 'a flood from 49 addresses is 20 log lines');
    assert.ok(!JSON.stringify(lines).includes('6281361905133'), 'no dialled number in the lines');
    assert.equal(lines[0]!.dialled, '***5133');
    assert.equal(gate.fromTrustedSource(invite('10.0.0.2'), res), true, 'the PBX passes');
  });
});

describe('SDP from the PBX (issue 17: no stream cap)', () => {
  const head = ['v=0', 'o=pbx 1 1 IN IP4 10.0.0.5', 's=-', 'c=IN IP4 10.0.0.5', 't=0 0'];
  const sdp = (n: number, kind = 'audio') => [...head, ...Array.from({ length: n }, (_, i) => `m=${i === 0 ? 'audio' : kind} ${4000 + 2 * i} RTP/AVP 0`), ''].join('\r\n');

  it('refuses more than MAX_SDP_MEDIA media sections or more than 2 audio ones, before rtpengine sees them', () => {
    assert.doesNotThrow(() => assertUsableAudioSdp(sdp(1)));
    assert.doesNotThrow(() => assertUsableAudioSdp(sdp(MAX_SDP_MEDIA, 'video')));
    assert.throws(() => assertUsableAudioSdp(sdp(100)), /100 media sections; at most 4/);
    assert.throws(() => assertUsableAudioSdp(sdp(MAX_SDP_MEDIA + 1, 'video')), /5 media sections/);
    assert.throws(() => assertUsableAudioSdp(sdp(3)), /3 audio sections; at most 2/);
  });
});

describe('Refer-To and drachtio-server\'s hello', () => {
  it('parses the target\'s parts and refuses what would break or redirect the new INVITE', () => {
    const t = parseReferTo('<sips:200@PBX.example.com:5071;transport=tls>');
    assert.deepEqual(t && { scheme: t.scheme, host: t.host, port: t.port, params: t.params }, { scheme: 'sips', host: 'pbx.example.com', port: 5071, params: ';transport=tls' });
    for (const bad of ['<sip:%E0%A4%A@10.0.0.5>', '<sip:a%0D%0AVia:x@10.0.0.5>', '<sip:200@10.0.0.5:99999>', '<sip:200@10.0.0.5:5060x>', '<sip:200@[::1]>']) {
      assert.equal(parseReferTo(bad), null, bad);
    }
  });

  it('reads drachtio-server\'s SIP sockets from its hello', () => {
    assert.deepEqual(sipEndpoints('udp/127.0.0.1:5060,tcp/127.0.0.1:5061'), [{ address: '127.0.0.1', port: 5060 }, { address: '127.0.0.1', port: 5061 }]);
    assert.deepEqual(sipEndpoints(undefined), []);
  });
});

/**
 * Just enough of drachtio-server's admin protocol ("<length>#<id>|<type>|...") for drachtio-srf to
 * connect: every `authenticate` is accepted. Counts the connections it took.
 */
class FakeDrachtio {
  private server: net.Server | null = null;
  readonly sockets = new Set<net.Socket>();
  accepted = 0;

  async listen(port = 0): Promise<number> {
    this.server = net.createServer((socket) => {
      this.accepted++;
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.on('error', () => undefined);
      let buf = '';
      socket.on('data', (d) => {
        buf += d.toString();
        for (let i = buf.indexOf('#'); i > 0; i = buf.indexOf('#')) {
          const n = Number(buf.slice(0, i));
          if (buf.length < i + 1 + n) return;
          const [id, type] = buf.slice(i + 1, i + 1 + n).split('|');
          buf = buf.slice(i + 1 + n);
          const reply = `${id}|response|${id}|OK|udp/127.0.0.1:5060|v0.9.10`;
          if (type === 'authenticate') socket.write(`${Buffer.byteLength(reply)}#${reply}`);
        }
      });
    });
    this.server.listen(port, '127.0.0.1');
    await once(this.server, 'listening');
    return (this.server.address() as net.AddressInfo).port;
  }

  /** Drops every connection and stops listening (drachtio-server stopped). */
  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((resolve) => this.server?.close(resolve));
  }
}

function srfOn(port: number): Srf {
  const srf = new Srf();
  srf.on('error', () => undefined); // connection refused while nothing listens: srf retries
  srf.connect({ host: '127.0.0.1', port, secret: 's', reconnect: { retryMaxDelay: 50 } } as Parameters<Srf['connect']>[0]);
  return srf;
}

describe('drachtio-srf\'s connection (src/sip/srf-connection.ts)', () => {
  const srfs: Srf[] = [];
  const servers: FakeDrachtio[] = [];
  afterEach(async () => {
    for (const srf of srfs.splice(0)) srfStop(srf);
    for (const s of servers.splice(0)) await s.close();
  });

  it('can send only while it has an authenticated connection, whatever its events said', async () => {
    const server = new FakeDrachtio();
    servers.push(server);
    const port = await server.listen();
    const srf = new Srf();
    assert.equal(srfCanSend(srf), false, 'never connected');
    srfs.push(srfOn(port));
    const connected = srfs[0]!;
    await once(connected as unknown as NodeJS.EventEmitter, 'connect');
    assert.equal(srfCanSend(connected), true);
    const closed = once(connected as unknown as NodeJS.EventEmitter, 'close');
    for (const s of server.sockets) s.destroy();
    await closed;
    assert.equal(srfCanSend(connected), false, 'drachtio-server gone: nothing to send on');
  });

  it('a stopped Srf stops reconnecting even while drachtio-server is away (Srf#disconnect alone does not)', async () => {
    // A port nothing listens on yet: both Srfs retry every 50 ms.
    const probe = new FakeDrachtio();
    const port = await probe.listen();
    await probe.close();
    const stopped = srfOn(port);
    const control = srfOn(port);
    srfs.push(stopped, control);
    await new Promise((resolve) => (stopped as unknown as NodeJS.EventEmitter).once('reconnecting', resolve));
    assert.throws(() => stopped.disconnect(), 'drachtio-srf\'s own disconnect() throws with no socket (and keeps retrying)');
    srfStop(stopped);
    const server = new FakeDrachtio();
    servers.push(server);
    await server.listen(port);
    await new Promise((resolve) => (control as unknown as NodeJS.EventEmitter).once('connect', resolve));
    // The stopped one would have come back within a retry delay (50 ms): give it ten.
    await delay(500);
    assert.equal(server.accepted, 1, 'only the Srf still running connected');
    assert.equal(srfCanSend(stopped), false);
  });
});
