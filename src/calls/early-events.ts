import { BoundedMap } from '../util/bounded-map';
import { CallEvent } from './call-events';

/** How long an event waits for its call. */
const KEEP_MS = 2 * 60 * 1000;
/** Bounds on what waits (keyed by outside input). */
const MAX_WACIDS = 10_000;
const MAX_PER_WACID = 20;

export interface EarlyEvent { id: string; type: string; provider: string; event: CallEvent }

/**
 * Events that came before their call is known here (a terminate overtaking its connect; a status
 * before calls/connect has returned the wacid), kept in order per wacid for a while, bounded.
 */
export class EarlyEvents {
  private readonly waiting = new BoundedMap<string, { events: EarlyEvent[]; expires: number }>(MAX_WACIDS);

  keep(wacid: string, e: EarlyEvent): void {
    const now = Date.now();
    for (const [k, b] of this.waiting) {
      if (b.expires >= now) break; // oldest first: the rest are younger
      this.waiting.delete(k);
    }
    const b = this.waiting.get(wacid) ?? { events: [], expires: now + KEEP_MS };
    if (b.events.length >= MAX_PER_WACID) b.events.shift();
    b.events.push(e);
    this.waiting.set(wacid, b);
  }

  /** Whether the event with this id still waits (its call has not taken it). */
  holds(wacid: string, id: string): boolean {
    return this.waiting.get(wacid)?.events.some((e) => e.id === id) ?? false;
  }

  drop(wacid: string, id: string): void {
    const b = this.waiting.get(wacid);
    if (!b) return;
    b.events = b.events.filter((e) => e.id !== id);
    if (b.events.length === 0) this.waiting.delete(wacid);
  }

  /** What waits for this wacid, oldest first; it waits no more. */
  take(wacid: string): EarlyEvent[] {
    const b = this.waiting.get(wacid);
    this.waiting.delete(wacid);
    return b?.events ?? [];
  }
}
