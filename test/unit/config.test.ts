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
