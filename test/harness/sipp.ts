import { ChildProcess } from 'node:child_process';
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { freePort, ManagedProcess } from './processes';

const SCENARIOS = path.join(__dirname, '..', '..', '..', 'test', 'sipp');

export interface SippRun {
  port: number;
  uri: string;
  proc: ManagedProcess;
  /** Resolves with SIPp's exit code once it has handled its calls. */
  done: Promise<number | null>;
}

/**
 * SIPp playing the PBX/agent phone as a UAS on loopback for `calls` calls. `rtpPort` is put in the
 * 200 OK's SDP, so the test's own RTP endpoint carries the agent's audio.
 */
export async function startSippUas(scenario: string, opts: { calls?: number; rtpPort?: number; keys?: SippKeys; extraArgs?: string[]; ip?: string } = {}): Promise<SippRun> {
  const port = await freePort('udp');
  const ip = opts.ip ?? '127.0.0.1';
  const proc = new ManagedProcess(`sipp ${scenario}`, 'sipp', [
    '-sf', path.join(SCENARIOS, scenario),
    '-i', ip, '-p', String(port), '-mi', '127.0.0.1',
    '-m', String(opts.calls ?? 1),
    '-key', 'rtpport', String(opts.rtpPort ?? 9),
    ...keyArgs(opts.keys),
    ...(opts.extraArgs ?? []),
    '-nostdin', '-nd', '-aa',
    '-timeout', '120', '-timeout_error',
  ]);
  // SIPp prints no readiness line: wait until its UDP socket is bound.
  await waitUdpBound(port, proc, ip);
  return { port, uri: `sip:${ip}:${port}`, proc, done: proc.exited };
}

/** Extra `[name]` keywords for a scenario (`-key name value`), e.g. a second RTP port or a peer's port. */
export type SippKeys = Record<string, string | number>;

function keyArgs(keys: SippKeys = {}): string[] {
  return Object.entries(keys).flatMap(([k, v]) => ['-key', k, String(v)]);
}

/** Resolves once `proc` has bound UDP `ip:port` (read from /proc/net/udp); rejects if it exits first or after `ms`. */
export async function waitUdpBound(port: number, proc: { child: ChildProcess; readonly output: string; readonly name?: string }, ip = '127.0.0.1', ms = 5000): Promise<void> {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')} `;
  // /proc/net/udp writes an IPv4 address as 8 hex digits, least significant byte first.
  const addr = ip.split('.').reverse().map((n) => Number(n).toString(16).toUpperCase().padStart(2, '0')).join('');
  const deadline = Date.now() + ms;
  for (;;) {
    const table = await fs.readFile('/proc/net/udp', 'utf8');
    if (table.split('\n').some((l) => l.includes(`${addr}${hex}`))) return;
    if (proc.child.exitCode !== null) throw new Error(`${proc.name ?? 'SIPp'} exited at start:\n${proc.output}`);
    if (Date.now() > deadline) throw new Error(`${proc.name ?? 'SIPp'} did not bind ${ip}:${port}:\n${proc.output}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * SIPp playing the agent's phone behind the PBX: one call from 127.0.0.1 to the bridge's SIP address,
 * dialling `number`. `scenario` is a file in test/sipp or a path; `auth` answers a digest challenge.
 */
export async function runSippUac(
  scenario: string,
  opts: { target: string; number: string; rtpPort?: number; auth?: { username: string; password: string }; calls?: number; keys?: SippKeys; extraArgs?: string[] },
): Promise<SippRun> {
  const port = await freePort('udp');
  const file = path.isAbsolute(scenario) ? scenario : path.join(SCENARIOS, scenario);
  const args = [
    opts.target, '-sf', file, '-s', opts.number,
    '-i', '127.0.0.1', '-p', String(port), '-mi', '127.0.0.1',
    '-m', String(opts.calls ?? 1), '-l', '1', '-key', 'rtpport', String(opts.rtpPort ?? 9), ...keyArgs(opts.keys),
    '-nostdin', '-nd', '-timeout', String(60 + 2 * (opts.calls ?? 1)), '-timeout_error', ...(opts.extraArgs ?? []),
  ];
  // The digest's uri must be the INVITE's Request-URI (SIPp would use sip:remote_ip:remote_port).
  if (opts.auth) args.push('-au', opts.auth.username, '-ap', opts.auth.password, '-auth_uri', `${opts.number}@${opts.target}`);
  const proc = new ManagedProcess(`sipp ${path.basename(file)}`, 'sipp', args);
  return { port, uri: `sip:127.0.0.1:${port}`, proc, done: proc.exited };
}

/** A scenario in which the agent's INVITE is refused with `code`; checks a Reason header when asked. */
export async function refusalScenario(code: number, reasonPattern?: string, mutateInvite: (invite: string) => string = (x) => x, header = 'Reason:'): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'wasb-sipp-'));
  const file = path.join(dir, `uac-expect-${code}.xml`);
  const src = await fs.readFile(path.join(SCENARIOS, 'uac-call.xml'), 'utf8');
  const invite = mutateInvite(src.slice(src.indexOf('  <send retrans="500"><![CDATA[\nINVITE'), src.indexOf('  <recv response="100"')));
  const check = reasonPattern
    ? `><action><ereg regexp="${reasonPattern}" search_in="hdr" header="${header}" check_it="true" assign_to="reason"/></action></recv>`
    : '/>';
  await fs.writeFile(file, `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uac expects ${code}">
${invite}  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="${code}"${check}
  <send><![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
[last_Via:]
From: "Agent 201" <sip:agent201@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
${reasonPattern ? '  <Reference variables="reason"/>\n' : ''}</scenario>
`);
  return file;
}

/** A failed test's SIPp runs, shown: each one's SIP trace (its end) and output. */
export function printSippTraces(sipps: ReadonlyArray<{ run: SippRun; trace: string }>, chars = 6000): void {
  for (const s of sipps) {
    const trace = fsSync.existsSync(s.trace) ? fsSync.readFileSync(s.trace, 'utf8') : '(no trace)';
    console.log(`\n--- ${s.run.proc.name} (port ${s.run.port}) SIP trace, last ${chars} chars:\n${trace.slice(-chars)}\n--- output:\n${s.run.proc.output.slice(-1500)}`);
  }
}
