import fs from 'node:fs/promises';
import path from 'node:path';
import { freePort, ManagedProcess } from '../harness/processes';

/** SIPp for the load test: many calls at once, RTP echoed by SIPp itself (-rtp_echo on its media port). */

const SCENARIOS = path.join(__dirname, '..', '..', '..', 'test', 'load', 'sipp');

export interface LoadSipp { uri: string; proc: ManagedProcess; done: Promise<number | null> }

/** The PBX: answers `calls` INVITEs, echoes their RTP, waits for each BYE. */
export async function startPbx(calls: number, timeoutS: number): Promise<LoadSipp> {
  const port = await freePort('udp');
  const mediaPort = await freePort('udp');
  const proc = new ManagedProcess('sipp pbx', 'sipp', [
    '-sf', path.join(SCENARIOS, 'uas-echo.xml'), '-i', '127.0.0.1', '-p', String(port), '-mi', '127.0.0.1', '-mp', String(mediaPort),
    '-rtp_echo', '-m', String(calls), '-nostdin', '-nd', '-aa', '-timeout', String(Math.ceil(timeoutS)), '-timeout_error',
  ]);
  await waitUdpBound(port, proc);
  return { uri: `sip:127.0.0.1:${port}`, proc, done: proc.exited };
}

/**
 * The agents' phones: `calls` INVITEs to the bridge at `rate` per second, at most `concurrency` at once,
 * each to its own customer number (from `numbers`), RTP echoed. Writes its <log> lines to `logFile`.
 */
export async function startAgents(o: { target: string; numbers: string[]; rate: number; concurrency: number; timeoutS: number; dir: string }): Promise<LoadSipp & { logFile: string }> {
  const port = await freePort('udp');
  const mediaPort = await freePort('udp');
  const inf = path.join(o.dir, 'customers.csv');
  await fs.writeFile(inf, `SEQUENTIAL\n${o.numbers.map((n) => `${n};`).join('\n')}\n`);
  const logFile = path.join(o.dir, 'agents.log');
  // -r calls per -rp ms: per 100 s, so that fractional rates are kept.
  const proc = new ManagedProcess('sipp agents', 'sipp', [
    o.target, '-sf', path.join(SCENARIOS, 'uac-echo.xml'), '-inf', inf, '-i', '127.0.0.1', '-p', String(port), '-mi', '127.0.0.1',
    '-mp', String(mediaPort), '-rtp_echo', '-r', String(Math.max(1, Math.round(o.rate * 100))), '-rp', '100000',
    '-l', String(o.concurrency), '-m', String(o.numbers.length), '-trace_logs', '-log_file', logFile,
    '-trace_err', '-error_file', path.join(o.dir, 'agents-errors.log'),
    '-nostdin', '-nd', '-timeout', String(Math.ceil(o.timeoutS)), '-timeout_error',
  ], o.dir);
  return { uri: `sip:127.0.0.1:${port}`, proc, done: proc.exited, logFile };
}

/** The agents' log: when each INVITE went out and its 200 came in (epoch ms), by customer number. */
export async function readAgentLog(file: string): Promise<Map<string, { inviteAt?: number; answeredAt?: number }>> {
  const out = new Map<string, { inviteAt?: number; answeredAt?: number }>();
  const text = await fs.readFile(file, 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const m = /(invite|answered) \S+ (\S+) ([\d.]+) ([\d.]+)/.exec(line);
    if (!m) continue;
    const at = Number(m[3]) * 1000 + Number(m[4]) / 1000;
    const e = out.get(m[2]!) ?? {};
    if (m[1] === 'invite') e.inviteAt = at;
    else e.answeredAt = at;
    out.set(m[2]!, e);
  }
  return out;
}

async function waitUdpBound(port: number, proc: ManagedProcess): Promise<void> {
  const hex = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')} `;
  const deadline = Date.now() + 5000;
  for (;;) {
    if ((await fs.readFile('/proc/net/udp', 'utf8')).includes(hex)) return;
    if (proc.child.exitCode !== null) throw new Error(`SIPp exited at start:\n${proc.output}`);
    if (Date.now() > deadline) throw new Error(`SIPp did not bind 127.0.0.1:${port}:\n${proc.output}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
