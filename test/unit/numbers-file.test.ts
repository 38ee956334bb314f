import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/config';
import { createLogger } from '../../src/log';
import { Numbers, NumbersFileError } from '../../src/numbers';
import { MetaSipMode } from '../../src/calls/numbers-port';
import { BusinessLine, WhatsAppProvider } from '../../src/calls/provider-port';
import { routeFields } from '../../src/calls/cdr-fields';
import { envNumbers, numberDefaults } from '../../src/numbers/env-numbers';
import { MetaClient } from '../../src/providers/meta/client';
import { loadNumbersFile } from '../../src/numbers/numbers-file';
import { NumberDefaults } from '../../src/numbers/spec';

/**
 * Issue 19, several business numbers: NUMBERS_FILE (src/numbers/numbers-file.ts) is checked whole, every
 * problem named by its place in the YAML, secrets only by reference and never repeated; the directory
 * (src/numbers/directory.ts) routes a provider's webhooks by phone id, then E.164, then its catch-all.
 */

const DEFAULTS: NumberDefaults = {
  ycloud: { apiBaseUrl: 'https://api.ycloud.com/v2', timeoutMs: 5000, webhookToleranceSeconds: 300 },
  meta: { apiBaseUrl: 'https://graph.facebook.com/v23.0', authHeader: 'Authorization', timeoutMs: 5000 },
  pbxCodecs: ['PCMU', 'PCMA'],
  pbxAuth: { username: 'bridge', password: 'pbx-default-Q7Q7Q7' },
  codecPolicy: 'transcode',
  recording: false,
};
const SECRETS = {
  YC_KEY: 'yc-key-Q7Q7Q7', YC_HOOK: 'yc-hook-Q7Q7Q7', META_TOKEN: 'meta-token-Q7Q7Q7', META_SECRET: 'meta-secret-Q7Q7Q7', DE_PBX: 'de-pbx-Q7Q7Q7',
};
const OPTS = {
  media: { interfaces: { whatsapp: 'wa', pbx: 'pbx' }, pbxSrtp: 'off' as const },
  log: createLogger('silent'),
};

let dir: string;
let verifyFile: string;

const GOOD = () => `
providers:
  ycloud-main:
    kind: ycloud
    apiKey: {env: YC_KEY}
    webhookSecret: {env: YC_HOOK}
    apiBaseUrl: http://127.0.0.1:9/v2/
  meta-eu:
    kind: meta
    accessToken: {env: META_TOKEN}
    appSecret: {env: META_SECRET}
    verifyToken: {file: ${verifyFile}}
    authHeader: D360-API-KEY
    timeoutMs: 3000
numbers:
  - name: sales
    number: "+14155550100"
    phoneId: "111111111111111"
    wabaId: 222222222222222
    provider: ycloud-main
    pbx:
      targets: [sip:10.0.0.10:5060, sip:10.0.0.11:5060]
      requestUser: "2001"
    catchAll: true
  - name: support-de
    number: +4930555000
    phoneId: 1234567890123456789
    provider: meta-eu
    pbx:
      targets: [sip:pbx.example.com:5061;transport=tls]
      codecs: [G722, PCMA]
      auth: {username: wa-bridge-de, password: {env: DE_PBX}}
    codecPolicy: prefer-g711
    recording: true
    agentDefault: true
`;

function write(name: string, text: string): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, text);
  return p;
}

/** The problems a file is refused with (it must be refused). */
function problemsOf(text: string, env: Record<string, string> = SECRETS): string[] {
  const file = write(`bad-${Math.random().toString(36).slice(2)}.yaml`, text);
  try {
    loadNumbersFile(file, DEFAULTS, env);
  } catch (err) {
    assert.ok(err instanceof NumbersFileError, String(err));
    assert.ok(err.message.includes(file), 'the error names the file');
    return err.problems;
  }
  assert.fail('the file was accepted');
}

/** GOOD with `from` replaced by `to` (which must be there). */
function goodWith(from: string, to: string): string {
  const g = GOOD();
  assert.ok(g.includes(from), from);
  return g.replace(from, to);
}

describe('several business numbers (NUMBERS_FILE, src/numbers)', () => {
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-numbers-'));
    verifyFile = path.join(dir, 'verify-token');
    fs.writeFileSync(verifyFile, 'verify-Q7Q7Q7\n');
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  describe('the file', () => {
    it('reads a good file: accounts with their secrets resolved, numbers with their routes, unset fields from the settings', () => {
      const spec = loadNumbersFile(write('good.yaml', GOOD()), DEFAULTS, SECRETS);
      assert.deepEqual(spec.accounts, [
        {
          kind: 'ycloud', name: 'ycloud-main', apiKey: 'yc-key-Q7Q7Q7', webhookSecret: 'yc-hook-Q7Q7Q7', apiBaseUrl: 'http://127.0.0.1:9/v2',
          timeoutMs: 5000, webhookToleranceSeconds: 300,
        },
        {
          kind: 'meta', name: 'meta-eu', accessToken: 'meta-token-Q7Q7Q7', appSecret: 'meta-secret-Q7Q7Q7', verifyToken: 'verify-Q7Q7Q7',
          apiBaseUrl: 'https://graph.facebook.com/v23.0', authHeader: 'D360-API-KEY', timeoutMs: 3000,
        },
      ]);
      const [sales, support] = spec.numbers;
      assert.deepEqual(sales, {
        name: 'sales', number: '+14155550100', phoneId: '111111111111111', wabaId: '222222222222222', account: 'ycloud-main',
        pbx: { targets: ['sip:10.0.0.10:5060', 'sip:10.0.0.11:5060'], requestUser: '2001', codecs: ['PCMU', 'PCMA'], auth: DEFAULTS.pbxAuth },
        codecPolicy: 'transcode', recording: false, catchAll: true, agentDefault: false, sip: null,
      });
      // An unquoted +E.164 is a YAML integer: taken as the number it spells. A 19-digit id stays exact.
      assert.equal(support!.number, '+4930555000');
      assert.equal(support!.phoneId, '1234567890123456789');
      assert.deepEqual(support!.pbx, {
        targets: ['sip:pbx.example.com:5061;transport=tls'], requestUser: null, codecs: ['G722', 'PCMA'], auth: { username: 'wa-bridge-de', password: 'de-pbx-Q7Q7Q7' },
      });
      assert.equal(support!.codecPolicy, 'prefer-g711');
      assert.equal(support!.recording, true);
      assert.equal(support!.agentDefault, true);
      assert.equal(support!.catchAll, false);
    });

    it('reads the example of docs/numbers.md', () => {
      const doc = fs.readFileSync(path.resolve(__dirname, '../../../docs/numbers.md'), 'utf8');
      const example = /```yaml\n([\s\S]*?)```/.exec(doc)![1]!.replace('/run/secrets/ycloud-main-webhook-secret', verifyFile);
      const env = { YCLOUD_MAIN_API_KEY: 'k', META_EU_ACCESS_TOKEN: 't', META_EU_APP_SECRET: 'a', META_EU_VERIFY_TOKEN: 'v' };
      const spec = loadNumbersFile(write('example.yaml', example), DEFAULTS, env);
      assert.deepEqual(spec.accounts.map((a) => [a.name, a.kind]), [['ycloud-main', 'ycloud'], ['meta-eu', 'meta']]);
      assert.deepEqual(spec.numbers.map((n) => [n.name, n.account, n.pbx.requestUser, n.agentDefault]), [
        ['sales', 'ycloud-main', '2001', true], ['support-de', 'meta-eu', '3000', false],
      ]);
    });

    it('refuses a file that is not YAML, or missing, naming where', () => {
      const [p] = problemsOf('providers:\n  a: [1,\nnumbers: x\n');
      assert.match(p!, /^line \d+, column \d+: not YAML/);
      assert.throws(() => loadNumbersFile(path.join(dir, 'nowhere.yaml'), DEFAULTS, SECRETS), /cannot read it \(ENOENT\)/);
    });

    it('names each bad field by its YAML path', () => {
      const cases: Array<[string, string, RegExp]> = [
        ['    kind: ycloud\n', '    kind: twilio\n', /^providers\.ycloud-main\.kind: kind must be "ycloud" or "meta"/],
        ['    timeoutMs: 3000\n', '    timeoutMs: 30\n', /^providers\.meta-eu\.timeoutMs: must be an integer between 100 and 60000/],
        ['    authHeader: D360-API-KEY\n', '    authHeader: "D360 key"\n', /^providers\.meta-eu\.authHeader: must be an HTTP header name/],
        ['    apiBaseUrl: http://127.0.0.1:9/v2/\n', '    apiBaseUrl: ftp://x\n', /^providers\.ycloud-main\.apiBaseUrl: must be an http\(s\) URL/],
        ['    number: "+14155550100"\n', '    number: "0415 555 0100"\n', /^numbers\[0\]\.number: must be an E\.164 number/],
        ['sip:10.0.0.11:5060]', '10.0.0.11:5060]', /^numbers\[0\]\.pbx\.targets\[1\]: is not a SIP URI/],
        ['      codecs: [G722, PCMA]\n', '      codecs: [G722, OPUS]\n', /^numbers\[1\]\.pbx\.codecs\[1\]: must be one of PCMU, PCMA, G722/],
        ['    codecPolicy: prefer-g711\n', '    codecPolicy: passthrough\n', /^numbers\[1\]\.codecPolicy: must be one of transcode, prefer-g711/],
        ['    recording: true\n', '    recording: yes\n', /^numbers\[1\]\.recording: Expected boolean/],
        ['    provider: meta-eu\n', '    provider: meta-us\n', /^numbers\[1\]\.provider: "meta-us" is not under providers \(ycloud-main, meta-eu\)/],
        ['      requestUser: "2001"\n', '      requestUser: "2001"\n      port: 5060\n', /^numbers\[0\]\.pbx: Unrecognized key\(s\) in object: 'port'/],
        ['  - name: sales\n', '  - name: "sales team"\n', /^numbers\[0\]\.name: must be 1-64 letters/],
      ];
      for (const [from, to, expected] of cases) {
        const problems = problemsOf(goodWith(from, to));
        assert.equal(problems.length, 1, `${to.trim()}: ${problems.join(' | ')}`);
        assert.match(problems[0]!, expected);
      }
      assert.deepEqual(problemsOf(GOOD().replaceAll('ycloud-main', 'YCloud_Main')), [
        'providers.YCloud_Main: a provider account\'s name must be 1-32 of a-z, 0-9 and - (it is its webhook path, /webhooks/<name>)',
      ]);
      assert.deepEqual(problemsOf('providers: {}\nnumbers: []\n'), ['providers: must name at least one provider account', 'numbers: must list at least one number']);
    });

    it('refuses duplicate names, numbers and phone ids, a second catch-all on one provider and a second agents\' default', () => {
      const dup = GOOD() + `
  - name: sales
    number: "+14155550100"
    phoneId: "111111111111111"
    provider: ycloud-main
    pbx: {targets: [sip:10.0.0.12]}
    catchAll: true
    agentDefault: true
`;
      assert.deepEqual(problemsOf(dup), [
        'numbers[2].name: "sales" is already numbers[0]\'s name',
        'numbers[2].number: "+14155550100" is already numbers[0]\'s number',
        'numbers[2].phoneId: "111111111111111" is already numbers[0]\'s phoneId',
        'numbers[2].catchAll: provider "ycloud-main" already has its catch-all number, numbers[0]',
        'numbers[2].agentDefault: numbers[1] is already the agents\' default number',
      ]);
    });

    it('lists every problem at once: bad fields beside the checks across numbers', () => {
      const text = goodWith('    number: +4930555000\n', '    number: "+14155550100"\n').replace('sip:10.0.0.10:5060', 'pbx-one');
      assert.deepEqual(problemsOf(text), [
        'numbers[0].pbx.targets[0]: is not a SIP URI, e.g. sip:10.0.0.10:5060',
        'numbers[1].number: "+14155550100" is already numbers[0]\'s number',
      ]);
    });

    it('refuses a secret written in the file, without repeating it', () => {
      const problems = problemsOf(goodWith('    apiKey: {env: YC_KEY}\n', '    apiKey: sk-live-LITERAL-Q9\n'));
      assert.deepEqual(problems, ['providers.ycloud-main.apiKey: a secret is never written in the numbers file: give a reference, {env: VARIABLE} or {file: /path/to/secret}']);
      const relative = problemsOf(goodWith(`{file: ${verifyFile}}`, '{file: secrets/verify}'));
      assert.deepEqual(relative, ['providers.meta-eu.verifyToken: file must be an absolute path']);
      const both = problemsOf(goodWith('{env: META_SECRET}', '{env: META_SECRET, value: abc}'));
      assert.deepEqual(both, ['providers.meta-eu.appSecret: must be {env: VARIABLE} or {file: /path} (got keys: env, value)']);
    });

    it('resolves secrets from the environment and from files, naming a missing one by its reference, never a value', () => {
      const { META_SECRET: _gone, ...env } = SECRETS;
      const missing = problemsOf(goodWith(`{file: ${verifyFile}}`, `{file: ${path.join(dir, 'no-such-secret')}}`), env);
      assert.deepEqual(missing, [
        'providers.meta-eu.appSecret: environment variable META_SECRET is not set (or empty)',
        `providers.meta-eu.verifyToken: cannot read secret file ${path.join(dir, 'no-such-secret')} (ENOENT)`,
      ]);
      const empty = write('empty-secret', '\n');
      assert.deepEqual(problemsOf(goodWith(`{file: ${verifyFile}}`, `{file: ${empty}}`)), [`providers.meta-eu.verifyToken: secret file ${empty} is empty`]);
      for (const p of missing) assert.doesNotMatch(p, /Q7Q7Q7/);
    });
  });

  describe('the directory', () => {
    const numbers = () => new Numbers(loadNumbersFile(write('dir.yaml', GOOD()), DEFAULTS, SECRETS), { ...OPTS, reread: null });

    it('routes a provider\'s webhook by phone id, then by E.164, then to its catch-all; else null', () => {
      const n = numbers();
      assert.equal(n.forWebhook('ycloud-main', '111111111111111', null)?.name, 'sales');
      assert.equal(n.forWebhook('meta-eu', '1234567890123456789', '+4930555000')?.name, 'support-de');
      assert.equal(n.forWebhook('meta-eu', '999', '+4930555000')?.name, 'support-de', 'by E.164 when the phone id is unknown');
      assert.equal(n.forWebhook('ycloud-main', '999', '+19999999999')?.name, 'sales', 'ycloud-main\'s catch-all');
      assert.equal(n.forWebhook('meta-eu', '999', '+19999999999'), null, 'meta-eu has no catch-all');
      assert.equal(n.forWebhook('meta-eu', '111111111111111', '+14155550100'), null, 'a phone id or number is looked up on its own provider only');
      assert.equal(n.forWebhook('nobody', '111111111111111', null), null);
    });

    it('finds numbers by E.164 on any provider, the agents\' default, and every webhook source by account name', () => {
      const n = numbers();
      assert.equal(n.byNumber('+4930555000')?.providerName, 'meta-eu');
      assert.equal(n.byNumber('+4930555001'), null);
      assert.equal(n.agentDefault()?.name, 'support-de');
      assert.deepEqual(n.all().map((r) => [r.name, r.providerName, r.providerKind, r.line.phoneId, r.pbx.requestUser]), [
        ['sales', 'ycloud-main', 'ycloud', '111111111111111', '2001'],
        ['support-de', 'meta-eu', 'meta', '1234567890123456789', null],
      ]);
      assert.deepEqual([...n.sources().keys()].sort(), ['meta-eu', 'ycloud-main']);
      assert.deepEqual(n.pbxTargets(), ['sip:10.0.0.10:5060', 'sip:10.0.0.11:5060', 'sip:pbx.example.com:5061;transport=tls']);
    });

    it('gives each number its own media plan: its codecs and codec policy', () => {
      const [sales, support] = numbers().all();
      assert.deepEqual(sales!.plan.waOfferToPbx().codec, { mask: ['opus'], transcode: ['PCMU', 'PCMA'] });
      assert.deepEqual(support!.plan.waOfferToPbx().codec, { mask: ['opus'], transcode: ['G722', 'PCMA'] });
      assert.deepEqual(support!.plan.waOfferToPbx().direction, ['wa', 'pbx']);
      const pbxOffer = 'v=0\r\nm=audio 4000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n';
      assert.deepEqual(sales!.plan.g711InCommon(pbxOffer), [], 'transcode: no G.711 offered to WhatsApp');
      assert.deepEqual(support!.plan.g711InCommon(pbxOffer), ['PCMA'], 'prefer-g711');
    });

    it('gives each number its PBX\'s digest credentials (else PBX_AUTH_*), and lists every password among the secrets the log scrubs', () => {
      const n = numbers();
      assert.deepEqual(n.byNumber('+4930555000')?.pbx.auth, { username: 'wa-bridge-de', password: 'de-pbx-Q7Q7Q7' });
      assert.deepEqual(n.byNumber('+14155550100')?.pbx.auth, { username: 'bridge', password: 'pbx-default-Q7Q7Q7' });
      assert.ok(n.secrets().includes('de-pbx-Q7Q7Q7'));
      assert.equal(n.secrets(), n.secrets(), 'the same list until a reload (the logger asks at every line)');
    });

    it('lists the numbers for the admin API without a secret', () => {
      const text = JSON.stringify(numbers().summaries());
      assert.doesNotMatch(text, /Q7Q7Q7/);
      assert.match(text, /"provider":\{"name":"meta-eu","kind":"meta"\}/);
    });

    it('reload: a bad file is refused whole and the running numbers stay; a good one replaces them, calls keep the route they hold', () => {
      const file = write('reloaded.yaml', GOOD());
      const logged: string[] = [];
      const log = createLogger('info', {}, { destination: { write: (s: string) => void logged.push(s) } });
      const read = () => loadNumbersFile(file, DEFAULTS, SECRETS);
      const n = new Numbers(read(), { ...OPTS, log, reread: read });
      const held = n.forWebhook('ycloud-main', '111111111111111', null)!;

      fs.writeFileSync(file, goodWith('    provider: meta-eu\n', '    provider: meta-us\n').replace('sip:10.0.0.10:5060', 'nonsense'));
      const refused = n.reload();
      assert.deepEqual(refused, {
        ok: false, reason: 'invalid', problems: [
          'numbers[0].pbx.targets[0]: is not a SIP URI, e.g. sip:10.0.0.10:5060',
          'numbers[1].provider: "meta-us" is not under providers (ycloud-main, meta-eu)',
        ],
      });
      assert.equal(logged.filter((l) => l.includes('NUMBERS_FILE refused')).length, 2, 'every problem logged');
      assert.equal(n.forWebhook('ycloud-main', '111111111111111', null), held, 'the running set stays');
      assert.equal(n.all().length, 2);

      // Sales moves to another PBX, support-de and its Meta account go.
      fs.writeFileSync(file, GOOD().replace('sip:10.0.0.10:5060, sip:10.0.0.11:5060', 'sip:10.0.0.20:5060').split('  - name: support-de')[0]!);
      assert.deepEqual(n.reload(), { ok: true, numbers: 1, accounts: 2 });
      assert.deepEqual(n.forWebhook('ycloud-main', '111111111111111', null)!.pbx.targets, ['sip:10.0.0.20:5060']);
      assert.deepEqual(held.pbx.targets, ['sip:10.0.0.10:5060', 'sip:10.0.0.11:5060'], 'a call in progress keeps its route');
      assert.equal(n.forWebhook('meta-eu', '1234567890123456789', null), null);
      assert.equal(n.agentDefault()?.name, 'sales', 'the one number left is the agents\' default');

      fs.writeFileSync(file, GOOD().replace(/  meta-eu:\n(    .*\n)+/, '').split('  - name: support-de')[0]!);
      assert.deepEqual(n.reload(), { ok: true, numbers: 1, accounts: 1 });
      assert.ok(n.sources().has('meta-eu'), 'a removed account\'s webhooks are still taken (its calls in progress)');
      assert.ok(logged.some((l) => l.includes('provider account removed')));
    });
  });

  describe('the environment\'s number (no NUMBERS_FILE)', () => {
    const ENV = {
      DATABASE_URL: 'postgres://u@h/db', DRACHTIO_SECRET: 'cymru', RTPENGINE_NG: '127.0.0.1:22222', PUBLIC_IP: '203.0.113.7',
      PBX_TARGET: 'sip:10.0.0.10:5060', YCLOUD_API_KEY: 'k', YCLOUD_WEBHOOK_SECRET: 's',
    };

    it('is one catch-all number, "default", on an account named for WA_PROVIDER', () => {
      const config = loadConfig({ ...ENV, WA_BUSINESS_NUMBER: '+14155550100', WA_PHONE_ID: '555', PBX_CODECS: 'PCMA' });
      const n = new Numbers(envNumbers(config), { ...OPTS, reread: null });
      const r = n.forWebhook('ycloud', 'any-phone-id', '+19999999999');
      assert.equal(r?.name, 'default');
      assert.deepEqual(r?.line, { number: '+14155550100', phoneId: '555', wabaId: null });
      assert.deepEqual(r?.pbx, { targets: ['sip:10.0.0.10:5060'], requestUser: null, auth: null });
      assert.equal(n.agentDefault(), r);
      assert.equal(n.forWebhook('meta', 'any-phone-id', null), null, 'only its own provider\'s webhooks');
      assert.deepEqual(n.reload(), {
        ok: false, reason: 'no-file',
        problems: ['NUMBERS_FILE is not set: the number comes from the environment, read at start-up only (restart the bridge to change it)'],
      });
    });

    it('on Meta: its account is "meta"; without WA_BUSINESS_NUMBER agents have no default number', () => {
      const config = loadConfig({
        ...ENV, YCLOUD_API_KEY: '', YCLOUD_WEBHOOK_SECRET: '', WA_PROVIDER: 'meta', META_ACCESS_TOKEN: 't', META_APP_SECRET: 'a', META_VERIFY_TOKEN: 'v',
      });
      const spec = envNumbers(config);
      assert.deepEqual(spec.accounts, [{
        kind: 'meta', name: 'meta', accessToken: 't', appSecret: 'a', verifyToken: 'v', apiBaseUrl: 'https://graph.facebook.com/v23.0',
        authHeader: 'Authorization', timeoutMs: 5000,
      }]);
      const n = new Numbers(spec, { ...OPTS, reread: null });
      assert.equal(n.forWebhook('meta', '123', '+14155550100')?.name, 'default');
      assert.equal(n.agentDefault(), null);
    });

    it('loadConfig asks for the credentials of WA_PROVIDER\'s account, and for PBX_TARGET, only without NUMBERS_FILE', () => {
      assert.throws(() => loadConfig({ ...ENV, YCLOUD_API_KEY: '' }), /WA_PROVIDER=ycloud needs YCLOUD_API_KEY \(or set NUMBERS_FILE/);
      assert.throws(() => loadConfig({ ...ENV, WA_PROVIDER: 'meta', META_APP_SECRET: 'a' }), /WA_PROVIDER=meta needs META_ACCESS_TOKEN, META_VERIFY_TOKEN/);
      assert.throws(() => loadConfig({ ...ENV, PBX_TARGET: '' }), /PBX_TARGET is required \(or set NUMBERS_FILE/);
      const config = loadConfig({ ...ENV, YCLOUD_API_KEY: '', YCLOUD_WEBHOOK_SECRET: '', PBX_TARGET: '', NUMBERS_FILE: '/etc/numbers.yaml' });
      assert.equal(config.numbers.file, '/etc/numbers.yaml');
      assert.deepEqual(numberDefaults(config).meta, { apiBaseUrl: 'https://graph.facebook.com/v23.0', authHeader: 'Authorization', timeoutMs: 5000 });
    });
  });
  describe('Meta\'s native SIP (issue 20): a number\'s sip: section', () => {
    const SIP_ENV = { ...SECRETS, DE_SIP: 'de-sip-Q7Q7Q7' };
    /** GOOD with support-de (on meta-eu) in SIP mode: `lines` are the sip section's, indented under it. */
    const withSip = (...lines: string[]) => goodWith('    agentDefault: true\n', `    agentDefault: true\n    sip:\n${lines.map((l) => `      ${l}\n`).join('')}`);
    const MINIMAL = ['hostname: SIP.Example.com', 'password: {env: DE_SIP}'];

    it('reads it with its defaults: port 5061, the business number as user, DTLS, no G.711, no webhooks', () => {
      const spec = loadNumbersFile(write('sip.yaml', withSip(...MINIMAL)), DEFAULTS, SIP_ENV);
      assert.deepEqual(spec.numbers[1]!.sip, {
        hostname: 'sip.example.com', port: 5061, username: '4930555000', password: 'de-sip-Q7Q7Q7', srtp: 'dtls', g711: false, webhooks: false,
      });
      assert.equal(spec.numbers[0]!.sip, null, 'a number without the section goes by its provider\'s API');
      const full = loadNumbersFile(write('sip-full.yaml', withSip(
        'hostname: sip.example.com', 'port: 5071', 'username: 4930555000', `password: {file: ${verifyFile}}`, 'srtp: sdes', 'g711: true', 'webhooks: true',
      )), DEFAULTS, SIP_ENV);
      assert.deepEqual(full.numbers[1]!.sip, {
        hostname: 'sip.example.com', port: 5071, username: '4930555000', password: 'verify-Q7Q7Q7', srtp: 'sdes', g711: true, webhooks: true,
      });
    });

    it('reads the SIP example of docs/numbers.md', () => {
      const doc = fs.readFileSync(path.resolve(__dirname, '../../../docs/numbers.md'), 'utf8');
      const example = [...doc.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!).find((y) => y.includes('sip:\n'));
      assert.ok(example, 'docs/numbers.md has a yaml example with a sip: section');
      const providers = GOOD().split('numbers:\n')[0]!;
      const spec = loadNumbersFile(write('sip-doc.yaml', providers + example), DEFAULTS, { ...SECRETS, META_SIP_PASSWORD_SUPPORT_BR: 'br-Q7Q7Q7' });
      assert.deepEqual(spec.numbers[0]!.sip, {
        hostname: 'sip.example.com', port: 5061, username: '5511955550100', password: 'br-Q7Q7Q7', srtp: 'dtls', g711: false, webhooks: false,
      });
    });

    it('names each problem by its YAML path: no hostname, an IP address, a written password, none, bad SRTP, an unknown field, a YCloud number', () => {
      const cases: Array<[string, string[], RegExp]> = [
        ['no hostname', ['password: {env: DE_SIP}'], /^numbers\[1\]\.sip\.hostname: is required: the DNS name Meta's settings give as the SIP server/],
        ['an IP address', ['hostname: 203.0.113.7', 'password: {env: DE_SIP}'], /^numbers\[1\]\.sip\.hostname: must be a DNS name, e\.g\. sip\.example\.com \(not an IP address\)/],
        ['a written password', ['hostname: sip.example.com', 'password: hunter2-Q9'], /^numbers\[1\]\.sip\.password: a secret is never written in the numbers file/],
        ['no password', ['hostname: sip.example.com'], /^numbers\[1\]\.sip\.password: is required: \{env: VARIABLE\} or \{file: \/path\/to\/secret\}$/],
        ['bad SRTP', [...MINIMAL, 'srtp: zrtp'], /^numbers\[1\]\.sip\.srtp: must be dtls or sdes$/],
        ['a bad port', [...MINIMAL, 'port: 70000'], /^numbers\[1\]\.sip\.port: must be an integer between 1 and 65535$/],
        ['an unknown field', [...MINIMAL, 'transport: udp'], /^numbers\[1\]\.sip: Unrecognized key\(s\) in object: 'transport'/],
      ];
      for (const [what, lines, expected] of cases) {
        const problems = problemsOf(withSip(...lines), SIP_ENV);
        assert.equal(problems.length, 1, `${what}: ${problems.join(' | ')}`);
        assert.match(problems[0]!, expected, what);
        assert.doesNotMatch(problems[0]!, /Q9|Q7Q7/, `${what}: no secret repeated`);
      }
      const onYcloud = goodWith('    catchAll: true\n', '    catchAll: true\n    sip: {hostname: sip.example.com, password: {env: DE_SIP}}\n');
      assert.deepEqual(problemsOf(onYcloud, SIP_ENV), [
        'numbers[0].sip: only a number on a Meta account (kind: meta) can be in Meta\'s SIP mode; "ycloud-main" is kind ycloud',
      ]);
      const { DE_SIP: _unset, ...noPassword } = SIP_ENV;
      assert.deepEqual(problemsOf(withSip(...MINIMAL), noPassword), ['numbers[1].sip.password: environment variable DE_SIP is not set (or empty)']);
    });

    describe('in the directory', () => {
      const made: Array<{ graph: WhatsAppProvider; mode: MetaSipMode; line: BusinessLine }> = [];
      const SIP_ADAPTER = { sipAdapter: true } as unknown as WhatsAppProvider;
      const sipProvider = (graph: WhatsAppProvider, mode: MetaSipMode, line: BusinessLine): WhatsAppProvider => {
        made.push({ graph, mode, line });
        return SIP_ADAPTER;
      };
      const numbers = (o: { sipProvider?: typeof sipProvider } = {}) => new Numbers(
        loadNumbersFile(write('sip-dir.yaml', withSip(...MINIMAL, 'srtp: sdes')), DEFAULTS, SIP_ENV), { ...OPTS, reread: null, ...o },
      );

      it('gives a SIP-mode number\'s route its mode, kind meta-sip and the adapter the sipProvider option makes of its Graph adapter', () => {
        made.length = 0;
        const n = numbers({ sipProvider });
        const r = n.byNumber('+4930555000')!;
        assert.deepEqual(r.sip, {
          hostname: 'sip.example.com', port: 5061, username: '4930555000', password: 'de-sip-Q7Q7Q7', srtp: 'sdes', g711: false, webhooks: false,
        });
        assert.equal(r.providerKind, 'meta-sip');
        assert.equal(r.providerName, 'meta-eu');
        assert.equal(r.provider, SIP_ADAPTER);
        assert.equal(made.length, 1, 'made for the SIP-mode number only');
        assert.ok(made[0]!.graph instanceof MetaClient, 'from its account\'s Graph adapter');
        assert.equal(made[0]!.graph, n.account('meta-eu'));
        assert.equal(made[0]!.mode, r.sip);
        assert.equal(made[0]!.line, r.line);
        const sales = n.byNumber('+14155550100')!;
        assert.equal(sales.sip, null);
        assert.equal(sales.providerKind, 'ycloud');
        assert.ok(Object.isFrozen(r.sip), 'a route is never changed');
      });

      it('without the option (the settings command), the route carries the Graph adapter', () => {
        const r = numbers().byNumber('+4930555000')!;
        assert.ok(r.provider instanceof MetaClient);
        assert.equal(r.providerKind, 'meta-sip');
      });

      it('bySipUser: the SIP-mode number Meta\'s Request-URI user names, with or without "+" and user parameters; else null', () => {
        const n = numbers({ sipProvider });
        const r = n.byNumber('+4930555000');
        assert.equal(n.bySipUser('+4930555000'), r);
        assert.equal(n.bySipUser('4930555000'), r);
        assert.equal(n.bySipUser('+4930555000;tgrp=wa;trunk-context=example.com'), r);
        assert.equal(n.bySipUser('+14155550100'), null, 'sales is not in SIP mode');
        for (const other of ['+4930555001', '', '+', 'support-de', '4930555000x', '++4930555000']) assert.equal(n.bySipUser(other), null, other);
      });

      it('still finds a SIP-mode number for its webhooks (by phone id or E.164), which the router correlates', () => {
        const n = numbers({ sipProvider });
        assert.equal(n.forWebhook('meta-eu', '1234567890123456789', null)?.name, 'support-de');
        assert.equal(n.forWebhook('meta-eu', '999', '+4930555000')?.name, 'support-de');
      });

      it('lists the SIP mode for the admin API without the password, and the password among the secrets the log scrubs', () => {
        const n = numbers({ sipProvider });
        const [sales, support] = n.summaries();
        assert.equal(sales!.sip, null);
        assert.deepEqual(support!.sip, { hostname: 'sip.example.com', port: 5061, username: '4930555000', srtp: 'sdes', g711: false, webhooks: false });
        assert.doesNotMatch(JSON.stringify(n.summaries()), /Q7Q7Q7/);
        assert.ok(n.secrets().includes('de-sip-Q7Q7Q7'));
      });

      it('a reload that takes a number out of SIP mode keeps its old password scrubbed (a call in progress may still use it)', () => {
        const file = write('sip-reload.yaml', withSip(...MINIMAL));
        const read = () => loadNumbersFile(file, DEFAULTS, SIP_ENV);
        const n = new Numbers(read(), { ...OPTS, reread: read, sipProvider });
        const held = n.bySipUser('+4930555000')!;
        fs.writeFileSync(file, GOOD());
        assert.deepEqual(n.reload(), { ok: true, numbers: 2, accounts: 2 });
        assert.equal(n.bySipUser('+4930555000'), null);
        assert.equal(n.byNumber('+4930555000')!.providerKind, 'meta');
        assert.equal(held.sip!.password, 'de-sip-Q7Q7Q7', 'the call in progress keeps its route');
        assert.ok(n.secrets().includes('de-sip-Q7Q7Q7'));
      });

      it('the CDR of a SIP-mode call says how Meta\'s leg was keyed; other calls null', () => {
        const n = numbers({ sipProvider });
        assert.deepEqual(routeFields(n.byNumber('+4930555000')), { provider: 'meta-eu', provider_kind: 'meta-sip', number_name: 'support-de', meta_sip_srtp: 'sdes' });
        assert.deepEqual(routeFields(n.byNumber('+14155550100')), { provider: 'ycloud-main', provider_kind: 'ycloud', number_name: 'sales', meta_sip_srtp: null });
        assert.deepEqual(routeFields(null), {});
      });
    });

    describe('the environment\'s number (META_SIP_*)', () => {
      const ENV = {
        DATABASE_URL: 'postgres://u@h/db', DRACHTIO_SECRET: 'cymru', RTPENGINE_NG: '127.0.0.1:22222', PUBLIC_IP: '203.0.113.7',
        PBX_TARGET: 'sip:10.0.0.10:5060', WA_PROVIDER: 'meta', META_ACCESS_TOKEN: 't', META_APP_SECRET: 'a', META_VERIFY_TOKEN: 'v',
        WA_BUSINESS_NUMBER: '+15551234567', WA_PHONE_ID: '555',
      };
      const SIP = { META_SIP_HOSTNAME: 'sip.example.com', META_SIP_PASSWORD: 'env-sip-Q7Q7Q7' };

      it('META_SIP_HOSTNAME puts it in SIP mode, with the defaults of the other META_SIP_* settings', () => {
        const n = new Numbers(envNumbers(loadConfig({ ...ENV, ...SIP })), { ...OPTS, reread: null });
        const r = n.agentDefault()!;
        assert.deepEqual(r.sip, {
          hostname: 'sip.example.com', port: 5061, username: '15551234567', password: 'env-sip-Q7Q7Q7', srtp: 'dtls', g711: false, webhooks: false,
        });
        assert.equal(r.providerKind, 'meta-sip');
        assert.equal(n.bySipUser('15551234567'), r);
        assert.equal(n.forWebhook('meta', 'any', null), r, 'its webhooks, if Meta sends them, still find it');
        assert.equal(n.byNumber('+15559999999'), null, 'a SIP-mode number carries no other number\'s calls');
        assert.ok(n.secrets().includes('env-sip-Q7Q7Q7'));
      });

      it('reads every META_SIP_* setting', () => {
        const config = loadConfig({
          ...ENV, ...SIP, META_SIP_PORT: '5071', META_SIP_USERNAME: 'trunk-7', META_SIP_SRTP: 'sdes', META_SIP_G711: 'true', META_SIP_WEBHOOKS: 'true',
          META_SIP_DOMAIN: 'sip.meta.test', META_SIP_PROXY: 'sip:127.0.0.1:5062;transport=tls', META_SIP_LISTEN_PORT: '5081',
          META_SIP_TRUSTED_SOURCES: '157.240.0.0/16, 2a03:2880::/32',
        });
        assert.deepEqual(envNumbers(config).numbers[0]!.sip, {
          hostname: 'sip.example.com', port: 5071, username: 'trunk-7', password: 'env-sip-Q7Q7Q7', srtp: 'sdes', g711: true, webhooks: true,
        });
        assert.deepEqual(config.metaSip, {
          domain: 'sip.meta.test', proxy: 'sip:127.0.0.1:5062;transport=tls', listenPort: 5081, trustedSources: ['157.240.0.0/16', '2a03:2880::/32'],
        });
      });

      it('off by default; the SIP border\'s settings default to Meta\'s domain, DNS, port 5061 and any source that passes digest', () => {
        const config = loadConfig(ENV);
        assert.equal(envNumbers(config).numbers[0]!.sip, null);
        assert.equal(new Numbers(envNumbers(config), { ...OPTS, reread: null }).agentDefault()!.providerKind, 'meta');
        assert.deepEqual(config.metaSip, { domain: 'wa.meta.vc', proxy: null, listenPort: 5061, trustedSources: [] });
      });

      it('loadConfig names what SIP mode lacks, and refuses it off Meta or beside NUMBERS_FILE', () => {
        const problems = (env: Record<string, string>): string[] => {
          try {
            loadConfig(env);
          } catch (err) {
            return (err as { problems: string[] }).problems;
          }
          return [];
        };
        assert.deepEqual(problems({ ...ENV, META_SIP_HOSTNAME: 'sip.example.com', WA_BUSINESS_NUMBER: '' }), [
          'META_SIP_HOSTNAME (Meta\'s SIP mode) needs META_SIP_PASSWORD, WA_BUSINESS_NUMBER',
        ]);
        assert.deepEqual(problems({ ...ENV, ...SIP, WA_PROVIDER: 'ycloud', YCLOUD_API_KEY: 'k', YCLOUD_WEBHOOK_SECRET: 's' }), [
          'META_SIP_HOSTNAME puts the number in Meta\'s SIP mode, which needs WA_PROVIDER=meta (not ycloud)',
        ]);
        assert.deepEqual(problems({ ...ENV, ...SIP, NUMBERS_FILE: '/etc/numbers.yaml' }), [
          'META_SIP_HOSTNAME is for the environment\'s number: with NUMBERS_FILE, give the number a sip: section there',
        ]);
        const bad = problems({
          ...ENV, META_SIP_HOSTNAME: '203.0.113.7', META_SIP_SRTP: 'zrtp', META_SIP_PROXY: 'wa.meta.vc', META_SIP_TRUSTED_SOURCES: '0.0.0.0/0, nonsense',
          META_SIP_DOMAIN: 'localhost', META_SIP_PASSWORD: 'env-sip-Q7Q7Q7',
        });
        assert.equal(bad.length, 6, bad.join(' | '));
        for (const [i, re] of [
          /^META_SIP_HOSTNAME must be a DNS name/, /^META_SIP_SRTP must be "dtls" or "sdes"/, /^META_SIP_DOMAIN must be a DNS name/,
          /^META_SIP_PROXY must be a SIP URI/, /^META_SIP_TRUSTED_SOURCES entry "0\.0\.0\.0\/0" trusts too much/, /^META_SIP_TRUSTED_SOURCES entry "nonsense" is not an IP address or CIDR/,
        ].entries()) assert.match(bad[i]!, re);
      });
    });
  });
});
