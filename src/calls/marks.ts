import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';

/** Monotonic timing marks of a call's milestones, for the latency benchmark and debugging. */
export interface Mark { wacid: string; name: MarkName; t: number }
export type MarkName = 'webhook_received' | 'preaccept_sent' | 'pbx_answered' | 'accept_sent' | 'ended';

export class Marks extends EventEmitter {
  mark(wacid: string, name: MarkName, t = performance.now()): void {
    if (this.listenerCount('mark') === 0) return;
    this.emit('mark', { wacid, name, t } satisfies Mark);
  }
}
