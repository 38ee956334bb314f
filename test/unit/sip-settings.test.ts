import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import http from 'node:http';
import { AddressInfo } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { validateSettingsChange } from '../../src/calls/calling-settings';
import { MetaClient } from '../../src/providers/meta/client';
import { YCloudClient } from '../../src/providers/ycloud/client';
import { DEFAULT_LINE, ProviderSim } from '../harness/ycloud-sim';

const TOKEN = 'meta-sip-settings-token';
const CLI = path.join(__dirname, '..', '..', 'src', 'cli', 'calling-settings.js');
const run = promisify(execFile);

/** The settings the bridge needs to load its configuration, with its one number on `sim`'s Meta face (nothing else is contacted). */
function cliEnv(sim: ProviderSim): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '',
    PUBLIC_IP: '127.0.0.1', ALLOW_PRIVATE_PUBLIC_IP: 'true', DRACHTIO_SECRET: 'unused', RTPENGINE_NG: '127.0.0.1:9',
    DATABASE_URL: 'postgres://unused@127.0.0.1:9/unused', PBX_TARGET: 'sip:127.0.0.1:9',
    WA_PROVIDER: 'meta', META_API_BASE_URL: sim.baseUrl, META_ACCESS_TOKEN: TOKEN, META_APP_SECRET: 'unused', META_VERIFY_TOKEN: 'unused',
    WA_BUSINESS_NUMBER: DEFAULT_LINE.number, WA_PHONE_ID: DEFAULT_LINE.phoneId, WA_WABA_ID: DEFAULT_LINE.wabaId,
  };
}

describe('issue 20: the settings command and Meta\'s SIP mode', () => {
  describe('a SIP change is checked before anything is sent', () => {
    it('takes a whole SIP server with its options', () => {
      assert.deepEqual(validateSettingsChange({ sip: { status: 'ENABLED', hostname: 'sip.bridge.test', port: 5061, srtpKeyExchange: 'SDES', g711: true, webhookDelivery: 'ENABLED' } }), []);
      assert.deepEqual(validateSettingsChange({ sip: { status: 'DISABLED' } }), []);
    });

    it('names each wrong part', () => {
      const problems = validateSettingsChange({ sip: { status: 'ON', hostname: 'not a host', port: 70000, srtpKeyExchange: 'ZRTP', g711: 'yes', webhookDelivery: 'SOMETIMES', proxy: 'x' } });
      for (const p of [/unknown SIP setting "sip.proxy"/, /sip.status must be one of ENABLED, DISABLED/, /sip.hostname must be a host name/, /sip.port must be a port number/,
        /sip.srtpKeyExchange must be one of DTLS, SDES/, /sip.g711 must be true or false/, /sip.webhookDelivery must be one of ENABLED, DISABLED/]) {
        assert.ok(problems.some((x) => p.test(x)), `${p} in ${problems.join('; ')}`);
      }
      assert.deepEqual(validateSettingsChange({ sip: { port: 5061 } }), ['sip.port needs sip.hostname: Meta\'s SIP server is set as a whole']);
      assert.deepEqual(validateSettingsChange({ sip: {} }), ['sip: nothing to change']);
      assert.deepEqual(validateSettingsChange({ sip: 'ENABLED' }), ['sip must be an object']);
    });
  });

  describe('the adapters', () => {
    let sim: ProviderSim;
    beforeEach(async () => {
      sim = new ProviderSim({ face: 'meta', apiKey: TOKEN, secret: 'unused' });
      await sim.start();
    });
    afterEach(() => sim.stop());

    it('Meta: written in Graph\'s shape, stored by the simulator, and the password read with include_sip_credentials', async () => {
      const meta = new MetaClient({ baseUrl: sim.baseUrl, accessToken: TOKEN, authHeader: 'Authorization', timeoutMs: 2000 });
      const line = { number: DEFAULT_LINE.number, phoneId: DEFAULT_LINE.phoneId, wabaId: DEFAULT_LINE.wabaId };
      await meta.updateCallingSettings(line, { sip: { status: 'ENABLED', hostname: 'sip.bridge.test', srtpKeyExchange: 'SDES', g711: true, webhookDelivery: 'ENABLED' } });
      const stored = sim.settings.get(DEFAULT_LINE.phoneId)?.calling as Record<string, unknown>;
      assert.deepEqual(stored.sip, { status: 'ENABLED', servers: [{ hostname: 'sip.bridge.test', port: 5061 }], webhook_delivery: 'ENABLED' });
      assert.equal(stored.srtp_key_exchange_protocol, 'SDES');
      assert.deepEqual(stored.audio, { additional_codecs: ['PCMA', 'PCMU'] });
      // A plain read never shows the password.
      assert.doesNotMatch(JSON.stringify(await meta.getCallingSettings(line)), /password/);
      sim.sipPasswords.set(DEFAULT_LINE.phoneId, 'meta-given-secret');
      assert.deepEqual(await meta.sipSettings(line), {
        status: 'ENABLED', server: { hostname: 'sip.bridge.test', port: 5061 }, password: 'meta-given-secret', srtpKeyExchange: 'SDES',
      });
      // Disabling SIP keeps the server; G.711 off sends an empty list.
      await meta.updateCallingSettings(line, { sip: { status: 'DISABLED', g711: false } });
      const after = sim.settings.get(DEFAULT_LINE.phoneId)?.calling as Record<string, unknown>;
      assert.deepEqual(after.sip, { status: 'DISABLED', servers: [{ hostname: 'sip.bridge.test', port: 5061 }], webhook_delivery: 'ENABLED' });
      assert.deepEqual(after.audio, { additional_codecs: [] });
    });

    it('Meta: a password named `password` is read too, and none is null', async () => {
      let answer: unknown = { calling: { sip: { status: 'ENABLED', servers: [{ hostname: 'sip.bridge.test', port: 5062, password: 'older-name' }] } } };
      const paths: string[] = [];
      const server = http.createServer((req, res) => {
        paths.push(req.url ?? '');
        res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(answer));
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      try {
        const meta = new MetaClient({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v23.0`, accessToken: TOKEN, authHeader: 'Authorization', timeoutMs: 2000 });
        const line = { number: DEFAULT_LINE.number, phoneId: '1001', wabaId: null };
        assert.equal(await meta.sipPassword(line), 'older-name');
        assert.deepEqual(paths, ['/v23.0/1001/settings?include_sip_credentials=true']);
        answer = { calling: { status: 'ENABLED' } };
        assert.deepEqual(await meta.sipSettings(line), { status: null, server: null, password: null, srtpKeyExchange: null });
      } finally {
        server.closeAllConnections();
        await new Promise((r) => server.close(r));
      }
    });

    it('Meta\'s simulator refuses what Meta refuses: two servers, an unknown key exchange', async () => {
      const post = (calling: unknown) => fetch(`${sim.baseUrl}/${DEFAULT_LINE.phoneId}/settings`, {
        method: 'POST', headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ calling }),
      });
      assert.equal((await post({ sip: { status: 'ENABLED', servers: [{ hostname: 'a', port: 5061 }, { hostname: 'b', port: 5061 }] } })).status, 400);
      assert.equal((await post({ srtp_key_exchange_protocol: 'ZRTP' })).status, 400);
      assert.equal((await post({ audio: { additional_codecs: ['G729'] } })).status, 400);
    });

    it('YCloud refuses a SIP change without sending it: it has no SIP mode', async () => {
      const ycloud = new YCloudClient({ baseUrl: 'http://127.0.0.1:9/v2', apiKey: 'k', timeoutMs: 500 });
      await assert.rejects(ycloud.updateCallingSettings({ number: '+14155550100', phoneId: null, wabaId: 'w' }, { sip: { status: 'ENABLED' } }),
        /YCloud has no SIP mode for \+14155550100/);
    });
  });

  describe('npm run settings, against the simulator', () => {
    let sim: ProviderSim;
    before(async () => {
      sim = new ProviderSim({ face: 'meta', apiKey: TOKEN, secret: 'unused' });
      await sim.start();
    });
    after(() => sim.stop());

    it('switches the number to SIP, then prints its SIP password and how the numbers file refers to it', async () => {
      const env = cliEnv(sim);
      const set = await run(process.execPath, [CLI, 'set', '--sip', 'enabled', '--sip-host', 'sip.bridge.test', '--sip-port', '5062',
        '--srtp', 'sdes', '--g711', 'on', '--sip-webhooks', 'ENABLED'], { env });
      const calling = (JSON.parse(set.stdout) as { calling: Record<string, unknown> }).calling;
      assert.deepEqual(calling.sip, { status: 'ENABLED', servers: [{ hostname: 'sip.bridge.test', port: 5062 }], webhook_delivery: 'ENABLED' });
      assert.equal(calling.srtp_key_exchange_protocol, 'SDES');
      assert.deepEqual(calling.audio, { additional_codecs: ['PCMA', 'PCMU'] });

      sim.sipPasswords.set(DEFAULT_LINE.phoneId, 'pw-from-meta');
      const pw = await run(process.execPath, [CLI, 'sip-password', '--phone', DEFAULT_LINE.number], { env });
      assert.equal(pw.stdout, 'pw-from-meta\n', 'stdout holds the password alone');
      assert.match(pw.stderr, /password: \{ env: META_SIP_PASSWORD_DEFAULT \}/);
      assert.match(pw.stderr, /hostname: sip\.bridge\.test, port: 5062/);
    });

    it('explains bad SIP input (exit 2), and --help exits 0', async () => {
      const env = cliEnv(sim);
      for (const [args, message] of [
        [['set', '--g711', 'maybe'], /--g711: "maybe" is not on or off/],
        [['set', '--sip-port', '5061'], /sip.port needs sip.hostname/],
        [['set', '--srtp', 'zrtp'], /sip.srtpKeyExchange must be one of DTLS, SDES/],
      ] as const) {
        await assert.rejects(run(process.execPath, [CLI, ...args], { env }), (err: { code: number; stderr: string }) => {
          assert.equal(err.code, 2, args.join(' '));
          assert.match(err.stderr, message);
          return true;
        });
      }
      const help = await run(process.execPath, [CLI, '--help'], { env });
      assert.match(help.stdout, /sip-password/);
    });
  });
});
