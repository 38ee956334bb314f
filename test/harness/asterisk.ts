import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { findProgram, freePort, ManagedProcess } from './processes';

/** Where the asterisk binary is: $ASTERISK_BIN, or `asterisk` on PATH; null when absent. */
export function findAsterisk(): string | null {
  return findProgram('asterisk', 'ASTERISK_BIN');
}

export interface AsteriskOptions {
  /** The dialplan of context from-whatsapp (lines after `[from-whatsapp]`). */
  dialplan: string[];
  /** Extra lines for the bridge's PJSIP endpoint section. */
  endpoint?: string[];
}

/**
 * A real Asterisk playing the PBX, on loopback, with a generated configuration: one PJSIP endpoint for
 * the bridge (identified by address), context from-whatsapp with the test's dialplan. Its verbose
 * console output is kept, so a test can read what the dialplan logged (Verbose()).
 */
export class Asterisk {
  private proc: ManagedProcess | null = null;
  private dir = '';
  port = 0;

  constructor(private readonly bin: string, private readonly opts: AsteriskOptions) {}

  get uri(): string {
    return `sip:127.0.0.1:${this.port}`;
  }

  get output(): string {
    return this.proc?.output ?? '';
  }

  async start(): Promise<this> {
    this.port = await freePort('udp');
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-asterisk-'));
    const d = (sub: string) => {
      const p = path.join(this.dir, sub);
      fs.mkdirSync(p, { recursive: true });
      return p;
    };
    const etc = d('etc');
    const write = (name: string, text: string) => fs.writeFileSync(path.join(etc, name), text);
    write('asterisk.conf', `[directories]
astetcdir => ${etc}
astmoddir => ${path.join(path.dirname(path.dirname(fs.realpathSync(this.bin))), 'lib', 'asterisk', 'modules')}
astvarlibdir => ${d('lib')}
astdbdir => ${d('db')}
astkeydir => ${d('keys')}
astdatadir => ${path.join(path.dirname(path.dirname(fs.realpathSync(this.bin))), 'var', 'lib', 'asterisk')}
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
    write('pjsip.conf', `[udp]
type = transport
protocol = udp
bind = 127.0.0.1:${this.port}

[bridge]
type = endpoint
transport = udp
context = from-whatsapp
disallow = all
allow = ulaw,alaw
direct_media = no
dtmf_mode = rfc4733
${(this.opts.endpoint ?? []).join('\n')}

[bridge]
type = identify
endpoint = bridge
match = 127.0.0.1
`);
    write('extensions.conf', `[from-whatsapp]\n${this.opts.dialplan.join('\n')}\n`);
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
    return this;
  }

  private conf = '';
  private log = '';

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

  /** Its log so far (the dialplan writes there with Verbose()). */
  logText(): string {
    try {
      return fs.readFileSync(this.log, 'utf8');
    } catch {
      return '';
    }
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
