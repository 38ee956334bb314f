import { performance } from 'node:perf_hooks';
import { CdrStore } from '../../src/cdr/store';

/** One timeline event as the bridge wrote it, with when the write finished. */
export interface TimelineEvent { callId: string; type: string; detail: Record<string, unknown> | null; t: number }

/**
 * Lets a test await timeline events as they are written (the CDR store's addEvent, wrapped), so
 * the test acts when the bridge has acted (mute the phone once the hold is in place) instead of sleeping.
 */
export class Timeline {
  readonly events: TimelineEvent[] = [];
  private waiters: Array<{ type: string; n: number; resolve: (e: TimelineEvent) => void }> = [];

  constructor(store: CdrStore) {
    const add = store.addEvent.bind(store);
    store.addEvent = async (callId, type, detail, at) => {
      await add(callId, type, detail, at);
      const e = { callId, type, detail: detail as Record<string, unknown> | null, t: performance.now() };
      this.events.push(e);
      this.waiters = this.waiters.filter((w) => (w.type === type && this.count(type) >= w.n ? (w.resolve(e), false) : true));
    };
  }

  types(): string[] {
    return this.events.map((e) => e.type);
  }

  count(type: string): number {
    return this.events.filter((e) => e.type === type).length;
  }

  /** The `n`th event of this type (already written, or the next one). */
  waitFor(type: string, n = 1, timeoutMs = 15000): Promise<TimelineEvent> {
    const seen = this.events.filter((e) => e.type === type)[n - 1];
    if (seen) return Promise.resolve(seen);
    const p = new Promise<TimelineEvent>((resolve) => this.waiters.push({ type, n, resolve }));
    return within(p, timeoutMs, () => `timeline event ${type} #${n} (timeline so far: ${this.types().join(', ')})`);
  }
}

export function within<T>(p: Promise<T>, ms: number, what: () => string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    t = setTimeout(() => reject(new Error(`not within ${ms} ms: ${what()}`)), ms);
  });
  return Promise.race([p, limit]).finally(() => clearTimeout(t));
}


/**
 * Asks `probe` every `everyMs` until it gives a truthy value, for states only
 * visible by asking (a page's DOM, a table); rejects after `ms`, naming `what` and `detail()`.
 */
export async function until<T>(what: string, probe: () => Promise<T | null | false>, ms: number, detail: () => Promise<string> = async () => '', everyMs = 100): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms ${await detail()}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
