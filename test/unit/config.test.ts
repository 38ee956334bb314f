import assert from 'node:assert/strict';
import { ConfigError, loadConfig } from '../../src/config';

const good = {
  DATABASE_URL: 'postgres://u@h/db',
  YCLOUD_API_KEY: 'k',
  YCLOUD_WEBHOOK_SECRET: 's',
  DRACHTIO_SECRET: 'cymru',
  RTPENGINE_NG: '127.0.0.1:22222, 10.0.0.2:22222',
  PBX_TARGET: 'sip:pbx.example.com:5060',
  PUBLIC_IP: '203.0.113.7',
};

describe('configuration', () => {
  it('reads a complete environment with defaults', () => {
    const c = loadConfig(good);
    assert.equal(c.httpPort, 3000);
    assert.equal(c.ycloud.apiBaseUrl, 'https://api.ycloud.com/v2');
    assert.equal(c.drachtio.port, 9022);
    assert.deepEqual(c.rtpengine.ng, [{ host: '127.0.0.1', port: 22222 }, { host: '10.0.0.2', port: 22222 }]);
    assert.deepEqual(c.pbx.targets, ['sip:pbx.example.com:5060']);
    assert.deepEqual(c.pbx.codecs, ['PCMU', 'PCMA']);
    assert.ok(c.pbx.noAnswerTimeoutMs < 30000, 'gives up inside WhatsApp\'s accept window');
    assert.equal(c.publicIp, '203.0.113.7');
    assert.deepEqual(c.rtpengine.interfaces, { whatsapp: 'wa', pbx: 'pbx' });
    assert.equal(c.pbx.auth, null);
    assert.equal(c.pbx.srtp, 'off');
    assert.equal(c.shutdown.drainMs, 30000);
  });

  it('refuses a WhatsApp-side address WhatsApp cannot reach, and says what to set', () => {
    for (const ip of ['127.0.0.1', '10.1.2.3', '172.20.0.5', '192.168.1.10', '100.64.0.1', '169.254.1.1', '::1', 'fd00::5', 'fe80::1']) {
      assert.throws(() => loadConfig({ ...good, PUBLIC_IP: ip }), (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.match(err.problems.join('\n'), /PUBLIC_IP is .*ALLOW_PRIVATE_PUBLIC_IP=true/);
        return true;
      }, ip);
    }
    assert.equal(loadConfig({ ...good, PUBLIC_IP: '10.1.2.3', ALLOW_PRIVATE_PUBLIC_IP: 'true' }).publicIp, '10.1.2.3');
    assert.equal(loadConfig({ ...good, PUBLIC_IP: '2001:db8::7' }).publicIp, '2001:db8::7');
    const { PUBLIC_IP: _omitted, ...withoutPublic } = good;
    assert.throws(() => loadConfig(withoutPublic), /PUBLIC_IP is required/);
  });

  it('takes PBX credentials and SRTP only in pairs and known modes', () => {
    const c = loadConfig({ ...good, PBX_AUTH_USERNAME: 'wa-bridge', PBX_AUTH_PASSWORD: 'pw', PBX_SRTP: 'sdes' });
    assert.deepEqual(c.pbx.auth, { username: 'wa-bridge', password: 'pw' });
    assert.equal(c.pbx.srtp, 'sdes');
    assert.throws(() => loadConfig({ ...good, PBX_AUTH_USERNAME: 'wa-bridge' }), /PBX_AUTH_USERNAME and PBX_AUTH_PASSWORD/);
    assert.throws(() => loadConfig({ ...good, PBX_SRTP: 'dtls' }), /PBX_SRTP/);
    assert.throws(() => loadConfig({ ...good, RTPENGINE_WA_INTERFACE: 'wa side' }), /RTPENGINE_WA_INTERFACE/);
  });

  it('refuses SIP_TRUSTED_SOURCES that trust (nearly) everyone, and says why', () => {
    for (const broad of ['0.0.0.0/0', '::/0', '10.0.0.0/7', '1.0.0.0/1', '2000::/3', '::ffff:0.0.0.0/96', '127.0.0.0/8,0.0.0.0/0']) {
      assert.throws(() => loadConfig({ ...good, SIP_TRUSTED_SOURCES: broad }), (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.match(err.problems.join('\n'), /SIP_TRUSTED_SOURCES entry ".*" trusts too much/);
        return true;
      }, broad);
    }
    for (const fine of ['10.0.0.0/8', '192.0.2.7', '2001:db8::/32', '::ffff:10.0.0.0/104']) {
      assert.deepEqual(loadConfig({ ...good, SIP_TRUSTED_SOURCES: fine }).outbound.trustedSources, [fine]);
    }
  });

  it('refuses an API token shorter than 16 characters', () => {
    assert.throws(() => loadConfig({ ...good, ADMIN_API_TOKEN: 'x' }), /ADMIN_API_TOKEN .* at least 16 characters/);
    assert.throws(() => loadConfig({ ...good, ADMIN_API_TOKEN: '0123456789abcde' }), /at least 16 characters/);
    assert.equal(loadConfig({ ...good, ADMIN_API_TOKEN: '0123456789abcdef' }).admin.token, '0123456789abcdef');
  });

  it('has INVITE flood limits by default, and takes them from the environment', () => {
    assert.deepEqual(loadConfig(good).outbound.limits, { perSource: { ratePerS: 50, burst: 100 }, global: { ratePerS: 100, burst: 200 }, maxCallsInProgress: 500 });
    const c = loadConfig({ ...good, SIP_INVITE_RATE_PER_SOURCE: '2', SIP_INVITE_BURST_PER_SOURCE: '4', SIP_INVITE_RATE: '5', SIP_INVITE_BURST: '9', MAX_CALLS_IN_PROGRESS: '3' });
    assert.deepEqual(c.outbound.limits, { perSource: { ratePerS: 2, burst: 4 }, global: { ratePerS: 5, burst: 9 }, maxCallsInProgress: 3 });
    assert.throws(() => loadConfig({ ...good, MAX_CALLS_IN_PROGRESS: '0' }), /MAX_CALLS_IN_PROGRESS/);
  });

  it('names every missing or invalid key in one error', () => {
    try {
      loadConfig({ HTTP_PORT: 'eighty', RTPENGINE_NG: 'nohostport', PBX_TARGET: 'http://x', PBX_CODECS: 'PCMU,opus' });
      assert.fail('should have thrown');
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      const text = err.problems.join('\n');
      for (const key of ['PUBLIC_IP', 'DATABASE_URL', 'YCLOUD_API_KEY', 'YCLOUD_WEBHOOK_SECRET', 'DRACHTIO_SECRET', 'HTTP_PORT', 'RTPENGINE_NG', 'PBX_TARGET', 'PBX_CODECS']) {
        assert.match(text, new RegExp(key), `${key} is named`);
      }
    }
  });
});
