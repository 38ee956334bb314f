import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { findProgram, freePort, ManagedProcess } from './processes';

/** Where the asterisk binary is: $ASTERISK_BIN, or `asterisk` on PATH; null when absent. */
export function findAsterisk(): string | null {
  return findProgram('asterisk', 'ASTERISK_BIN');
}

/** The sample configuration docs/pbx-asterisk.md tells operators to copy (config/asterisk/). */
export const ASTERISK_SAMPLE_DIR = path.join(__dirname, '..', '..', '..', 'config', 'asterisk');

/** What an operator fills into the sample's placeholders. */
export interface SampleValues {
  bridgeIp: string;
  bridgeSipPort: number;
  /** [wa-bridge-in]'s password: the bridge's PBX_AUTH_PASSWORD (username wa-bridge). */
  bridgeToPbxSecret: string;
  /** [wa-bridge-out]'s password: the bridge's SIP_AUTH_PASSWORD (username asterisk). */
  pbxToBridgeSecret: string;
  /** The sample's WA_BUSINESS (X-WhatsApp-Business-Number on agents' calls), E.164. */
  businessNumber: string;
}

/** The usernames the sample's auth sections carry (the bridge's PBX_AUTH_USERNAME and SIP_AUTH_USERNAME). */
export const SAMPLE_USERNAMES = { bridgeToPbx: 'wa-bridge', pbxToBridge: 'asterisk' } as const;

/** Lab-only additions to the sample: nothing here changes how the sample talks to the bridge. */
export interface LabOptions {
  /** Where Asterisk listens (replaces the sample transport's bind=0.0.0.0:5060). */
  sipPort: number;
  /** Dial() string the sample's from-whatsapp rings (its WA_AGENTS), e.g. Local/echo@wa-lab. */
  agents: string;
  /** Lines of context [wa-lab]: the extensions that stand in for agents' phones. */
  lab: string[];
  /** Extra lines for the sample's wa-bridge endpoint (e.g. session timer settings). */
  endpoint?: string[];
}

/** Placeholders the samples use; each must be replaced everywhere outside comments. */
const PLACEHOLDERS = ['BRIDGE_IP', 'BRIDGE_SIP_PORT', 'BRIDGE_TO_PBX_SECRET', 'PBX_TO_BRIDGE_SECRET', 'BUSINESS_NUMBER'];

function replaceOnce(text: string, find: RegExp, by: string, what: string): string {
  const n = text.match(new RegExp(find.source, `${find.flags.replace('g', '')}g`))?.length ?? 0;
  if (n !== 1) throw new Error(`Asterisk sample: expected exactly one ${what} (${find}), found ${n}`);
  return text.replace(find, by);
}

/**
 * config/asterisk/{pjsip,extensions}.conf with the operator's values filled in (what docs/pbx-asterisk.md says
 * to do) and the lab's additions: loopback port, the agents' stand-in, extra endpoint lines.
 */
export function renderAsteriskSample(values: SampleValues, lab: LabOptions): { pjsip: string; extensions: string } {
  const fill = (text: string) => text
    .replace(/BRIDGE_TO_PBX_SECRET/g, values.bridgeToPbxSecret)
    .replace(/PBX_TO_BRIDGE_SECRET/g, values.pbxToBridgeSecret)
    .replace(/BRIDGE_SIP_PORT/g, String(values.bridgeSipPort))
    .replace(/BRIDGE_IP/g, values.bridgeIp)
    .replace(/BUSINESS_NUMBER/g, values.businessNumber);
  let pjsip = fill(fs.readFileSync(path.join(ASTERISK_SAMPLE_DIR, 'pjsip.conf'), 'utf8'));
  let extensions = fill(fs.readFileSync(path.join(ASTERISK_SAMPLE_DIR, 'extensions.conf'), 'utf8'));
  for (const [name, text] of [['pjsip.conf', pjsip], ['extensions.conf', extensions]] as const) {
    const live = text.split('\n').map((l) => l.replace(/;.*$/, '')).join('\n');
    for (const p of PLACEHOLDERS) if (live.includes(p)) throw new Error(`Asterisk sample ${name}: placeholder ${p} left`);
  }
  pjsip = replaceOnce(pjsip, /^bind=0\.0\.0\.0:5060$/m, `bind=127.0.0.1:${lab.sipPort}`, 'transport bind line');
  if (lab.endpoint?.length) {
    pjsip = replaceOnce(pjsip, /^\[wa-bridge\]\ntype=endpoint\n/m, `[wa-bridge]\ntype=endpoint\n${lab.endpoint.join('\n')}\n`, 'wa-bridge endpoint section');
  }
  extensions = replaceOnce(extensions, /^WA_AGENTS=.*$/m, `WA_AGENTS=${lab.agents}`, 'WA_AGENTS global');
  extensions += `\n; ---- lab only: the agents' stand-ins\n[wa-lab]\n${lab.lab.join('\n')}\n`;
  return { pjsip, extensions };
}

export interface AsteriskOptions {
  values: SampleValues;
  agents: string;
  lab: string[];
  endpoint?: string[];
}

/**
 * A real Asterisk playing the PBX, on loopback, configured with the repository's sample files
 * (config/asterisk/pjsip.conf and extensions.conf, placeholders filled) plus what a lab needs:
 * directories, modules, an RTP range, a manager (AMI) login to originate agents' calls, and the
 * [wa-lab] context. Its verbose output and SIP messages (pjsip logger) go to a log a test can read.
 */
export class Asterisk {
  private proc: ManagedProcess | null = null;
  private dir = '';
  private conf = '';
  private log = '';
  port = 0;
  amiPort = 0;

  constructor(private readonly bin: string, private readonly opts: AsteriskOptions) {}

  get uri(): string {
    return `sip:127.0.0.1:${this.port}`;
  }

  get output(): string {
    return this.proc?.output ?? '';
  }

  async start(): Promise<this> {
    this.port = await freePort('udp');
    this.amiPort = await freePort('tcp');
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-asterisk-'));
    const d = (sub: string) => {
      const p = path.join(this.dir, sub);
      fs.mkdirSync(p, { recursive: true });
      return p;
    };
    const etc = d('etc');
    const write = (name: string, text: string) => fs.writeFileSync(path.join(etc, name), text);
    const prefix = path.dirname(path.dirname(fs.realpathSync(this.bin)));
    write('asterisk.conf', `[directories]
astetcdir => ${etc}
astmoddir => ${path.join(prefix, 'lib', 'asterisk', 'modules')}
astvarlibdir => ${d('lib')}
astdbdir => ${d('db')}
astkeydir => ${d('keys')}
astdatadir => ${path.join(prefix, 'var', 'lib', 'asterisk')}
astagidir => ${d('agi')}
astspooldir => ${d('spool')}
astrundir => ${d('run')}
astlogdir => ${d('log')}
[options]
verbose = 3
nofork = yes
`);
    write('modules.conf', '[modules]\nautoload = yes\nnoload = chan_iax2.so\nnoload = res_pjsip_outbound_registration.so\n');
    write('logger.conf', '[logfiles]\nmessages.log => notice,warning,error,verbose(3)\n');
    write('rtp.conf', '[general]\nrtpstart = 41000\nrtpend = 41999\n');
    write('manager.conf', `[general]\nenabled = yes\nbindaddr = 127.0.0.1\nport = ${this.amiPort}\n\n[lab]\nsecret = lab\nread = all\nwrite = all\n`);
    const { pjsip, extensions } = renderAsteriskSample(this.opts.values, {
      sipPort: this.port, agents: this.opts.agents, lab: this.opts.lab, endpoint: this.opts.endpoint,
    });
    write('pjsip.conf', pjsip);
    write('extensions.conf', extensions);
    for (const f of ['indications.conf', 'musiconhold.conf', 'features.conf', 'cdr.conf', 'cel.conf', 'acl.conf', 'udptl.conf', 'sorcery.conf', 'pjproject.conf', 'ccss.conf', 'pjsip_notify.conf']) write(f, '');
    this.conf = path.join(etc, 'asterisk.conf');
    this.log = path.join(this.dir, 'log', 'messages.log');
    this.proc = new ManagedProcess('asterisk', this.bin, ['-C', this.conf, '-f', '-n']);
    // The control socket appears a moment after start: retry `core waitfullybooted` until it answers.
    const deadline = Date.now() + 30000;
    for (;;) {
      try {
        await this.cli('core waitfullybooted', 30000);
        break;
      } catch (err) {
        if (Date.now() > deadline || this.proc.child.exitCode !== null) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    // Every SIP message into the log: tests read challenges and headers from it.
    await this.cli('pjsip set logger on');
    return this;
  }

  /** Runs a CLI command against this Asterisk (asterisk -rx), bounded. */
  cli(command: string, timeoutMs = 10000): Promise<string> {
    const p = new ManagedProcess('asterisk -rx', this.bin, ['-C', this.conf, '-rx', command]);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        void p.stop();
        reject(new Error(`asterisk -rx '${command}' did not finish within ${timeoutMs} ms:\n${p.output}`));
      }, timeoutMs);
      void p.exited.then((code) => {
        clearTimeout(t);
        if (code === 0) resolve(p.output);
        else reject(new Error(`asterisk -rx '${command}' exited ${code}:\n${p.output}\n${this.output.slice(-1500)}`));
      });
    });
  }

  /** Qualifies the bridge (OPTIONS) and waits until Asterisk counts its contact as reachable: Dial() refuses an unreachable one. */
  async bridgeReachable(timeoutMs = 10000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      await this.cli('pjsip qualify wa-bridge').catch(() => undefined);
      await new Promise((r) => setTimeout(r, 300));
      const contacts = await this.cli('pjsip show contacts');
      if (/wa-bridge\/sip:\S+\s+\S+\s+Avail/.test(contacts)) return;
      if (Date.now() > deadline) throw new Error(`Asterisk never reached the bridge by OPTIONS:\n${contacts}`);
    }
  }

  /**
   * Originates a call through the manager interface (AMI Originate, asynchronous): `channel` is dialled
   * and, once it answers, runs `application`. Resolves once Asterisk has queued it.
   */
  async originate(o: { channel: string; application: string; data?: string; callerId?: string }): Promise<void> {
    const sock = net.connect(this.amiPort, '127.0.0.1');
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('data', (s: string) => { buf += s; });
    const waitFor = (re: RegExp, what: string) => new Promise<RegExpExecArray>((resolve, reject) => {
      const deadline = Date.now() + 10000;
      const t = setInterval(() => {
        const m = re.exec(buf);
        if (m) {
          clearInterval(t);
          resolve(m);
        } else if (Date.now() > deadline) {
          clearInterval(t);
          reject(new Error(`AMI: ${what} not seen within 10 s:\n${buf}`));
        }
      }, 20);
    });
    const send = (fields: Record<string, string | undefined>) => sock.write(Object.entries(fields)
      .filter(([, v]) => v !== undefined).map(([k, v]) => `${k}: ${v}\r\n`).join('') + '\r\n');
    try {
      await waitFor(/Asterisk Call Manager/, 'banner');
      send({ Action: 'Login', ActionID: 'login', Username: 'lab', Secret: 'lab' });
      await waitFor(/ActionID: login\r\nMessage: Authentication accepted/, 'login');
      send({ Action: 'Originate', ActionID: 'orig', Channel: o.channel, Application: o.application, Data: o.data, CallerID: o.callerId, Async: 'true', Timeout: '60000' });
      const m = await waitFor(/Response: (\w+)\r\nActionID: orig\r\n(?:Message: ([^\r]*))?/, 'Originate response');
      if (m[1] !== 'Success') throw new Error(`AMI Originate: ${m[1]} ${m[2] ?? ''}`);
      send({ Action: 'Logoff' });
    } finally {
      sock.destroy();
    }
  }

  /** Its log so far (the dialplan writes there with Verbose(), the pjsip logger every SIP message). */
  logText(): string {
    try {
      return fs.readFileSync(this.log, 'utf8');
    } catch {
      return '';
    }
  }

  /** The SIP messages in the log, each as `{ dir, text }`: 'rx' received by Asterisk, 'tx' sent by it. */
  sipMessages(): { dir: 'rx' | 'tx'; text: string }[] {
    const out: { dir: 'rx' | 'tx'; text: string }[] = [];
    const re = /<--- (Received|Transmitting) SIP (?:request|response) \([0-9]+ bytes\) (?:from|to) [^>]*--->\n([\s\S]*?)(?=\n\[[A-Z][a-z]{2} |\n<--- |$)/g;
    for (const m of this.logText().matchAll(re)) out.push({ dir: m[1] === 'Received' ? 'rx' : 'tx', text: m[2]! });
    return out;
  }

  /** Resolves with the first match of `re` in the log, polling it; rejects after `timeoutMs`. */
  async waitForLog(re: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = re.exec(this.logText());
      if (m) return m;
      if (Date.now() > deadline) throw new Error(`asterisk log: ${re} not seen within ${timeoutMs} ms:\n${this.logText().slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async stop(): Promise<void> {
    await this.cli('core stop now', 5000).catch(() => undefined);
    await this.proc?.stop();
    if (this.dir) fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
