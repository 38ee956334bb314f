import assert from 'node:assert/strict';
import { createLogger } from '../src/log';
import { startLocalServices } from '../src/sandbox/local-services';
import { infraEnv } from './harness/bridge';

/**
 * The sandbox with a drachtio-server it did not start (docker compose's sandbox profile runs
 * sandbox-drachtio): the SIP address it names for agents' calls is that server's SIP address when it is
 * given, never DRACHTIO_PORT, which is the admin port (the compose banner once named it).
 */
describe('sandbox local services with a running drachtio-server', () => {
  const log = createLogger(process.env.LOG_LEVEL ?? 'silent');

  it('names the SIP address docker compose passes (SANDBOX_SIP_ADDRESS, SANDBOX_SIP_PORT), and none without it', async () => {
    // DRACHTIO_HOST and RTPENGINE_NG set: nothing is started but the database's preparation.
    const base: Record<string, string> = { ...infraEnv(), DRACHTIO_HOST: '127.0.0.1', DRACHTIO_PORT: '9023' };
    const given = await startLocalServices({ ...base, SANDBOX_SIP_ADDRESS: '127.0.0.1', SANDBOX_SIP_PORT: '5071' }, log);
    try {
      assert.equal(given.sipUri, 'sip:127.0.0.1:5071');
      assert.deepEqual(given.env, { DATABASE_URL: base.DATABASE_URL }, 'nothing started');
    } finally {
      await given.stop();
    }
    const unknown = await startLocalServices(base, log);
    try {
      assert.equal(unknown.sipUri, null, 'not known: the banner says so rather than naming the admin port');
    } finally {
      await unknown.stop();
    }
  });
});
