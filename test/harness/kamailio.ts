import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { findProgram } from './processes';
import { waitUdpBound } from './sipp';

/**
 * Where the kamailio binary is: $KAMAILIO_BIN (when set, only there), else `kamailio` on PATH or in
 * /usr/sbin, where Debian's package puts it (not on a user's PATH); null when absent.
 */
export function findKamailio(): string | null {
  const found = findProgram('kamailio', 'KAMAILIO_BIN');
  if (found || process.env.KAMAILIO_BIN) return found;
  return fs.existsSync('/usr/sbin/kamailio') ? '/usr/sbin/kamailio' : null;
}

/** The sample docs/cluster.md tells operators to copy (config/kamailio/). */
export const KAMAILIO_SAMPLE_DIR = path.join(__dirname, '..', '..', '..', 'config', 'kamailio');

/** What an operator fills into the sample's placeholders. */
export interface KamailioSampleValues {
  /** KAMAILIO_IP and KAMAILIO_PORT: where Kamailio listens (and what it puts in Record-Route). */
  ip: string;
  port: number;
  /** PBX_SOURCES: the PBX's addresses with their prefix lengths. */
  pbxSources: string[];
  /** The bridge nodes' drachtio-servers (dispatcher.list's BRIDGE_NODE_n_IP lines, port included). */
  nodes: Array<{ host: string; port: number }>;
}

/** Lab-only changes to the sample: where its files live, and the probe interval a test needs. */
export interface KamailioLab {
  /** Where dispatcher.list and the ctl socket go (replaces /etc/kamailio and /run/kamailio). */
  dir: string;
  /** ds_ping_interval in seconds (the sample's is 10). */
  pingIntervalS?: number;
}

/** Placeholders the sample uses; each must be replaced everywhere outside comments. */
const PLACEHOLDERS = ['KAMAILIO_IP', 'KAMAILIO_PORT', 'PBX_SOURCES', 'BRIDGE_NODE_'];

function replaceOnce(text: string, find: string, by: string): string {
  const n = text.split(find).length - 1;
  if (n !== 1) throw new Error(`Kamailio sample: expected exactly one ${JSON.stringify(find)}, found ${n}`);
  return text.replace(find, by);
}

function assertFilled(name: string, text: string): void {
  const live = text.split('\n').map((l) => l.replace(/#(?!!).*$/, '')).join('\n');
  for (const p of PLACEHOLDERS) if (live.includes(p)) throw new Error(`Kamailio sample ${name}: placeholder ${p} left`);
}

/**
 * config/kamailio/{kamailio.cfg,dispatcher.list} with the operator's values filled in (what the
 * sample's header says to do) and the lab's changes: file locations, probe interval.
 */
export function renderKamailioSample(values: KamailioSampleValues, lab: KamailioLab): { cfg: string; dispatcherList: string } {
  let cfg = fs.readFileSync(path.join(KAMAILIO_SAMPLE_DIR, 'kamailio.cfg'), 'utf8')
    .replace(/KAMAILIO_IP/g, values.ip)
    .replace(/KAMAILIO_PORT/g, String(values.port))
    .replace(/PBX_SOURCES/g, values.pbxSources.join(','));
  const sample = fs.readFileSync(path.join(KAMAILIO_SAMPLE_DIR, 'dispatcher.list'), 'utf8');
  const template = sample.split('\n').find((l) => l.startsWith('1 sip:BRIDGE_NODE_1_IP:5060'));
  if (!template) throw new Error('Kamailio sample dispatcher.list: no line for BRIDGE_NODE_1_IP');
  const lines = sample.split('\n').filter((l) => !/^1 sip:BRIDGE_NODE_\d+_IP/.test(l));
  const dispatcherList = [...lines.filter((l) => l.trim()), ...values.nodes.map((n) => template.replace('BRIDGE_NODE_1_IP:5060', `${n.host}:${n.port}`))].join('\n') + '\n';
  assertFilled('kamailio.cfg', cfg);
  assertFilled('dispatcher.list', dispatcherList);
  cfg = replaceOnce(cfg, '"/etc/kamailio/dispatcher.list"', JSON.stringify(path.join(lab.dir, 'dispatcher.list')));
  cfg = replaceOnce(cfg, '"unix:/run/kamailio/kamailio_ctl"', JSON.stringify(`unix:${path.join(lab.dir, 'kamailio_ctl')}`));
  if (lab.pingIntervalS !== undefined) cfg = replaceOnce(cfg, '"ds_ping_interval", 10)', `"ds_ping_interval", ${lab.pingIntervalS})`);
  return { cfg, dispatcherList };
}

/**
 * A real Kamailio in the foreground (-DD, log on stderr: -E), configured with the repository's sample
 * (placeholders filled) in a private directory, with its own runtime directory. It runs in a process
 * group of its own, so stopping it stops every worker it forked.
 */
export class Kamailio {
  private child: ChildProcess | null = null;
  private exited: Promise<number | null> = Promise.resolve(null);
  private log = '';
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-kamailio-'));

  constructor(private readonly bin: string, private readonly values: KamailioSampleValues, private readonly lab: Omit<KamailioLab, 'dir'> = {}) {}

  /** Where the PBX sends agents' calls. */
  get address(): string {
    return `${this.values.ip}:${this.values.port}`;
  }

  /** Everything Kamailio logged so far. */
  get output(): string {
    return this.log;
  }

  async start(): Promise<this> {
    const { cfg, dispatcherList } = renderKamailioSample(this.values, { ...this.lab, dir: this.dir });
    const file = path.join(this.dir, 'kamailio.cfg');
    fs.writeFileSync(file, cfg);
    fs.writeFileSync(path.join(this.dir, 'dispatcher.list'), dispatcherList);
    const run = path.join(this.dir, 'run');
    fs.mkdirSync(run);
    const child = spawn(this.bin, ['-DD', '-E', '-f', file, '-Y', run, '-w', this.dir, '-m', '32', '-M', '8'], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    const keep = (b: Buffer) => {
      this.log += b.toString();
      if (this.log.length > 400000) this.log = this.log.slice(-200000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    try {
      const log = () => this.log.slice(-3000);
      await waitUdpBound(this.values.port, { child, name: 'kamailio', get output() { return log(); } }, this.values.ip, 10000);
    } catch (err) {
      await this.stop();
      throw err;
    }
    return this;
  }

  /** Resolves when a log line matches `re` (after `from`, an offset into output); rejects after `ms`. */
  async waitForLog(re: RegExp, ms: number, from = 0): Promise<string> {
    const end = Date.now() + ms;
    for (;;) {
      const m = re.exec(this.log.slice(from));
      if (m) return m[0];
      if (this.child?.exitCode !== null) throw new Error(`kamailio exited before ${re}:\n${this.log.slice(-3000)}`);
      if (Date.now() > end) throw new Error(`kamailio: ${re} not logged within ${ms} ms:\n${this.log.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 50)); // polled: its log is a stream of lines from several workers
    }
  }

  /** The log lines after `from` (an offset into output) that match `re`. */
  linesMatching(re: RegExp, from = 0): string[] {
    return this.log.slice(from).split('\n').filter((l) => re.test(l));
  }

  /** Stops Kamailio and its workers (SIGTERM to its process group; SIGKILL after 5 s) and removes its directory (its log stays in `output`). */
  async stop(): Promise<void> {
    const child = this.child;
    if (child?.pid && child.exitCode === null && child.signalCode === null) {
      const group = -child.pid;
      let t: NodeJS.Timeout | undefined;
      try {
        process.kill(group, 'SIGTERM');
        t = setTimeout(() => {
          try {
            process.kill(group, 'SIGKILL');
          } catch { /* gone */ }
        }, 5000);
        await this.exited;
      } catch { /* already gone */ }
      clearTimeout(t);
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
