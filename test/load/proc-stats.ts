import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

/** CPU time and memory of processes, from /proc (Linux). */

const TICKS_PER_S = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** User + system CPU seconds a process (all its threads) has used so far; null once it is gone. */
export function cpuSeconds(pid: number): number | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime are fields 14 and 15 of the whole line, i.e. 11 and 12 after the name.
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_S;
  } catch {
    return null;
  }
}

/** Resident memory in MiB; null once the process is gone. */
export function rssMiB(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

export interface Sample {
  /** Seconds since the sampler started, and since the previous sample. */
  t: number;
  dt: number;
  /** CPU used since the previous sample, in % of one core, by process name. */
  cpu: Record<string, number>;
  rss: Record<string, number>;
  /** Calls with media flowing (answered, not yet hung up) at the sample. */
  active: number;
}

/** Samples named processes once a second: CPU (% of one core over the interval) and RSS. */
export class ProcSampler {
  readonly samples: Sample[] = [];
  private last = new Map<string, number>();
  private lastAt = 0;
  private readonly startedAt = performance.now();
  private timer: NodeJS.Timeout | null = null;

  /** Process groups sampled as one (e.g. the Postgres backends serving one database), found anew at each sample. */
  private readonly groups = new Map<string, () => number[]>();
  private readonly groupLast = new Map<string, Map<number, number>>();

  constructor(private readonly pids: Record<string, number>, private readonly active: () => number) {}

  /** Samples every process `find` returns at each sample as one entry `name` (CPU summed; RSS not kept). */
  addGroup(name: string, find: () => number[]): void {
    this.groups.set(name, find);
  }

  /** Samples one more process from now on. */
  add(name: string, pid: number): void {
    this.pids[name] = pid;
  }

  /** Each process's resident memory now (MiB). */
  snapshotRss(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [name, pid] of Object.entries(this.pids)) {
      const m = rssMiB(pid);
      if (m !== null) out[name] = m;
    }
    return out;
  }

  start(intervalMs = 1000): void {
    this.read();
    this.timer = setInterval(() => this.samples.push(this.read()), intervalMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.samples.push(this.read());
  }

  /** Total CPU seconds each process used while sampled. */
  totals(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const s of this.samples) for (const [k, v] of Object.entries(s.cpu)) out[k] = (out[k] ?? 0) + (v / 100) * s.dt;
    return out;
  }

  private read(): Sample {
    const now = performance.now();
    const dt = (now - (this.lastAt || this.startedAt)) / 1000;
    const cpu: Record<string, number> = {};
    const rss: Record<string, number> = {};
    for (const [name, pid] of Object.entries(this.pids)) {
      const used = cpuSeconds(pid);
      const mem = rssMiB(pid);
      if (used !== null) {
        const prev = this.last.get(name);
        if (prev !== undefined && dt > 0) cpu[name] = ((used - prev) / dt) * 100;
        this.last.set(name, used);
      }
      if (mem !== null) rss[name] = mem;
    }
    for (const [name, find] of this.groups) {
      const prev = this.groupLast.get(name);
      const next = new Map<number, number>();
      let used = 0;
      for (const pid of find()) {
        const c = cpuSeconds(pid);
        if (c === null) continue;
        next.set(pid, c);
        used += c - (prev?.get(pid) ?? 0);
      }
      if (prev && dt > 0) cpu[name] = (used / dt) * 100;
      this.groupLast.set(name, next);
    }
    this.lastAt = now;
    return { t: (now - this.startedAt) / 1000, dt, cpu, rss, active: this.active() };
  }
}

/** Processes whose command line contains `text` (e.g. Postgres backends: "postgres: user db …"). */
export function pidsWithCmdline(text: string): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(text)) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}
