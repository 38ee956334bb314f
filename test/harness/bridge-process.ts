import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { ManagedProcess } from './processes';

const ENTRY = path.join(__dirname, '..', '..', 'src', 'index.js');

/**
 * The bridge as production runs it: `node dist/src/index.js` in its own process, configured only
 * through its environment, logging JSON lines. Used where the process itself is under test (signals,
 * exit, start-up failures).
 */
export class BridgeProcess {
  readonly proc: ManagedProcess;
  private exitedAt: number | null = null;

  /** `entry`: another tree's dist/src/index.js (a packed release), run from that tree. */
  constructor(env: Record<string, string>, entry = ENTRY) {
    this.proc = new ManagedProcess('bridge', process.execPath, [entry], entry === ENTRY ? undefined : path.resolve(entry, '..', '..', '..'), { ...minimalEnv(), ...env });
    void this.proc.exited.then(() => {
      this.exitedAt = performance.now();
    });
  }

  /** Resolves once the bridge says its HTTP side is up (rejects if it exits first). */
  started(timeoutMs = 15000): Promise<void> {
    return this.proc.waitFor(/"msg":"HTTP listening"/, timeoutMs);
  }

  /** Sends a signal and resolves with the exit code and how long the process took to exit (ms). */
  async signal(sig: NodeJS.Signals): Promise<{ code: number | null; ms: number }> {
    const at = performance.now();
    this.proc.child.kill(sig);
    const code = await this.proc.exited;
    return { code, ms: (this.exitedAt ?? performance.now()) - at };
  }

  /** The JSON log lines so far, parsed. */
  logLines(): Array<Record<string, unknown>> {
    return this.proc.output.split('\n').filter((l) => l.startsWith('{')).map((l) => {
      try {
        return JSON.parse(l) as Record<string, unknown>;
      } catch {
        return {};
      }
    });
  }

  stop(): Promise<void> {
    return this.proc.stop();
  }
}

/** What a child needs from the test's environment (PATH, HOME), and nothing that configures the bridge. */
function minimalEnv(): Record<string, string> {
  const keep = ['PATH', 'HOME', 'TMPDIR', 'LANG'];
  return Object.fromEntries(keep.filter((k) => process.env[k]).map((k) => [k, process.env[k]!]));
}
