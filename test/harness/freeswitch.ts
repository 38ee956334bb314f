import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EslClient } from './esl';
import { findProgram, freePort, ManagedProcess } from './processes';

/** Where the freeswitch binary is: $FREESWITCH_BIN, or `freeswitch` on PATH; null when absent. */
export function findFreeswitch(): string | null {
  return findProgram('freeswitch', 'FREESWITCH_BIN');
}

/** `freeswitch -version`, e.g. "FreeSWITCH version: 1.10.12-release~64bit (-release 64bit)". */
export function freeswitchVersion(bin: string): string {
  const r = spawnSync(bin, ['-version'], { encoding: 'utf8', timeout: 10000 });
  return `${r.stdout}${r.stderr}`.trim();
}

/** The sample configuration docs/pbx-freeswitch.md tells operators to copy (config/freeswitch/), laid out like conf/. */
export const FREESWITCH_SAMPLE_DIR = path.join(__dirname, '..', '..', '..', 'config', 'freeswitch');

/** The sample's files, relative to FreeSWITCH's conf/ directory (where docs/pbx-freeswitch.md says to copy them). */
export const FREESWITCH_SAMPLE_FILES = [
  'sip_profiles/external/wa-bridge.xml',
  'dialplan/public/wa-bridge.xml',
  'dialplan/default/00_wa-bridge.xml',
  'directory/default/wa-bridge.xml',
] as const;

/** What an operator fills into the sample's placeholders. */
export interface FreeswitchSampleValues {
  /** The bridge's address (the public dialplan gets it as a regular expression, dots escaped). */
  bridgeIp: string;
  bridgeSipPort: number;
  /** The gateway's password: the bridge's SIP_AUTH_PASSWORD (username freeswitch). */
  pbxToBridgeSecret: string;
  /** The directory user wa-bridge's password: the bridge's PBX_AUTH_PASSWORD (used with the "challenge" option). */
  bridgeToPbxSecret: string;
  /** X-WhatsApp-Business-Number on agents' calls, E.164. */
  businessNumber: string;
}

/** The usernames the sample carries (the bridge's SIP_AUTH_USERNAME and PBX_AUTH_USERNAME). */
export const FREESWITCH_SAMPLE_USERNAMES = { pbxToBridge: 'freeswitch', bridgeToPbx: 'wa-bridge' } as const;

/** The sample's documented options, each switched on the way its comment says. */
export interface FreeswitchSampleOptions {
  /** WhatsApp calls go into the mod_fifo queue `wa_support` instead of ringing extension 1000. */
  queue?: boolean;
  /** FreeSWITCH challenges the bridge's INVITEs (407): the bridge answers with PBX_AUTH_*. */
  challengeBridge?: boolean;
}

const PLACEHOLDERS = ['BRIDGE_IP', 'BRIDGE_SIP_PORT', 'PBX_TO_BRIDGE_SECRET', 'BRIDGE_TO_PBX_SECRET', 'BUSINESS_NUMBER'];

function replaceOnce(text: string, find: string | RegExp, by: string, what: string): string {
  const re = typeof find === 'string' ? new RegExp(find.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'g') : new RegExp(find.source, `${find.flags.replace('g', '')}g`);
  const n = text.match(re)?.length ?? 0;
  if (n !== 1) throw new Error(`FreeSWITCH config: expected exactly one ${what} (${find}), found ${n}`);
  return text.replace(typeof find === 'string' ? find : find, () => by);
}

/** The text outside XML comments (a placeholder there is only documentation). */
function live(text: string): string {
  return text.replace(/<!--[\s\S]*?-->/g, '');
}

/**
 * Switches on an option the sample documents as a commented block: the block between
 * `<!-- OPTION name` ... `END OPTION name -->` markers, whose inner lines are live XML once the
 * two marker comments' ends are closed, which is what the sample's comment tells operators to do.
 */
function enableOption(text: string, name: string): string {
  const re = new RegExp(`<!-- OPTION ${name}:[^\\n]*\\n([\\s\\S]*?)\\n\\s*END OPTION ${name} -->`);
  const m = re.exec(text);
  if (!m) throw new Error(`FreeSWITCH sample: no OPTION ${name} block`);
  return text.replace(re, () => m[1]!);
}

/**
 * config/freeswitch/ with the operator's values filled in (what docs/pbx-freeswitch.md says to do),
 * keyed by the path under conf/. Throws if a placeholder is left outside comments.
 */
export function renderFreeswitchSample(values: FreeswitchSampleValues, opts: FreeswitchSampleOptions = {}): Record<string, string> {
  const out: Record<string, string> = {};
  for (const rel of FREESWITCH_SAMPLE_FILES) {
    let text = fs.readFileSync(path.join(FREESWITCH_SAMPLE_DIR, rel), 'utf8');
    if (rel === 'dialplan/public/wa-bridge.xml') {
      if (opts.queue) text = enableOption(text, 'queue').replace(/^\s*<action application="bridge" data="user\/1000@\$\{domain_name\}"\/>\n/m, '');
      if (opts.challengeBridge) text = enableOption(text, 'challenge');
    }
    text = text
      .replace(/BRIDGE_TO_PBX_SECRET/g, values.bridgeToPbxSecret)
      .replace(/PBX_TO_BRIDGE_SECRET/g, values.pbxToBridgeSecret)
      .replace(/BRIDGE_SIP_PORT/g, String(values.bridgeSipPort))
      .replace(/\^BRIDGE_IP\$/g, `^${values.bridgeIp.replace(/\./g, '\\.')}$`)
      .replace(/BRIDGE_IP/g, values.bridgeIp)
      .replace(/BUSINESS_NUMBER/g, values.businessNumber);
    for (const p of PLACEHOLDERS) if (live(text).includes(p)) throw new Error(`FreeSWITCH sample ${rel}: placeholder ${p} left`);
    out[rel] = text;
  }
  return out;
}

/** One SIP message from FreeSWITCH's trace: 'rx' received by FreeSWITCH, 'tx' sent by it. */
export interface FsSipMessage {
  dir: 'rx' | 'tx';
  /** The far end, e.g. 127.0.0.1:5060. */
  peer: string;
  text: string;
  startLine: string;
  /** Request method, or the CSeq method of a response. */
  method: string;
  status: number | null;
  callId: string;
}

function header(text: string, name: string): string | null {
  const m = new RegExp(`^${name}:[ \\t]*(.*)$`, 'mi').exec(text);
  return m ? m[1]!.trim() : null;
}

export interface FreeswitchOptions {
  values: FreeswitchSampleValues;
  sample?: FreeswitchSampleOptions;
  /** Lab-only: extra `<param>`s for the external profile (session timers, SRTP...), name -> value. */
  externalParams?: Record<string, string>;
  /** Lab-only: the wa-bridge gateway's params changed from the sample's (e.g. a shorter ping), name -> value. */
  gatewayParams?: Record<string, string>;
  /**
   * Lab-only: what a WhatsApp call does instead of the sample's `bridge user/1000` (e.g. a transfer
   * to the stock echo, 9196, or to a lab IVR), as XML actions.
   */
  inboundActions?: string;
  /** Lab-only: extensions added to a context (after the stock and sample ones are included). */
  labExtensions?: { context: 'default' | 'public'; xml: string }[];
  /** Lab-only: `<fifo>` definitions appended to fifo.conf.xml. */
  fifos?: string;
  /** How long start() may take (loading modules on a busy 2-core box). Default 60 s. */
  startTimeoutMs?: number;
}

/** The password of the lab's directory users 1000-1019 (vars.xml's default_password, changed as the stock config asks). */
export const LAB_USER_PASSWORD = 'lab-7f3c91';
const ESL_PASSWORD = 'ClueCon-lab';

/**
 * A real FreeSWITCH playing the PBX, on loopback, from its own vanilla configuration (conf/ next to
 * the binary, as `make samples` installs it) copied into a temporary directory, the repository's
 * sample files added as docs/pbx-freeswitch.md says, and lab-only changes: every address 127.0.0.1,
 * free ports for the internal and external profiles and the event socket, an RTP port range, the
 * directory users' password, no IPv6 profiles, no WebSocket bindings, SIP traces into the log.
 * Stock dialplans and directory stay as they are, so what an operator's FreeSWITCH does, this one does.
 */
export class Freeswitch {
  private proc: ManagedProcess | null = null;
  private esl: EslClient | null = null;
  dir = '';
  internalPort = 0;
  externalPort = 0;
  eslPort = 0;
  /** The first RTP port of the lab's range (a range per instance, so a lingering socket never collides). */
  rtpStart = 0;

  constructor(private readonly bin: string, private readonly opts: FreeswitchOptions) {}

  /** The external profile, where the bridge sends WhatsApp calls (PBX_TARGET). */
  get uri(): string {
    return `sip:127.0.0.1:${this.externalPort}`;
  }

  /** The internal profile, where agents' phones register. */
  get registrar(): string {
    return `127.0.0.1:${this.internalPort}`;
  }

  get logFile(): string {
    return path.join(this.dir, 'log', 'freeswitch.log');
  }

  async start(): Promise<this> {
    this.internalPort = await freePort('udp');
    this.externalPort = await freePort('udp');
    this.eslPort = await freePort('tcp');
    this.rtpStart = 42000 + Math.floor(Math.random() * 40) * 100;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-freeswitch-'));
    const prefix = path.dirname(path.dirname(fs.realpathSync(this.bin)));
    const conf = path.join(this.dir, 'conf');
    fs.cpSync(path.join(prefix, 'conf'), conf, { recursive: true });
    for (const d of ['log', 'db', 'run', 'temp', 'cache', 'recordings', 'storage']) fs.mkdirSync(path.join(this.dir, d));
    this.configure(conf);
    const d = (sub: string) => path.join(this.dir, sub);
    this.proc = new ManagedProcess('freeswitch', this.bin, [
      // -nc without -nf would daemonize: -nf keeps it our child, so stop() can always end it.
      '-nf', '-nc', '-nonat', '-nonatmap',
      '-conf', conf, '-log', d('log'), '-db', d('db'), '-run', d('run'), '-temp', d('temp'),
      '-cache', d('cache'), '-recordings', d('recordings'), '-storage', d('storage'),
    ]);
    const deadline = Date.now() + (this.opts.startTimeoutMs ?? 60000);
    // The event socket opens while modules load; then wait for the core and both profiles.
    for (;;) {
      if (this.proc.child.exitCode !== null) throw new Error(`freeswitch exited (${this.proc.child.exitCode}):\n${this.proc.output.slice(-3000)}\n${this.logText().slice(-3000)}`);
      try {
        this.esl = await EslClient.connect(this.eslPort, ESL_PASSWORD, 3000);
        break;
      } catch {
        if (Date.now() > deadline) throw new Error(`freeswitch: event socket on ${this.eslPort} not up in time:\n${this.logText().slice(-3000)}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    for (;;) {
      const status = await this.api('status').catch(() => '');
      const sofia = await this.api('sofia status').catch(() => '');
      if (/is ready/.test(status) && /internal\s+profile\s+sip:\S+\s+RUNNING/.test(sofia) && /external\s+profile\s+sip:\S+\s+RUNNING/.test(sofia)) break;
      if (Date.now() > deadline) throw new Error(`freeswitch: core or profiles not ready in time:\n${status}\n${sofia}\n${this.logText().slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    return this;
  }

  private configure(conf: string): void {
    const edit = (rel: string, fn: (t: string) => string) => {
      const p = path.join(conf, rel);
      fs.writeFileSync(p, fn(fs.readFileSync(p, 'utf8')));
    };
    const o = this.opts;
    // vars.xml: loopback, the lab's ports and password. local_ip_v4 is set first so every $${local_ip_v4} is 127.0.0.1.
    edit('vars.xml', (t) => {
      t = replaceOnce(t, /<include>/, '<include>\n  <X-PRE-PROCESS cmd="set" data="local_ip_v4=127.0.0.1"/>', 'vars.xml <include>');
      t = t.replace(/data="default_password=[^"]*"/, `data="default_password=${LAB_USER_PASSWORD}"`);
      t = t.replace(/<X-PRE-PROCESS cmd="(?:stun-)?set" data="(external_(?:rtp|sip)_ip)=[^"]*"\/>/g, '<X-PRE-PROCESS cmd="set" data="$1=127.0.0.1"/>');
      t = replaceOnce(t, /data="internal_sip_port=\d+"/, `data="internal_sip_port=${this.internalPort}"`, 'internal_sip_port');
      t = replaceOnce(t, /data="external_sip_port=\d+"/, `data="external_sip_port=${this.externalPort}"`, 'external_sip_port');
      return t;
    });
    edit('autoload_configs/switch.conf.xml', (t) => {
      t = replaceOnce(t, /<!-- <param name="rtp-start-port" value="\d+"\/> -->/, `<param name="rtp-start-port" value="${this.rtpStart}"/>`, 'rtp-start-port');
      return replaceOnce(t, /<!-- <param name="rtp-end-port" value="\d+"\/> -->/, `<param name="rtp-end-port" value="${this.rtpStart + 99}"/>`, 'rtp-end-port');
    });
    edit('autoload_configs/event_socket.conf.xml', (t) => t
      .replace(/name="listen-ip" value="[^"]*"/, 'name="listen-ip" value="127.0.0.1"')
      .replace(/name="listen-port" value="\d+"/, `name="listen-port" value="${this.eslPort}"`)
      .replace(/name="password" value="[^"]*"/, `name="password" value="${ESL_PASSWORD}"`));
    for (const f of ['internal-ipv6.xml', 'external-ipv6.xml']) fs.rmSync(path.join(conf, 'sip_profiles', f), { force: true });
    edit('sip_profiles/internal.xml', (t) => t
      .replace(/^\s*<param name="wss?-binding"[^>]*\/>\n/gm, '')
      .replace(/name="sip-trace" value="no"/, 'name="sip-trace" value="yes"'));
    edit('sip_profiles/external.xml', (t) => {
      t = t.replace(/name="sip-trace" value="no"/, 'name="sip-trace" value="yes"');
      const extra = Object.entries(o.externalParams ?? {}).map(([k, v]) => `    <param name="${k}" value="${v}"/>\n`).join('');
      return extra ? replaceOnce(t, /<settings>\n/, `<settings>\n${extra}`, 'external profile <settings>') : t;
    });
    // The repository's sample, placeholders filled, where the docs say.
    for (const [rel, text] of Object.entries(renderFreeswitchSample(o.values, o.sample))) {
      let t = text;
      if (rel === 'dialplan/public/wa-bridge.xml' && o.inboundActions !== undefined) {
        t = replaceOnce(t, /^(\s*)<action application="bridge" data="user\/1000@\$\{domain_name\}"\/>$/m, o.inboundActions, 'the sample\'s bridge to user/1000');
      }
      if (rel === 'sip_profiles/external/wa-bridge.xml') {
        for (const [k, v] of Object.entries(o.gatewayParams ?? {})) t = replaceOnce(t, new RegExp(`<param name="${k}" value="[^"]*"/>`), `<param name="${k}" value="${v}"/>`, `gateway param ${k}`);
      }
      fs.writeFileSync(path.join(conf, rel), t);
    }
    for (const ctx of ['default', 'public'] as const) {
      const xml = (o.labExtensions ?? []).filter((e) => e.context === ctx).map((e) => e.xml).join('\n');
      if (xml) fs.writeFileSync(path.join(conf, 'dialplan', ctx, 'zz_lab.xml'), `<include>\n${xml}\n</include>\n`);
    }
    if (o.fifos) edit('autoload_configs/fifo.conf.xml', (t) => replaceOnce(t, /<\/fifos>/, `${o.fifos}\n  </fifos>`, '</fifos>'));
  }

  /** Runs an API command (as `fs_cli -x` would), bounded. */
  api(command: string, timeoutMs = 10000): Promise<string> {
    if (!this.esl) return Promise.reject(new Error('freeswitch: not connected'));
    return this.esl.api(command, timeoutMs);
  }

  /** Its log so far (mod_logfile's freeswitch.log: the dialplan's log lines and, with sip-trace, every SIP message). */
  logText(): string {
    try {
      return fs.readFileSync(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }

  /** The SIP messages in its trace, in order. */
  sipMessages(): FsSipMessage[] {
    const out: FsSipMessage[] = [];
    // "recv 440 bytes from udp/[127.0.0.1]:5060 at 18:13:02.212474:", a dashed line, the message; it ends
    // where the next trace entry or log line starts (a log line starts with a date, or a uuid and a date).
    const re = /^(recv|send) \d+ bytes (?:from|to) \w+\/\[([^\]]+)\]:(\d+) at [^\n]*:\n-+\n([\s\S]*?)(?=\n(?:recv|send) \d+ bytes |\n(?:[0-9a-f-]{36} )?\d{4}-\d\d-\d\d \d\d:\d\d:|$(?![\s\S]))/gm;
    for (const m of this.logText().matchAll(re)) {
      const text = m[4]!.replace(/\r/g, '').replace(/\n+$/, '\n');
      const startLine = text.split('\n')[0]!.trim();
      const resp = /^SIP\/2\.0 (\d{3})/.exec(startLine);
      const cseq = /^\d+\s+(\S+)/.exec(header(text, 'CSeq') ?? '');
      out.push({
        dir: m[1] === 'recv' ? 'rx' : 'tx',
        peer: `${m[2]}:${m[3]}`,
        text,
        startLine,
        method: resp ? (cseq?.[1] ?? '') : startLine.split(' ')[0]!,
        status: resp ? Number(resp[1]) : null,
        callId: header(text, 'Call-ID') ?? header(text, 'i') ?? '',
      });
    }
    return out;
  }

  /** Resolves with the first match of `re` in the log, polling it; rejects after `timeoutMs`. */
  async waitForLog(re: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = re.exec(this.logText());
      if (m) return m;
      if (Date.now() > deadline) throw new Error(`freeswitch log: ${re} not seen within ${timeoutMs} ms:\n${this.logText().slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Waits until the trace holds a message passing `test`; resolves with it. */
  async waitForSip(test: (m: FsSipMessage) => boolean, timeoutMs: number, what: string): Promise<FsSipMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.sipMessages().find(test);
      if (m) return m;
      if (Date.now() > deadline) throw new Error(`freeswitch trace: ${what} not seen within ${timeoutMs} ms:\n${this.logText().slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 150));
    }
  }

  /** Polls an API command until its output passes `test`; resolves with that output. */
  async waitForApi(command: string, test: (out: string) => boolean, timeoutMs: number, what: string): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const out = await this.api(command).catch((e: Error) => e.message);
      if (test(out)) return out;
      if (Date.now() > deadline) throw new Error(`freeswitch: ${what} not within ${timeoutMs} ms (\`${command}\`: ${out.slice(0, 1500)})`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** Its channels as `show channels as json` lists them (uuid, name such as sofia/external/..., state...). */
  async channels(): Promise<Array<Record<string, string>>> {
    const out = await this.api('show channels as json');
    try {
      const j = JSON.parse(out) as { rows?: Array<Record<string, string>> };
      return j.rows ?? [];
    } catch {
      return [];
    }
  }

  async stop(): Promise<void> {
    if (this.proc && this.proc.child.exitCode === null) {
      await this.api('fsctl shutdown', 3000).catch(() => undefined);
      await Promise.race([this.proc.exited, new Promise((r) => setTimeout(r, 8000))]);
    }
    this.esl?.close();
    await this.proc?.stop();
    if (this.dir && !process.env.KEEP_FREESWITCH_DIR) fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
