import assert from 'node:assert/strict';
import { ConfigError, loadConfig } from '../../src/config';

const good = {
  DATABASE_URL: 'postgres://u@h/db',
  YCLOUD_API_KEY: 'k',
  YCLOUD_WEBHOOK_SECRET: 's',
  DRACHTIO_SECRET: 'cymru',
  RTPENGINE_NG: '127.0.0.1:22222, 10.0.0.2:22222',
  PBX_TARGET: 'sip:pbx.example.com:5060',
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
  });

  it('names every missing or invalid key in one error', () => {
    try {
      loadConfig({ HTTP_PORT: 'eighty', RTPENGINE_NG: 'nohostport', PBX_TARGET: 'http://x', PBX_CODECS: 'PCMU,opus' });
      assert.fail('should have thrown');
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      const text = err.problems.join('\n');
      for (const key of ['DATABASE_URL', 'YCLOUD_API_KEY', 'YCLOUD_WEBHOOK_SECRET', 'DRACHTIO_SECRET', 'HTTP_PORT', 'RTPENGINE_NG', 'PBX_TARGET', 'PBX_CODECS']) {
        assert.match(text, new RegExp(key), `${key} is named`);
      }
    }
  });
});
