import { EventEmitter } from 'node:events';
import { CdrStore } from '../cdr/store';
import { Logger } from '../log';
import { WebhookEvent } from '../providers/ycloud/events';
import { CallDeps, InboundCall } from './inbound-call';

/**
 * Routes verified, de-duplicated webhook events to the calls they concern (by wacid), and keeps
 * terminations that overtake their connect so the late connect is not bridged.
 */
export class CallDispatcher extends EventEmitter {
  private readonly calls = new Map<string, InboundCall>();
  private readonly earlyTerminations = new Map<string, number>();
  private accepting = true;

  private readonly recentlyEnded = new Map<string, string>();

  constructor(private readonly deps: CallDeps, private readonly cdr: CdrStore, private readonly log: Logger) {
    super();
  }

  /** Resolves with the CDR id once the call with this wacid has ended and its record is written. */
  whenEnded(wacid: string): Promise<string> {
    const done = this.recentlyEnded.get(wacid);
    if (done) return Promise.resolve(done);
    return new Promise((resolve) => {
      const on = (w: string, id: string) => {
        if (w !== wacid) return;
        this.off('call-ended', on);
        resolve(id);
      };
      this.on('call-ended', on);
    });
  }

  get active(): number {
    return this.calls.size;
  }

  find(wacid: string): InboundCall | undefined {
    return this.calls.get(wacid);
  }

  async handle(event: WebhookEvent): Promise<void> {
    switch (event.type) {
      case 'whatsapp.call.connect': {
        const c = event.callingConnect;
        if (c.direction !== 'USER_INITIATED') {
          this.log.info({ wacid: c.wacid }, 'business-initiated connect webhook: outbound calls are not handled by this bridge version');
          return;
        }
        if (this.calls.has(c.wacid)) return; // same call, different event id
        const call = new InboundCall(this.deps, c);
        this.calls.set(c.wacid, call);
        call.once('ended', () => {
          this.calls.delete(c.wacid);
          this.recentlyEnded.set(c.wacid, call.id);
          if (this.recentlyEnded.size > 1000) this.recentlyEnded.delete(this.recentlyEnded.keys().next().value!);
          this.emit('call-ended', c.wacid, call.id);
        });
        if (this.earlyTerminations.delete(c.wacid)) {
          this.log.info({ wacid: c.wacid }, 'connect arrived after its terminate: not bridging');
          call.onTerminate({ wacid: c.wacid });
        } else if (!this.accepting) {
          await call.refuse('bridge is shutting down');
        } else {
          await call.run();
        }
        return;
      }
      case 'whatsapp.call.terminate': {
        const t = event.callingTerminate;
        const call = this.calls.get(t.wacid);
        if (call) return call.onTerminate(t);
        // Either the call is over (store the provider's view) or its connect has not been seen yet.
        const id = await this.cdr.updateCallByWacid(t.wacid, {
          provider_status: t.status ?? null,
          provider_duration: t.duration ?? null,
          provider_start_at: t.startTime ? new Date(t.startTime) : null,
          provider_end_at: t.endTime ? new Date(t.endTime) : null,
        });
        if (id) await this.cdr.addEvent(id, 'provider_terminate', { status: t.status ?? null, duration: t.duration ?? null });
        else this.rememberEarlyTermination(t.wacid);
        return;
      }
      case 'whatsapp.call.status.updated': {
        const s = event.callingStatusUpdated;
        const call = this.calls.get(s.wacid);
        const rec = call ? call.id : (await this.cdr.findCallByWacid(s.wacid))?.id;
        if (rec) await this.cdr.addEvent(rec, 'provider_status', { status: s.status });
        return;
      }
      default:
        return;
    }
  }

  /** Stops taking calls and ends the ones in progress. */
  async shutdown(): Promise<void> {
    this.accepting = false;
    await Promise.all([...this.calls.values()].map((c) => c.hangup()));
  }

  private rememberEarlyTermination(wacid: string): void {
    const now = Date.now();
    for (const [k, exp] of this.earlyTerminations) if (exp < now) this.earlyTerminations.delete(k);
    this.earlyTerminations.set(wacid, now + 10 * 60 * 1000);
  }
}
