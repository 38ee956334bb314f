import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { findProgram, freePort, ManagedProcess } from './processes';
import { linearToUlaw } from './tone';

/** Where the asterisk binary is: $ASTERISK_BIN, or `asterisk` on PATH; null when absent. */
export function findAsterisk(): string | null {
  return findProgram('asterisk', 'ASTERISK_BIN');
}

/** One Asterisk the suite runs on: the binary and what `asterisk -V` says (e.g. 'Asterisk 22.10.1'); `missing` says why not. */
export interface AsteriskBinary {
  bin: string;
  version: string | null;
  missing?: string;
}

/**
 * Every Asterisk to run the suite on: $ASTERISK_BINS (a colon list of paths or names) when set;
 * otherwise $ASTERISK_BIN or `asterisk` on PATH, plus each `asterisk-<N>` on PATH (e.g. asterisk-20,
 * a second release installed under its own prefix). Two names for one binary count once. A listed
 * one that is not there comes back with `missing` set, so the suite can say so.
 */
/** Whether this Asterisk has a module built (its modules directory, beside the binary's prefix, holds `name`). */
export function asteriskHasModule(bin: string, name: string): boolean {
  const prefix = path.dirname(path.dirname(fs.realpathSync(bin)));
  return fs.existsSync(path.join(prefix, 'lib', 'asterisk', 'modules', name));
}

export function findAsterisks(): AsteriskBinary[] {
  const names: string[] = [];
  if (process.env.ASTERISK_BINS) names.push(...process.env.ASTERISK_BINS.split(':').filter(Boolean));
  else {
    const main = findAsterisk();
    if (main) names.push(main);
    for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
      let entries: string[] = [];
      try {
        entries = fs.readdirSync(dir);
      } catch {
        continue;
      }
      for (const e of entries.filter((n) => /^asterisk-\d+$/.test(n)).sort()) names.push(path.join(dir, e));
    }
  }
  const seen = new Set<string>();
  const out: AsteriskBinary[] = [];
  for (const name of names) {
    const bin = name.includes('/') ? name : findProgram(name, '__none__') ?? name;
    let real: string;
    try {
      real = fs.realpathSync(bin);
      fs.accessSync(real, fs.constants.X_OK);
    } catch {
      out.push({ bin, version: null, missing: `${bin} is not there or not executable` });
      continue;
    }
    if (seen.has(real)) continue;
    seen.add(real);
    out.push({ bin, version: asteriskVersion(bin) });
  }
  return out;
}

/** `asterisk -V`'s line, e.g. 'Asterisk 22.10.1'; null if it prints none. */
export function asteriskVersion(bin: string): string | null {
  const r = spawnSync(bin, ['-V'], { encoding: 'utf8', timeout: 10000 });
  return /^Asterisk \S+/m.exec(`${r.stdout ?? ''}`)?.[0] ?? null;
}

/** The major release of `asterisk -V`'s line ('Asterisk 20.20.1' -> 20); null for a master build or none. */
export function asteriskMajor(version: string | null): number | null {
  const m = /^Asterisk (\d+)\./.exec(version ?? '');
  return m ? Number(m[1]) : null;
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
  /** Lines for the sample's wa-bridge endpoint (e.g. session timer settings); one it has (direct_media=) is changed in place. */
  endpoint?: string[];
  /** Ring the agents with Queue(support) as the sample's comment says, instead of Dial(${WA_AGENTS}). */
  queue?: boolean;
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
    // A setting the sample's endpoint already has is changed where it stands; others are added.
    const start = pjsip.search(/^\[wa-bridge\]\ntype=endpoint\n/m);
    if (start < 0) throw new Error('Asterisk sample: no [wa-bridge] type=endpoint section');
    const next = pjsip.indexOf('\n[', start + 1);
    let section = pjsip.slice(start, next < 0 ? undefined : next);
    const added: string[] = [];
    for (const line of lab.endpoint) {
      const key = line.split('=')[0]!;
      const re = new RegExp(`^${key}=.*$`, 'm');
      if (re.test(section)) section = section.replace(re, line);
      else added.push(line);
    }
    section = section.replace(/^\[wa-bridge\]\ntype=endpoint\n/, `[wa-bridge]\ntype=endpoint\n${added.map((l) => `${l}\n`).join('')}`);
    pjsip = pjsip.slice(0, start) + section + (next < 0 ? '' : pjsip.slice(next));
  }
  extensions = replaceOnce(extensions, /^WA_AGENTS=.*$/m, `WA_AGENTS=${lab.agents}`, 'WA_AGENTS global');
  if (lab.queue) {
    // What the sample's comment tells an operator with app_queue to do: Queue() instead of the Dial().
    extensions = replaceOnce(extensions, /^ same => n,Dial\(\$\{WA_AGENTS\},25\)$/m, ' same => n,Queue(support,,,,25)', 'Dial() of WA_AGENTS');
  }
  extensions += `\n; ---- lab only: the agents' stand-ins\n[wa-lab]\n${lab.lab.join('\n')}\n`;
  return { pjsip, extensions };
}

export interface AsteriskOptions {
  values: SampleValues;
  agents: string;
  lab: string[];
  endpoint?: string[];
  queue?: boolean;
  /** Lab sections appended to pjsip.conf (agents' phones: see `phoneSections`). */
  pjsip?: string[];
  /** More configuration files by name (e.g. queues.conf); replaces the empty default of that name. */
  files?: Record<string, string>;
  /**
   * Music on hold: class `default` plays (mode=files) a generated µ-law file of this tone, as an
   * operator's own music would (no sound packs can be fetched here).
   */
  mohToneHz?: number;
}

/**
 * A lab phone endpoint: its aor points at `contact`; requests from `address` are its own (null: no
 * identify, for a phone that only takes calls). Extra lines go into the endpoint.
 */
export function phoneSections(name: string, contact: string, address: string | null, endpoint: string[] = []): string[] {
  const keys = new Set(endpoint.map((l) => l.split('=')[0]));
  const defaults = ['direct_media=no'].filter((l) => !keys.has(l.split('=')[0]));
  return [
    `[${name}]`, 'type=endpoint', 'transport=transport-udp', 'context=wa-lab', 'disallow=all', 'allow=ulaw', `aors=${name}`, ...defaults, ...endpoint, '',
    `[${name}]`, 'type=aor', `contact=${contact}`, '',
    ...(address ? [`[${name}]`, 'type=identify', `endpoint=${name}`, `match=${address}`, ''] : []),
  ];
}

/** `seconds` of a sine at `hz` as raw µ-law at 8 kHz (Asterisk's format_pcm reads *.ulaw as is). */
export function ulawTone(hz: number, seconds: number): Buffer {
  const n = 8000 * seconds;
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i++) out[i] = linearToUlaw(Math.round(8000 * Math.sin((2 * Math.PI * hz * i) / 8000)));
  return out;
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
    write('rtp.conf', '[general]\nrtpstart = 11000\nrtpend = 11999\n');
    write('manager.conf', `[general]\nenabled = yes\nbindaddr = 127.0.0.1\nport = ${this.amiPort}\n\n[lab]\nsecret = lab\nread = all\nwrite = all\n`);
    const { pjsip, extensions } = renderAsteriskSample(this.opts.values, {
      sipPort: this.port, agents: this.opts.agents, lab: this.opts.lab, endpoint: this.opts.endpoint, queue: this.opts.queue,
    });
    write('pjsip.conf', this.opts.pjsip?.length ? `${pjsip}\n; ---- lab only: agents' phones\n${this.opts.pjsip.join('\n')}\n` : pjsip);
    write('extensions.conf', extensions);
    for (const f of ['indications.conf', 'musiconhold.conf', 'features.conf', 'cdr.conf', 'cel.conf', 'acl.conf', 'udptl.conf', 'sorcery.conf', 'pjproject.conf', 'ccss.conf', 'pjsip_notify.conf', 'queues.conf']) write(f, '');
    if (this.opts.mohToneHz) {
      const moh = d('moh');
      fs.writeFileSync(path.join(moh, 'tone.ulaw'), ulawTone(this.opts.mohToneHz, 10));
      write('musiconhold.conf', `[default]\nmode=files\ndirectory=${moh}\nsort=alpha\n`);
    }
    for (const [name, text] of Object.entries(this.opts.files ?? {})) write(name, text);
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
    if (process.env.ASTERISK_RTP_DEBUG) await this.cli('rtp set debug on');
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
