import { performance } from 'node:perf_hooks';
import { TypedEmitter } from '../util/typed-emitter';

/** Monotonic timing marks of a call's milestones, for the latency benchmark and debugging. */
/** `wacid` is the WhatsApp call id for inbound calls, and the bridge's call id for outbound ones. */
export interface Mark { wacid: string; name: MarkName; t: number }
export type MarkName = 'webhook_received' | 'preaccept_sent' | 'pbx_ringing' | 'pbx_answered' | 'accept_sent' | 'ended'
  | 'invite_received' | 'connect_sent' | 'wa_accepted' | 'pbx_200_sent';

export class Marks extends TypedEmitter<{ mark: [mark: Mark] }> {
  private listeners = 0;

  /** Marks are made only while someone listens (the set-up metrics, a benchmark). */
  override on(event: 'mark', listener: (mark: Mark) => void): this {
    this.listeners++;
    return super.on(event, listener);
  }

  override off(event: 'mark', listener: (mark: Mark) => void): this {
    this.listeners = Math.max(0, this.listeners - 1);
    return super.off(event, listener);
  }

  mark(wacid: string, name: MarkName, t = performance.now()): void {
    if (this.listeners === 0) return;
    this.emit('mark', { wacid, name, t });
  }
}
