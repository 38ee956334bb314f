import assert from 'node:assert/strict';
import { MetaWebhooks } from '../../src/providers/meta/webhook-source';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { XMLValidator } from 'fast-xml-parser';
import YAML from 'yaml';
import { loadConfig } from '../../src/config';
import { SETTINGS, SettingName } from '../../src/config/settings';
import { WEBHOOK_MAX_BODY_BYTES } from '../../src/http/ingress-guard';

/**
 * The files a deployment is made of: docker-compose.yml (and docker/compose.tls.yml), .env.example
 * and the PBX samples under config/. A deployment on a real network failed on each of them once
 * (issue 7): settings that never reached the bridge, rtpengine advertising an address WhatsApp could
 * not reach, drachtio naming the wrong address to the PBX.
 */

const ROOT = findRoot();
const read = (rel: string): string => fs.readFileSync(path.join(ROOT, rel), 'utf8');
type Env = Record<string, string | undefined>;
type Service = Record<string, unknown>;

/** A complete compose-level environment, as a filled-in .env would give it (the PBX on the private network). */
const TEST_ENV: Env = {
  PUBLIC_IP: '203.0.113.7',
  LOCAL_IP: '10.0.0.5',
  DRACHTIO_SECRET: 'test-secret',
  YCLOUD_API_KEY: 'k',
  YCLOUD_WEBHOOK_SECRET: 's',
  PBX_TARGET: 'sip:10.0.0.10:5060',
  SIP_TLS_CERT: '/etc/ssl/test/fullchain.pem',
  SIP_TLS_KEY: '/etc/ssl/test/privkey.pem',
};

/** The settings loadConfig requires, to read what compose gives the bridge. */
const configEnv: Env = {
  DATABASE_URL: 'postgres://u:p@127.0.0.1/db', YCLOUD_API_KEY: 'k', YCLOUD_WEBHOOK_SECRET: 's', DRACHTIO_SECRET: 'd',
  RTPENGINE_NG: '127.0.0.1:22222', PBX_TARGET: 'sip:10.0.0.10:5060', PUBLIC_IP: '203.0.113.7',
};

/** The same with a PBX that reaches the bridge across the NAT (a hosted PBX). */
const NAT_ENV: Env = { ...TEST_ENV, SIP_EXTERNAL_IP: '203.0.113.7', SIP_LOCAL_NET: '10.0.0.0/16' };

/** The values docker-compose.yml itself gives the bridge (where it finds its neighbours, and whether Caddy is in front). */
const COMPUTED = ['TRUST_PROXY', 'DATABASE_URL', 'DRACHTIO_HOST', 'DRACHTIO_PORT', 'RTPENGINE_NG', 'RTPENGINE_DTMF_LOG', 'MEDIA_DIR', 'CDR_SPILL_DIR'];

/** A `${NAME:?...}` that found NAME unset (declared first: the suite interpolates while it is being defined). */
class RequiredVariable extends Error {}

/** Services that run once and exit (restart: "no"); the others wait for them. */
const ONE_SHOT = ['volumes-init'];

/** Where docker-compose.yml mounts docker/drachtio-start.sh in the drachtio container. */
const DRACHTIO_START_IN_CONTAINER = '/opt/wa-sip-bridge/drachtio-start.sh';

/** drachtio-server's command-line options (its src/controller.cpp, parseCmdArgs long_options). */
const DRACHTIO_OPTIONS = new Set([
  'daemon', 'noconfig', 'reject-register-with-no-realm', 'file', 'help', 'user', 'port', 'contact', 'external-ip',
  'local-net', 'dns-name', 'http-handler', 'http-method', 'loglevel', 'sofia-loglevel', 'stdout', 'homer', 'homer-id',
  'key-file', 'cert-file', 'chain-file', 'mtu', 'address', 'secret', 'dh-param', 'tls-port', 'aggressive-nat-detection',
  'prometheus-scrape-port', 'memory-debug', 'tcp-keepalive-interval', 'min-tls-version', 'disable-nat-detection',
  'blacklist-redis-address', 'blacklist-redis-port', 'blacklist-redis-key', 'blacklist-refresh-secs', 'always-send-180',
  'user-agent-options-auto-respond', 'globally-readable-logs', 'blacklist-redis-sentinels', 'blacklist-redis-master',
  'blacklist-redis-password', 'tls-cipherlist', 'version',
]);

describe('deployment files', () => {
  const settings = settingsOfTheBridge();
  const composeRaw = read('docker-compose.yml');
  const tlsRaw = read('docker/compose.tls.yml');
  const envExample = parseEnvExample(read('.env.example'));

  describe('docker-compose.yml', () => {
    const compose = parseYaml(composeRaw, 'docker-compose.yml');
    const services = compose.services as Record<string, Service>;
    const resolved = interpolateTree(compose, TEST_ENV, 'docker-compose.yml') as { services: Record<string, Service> };

    it('parses, and every service restarts by itself (but the one-shot volumes-init, which the services that need it wait for)', () => {
      for (const name of ['postgres', 'drachtio', 'rtpengine', 'bridge']) assert.ok(services[name], `service ${name}`);
      for (const [name, svc] of Object.entries(services)) {
        if (ONE_SHOT.includes(name)) {
          assert.equal(svc.restart, 'no', `${name} runs once`);
          continue;
        }
        assert.ok(['unless-stopped', 'always'].includes(String(svc.restart)), `service ${name} has restart: unless-stopped (got ${String(svc.restart)})`);
      }
      for (const name of ['rtpengine', 'bridge']) {
        const deps = services[name]!.depends_on as Record<string, { condition?: string }>;
        assert.equal(deps['volumes-init']?.condition, 'service_completed_successfully', `${name} waits for volumes-init`);
      }
      const pg = services.postgres!;
      assert.ok((pg.healthcheck as Service | undefined)?.test, 'postgres has a healthcheck');
      const dependsOn = services.bridge!.depends_on as Record<string, { condition?: string }>;
      assert.equal(dependsOn.postgres?.condition, 'service_healthy');
    });

    it('gives the bridge every setting from .env, and fixes only where its neighbours are', () => {
      const bridge = resolved.services.bridge!;
      const envFiles = ([] as unknown[]).concat(bridge.env_file ?? []).map((e) => (typeof e === 'string' ? e : (e as { path: string }).path));
      assert.ok(envFiles.includes('.env'), 'bridge has env_file: .env');
      assert.ok(envFiles.every((e) => typeof e === 'string'), 'env_file as plain paths (the long form with required: needs Compose v2.24)');
      const fixed = Object.keys(envMap(bridge.environment));
      assert.deepEqual(fixed.filter((k) => !COMPUTED.includes(k)), [], 'environment: holds only computed/fixed values (the rest comes from .env)');
      for (const k of fixed) assert.ok(settings.all.has(k), `${k} in environment: is a setting the bridge reads`);
    });

    it('requires PUBLIC_IP, LOCAL_IP and DRACHTIO_SECRET, and SIP_LOCAL_NET only with SIP_EXTERNAL_IP (no loopback default, no well-known secret)', () => {
      assert.doesNotMatch(composeRaw, /PUBLIC_IP:?-/, 'PUBLIC_IP has no default');
      assert.doesNotMatch(composeRaw, /cymru/, 'no default drachtio secret');
      for (const key of ['PUBLIC_IP', 'LOCAL_IP', 'DRACHTIO_SECRET']) {
        for (const env of [TEST_ENV, NAT_ENV]) {
          assert.throws(() => interpolateTree(compose, { ...env, [key]: '' }, 'docker-compose.yml'), new RegExp(`${key} is required`), key);
        }
      }
      // SIP_LOCAL_NET is checked when drachtio starts (Compose cannot say "required only with" in a way
      // every version reads alike): docker/drachtio-start.sh stops, naming it.
      const natNoNet = interpolateTree(compose, { ...NAT_ENV, SIP_LOCAL_NET: '' }, 'docker-compose.yml') as typeof resolved;
      const refused = runDrachtioStart(natNoNet.services.drachtio!);
      assert.notEqual(refused.status, 0, 'SIP_EXTERNAL_IP without SIP_LOCAL_NET');
      assert.match(refused.stderr, /SIP_LOCAL_NET/);
      assert.equal(refused.args, null, 'drachtio is not started');
      for (const env of [TEST_ENV, { ...TEST_ENV, SIP_LOCAL_NET: undefined }]) {
        const r = runDrachtioStart((interpolateTree(compose, env, 'docker-compose.yml') as typeof resolved).services.drachtio!);
        assert.equal(r.status, 0, `SIP_LOCAL_NET is not needed without SIP_EXTERNAL_IP: ${r.stderr}`);
      }
    });

    it('nests no required-variable check inside another expansion (Compose before v5.0.2 evaluates it even when the outer one is off)', () => {
      for (const [name, raw] of [['docker-compose.yml', composeRaw], ['docker/compose.tls.yml', tlsRaw]] as const) {
        const nested = nestedRequiredChecks(raw);
        assert.deepEqual(nested, [], `${name}: required checks nested in another \${...}: ${nested.join(', ')}`);
      }
      // The interpolator these tests use is the eager one, so it would have refused the old command too.
      const old = '${SIP_EXTERNAL_IP:+--external-ip ${SIP_EXTERNAL_IP} --local-net ${SIP_LOCAL_NET:?set SIP_LOCAL_NET}}';
      assert.throws(() => interpolate(old, TEST_ENV, 'old'), /SIP_LOCAL_NET is required/);
      assert.equal(interpolate(old, NAT_ENV, 'old'), '--external-ip 203.0.113.7 --local-net 10.0.0.0/16');
      assert.equal(interpolate('${A:-${B}}', { B: 'b' }, 'x'), 'b');
    });

    it('Postgres: password and port from .env, on loopback, not on 5432 by default; DATABASE_URL built from them', () => {
      const pg = (env: Env) => (interpolateTree(compose, env, 'docker-compose.yml') as typeof resolved).services;
      const url = (env: Env, service: string) => new URL(envMap(pg(env)[service]!.environment).DATABASE_URL!);
      const ports = (env: Env) => pg(env).postgres!.ports as string[];
      assert.deepEqual(ports(TEST_ENV), ['127.0.0.1:55432:5432'], 'a host Postgres on 5432 does not stop the stack');
      assert.equal(url(TEST_ENV, 'bridge').port, '55432');
      const custom = { ...TEST_ENV, POSTGRES_PASSWORD: 'Zq7pw0rd', POSTGRES_PORT: '6543' };
      assert.deepEqual(ports(custom), ['127.0.0.1:6543:5432']);
      assert.equal(envMap(pg(custom).postgres!.environment).POSTGRES_PASSWORD, 'Zq7pw0rd');
      for (const [service, db] of [['bridge', '/bridge'], ['sandbox', '/wasb_sandbox']] as const) {
        const u = url(custom, service);
        assert.deepEqual([u.username, u.password, u.hostname, u.port, u.pathname], ['bridge', 'Zq7pw0rd', '127.0.0.1', '6543', db], service);
      }
      assert.equal(envMap(pg(custom).grafana!.environment).POSTGRES_PORT, '6543', 'Grafana reads the CDRs on the same port');
      assert.match(read('docker/grafana/provisioning/datasources/wa-sip-bridge.yml'), /url: 127\.0\.0\.1:\$\{POSTGRES_PORT\}/);
    });

    it('recording: volumes-init gives the spool to the bridge\'s group (setgid) and the recordings folder to the bridge, so it reads what rtpengine writes as root', function () {
      const init = resolved.services['volumes-init']!;
      const mounts = (svc: Service) => new Map(((svc.volumes ?? []) as string[]).map((v) => [v.split(':')[0]!, v.split(':')[1]!]));
      const initMounts = mounts(init);
      for (const name of ['rtpengine', 'bridge', 'rtpengine-recording']) {
        for (const [vol, target] of mounts(resolved.services[name]!)) {
          if (vol === 'recording-spool' || vol === 'recordings') assert.equal(initMounts.get(vol), target, `volumes-init mounts ${vol} where ${name} does`);
        }
      }
      assert.match(read('docker/Dockerfile'), /^USER node$/m, 'the bridge runs as node (uid and gid 1000 in the node image)');
      const ids = envMap(init.environment);
      assert.deepEqual([ids.BRIDGE_UID, ids.BRIDGE_GID], ['1000', '1000']);
      if (process.getuid?.() !== 0 || !fs.existsSync('/usr/bin/setpriv')) {
        console.log('      (the run of its command skipped: needs root and setpriv)');
        return;
      }
      // Its command, run for real on two folders standing for the volumes (one of them as an older
      // deployment left it: root's, 0700, with a pcap in it).
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'volumes-init-'));
      fs.chmodSync(dir, 0o755); // as / is to the volumes: the bridge may pass through
      try {
        const spool = path.join(dir, 'spool');
        const out = path.join(dir, 'out');
        fs.mkdirSync(path.join(spool, 'pcaps'), { recursive: true, mode: 0o700 });
        fs.writeFileSync(path.join(spool, 'pcaps', 'old.pcap'), 'x', { mode: 0o600 });
        fs.chmodSync(spool, 0o700);
        const script = (init.command as string[])[0]!.replace(/\/var\/spool\/rtpengine/g, spool).replace(/\/var\/lib\/rtpengine-recording/g, out);
        for (let i = 0; i < 2; i++) {
          const r = spawnSync('/bin/sh', ['-c', script], { encoding: 'utf8', env: { ...process.env, ...ids }, timeout: 10000 });
          assert.equal(r.status, 0, r.stderr);
        }
        // rtpengine (root, umask 022) writes a pcap and metadata; the bridge (1000:1000) reads, then deletes them.
        const asRoot = spawnSync('/bin/sh', ['-c', `umask 022; echo pcap > "${spool}/pcaps/call.pcap"; echo meta > "${spool}/metadata/call.txt"`]);
        assert.equal(asRoot.status, 0);
        const asBridge = (cmd: string) => spawnSync('setpriv', ['--reuid=1000', '--regid=1000', '--clear-groups', '/bin/sh', '-c', cmd], { encoding: 'utf8', timeout: 10000 });
        for (const cmd of [`cat "${spool}/pcaps/call.pcap" "${spool}/metadata/call.txt" "${spool}/pcaps/old.pcap"`,
          `rm "${spool}/pcaps/call.pcap" "${spool}/metadata/call.txt" "${spool}/pcaps/old.pcap"`,
          `echo wav > "${out}/call.wav" && mv "${out}/call.wav" "${out}/call2.wav" && rm "${out}/call2.wav"`]) {
          const r = asBridge(cmd);
          assert.equal(r.status, 0, `as the bridge: ${cmd}: ${r.stderr}`);
        }
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    it('rtpengine-ctl in the rtpengine image talks to the port the daemon\'s CLI listens on', () => {
      const listen = argv(resolved.services.rtpengine!.command).find((a) => a.startsWith('--listen-cli='))?.slice('--listen-cli='.length);
      assert.ok(listen, 'rtpengine has a --listen-cli');
      const dockerfile = read('docker/rtpengine.Dockerfile');
      const conf = /'\[rtpengine\]' 'listen-cli = ([^']+)' > \/etc\/rtpengine\/rtpengine\.conf/.exec(dockerfile)?.[1];
      assert.equal(conf, listen, 'the image\'s /etc/rtpengine/rtpengine.conf (read by rtpengine-ctl) names the daemon\'s --listen-cli');
    });

    it('starts rtpengine with a WhatsApp-side interface advertising PUBLIC_IP and a PBX-side one, named as the bridge names them', () => {
      const waName = defaultOf('RTPENGINE_WA_INTERFACE');
      const pbxName = defaultOf('RTPENGINE_PBX_INTERFACE');
      assert.deepEqual(interfacesOf(resolved.services.rtpengine!), [`${waName}/10.0.0.5!203.0.113.7`, `${pbxName}/10.0.0.5`]);
      const other = interpolateTree(compose, { ...TEST_ENV, PBX_FACING_IP: '192.168.50.2', RTPENGINE_WA_INTERFACE: 'ext', RTPENGINE_PBX_INTERFACE: 'int' }, 'docker-compose.yml') as typeof resolved;
      assert.deepEqual(interfacesOf(other.services.rtpengine!), ['ext/10.0.0.5!203.0.113.7', 'int/192.168.50.2'],
        'the names follow the same settings the bridge reads, so they always match');
      const args = argv(resolved.services.rtpengine!.command);
      assert.ok(args.includes('--port-min=40000') && args.includes('--port-max=49999'), args.join(' '));
      assert.ok(args.includes('--listen-ng=127.0.0.1:22222'), 'ng on loopback, where RTPENGINE_NG points');
    });

    it('starts drachtio naming LOCAL_IP (no --external-ip/--local-net) by default, and its admin port on loopback', () => {
      // drachtio-server puts a contact's --external-ip in Via and Contact of every request it starts,
      // even toward --local-net: a PBX on the private network would send its ACK/BYE to PUBLIC_IP.
      assert.deepEqual(services.drachtio!.entrypoint, ['/bin/sh', DRACHTIO_START_IN_CONTAINER]);
      assert.ok((services.drachtio!.volumes as string[]).includes(`./docker/drachtio-start.sh:${DRACHTIO_START_IN_CONTAINER}:ro`));
      for (const name of ['drachtio', 'sandbox-drachtio']) {
        assert.match(String(services[name]!.image), /^drachtio\/drachtio-server:\d+\.\d+\.\d+$/, `${name}: a release, never latest`);
      }
      assert.match(String(services.postgres!.image), /^postgres:\d+$/, 'Postgres: a major version');
      for (const env of [TEST_ENV, { ...TEST_ENV, SIP_LOCAL_NET: '10.0.0.0/16' }, { ...TEST_ENV, SIP_EXTERNAL_IP: '' }]) {
        const svc = (interpolateTree(compose, env, 'docker-compose.yml') as typeof resolved).services.drachtio!;
        const args = drachtioArgs(svc);
        checkDrachtioArgs(args, 'docker-compose.yml');
        assert.deepEqual(valuesOf(args, '--contact'), ['sip:10.0.0.5:5060;transport=udp,tcp']);
        assert.deepEqual(valuesOf(args, '--external-ip'), [], args.join(' '));
        assert.deepEqual(valuesOf(args, '--local-net'), [], args.join(' '));
        assert.deepEqual(valuesOf(args, '--address'), ['127.0.0.1']);
        assert.deepEqual(valuesOf(args, '--port'), ['9022']);
        assert.deepEqual(valuesOf(args, '--secret'), ['test-secret']);
      }
    });

    it('with SIP_EXTERNAL_IP (a PBX across the NAT) gives the contact --external-ip and --local-net', () => {
      const nat = interpolateTree(compose, NAT_ENV, 'docker-compose.yml') as typeof resolved;
      const args = drachtioArgs(nat.services.drachtio!);
      checkDrachtioArgs(args, 'docker-compose.yml');
      assert.deepEqual(args.slice(0, 6), ['--contact', 'sip:10.0.0.5:5060;transport=udp,tcp', '--external-ip', '203.0.113.7', '--local-net', '10.0.0.0/16']);
      assert.deepEqual(valuesOf(args, '--address'), ['127.0.0.1']);
      assert.deepEqual(valuesOf(args, '--secret'), ['test-secret']);
    });

    it('runs the sandbox on its own drachtio-server, rtpengine and database, on loopback, with the built-in simulator', () => {
      const sb = resolved.services.sandbox!;
      assert.deepEqual(sb.command, ['node', 'dist/src/sandbox/main.js']);
      const env = envMap(sb.environment);
      assert.match(String(env.DATABASE_URL), /\/wasb_sandbox$/, 'never the bridge database');
      assert.ok(!('YCLOUD_API_KEY' in env) && !('YCLOUD_API_BASE_URL' in env), 'no YCloud settings: the sandbox makes its own');
      assert.ok(!('env_file' in sb), 'no .env: a real YCLOUD_API_KEY would make the sandbox refuse to start');
      const rtp = (resolved.services['sandbox-rtpengine']!.command as string[]).join(' ');
      assert.match(rtp, new RegExp(`--listen-ng=${String(env.RTPENGINE_NG).replace(/\./g, '\\.')}`));
      assert.match(rtp, /--interface=wa\/127\.0\.0\.1( |$)/);
      assert.match(String(resolved.services['sandbox-drachtio']!.command), new RegExp(`--port ${String(env.DRACHTIO_PORT)} `));
      for (const f of ['docker/sandbox.env']) assert.ok(fs.existsSync(path.join(ROOT, f)), `${f} exists`);
    });

    it('lets the bridge drain longer than SHUTDOWN_DRAIN_S before docker kills it', () => {
      const drainS = Number(defaultOf('SHUTDOWN_DRAIN_S'));
      const grace = durationS(String(resolved.services.bridge!.stop_grace_period ?? '10s'));
      assert.ok(grace > drainS + 30, `stop_grace_period ${grace} s exceeds SHUTDOWN_DRAIN_S ${drainS} s plus the teardown`);
    });

    it('keeps the HTTPS front optional (profile "https")', () => {
      const fronts = Object.entries(services).filter(([, s]) => (s.profiles as string[] | undefined)?.includes('https'));
      assert.deepEqual(fronts.map(([n]) => n), ['caddy']);
      assert.deepEqual(services.caddy!.profiles, ['https']);
      // The only other optional services: the recording daemon (RECORDING_METHOD=proc), Prometheus and
      // Grafana (test/dashboards.test.ts checks them), and the sandbox's three.
      const optional = Object.entries(services).filter(([, s]) => s.profiles && !(s.profiles as string[]).includes('https'));
      assert.deepEqual(optional.map(([n, s]) => [n, s.profiles]), [
        ['rtpengine-recording', ['recording-daemon']], ['prometheus', ['monitoring']], ['grafana', ['monitoring']],
        ['sandbox-drachtio', ['sandbox']], ['sandbox-rtpengine', ['sandbox']], ['sandbox', ['sandbox']],
      ]);
      assert.ok(fs.existsSync(path.join(ROOT, 'docker/Caddyfile')), 'docker/Caddyfile exists');
    });

    it('with the HTTPS front (WEBHOOK_DOMAIN) the bridge believes Caddy\'s X-Forwarded-For (TRUST_PROXY=true), and not without it; .env wins', () => {
      const trustProxy = (env: Env) => {
        const r = interpolateTree(compose, env, 'docker-compose.yml') as { services: Record<string, Service> };
        return envMap(r.services.bridge!.environment).TRUST_PROXY;
      };
      const front = { ...TEST_ENV, WEBHOOK_DOMAIN: 'wa.example.com' };
      assert.equal(trustProxy(front), 'true');
      assert.equal(loadConfig({ ...configEnv, TRUST_PROXY: trustProxy(front) }).trustProxy, 1);
      assert.equal(trustProxy(TEST_ENV), '', 'no front: unset');
      assert.equal(loadConfig({ ...configEnv, TRUST_PROXY: trustProxy(TEST_ENV) }).trustProxy, 0, 'unset means the socket peer is the client');
      assert.equal(trustProxy({ ...front, TRUST_PROXY: '2' }), '2', 'a TRUST_PROXY in .env is kept');
      assert.equal(trustProxy({ ...front, TRUST_PROXY: 'false' }), 'false');
    });

    it('docker/Caddyfile reads a webhook body in full (up to the largest a provider sends: a Meta batch) before the bridge sees it, and bounds slow clients', () => {
      const caddyfile = read('docker/Caddyfile').split('\n').filter((l) => !/^\s*#/.test(l)).join('\n');
      const webhooks = block(caddyfile, /handle \/webhooks\/\* \{/);
      const proxy = block(webhooks, /reverse_proxy .+\{$/m);
      const buffers = /^\s*request_buffers\s+(\S+)\s*$/m.exec(proxy)?.[1];
      assert.ok(buffers, 'reverse_proxy has request_buffers');
      const largest = Math.max(WEBHOOK_MAX_BODY_BYTES, new MetaWebhooks({ name: 'meta', appSecret: 'x', verifyToken: 'y' }).maxBodyBytes);
      assert.ok(caddySize(buffers) >= largest, `request_buffers ${buffers} holds a whole webhook body (${largest} bytes)`);
      const maxSize = /^\s*max_size\s+(\S+)\s*$/m.exec(block(webhooks, /request_body \{/))?.[1];
      assert.ok(maxSize && caddySize(maxSize) <= caddySize(buffers), `request_body max_size ${maxSize} fits the buffer`);
      const timeouts = block(block(caddyfile, /^\{/m), /timeouts \{/);
      for (const t of ['read_header', 'read_body']) assert.match(timeouts, new RegExp(`^\\s*${t}\\s+\\d+s\\s*$`, 'm'), `servers timeouts ${t}`);
    });

    it('docker/compose.tls.yml adds a TLS contact (with its own --external-ip/--local-net only with SIP_EXTERNAL_IP) and read-only certificates', () => {
      const tlsYaml = parseYaml(tlsRaw, 'docker/compose.tls.yml');
      const tls = interpolateTree(tlsYaml, TEST_ENV, 'docker/compose.tls.yml') as { services: Record<string, Service> };
      const drachtio = tls.services.drachtio!;
      const args = drachtioArgs(mergeService(resolved.services.drachtio!, drachtio));
      checkDrachtioArgs(args, 'docker/compose.tls.yml');
      assert.deepEqual(valuesOf(args, '--contact'), ['sip:10.0.0.5:5060;transport=udp,tcp', 'sips:10.0.0.5:5061;transport=tls']);
      assert.deepEqual(valuesOf(args, '--external-ip'), [], args.join(' '));
      assert.deepEqual(valuesOf(args, '--local-net'), [], args.join(' '));
      assert.deepEqual(valuesOf(args, '--secret'), ['test-secret']);
      for (const f of ['--key-file', '--cert-file', '--chain-file']) assert.equal(valuesOf(args, f).length, 1, f);
      const natTls = interpolateTree(tlsYaml, NAT_ENV, 'docker/compose.tls.yml') as typeof tls;
      const natBase = interpolateTree(compose, NAT_ENV, 'docker-compose.yml') as typeof resolved;
      const natArgs = drachtioArgs(mergeService(natBase.services.drachtio!, natTls.services.drachtio!));
      checkDrachtioArgs(natArgs, 'docker/compose.tls.yml');
      assert.deepEqual(natArgs.slice(0, 12), [
        '--contact', 'sip:10.0.0.5:5060;transport=udp,tcp', '--external-ip', '203.0.113.7', '--local-net', '10.0.0.0/16',
        '--contact', 'sips:10.0.0.5:5061;transport=tls', '--external-ip', '203.0.113.7', '--local-net', '10.0.0.0/16',
      ]);
      assert.throws(() => interpolateTree(tlsYaml, { ...TEST_ENV, SIP_TLS_CERT: '' }, 'docker/compose.tls.yml'), /SIP_TLS_CERT is required/);
      const volumes = drachtio.volumes as string[];
      assert.ok(volumes.length >= 2 && volumes.every((v) => v.endsWith(':ro')), volumes.join(', '));
      assert.ok(volumes.includes('/etc/ssl/test/fullchain.pem:/etc/drachtio/tls/chain.pem:ro'), 'the chain defaults to the full-chain certificate');
    });
  });

  describe('.env.example', () => {
    it('names every setting the bridge reads', () => {
      assert.ok(settings.all.size > 40, `found ${settings.all.size} settings in src/config/settings.ts`);
      const missing = [...settings.all].filter((k) => !envExample.has(k));
      assert.deepEqual(missing, [], `settings the bridge reads that .env.example does not mention: ${missing.join(', ')}`);
    });

    it('marks the required ones and leaves them (and every secret) empty', () => {
      const bridgeEnv = Object.keys(envMap((parseYaml(composeRaw, 'docker-compose.yml').services as Record<string, Service>).bridge!.environment));
      for (const key of settings.required) {
        if (bridgeEnv.includes(key)) continue;
        const e = envExample.get(key)!;
        assert.ok(!e.commented, `${key} is required: an uncommented line`);
        assert.match(e.comment, /REQUIRED/, `${key} is marked REQUIRED`);
      }
      for (const [key, e] of envExample) {
        if (/(KEY|SECRET|PASSWORD|TOKEN)$/.test(key) && !e.commented) assert.equal(e.value, '', `${key} is empty in the example`);
      }
    });

    it('names every variable docker-compose.yml and docker/compose.tls.yml use', () => {
      const used = new Set([...composeVariables(composeRaw), ...composeVariables(tlsRaw)]);
      const missing = [...used].filter((k) => !envExample.has(k));
      assert.deepEqual(missing, [], `compose variables not in .env.example: ${missing.join(', ')}`);
    });
  });

  describe('PBX samples under config/', () => {
    const files = walk(path.join(ROOT, 'config'));

    it('every *.xml is well-formed and every *.conf is shaped like an Asterisk config file', () => {
      const problems = files.flatMap((f) => checkSample(f));
      assert.deepEqual(problems, [], `\n${problems.join('\n')}`);
    });

    it('the checks name the file and line of a bad line', () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deploy-files-'));
      try {
        fs.mkdirSync(path.join(dir, 'sub'));
        fs.writeFileSync(path.join(dir, 'sub', 'x.conf'), '; ok\nloose=1\n[ctx](!)\nexten => _X.,1,Dial(PJSIP/${EXTEN}\n same => n,Hangup()\n#include "a.conf"\nthis is not a setting\n');
        fs.writeFileSync(path.join(dir, 'y.xml'), '<include>\n  <extension name="a">\n</include>\n');
        const problems = walk(dir).flatMap((f) => checkSample(f, dir));
        assert.equal(problems.length, 4, problems.join('\n'));
        assert.match(problems.join('\n'), /sub\/x\.conf:2: .*outside any \[section\]/);
        assert.match(problems.join('\n'), /sub\/x\.conf:4: .*parenthes/);
        assert.match(problems.join('\n'), /sub\/x\.conf:7: /);
        assert.match(problems.join('\n'), /y\.xml:3: /);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe('docker compose config', () => {
    it('accepts the files with the documented .env (on Compose v2.20 and later), refuses them without PUBLIC_IP, runs the sandbox profile without a .env, and gives drachtio-start.sh what the unit tests give it', function () {
      this.timeout(120000);
      const version = spawnSync('docker', ['compose', 'version', '--short'], { encoding: 'utf8', timeout: 20000 });
      if (version.error || version.status !== 0) {
        console.log(`      (skipped: ${version.error ? 'docker is not on PATH' : `\`docker compose version\` failed: ${(version.stderr || version.stdout).trim().split('\n')[0]}`})`);
        this.skip();
      }
      console.log(`      (Compose ${version.stdout.trim()})`);
      // A copy of the project, so that neither a real .env nor the caller's environment leaks in.
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deploy-compose-'));
      try {
        fs.copyFileSync(path.join(ROOT, 'docker-compose.yml'), path.join(dir, 'docker-compose.yml'));
        fs.cpSync(path.join(ROOT, 'docker'), path.join(dir, 'docker'), { recursive: true });
        const cleanEnv: Env = { PATH: process.env.PATH, HOME: process.env.HOME, DOCKER_HOST: process.env.DOCKER_HOST, DOCKER_CONFIG: process.env.DOCKER_CONFIG };
        const envFile = path.join(dir, '.env');
        const composeIn = (args: string[], config: string[]) => spawnSync('docker',
          ['compose', '--project-directory', dir, '-f', path.join(dir, 'docker-compose.yml'), ...args, 'config', ...config],
          { encoding: 'utf8', timeout: 60000, cwd: dir, env: cleanEnv as NodeJS.ProcessEnv });
        const compose = (env: Env | string, args: string[], config: string[]) => {
          fs.writeFileSync(envFile, typeof env === 'string' ? env : Object.entries(env).map(([k, v]) => `${k}=${v ?? ''}`).join('\n') + '\n');
          return composeIn(args, config);
        };
        const run = (env: Env | string, ...args: string[]) => compose(env, args, ['-q']);
        const servicesOf = (r: ReturnType<typeof composeIn>): Record<string, Service> => {
          assert.equal(r.status, 0, r.stderr);
          return (JSON.parse(r.stdout) as { services: Record<string, Service> }).services;
        };
        /** drachtio's arguments: compose's own resolution of the service, then docker/drachtio-start.sh on it. */
        const drachtioOf = (env: Env, ...args: string[]) => servicesOf(compose(env, args, ['--format', 'json'])).drachtio!;

        const ok = run(TEST_ENV);
        assert.equal(ok.status, 0, ok.stderr);
        // .env.example as a new user fills it in: the required blanks only (SIP_LOCAL_NET stays commented).
        const documented = read('.env.example').replace(/^([A-Z][A-Z0-9_]*)=$/gm, (line, k: string) => (TEST_ENV[k] !== undefined ? `${k}=${TEST_ENV[k]}` : line));
        const fromExample = run(documented);
        assert.equal(fromExample.status, 0, `the documented .env: ${fromExample.stderr}`);
        const https = run({ ...TEST_ENV, WEBHOOK_DOMAIN: 'wa.example.com' }, '--profile', 'https');
        assert.equal(https.status, 0, https.stderr);
        const monitoring = run({ ...TEST_ENV, GRAFANA_ADMIN_PASSWORD: 'g', GRAFANA_DB_PASSWORD: 'r' }, '--profile', 'monitoring');
        assert.equal(monitoring.status, 0, monitoring.stderr);
        const tls = run(TEST_ENV, '-f', path.join(dir, 'docker', 'compose.tls.yml'));
        assert.equal(tls.status, 0, tls.stderr);
        const noPublic = run({ ...TEST_ENV, PUBLIC_IP: '' });
        assert.notEqual(noPublic.status, 0, 'refused without PUBLIC_IP');
        assert.match(noPublic.stderr, /PUBLIC_IP/);

        const plain = drachtioArgs(drachtioOf(TEST_ENV));
        assert.deepEqual(plain.slice(0, 3), ['--contact', 'sip:10.0.0.5:5060;transport=udp,tcp', '--address'], plain.join(' '));
        assert.ok(!plain.includes('') && !plain.includes('--external-ip') && !plain.includes('--local-net'), plain.join(' '));
        const nat = drachtioArgs(drachtioOf(NAT_ENV));
        assert.deepEqual(nat.slice(0, 6), ['--contact', 'sip:10.0.0.5:5060;transport=udp,tcp', '--external-ip', '203.0.113.7', '--local-net', '10.0.0.0/16'], nat.join(' '));
        const natTls = drachtioArgs(drachtioOf(NAT_ENV, '-f', path.join(dir, 'docker', 'compose.tls.yml')));
        assert.deepEqual(natTls.slice(6, 12), ['--contact', 'sips:10.0.0.5:5061;transport=tls', '--external-ip', '203.0.113.7', '--local-net', '10.0.0.0/16'], natTls.join(' '));
        const noLocalNet = runDrachtioStart(drachtioOf({ ...NAT_ENV, SIP_LOCAL_NET: '' }));
        assert.notEqual(noLocalNet.status, 0, 'SIP_EXTERNAL_IP without SIP_LOCAL_NET: drachtio does not start');
        assert.match(noLocalNet.stderr, /SIP_LOCAL_NET/);

        const custom = servicesOf(compose({ ...TEST_ENV, POSTGRES_PASSWORD: 'Zq7pw0rd', POSTGRES_PORT: '6543' }, [], ['--format', 'json']));
        assert.equal(envMap(custom.bridge!.environment).DATABASE_URL, 'postgres://bridge:Zq7pw0rd@127.0.0.1:6543/bridge');

        // The sandbox, as the README starts it, on a machine with no .env.
        fs.rmSync(envFile);
        const sandbox = composeIn(['--env-file', path.join(dir, 'docker', 'sandbox.env'), '--profile', 'sandbox'], ['--format', 'json']);
        const sb = servicesOf(sandbox).sandbox!;
        assert.equal(envMap(sb.environment).DATABASE_URL, 'postgres://bridge:bridge@127.0.0.1:55432/wasb_sandbox');
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});

// ---------------------------------------------------------------------------------------------------

function findRoot(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'docker-compose.yml')) && fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) return process.cwd();
  }
}

function parseYaml(text: string, name: string): Record<string, unknown> {
  const doc = YAML.parseDocument(text, { uniqueKeys: true });
  assert.deepEqual(doc.errors.map((e) => e.message), [], `${name} is valid YAML`);
  const value = doc.toJS() as unknown;
  assert.ok(value && typeof value === 'object', `${name} is a mapping`);
  return value as Record<string, unknown>;
}

/** Every setting the bridge reads (src/config/settings.ts); required: those without a default. */
function settingsOfTheBridge(): { all: Set<string>; required: Set<string> } {
  const names = Object.keys(SETTINGS) as SettingName[];
  return { all: new Set(names), required: new Set(names.filter((n) => SETTINGS[n].fallback.kind === 'required')) };
}

/** The default src/config/settings.ts gives a setting, as written. */
function defaultOf(name: SettingName): string {
  const f = SETTINGS[name].fallback;
  assert.ok(f.kind === 'default', `src/config/settings.ts gives ${name} a default`);
  return f.written;
}

interface EnvLine { value: string; commented: boolean; comment: string }

/** KEY=value lines, and commented-out `# KEY=default` ones, with the comment block above each. */
function parseEnvExample(text: string): Map<string, EnvLine> {
  const out = new Map<string, EnvLine>();
  let comment: string[] = [];
  for (const line of text.split('\n')) {
    const active = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(line);
    const commented = /^#\s?([A-Z][A-Z0-9_]*)=(.*)$/.exec(line);
    const m = active ?? commented;
    if (m) {
      if (!out.has(m[1]!) || active) out.set(m[1]!, { value: m[2]!.trim(), commented: !active, comment: comment.join('\n') });
      if (active) comment = [];
    } else if (line.startsWith('#')) {
      comment.push(line);
    } else {
      comment = [];
    }
  }
  return out;
}

/** The text inside the braces of the first block whose opening line matches `opening` (which ends with its "{"). */
function block(text: string, opening: RegExp): string {
  const m = opening.exec(text);
  assert.ok(m, `a block ${opening}`);
  let depth = 1;
  let i = m.index + m[0].length;
  const start = i;
  for (; i < text.length && depth > 0; i++) {
    if (text[i] === '{') depth++;
    else if (text[i] === '}') depth--;
  }
  assert.equal(depth, 0, `block ${opening} is closed`);
  return text.slice(start, i - 1);
}

/** A Caddyfile size (64KiB, 1MB, 65536) in bytes. */
function caddySize(s: string): number {
  const m = /^(\d+)\s*(B|KB|KiB|MB|MiB)?$/i.exec(s);
  assert.ok(m, `a size: ${s}`);
  const unit = (m[2] ?? 'B').toLowerCase();
  const factor = { b: 1, kb: 1000, kib: 1024, mb: 1000_000, mib: 1024 * 1024 }[unit]!;
  return Number(m[1]) * factor;
}

function envMap(environment: unknown): Record<string, string> {
  if (!environment) return {};
  if (Array.isArray(environment)) {
    return Object.fromEntries(environment.map((e: string) => [e.split('=')[0]!, e.split('=').slice(1).join('=')]));
  }
  return Object.fromEntries(Object.entries(environment as Record<string, unknown>).map(([k, v]) => [k, String(v)]));
}

/** ${NAME...} and $NAME references (not $$-escaped ones) in a compose file. */
function composeVariables(text: string): Set<string> {
  const out = new Set<string>();
  const body = text.split('\n').filter((l) => !/^\s*#/.test(l)).join('\n').replace(/\$\$/g, '');
  for (const m of body.matchAll(/\$\{?([A-Za-z_][A-Za-z0-9_]*)/g)) out.add(m[1]!);
  return out;
}

/** Compose's interpolation (docs: compose-file/interpolation): $$, $X, ${X}, :- - :? ? :+ +, nested. */
function interpolate(s: string, env: Env, where: string): string {
  let out = '';
  for (let i = 0; i < s.length;) {
    if (s[i] !== '$') {
      out += s[i++];
    } else if (s[i + 1] === '$') {
      out += '$';
      i += 2;
    } else if (s[i + 1] === '{') {
      let depth = 1;
      let j = i + 2;
      for (; j < s.length; j++) {
        if (s[j] === '{') depth++;
        else if (s[j] === '}' && --depth === 0) break;
      }
      assert.ok(depth === 0, `${where}: unclosed \${ in "${s}"`);
      out += expand(s.slice(i + 2, j), env, where);
      i = j + 1;
    } else {
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(s.slice(i + 1));
      if (m) {
        out += env[m[0]] ?? '';
        i += 1 + m[0].length;
      } else {
        out += s[i++];
      }
    }
  }
  return out;
}

/**
 * One `${...}`, as Compose before v5.0.2 evaluates it: the text after the operator (a default, an
 * alternative, a message) is interpolated first, whether or not it is used, so a required check nested
 * in `${A:+...}` fails even when A is unset. Later Compose evaluates lazily; a file this accepts works
 * on both, the reverse is what broke the documented .env.
 */
function expand(body: string, env: Env, where: string): string {
  const m = /^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([\s\S]*))?$/.exec(body);
  assert.ok(m, `${where}: \${${body}} is not compose interpolation syntax`);
  const [, name, op, arg = ''] = m as unknown as [string, string, string | undefined, string | undefined];
  const v = env[name];
  const isSet = v !== undefined;
  const nonEmpty = isSet && v !== '';
  const inner = op === undefined ? '' : interpolate(arg, env, where);
  switch (op) {
    case undefined: return v ?? '';
    case ':-': return nonEmpty ? v! : inner;
    case '-': return isSet ? v! : inner;
    case ':?': if (!nonEmpty) throw new RequiredVariable(`${where}: ${name} is required: ${inner}`); return v!;
    case '?': if (!isSet) throw new RequiredVariable(`${where}: ${name} is required: ${inner}`); return v!;
    case ':+': return nonEmpty ? inner : '';
    case '+': return isSet ? inner : '';
    default: throw new Error(`${where}: unknown operator ${op}`);
  }
}

/** Compose interpolates values (never keys), in every file before merging. */
function interpolateTree(value: unknown, env: Env, where: string): unknown {
  if (typeof value === 'string') return interpolate(value, env, where);
  if (Array.isArray(value)) return value.map((v) => interpolateTree(v, env, where));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolateTree(v, env, where)]));
  }
  return value;
}

/** A service's command as argv (a string command is split on whitespace, quotes removed). */
function argv(command: unknown): string[] {
  if (Array.isArray(command)) return command.map(String);
  if (typeof command === 'string') return (command.match(/"[^"]*"|'[^']*'|\S+/g) ?? []).map((a) => a.replace(/^["']|["']$/g, ''));
  return [];
}

function interfacesOf(svc: Service): string[] {
  const args = argv(svc.command);
  const out: string[] = [];
  args.forEach((a, i) => {
    if (a.startsWith('--interface=')) out.push(a.slice('--interface='.length));
    else if (a === '--interface' || a === '-i') out.push(args[i + 1]!);
  });
  return out;
}

/**
 * What docker/drachtio-start.sh does with a (resolved) drachtio service's environment: run for real by
 * /bin/sh, with a stand-in `drachtio` on PATH that prints the arguments it was given (null: never run).
 */
function runDrachtioStart(svc: Service): { status: number | null; stderr: string; args: string[] | null } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drachtio-start-'));
  try {
    const out = path.join(dir, 'args.json');
    fs.writeFileSync(path.join(dir, 'drachtio'), `#!/usr/bin/env node\nrequire('fs').writeFileSync(${JSON.stringify(out)}, JSON.stringify(process.argv.slice(2)));\n`, { mode: 0o755 });
    const r = spawnSync('/bin/sh', [path.join(ROOT, 'docker', 'drachtio-start.sh')], {
      encoding: 'utf8', timeout: 10000, env: { PATH: `${dir}:${process.env.PATH ?? ''}`, ...envMap(svc.environment) },
    });
    const args = fs.existsSync(out) ? (JSON.parse(fs.readFileSync(out, 'utf8')) as string[]) : null;
    return { status: r.status, stderr: r.stderr, args };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** drachtio's own arguments, as docker/drachtio-start.sh gives them from the service's environment. */
function drachtioArgs(svc: Service): string[] {
  assert.deepEqual(svc.entrypoint, ['/bin/sh', DRACHTIO_START_IN_CONTAINER], 'drachtio starts through docker/drachtio-start.sh');
  const r = runDrachtioStart(svc);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(r.args, 'drachtio was started');
  return r.args;
}

/** Compose's merge of an overlay's service into the base one (what these files use: environment and volumes add up). */
function mergeService(base: Service, overlay: Service): Service {
  return {
    ...base, ...overlay,
    environment: { ...envMap(base.environment), ...envMap(overlay.environment) },
    volumes: [...((base.volumes ?? []) as string[]), ...((overlay.volumes ?? []) as string[])],
  };
}

/** `${NAME:?...}` / `${NAME?...}` checks that sit inside another `${...}` (comments skipped, `$$` escapes too). */
function nestedRequiredChecks(text: string): string[] {
  const body = text.split('\n').filter((l) => !/^\s*#/.test(l)).join('\n').replace(/\$\$/g, '');
  const out: string[] = [];
  let depth = 0;
  for (let i = 0; i < body.length; i++) {
    if (body[i] === '$' && body[i + 1] === '{') {
      const m = /^\$\{([A-Za-z_][A-Za-z0-9_]*):?\?/.exec(body.slice(i));
      if (m && depth > 0) out.push(m[1]!);
      depth++;
      i++;
    } else if (body[i] === '}' && depth > 0) {
      depth--;
    }
  }
  return out;
}

function valuesOf(args: string[], flag: string): string[] {
  return args.flatMap((a, i) => (a === flag ? [args[i + 1]!] : a.startsWith(`${flag}=`) ? [a.slice(flag.length + 1)] : []));
}

/**
 * Each --contact is followed, before the next one, by either no --external-ip and --local-net or one of
 * each (with a value); every option exists; no argument is empty (drachtio would take it as one).
 */
function checkDrachtioArgs(args: string[], where: string): void {
  assert.ok(!args.includes(''), `${where}: no empty argument in ${JSON.stringify(args)}`);
  for (const a of args) {
    if (a.startsWith('--')) assert.ok(DRACHTIO_OPTIONS.has(a.slice(2).split('=')[0]!), `${where}: drachtio-server has no option ${a}`);
  }
  const contacts = args.flatMap((a, i) => (a === '--contact' || a === '-c' ? [i] : []));
  assert.ok(contacts.length >= 1, `${where}: drachtio has a --contact`);
  const first = contacts[0]!;
  for (const flag of ['--external-ip', '--local-net']) {
    assert.ok(!args.slice(0, first).includes(flag), `${where}: ${flag} must follow a --contact (drachtio refuses it otherwise)`);
  }
  contacts.forEach((start, n) => {
    const group = args.slice(start, contacts[n + 1] ?? args.length);
    const count = (flag: string) => group.filter((a) => a === flag).length;
    const nat = count('--external-ip');
    assert.ok(nat <= 1, `${where}: --external-ip at most once after --contact ${args[start + 1]}`);
    assert.equal(count('--local-net'), nat, `${where}: --external-ip and --local-net both or neither after --contact ${args[start + 1]}`);
    for (const flag of ['--external-ip', '--local-net']) {
      for (const v of valuesOf(group, flag)) assert.ok(v && !v.startsWith('-'), `${where}: ${flag} has a value after --contact ${args[start + 1]}`);
    }
  });
}

function durationS(s: string): number {
  let total = 0;
  const re = /(\d+(?:\.\d+)?)(h|ms|m|s|us)/g;
  let m: RegExpExecArray | null;
  let seen = '';
  while ((m = re.exec(s))) {
    seen += m[0];
    total += Number(m[1]) * ({ h: 3600, m: 60, s: 1, ms: 0.001, us: 0.000001 } as Record<string, number>)[m[2]!]!;
  }
  assert.equal(seen, s.trim(), `"${s}" is a duration`);
  return total;
}

function walk(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? walk(p) : [p];
  }).sort();
}

/** Problems in one sample file, each as `path:line: what`. */
function checkSample(file: string, base = ROOT): string[] {
  const rel = path.relative(base, file);
  const text = fs.readFileSync(file, 'utf8');
  if (file.endsWith('.xml')) {
    const r = XMLValidator.validate(text);
    return r === true ? [] : [`${rel}:${r.err.line}: ${r.err.msg}`];
  }
  if (file.endsWith('.conf')) return checkAsteriskConf(text).map(({ line, msg }) => `${rel}:${line}: ${msg}`);
  return [];
}

/**
 * Asterisk's config syntax: `[section]` (with `(!)`/`(template,...)`), `key=value`, `key => value`,
 * `;` comments (`\;` is a literal), `;-- block --;` comments, `#include`/`#tryinclude`/`#exec`.
 * exten/same lines must have a priority and an application with balanced parentheses.
 */
function checkAsteriskConf(text: string): Array<{ line: number; msg: string }> {
  const problems: Array<{ line: number; msg: string }> = [];
  let inBlock = false;
  let inSection = false;
  text.split(/\r?\n/).forEach((raw, idx) => {
    const line = idx + 1;
    let s = raw;
    if (inBlock) {
      const end = s.indexOf('--;');
      if (end < 0) return;
      s = s.slice(end + 3);
      inBlock = false;
    }
    const block = s.indexOf(';--');
    if (block >= 0) {
      const end = s.indexOf('--;', block + 3);
      if (end < 0) inBlock = true;
      s = s.slice(0, block) + (end < 0 ? '' : s.slice(end + 3));
    }
    s = s.replace(/(^|[^\\]);.*$/, '$1').trim();
    if (!s) return;
    if (/^#(include|tryinclude|exec)\s+\S/.test(s)) return;
    if (s.startsWith('[')) {
      if (/^\[[^\]\s]+\](\([^)]*\))?$/.test(s)) inSection = true;
      else problems.push({ line, msg: `bad section header "${raw.trim()}"` });
      return;
    }
    const kv = /^([A-Za-z0-9_][A-Za-z0-9_.\-/]*)\s*(=>|=)\s*(.*)$/.exec(s);
    if (!kv) {
      problems.push({ line, msg: `not a [section], key=value, key => value, comment or #include: "${raw.trim()}"` });
      return;
    }
    if (!inSection) problems.push({ line, msg: `setting outside any [section]: "${raw.trim()}"` });
    const [, key, , value] = kv as unknown as [string, string, string, string];
    if (key === 'exten' || key === 'same') {
      const shape = key === 'exten'
        ? /^[^,]+,\s*(\d+|n|hint)(\([\w-]+\))?(\s*\+\s*\d+)?\s*,.+$/
        : /^(\d+|n)(\([\w-]+\))?(\s*\+\s*\d+)?\s*,.+$/;
      if (!shape.test(value)) problems.push({ line, msg: `${key} needs ${key === 'exten' ? 'pattern,' : ''}priority,application: "${raw.trim()}"` });
      else if (!balanced(value)) problems.push({ line, msg: `unbalanced parentheses or braces: "${raw.trim()}"` });
    }
  });
  if (inBlock) problems.push({ line: text.split(/\r?\n/).length, msg: 'block comment ;-- never closed with --;' });
  return problems;
}

function balanced(s: string): boolean {
  const stack: string[] = [];
  const pairs: Record<string, string> = { ')': '(', '}': '{', ']': '[' };
  for (const c of s.replace(/\\./g, '')) {
    if (c === '(' || c === '{' || c === '[') stack.push(c);
    else if (c in pairs && stack.pop() !== pairs[c]) return false;
  }
  return stack.length === 0;
}
