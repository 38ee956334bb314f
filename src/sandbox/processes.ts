import { ChildProcess, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

/** Finds a free port on loopback for a server the tests start. */
export async function freePort(kind: 'tcp' | 'udp' = 'tcp'): Promise<number> {
  if (kind === 'udp') {
    const s = dgram.createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
    const port = s.address().port;
    s.close();
    return port;
  }
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** A child process whose output is kept (for failure reports) and that is killed on stop. */
export class ManagedProcess {
  readonly child: ChildProcess;
  output = '';
  exited: Promise<number | null>;

  constructor(readonly name: string, cmd: string, args: string[], cwd?: string, env?: NodeJS.ProcessEnv) {
    this.child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd, env });
    const keep = (b: Buffer) => {
      this.output += b.toString();
      if (this.output.length > 200000) this.output = this.output.slice(-100000);
    };
    this.child.stdout?.on('data', keep);
    this.child.stderr?.on('data', keep);
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }

  /** Resolves when `test` matches the output so far; rejects if the process exits first or time runs out. */
  waitFor(test: RegExp, timeoutMs = 10000): Promise<void> {
    return new Promise((resolve, reject) => {
      const done = (err?: Error) => {
        clearTimeout(t);
        this.child.stdout?.off('data', check);
        this.child.stderr?.off('data', check);
        if (err) reject(err);
        else resolve();
      };
      const check = () => {
        if (test.test(this.output)) done();
      };
      const t = setTimeout(() => done(new Error(`${this.name}: ${test} not seen within ${timeoutMs} ms:\n${this.output.slice(-2000)}`)), timeoutMs);
      this.child.stdout?.on('data', check);
      this.child.stderr?.on('data', check);
      this.exited.then((code) => done(new Error(`${this.name} exited (${code}) before ${test}:\n${this.output.slice(-2000)}`)));
      check();
    });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), 3000);
    await this.exited;
    clearTimeout(t);
  }
}

/** Where a program is: the path in `envVar` (if set), or `name` on PATH; null when absent. */
export function findProgram(name: string, envVar: string): string | null {
  const explicit = process.env[envVar];
  if (explicit) return fs.existsSync(explicit) ? explicit : null;
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* keep looking */
    }
  }
  return null;
}
