import fs from 'node:fs/promises';
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
export async function startSippUas(scenario: string, opts: { calls?: number; rtpPort?: number } = {}): Promise<SippRun> {
  const port = await freePort('udp');
  const proc = new ManagedProcess(`sipp ${scenario}`, 'sipp', [
    '-sf', path.join(SCENARIOS, scenario),
    '-i', '127.0.0.1', '-p', String(port), '-mi', '127.0.0.1',
    '-m', String(opts.calls ?? 1),
    '-key', 'rtpport', String(opts.rtpPort ?? 9),
    '-nostdin', '-nd', '-aa',
    '-timeout', '120', '-timeout_error',
  ]);
  // SIPp prints no readiness line: wait until its UDP socket is bound.
  await waitUdpBound(port, proc);
  return { port, uri: `sip:127.0.0.1:${port}`, proc, done: proc.exited };
}

async function waitUdpBound(port: number, proc: ManagedProcess): Promise<void> {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')} `;
  const deadline = Date.now() + 5000;
  for (;;) {
    const table = await fs.readFile('/proc/net/udp', 'utf8');
    if (table.split('\n').some((l) => l.includes(hex) && l.includes('0100007F'))) return;
    if (proc.child.exitCode !== null) throw new Error(`SIPp exited at start:\n${proc.output}`);
    if (Date.now() > deadline) throw new Error(`SIPp did not bind 127.0.0.1:${port}:\n${proc.output}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
