import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { XMLParser } from 'fast-xml-parser';
import { SETTINGS } from '../../src/config/settings';
import { parseEnvFile } from '../../src/config/env-file';
import { parseUnit, timeSpanSeconds, unitValue, unitValues, UnitFile } from '../harness/systemd-unit';

/**
 * The native deployment's files (deploy/systemd, docs/deploy-native.md): the units systemd would load,
 * agreeing with each other, with the bridge's settings and with the docs that install them.
 */

const ROOT = path.join(__dirname, '..', '..', '..');
const read = (rel: string): string => fs.readFileSync(path.join(ROOT, rel), 'utf8');
const DIR = 'deploy/systemd';
const unit = (name: string): UnitFile => parseUnit(read(`${DIR}/${name}`));
const shownDefault = (name: keyof typeof SETTINGS): string => {
  const f = SETTINGS[name].fallback;
  assert.equal(f.kind, 'default', `${name} has a written default`);
  return (f as { written: string }).written;
};
/** .env.example's example line of a setting (`# NAME=value`). */
const exampleOf = (name: string): string | undefined => new RegExp(`^# ${name}=(.*)$`, 'm').exec(read('.env.example'))?.[1];

describe('systemd units (deploy/systemd)', () => {
  const bridge = unit('wa-sip-bridge.service');
  const drachtio = unit('drachtio.service');
  const rtpDropIn = unit('rtpengine-daemon.service.d/wa-sip-bridge.conf');
  const doc = read('docs/deploy-native.md');

  it('the bridge: the production build as an unprivileged user, its settings file, restarts that help and none that cannot', () => {
    const user = unitValue(bridge, 'Service', 'User');
    assert.ok(user && user !== 'root', `runs as ${user}`);
    const exec = unitValue(bridge, 'Service', 'ExecStart')!.split(/\s+/);
    const main = JSON.parse(read('package.json')).main as string;
    const workdir = unitValue(bridge, 'Service', 'WorkingDirectory')!;
    assert.deepEqual(exec, ['/usr/bin/env', 'node', path.posix.join(workdir, main)], 'node (from systemd\'s PATH) runs package.json\'s main in the installed tree');
    const env = unitValues(bridge, 'Service', 'Environment', true);
    assert.ok(env.includes('NODE_ENV=production'));
    const envFile = env.find((e) => e.startsWith('ENV_FILE='))?.slice('ENV_FILE='.length);
    assert.equal(envFile, '/etc/wa-sip-bridge/bridge.env');
    assert.ok(SETTINGS.ENV_FILE, 'ENV_FILE is a documented setting');
    assert.equal(unitValue(bridge, 'Service', 'Restart'), 'on-failure');
    assert.ok(unitValues(bridge, 'Service', 'RestartPreventExitStatus', true).includes('2'), 'exit 2 (a setting or the database to fix) is not restarted');
    assert.equal(unitValue(bridge, 'Service', 'KillMode'), 'mixed', 'SIGTERM to the bridge alone, which drains');
    const stopS = timeSpanSeconds(unitValue(bridge, 'Service', 'TimeoutStopSec')!);
    const drainS = Number(shownDefault('SHUTDOWN_DRAIN_S'));
    assert.ok(stopS >= drainS + 60, `TimeoutStopSec (${stopS} s) is above the drain (${drainS} s) and the stop steps' bounds (+60 s, as STOP_GRACE_PERIOD)`);
    // What it writes: its state (MEDIA_DIR and CDR_SPILL_DIR, fixed by the unit), and rtpengine's recording folders.
    const writable = unitValues(bridge, 'Service', 'ReadWritePaths', true);
    for (const name of ['MEDIA_DIR', 'CDR_SPILL_DIR']) {
      const v = env.find((e) => e.startsWith(`${name}=`))?.slice(name.length + 1);
      assert.ok(v && writable.some((w) => v.startsWith(`${w}/`)), `${name}=${v} is persistent and writable`);
    }
    for (const name of ['RECORDING_SPOOL_DIR', 'RECORDING_DIR'] as const) assert.ok(writable.includes(shownDefault(name)), `${name} is writable`);
    assert.ok(unitValues(bridge, 'Service', 'SupplementaryGroups', true).includes('rtpengine'), 'reads what rtpengine records');
    assert.deepEqual(unitValues(bridge, 'Service', 'EnvironmentFile'), unitValues(drachtio, 'Service', 'EnvironmentFile'), 'DRACHTIO_SECRET from one file for both');
    for (const dep of ['drachtio.service', 'rtpengine-daemon.service', 'network-online.target']) {
      assert.ok(unitValues(bridge, 'Unit', 'After', true).includes(dep), `after ${dep}`);
      assert.ok(unitValues(bridge, 'Unit', 'Wants', true).includes(dep), `wants ${dep} (not Requires: restarting it must not stop the bridge)`);
    }
    assert.equal(unitValue(bridge, 'Install', 'WantedBy'), 'multi-user.target');
  });

  it('drachtio-server: its config file, the admin secret from the environment file (never on its command line), unprivileged', () => {
    const user = unitValue(drachtio, 'Service', 'User');
    assert.ok(user && user !== 'root');
    const exec = unitValue(drachtio, 'Service', 'ExecStart')!.split(/\s+/);
    assert.equal(exec[0], '/usr/local/bin/drachtio');
    assert.ok(!exec.includes('--daemon'), 'in the foreground: systemd supervises it');
    assert.ok(!exec.some((a) => a.startsWith('--secret')), 'the secret would show in ps');
    assert.equal(exec[exec.indexOf('--file') + 1], '/etc/drachtio/drachtio.conf.xml');
    const envFile = unitValue(drachtio, 'Service', 'EnvironmentFile')!;
    assert.equal(envFile, '/etc/wa-sip-bridge/drachtio.env');
    assert.ok(unitValues(drachtio, 'Unit', 'Before', true).includes('wa-sip-bridge.service'));

    const xml = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@' }).parse(read(`${DIR}/drachtio.conf.xml`)) as {
      drachtio: { admin: { '#text': string; '@port': string; '@secret'?: string }; sip: { contacts: { contact: string | string[] } } };
    };
    const admin = xml.drachtio.admin;
    assert.equal(admin['#text'], shownDefault('DRACHTIO_HOST'), 'the admin connection on loopback, where the bridge looks');
    assert.equal(admin['@port'], shownDefault('DRACHTIO_PORT'));
    assert.equal(admin['@secret'], undefined, 'no secret in the config file: DRACHTIO_SECRET from the environment');
    assert.deepEqual([xml.drachtio.sip.contacts.contact].flat(), ['sip:LOCAL_IP:5060;transport=udp,tcp']);
  });

  it('rtpengine: a drop-in for Debian\'s unit and its config file, with the two interfaces the bridge names', () => {
    assert.ok(unitValues(rtpDropIn, 'Unit', 'Before', true).includes('wa-sip-bridge.service'));
    assert.equal(unitValue(rtpDropIn, 'Service', 'UMask'), '0007', 'recordings readable by the bridge (group rtpengine)');
    const conf = read(`${DIR}/rtpengine.conf`);
    assert.match(conf, /^\[rtpengine\]$/m);
    const kv = new Map([...conf.matchAll(/^([a-z-]+)\s*=\s*(.*)$/gm)].map((m) => [m[1]!, m[2]!.trim()]));
    assert.equal(kv.get('interface'), `${shownDefault('RTPENGINE_WA_INTERFACE')}/LOCAL_IP!PUBLIC_IP;${shownDefault('RTPENGINE_PBX_INTERFACE')}/LOCAL_IP`);
    assert.equal(kv.get('listen-ng'), exampleOf('RTPENGINE_NG'), 'where .env.example says RTPENGINE_NG is');
    assert.equal(kv.get('dtmf-log-dest'), exampleOf('RTPENGINE_DTMF_LOG'));
    assert.equal(kv.get('recording-dir'), shownDefault('RECORDING_SPOOL_DIR'));
    assert.equal(kv.get('recording-method'), shownDefault('RECORDING_METHOD'));
    const compose = read('docker-compose.yml');
    assert.ok(compose.includes(`RTP_PORT_MIN:-${kv.get('port-min')}`) && compose.includes(`RTP_PORT_MAX:-${kv.get('port-max')}`), 'the port range compose opens');
    // Debian's unit reads /etc/rtpengine/rtpengine.conf, the file docs/deploy-native.md installs ours as.
    const debian = '/lib/systemd/system/rtpengine-daemon.service';
    if (fs.existsSync(debian)) assert.match(unitValue(parseUnit(fs.readFileSync(debian, 'utf8')), 'Service', 'ExecStart')!, /--config-file \/etc\/rtpengine\/rtpengine\.conf\b/);
  });

  it('docs/deploy-native.md installs each file where the units look for it', () => {
    for (const p of [
      '/etc/wa-sip-bridge/bridge.env', '/etc/wa-sip-bridge/drachtio.env', '/etc/drachtio/drachtio.conf.xml', '/etc/rtpengine/rtpengine.conf',
      '/etc/systemd/system/rtpengine-daemon.service.d', '/opt/wa-sip-bridge', '/usr/local/bin/drachtio', '/var/lib/wa-sip-bridge',
      `${DIR}/wa-sip-bridge.service`, `${DIR}/drachtio.service`, `${DIR}/drachtio.conf.xml`, `${DIR}/rtpengine.conf`,
      'npm ci --omit=dev', 'scripts/package.sh', 'MIGRATE_ON_START', 'npm run migrate',
    ]) assert.ok(doc.includes(p), `docs/deploy-native.md mentions ${p}`);
    for (const u of [unitValue(bridge, 'Service', 'User')!, unitValue(drachtio, 'Service', 'User')!]) assert.ok(doc.includes(`useradd`) && doc.includes(u), `creates the user ${u}`);
    // The drachtio.env the docs show is one the bridge's parser and systemd both read the same way.
    const shown = /^DRACHTIO_SECRET=.*$/m.exec(doc)?.[0];
    assert.ok(shown, 'the docs show drachtio.env\'s line');
    assert.deepEqual(parseEnvFile(shown).problems, []);
  });

  it('systemd-analyze verify finds nothing to say (where systemd is installed)', function () {
    if (spawnSync('systemd-analyze', ['--version']).status !== 0) this.skip();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-units-'));
    try {
      for (const f of ['wa-sip-bridge.service', 'drachtio.service']) fs.copyFileSync(path.join(ROOT, DIR, f), path.join(dir, f));
      const units = [path.join(dir, 'wa-sip-bridge.service'), path.join(dir, 'drachtio.service')];
      const debian = '/lib/systemd/system/rtpengine-daemon.service';
      if (fs.existsSync(debian)) {
        fs.copyFileSync(debian, path.join(dir, 'rtpengine-daemon.service'));
        fs.cpSync(path.join(ROOT, DIR, 'rtpengine-daemon.service.d'), path.join(dir, 'rtpengine-daemon.service.d'), { recursive: true });
        units.push(path.join(dir, 'rtpengine-daemon.service'));
      }
      const r = spawnSync('systemd-analyze', ['verify', '--man=no', ...units], { encoding: 'utf8', timeout: 30000, env: { ...process.env, SYSTEMD_UNIT_PATH: `${dir}:` } });
      // Lines about other units (a host's own) are not ours to fix; ours must be silent.
      const ours = (r.stderr + r.stdout).split('\n')
        .filter((l) => l.includes(dir) || /wa-sip-bridge|drachtio|rtpengine/.test(l))
        // A program this machine lacks (drachtio-server not built here) is the machine's, not the unit's.
        .filter((l) => !/is not executable: No such file or directory/.test(l));
      assert.deepEqual(ours, [], r.stderr);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
