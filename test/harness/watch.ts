import { Bridge } from '../../src/app';
import { Observations } from '../../src/observer';

/**
 * What tests wait for, read from the bridge's observer (src/observer.ts) from the moment the bridge
 * is made: the calls that ended (so a wait for one that already ended resolves at once), and whether
 * the start-up replay is done.
 */
class Watched {
  private readonly ended = new Map<string, string>();
  private replayed = false;
  private readonly waiters: Array<() => void> = [];

  constructor(private readonly bridge: Bridge) {
    bridge.observer.on('call-ended', (key, id) => {
      this.ended.set(key, id);
      this.wake();
    });
    bridge.observer.on('replay-done', () => {
      this.replayed = true;
      this.wake();
    });
  }

  /** Resolves with the CDR id once the call with this wacid (inbound) or bridge id (outbound) has ended. */
  whenEnded(key: string): Promise<string> {
    return this.until(() => this.ended.get(key) ?? null);
  }

  whenReplayed(): Promise<void> {
    return this.until(() => (this.replayed ? true : null)).then(() => undefined);
  }

  /** Events processed from now on, by id. */
  whenProcessed(eventId: string): Promise<void> {
    return nextObserved(this.bridge, 'event-processed', (id) => id === eventId).then(() => undefined);
  }

  private until<T>(get: () => T | null): Promise<T> {
    const now = get();
    if (now !== null) return Promise.resolve(now);
    return new Promise((resolve) => {
      const check = () => {
        const v = get();
        if (v === null) return false;
        resolve(v);
        return true;
      };
      const waiter = () => {
        if (!check()) this.waiters.push(waiter);
      };
      this.waiters.push(waiter);
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}

const watched = new WeakMap<Bridge, Watched>();

/** Starts watching a bridge (call it right after `new Bridge`, before start: see startStack). */
export function watch(bridge: Bridge): Watched {
  let w = watched.get(bridge);
  if (!w) {
    w = new Watched(bridge);
    watched.set(bridge, w);
  }
  return w;
}

/** Resolves with the CDR id once the call with this key has ended (the bridge must be watched from its start). */
export function whenEnded(bridge: Bridge, key: string): Promise<string> {
  return watch(bridge).whenEnded(key);
}

/** The next observation of `event` (from now on) that passes `test`, with its arguments. */
export function nextObserved<K extends keyof Observations & string>(
  bridge: Bridge, event: K, test: (...args: Observations[K]) => boolean = () => true,
): Promise<Observations[K]> {
  return new Promise((resolve) => {
    const on = (...args: Observations[K]) => {
      if (!test(...args)) return;
      bridge.observer.off(event, on);
      resolve(args);
    };
    bridge.observer.on(event, on);
  });
}
