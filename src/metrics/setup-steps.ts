import { Mark, MarkName, Marks } from './marks';
import { Metrics, SetupStep } from './metrics';

/** Each set-up step: from one mark of a call to a later one. */
const STEPS: ReadonlyArray<{ step: SetupStep; from: MarkName; to: MarkName }> = [
  { step: 'inbound_preaccept', from: 'webhook_received', to: 'preaccept_sent' },
  { step: 'inbound_pbx_ringing', from: 'webhook_received', to: 'pbx_ringing' },
  { step: 'inbound_accept', from: 'pbx_answered', to: 'accept_sent' },
  { step: 'outbound_connect', from: 'invite_received', to: 'connect_sent' },
  { step: 'outbound_answer', from: 'wa_accepted', to: 'pbx_200_sent' },
];

const STARTS = new Set<MarkName>(STEPS.map((s) => s.from));

/**
 * Turns the calls' marks into wasb_call_setup_seconds. Only the start marks of a call still waiting
 * for a step's end are kept: a call's entry goes when the call ends (drop()), on its 'ended' mark, and
 * the map never holds more than `cap` calls or entries older than `maxAgeMs` (calls that never end
 * here, e.g. connect webhooks for outbound calls).
 */
export class SetupSteps {
  private readonly pending = new Map<string, { at: number; marks: Partial<Record<MarkName, number>>; done: Set<SetupStep> }>();
  private readonly onMark = (m: Mark) => {
    try {
      this.mark(m);
    } catch {
      // never into the call
    }
  };

  constructor(private readonly marks: Marks, private readonly metrics: Metrics, private readonly cap = 2000, private readonly maxAgeMs = 10 * 60 * 1000) {
    marks.on('mark', this.onMark);
  }

  /** The call with this mark key (wacid inbound, bridge id outbound) has ended. */
  drop(key: string): void {
    this.pending.delete(key);
  }

  close(): void {
    this.marks.off('mark', this.onMark);
    this.pending.clear();
  }

  /** Calls with start marks kept (tests). */
  get size(): number {
    return this.pending.size;
  }

  private mark(m: Mark): void {
    if (m.name === 'ended') {
      this.pending.delete(m.wacid);
      return;
    }
    const entry = this.pending.get(m.wacid);
    if (entry) {
      for (const s of STEPS) {
        const from = entry.marks[s.from];
        if (s.to !== m.name || from === undefined || entry.done.has(s.step)) continue;
        entry.done.add(s.step);
        this.metrics.setupStep(s.step, Math.max(0, m.t - from) / 1000);
      }
    }
    if (!STARTS.has(m.name)) return;
    if (entry) {
      entry.marks[m.name] ??= m.t;
      return;
    }
    const now = Date.now();
    this.pending.set(m.wacid, { at: now, marks: { [m.name]: m.t }, done: new Set() });
    this.prune(now);
  }

  private prune(now: number): void {
    // Insertion order is age order: the oldest entries are first.
    for (const [key, e] of this.pending) {
      if (this.pending.size <= this.cap && now - e.at <= this.maxAgeMs) break;
      this.pending.delete(key);
    }
  }
}
