import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';

/** Monotonic timing marks of a call's milestones, for the latency benchmark and debugging. */
/** `wacid` is the WhatsApp call id for inbound calls, and the bridge's call id for outbound ones. */
export interface Mark { wacid: string; name: MarkName; t: number }
export type MarkName = 'webhook_received' | 'preaccept_sent' | 'pbx_ringing' | 'pbx_answered' | 'accept_sent' | 'ended'
  | 'invite_received' | 'connect_sent' | 'wa_accepted' | 'pbx_200_sent';

export class Marks extends EventEmitter {
  mark(wacid: string, name: MarkName, t = performance.now()): void {
    if (this.listenerCount('mark') === 0) return;
    this.emit('mark', { wacid, name, t } satisfies Mark);
  }
}

/** Keeps every mark from now on, so a test can wait for one that may already have happened. */
export class MarkLog {
  readonly marks: Mark[] = [];
  private waiters: Array<{ wacid: string; name: MarkName; resolve: (m: Mark) => void }> = [];

  constructor(source: Marks) {
    source.on('mark', (m: Mark) => {
      this.marks.push(m);
      this.waiters = this.waiters.filter((w) => (w.wacid === m.wacid && w.name === m.name ? (w.resolve(m), false) : true));
    });
  }

  get(wacid: string, name: MarkName): Mark | undefined {
    return this.marks.find((m) => m.wacid === wacid && m.name === name);
  }

  waitFor(wacid: string, name: MarkName): Promise<Mark> {
    const seen = this.get(wacid, name);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => this.waiters.push({ wacid, name, resolve }));
  }
}
