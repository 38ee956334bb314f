import assert from 'node:assert/strict';
import { ConfigError, loadConfig } from '../../src/config';

const good = {
  DATABASE_URL: 'postgres://u@h/db', YCLOUD_API_KEY: 'k', YCLOUD_WEBHOOK_SECRET: 's', DRACHTIO_SECRET: 'cymru',
  RTPENGINE_NG: '127.0.0.1:22222', PBX_TARGET: 'sip:pbx.example.com:5060', PUBLIC_IP: '203.0.113.7',
};

describe('data retention and log privacy settings', () => {
  it('defaults: events and quarantine 30 days, permissions 90, CDRs kept; phone numbers masked in logs', () => {
    const c = loadConfig(good);
    assert.deepEqual(c.retention, { webhookEventsDays: 30, quarantineDays: 30, cdrDays: 0, permissionsDays: 90 });
    assert.equal(c.logPhoneNumbers, 'masked');
  });

  it('reads them, 0 meaning kept for ever', () => {
    const c = loadConfig({ ...good, WEBHOOK_EVENTS_RETENTION_DAYS: '7', QUARANTINE_RETENTION_DAYS: '0', CDR_RETENTION_DAYS: '730', PERMISSIONS_RETENTION_DAYS: '365', LOG_PHONE_NUMBERS: 'full' });
    assert.deepEqual(c.retention, { webhookEventsDays: 7, quarantineDays: 0, cdrDays: 730, permissionsDays: 365 });
    assert.equal(c.logPhoneNumbers, 'full');
  });

  it('refuses bad values with a message naming the setting', () => {
    assert.throws(() => loadConfig({ ...good, CDR_RETENTION_DAYS: '-1', WEBHOOK_EVENTS_RETENTION_DAYS: 'thirty', LOG_PHONE_NUMBERS: 'partial' }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      const text = err.problems.join('\n');
      assert.match(text, /CDR_RETENTION_DAYS must be an integer/);
      assert.match(text, /WEBHOOK_EVENTS_RETENTION_DAYS must be an integer/);
      assert.match(text, /LOG_PHONE_NUMBERS must be "masked" or "full"/);
      return true;
    });
  });
});
