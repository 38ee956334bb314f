import { DtmfEvent } from '../media/dtmf-log';
import { BoundedMap } from '../util/bounded-map';
import { TypedEmitter } from '../util/typed-emitter';
import { CallAnswered } from './call-events';
import { InboundCall } from './inbound-call';
import { LiveCall, LiveCalls } from './live';
import { OutboundCall } from './outbound-call';

export interface RegistryEvents {
  /** A call has ended and its CDR is written: `key` is its wacid (inbound) or bridge id (outbound). */
  'call-ended': [key: string, callId: string];
  /** The provider named an agent's call: its early events can now reach it. */
  named: [wacid: string, call: OutboundCall];
}

/**
 * The calls in progress on this node, by wacid (and agents' calls the provider has not named yet),
 * and whether new ones are taken. Calls leave it when they end.
 */
export class CallRegistry extends TypedEmitter<RegistryEvents> implements LiveCalls {
  private readonly inbound = new Map<string, InboundCall>();
  private readonly outbound = new Map<string, OutboundCall>();
  private readonly unnamed = new Set<OutboundCall>();
  private readonly recentlyEnded = new BoundedMap<string, string>(1000);
  private accepting = true;

  /** False once the bridge drains or stops: new calls are refused. */
  get accepts(): boolean {
    return this.accepting;
  }

  stopAccepting(): void {
    this.accepting = false;
  }

  /** A WhatsApp user's call, by its wacid, until it ends. */
  addInbound(call: InboundCall): void {
    const wacid = call.ref.wacid;
    this.inbound.set(wacid, call);
    call.once('ended', () => {
      this.inbound.delete(wacid);
      this.ended(wacid, call.id);
    });
  }

  /** An agent's call: tracked until the provider names it, then by its wacid. */
  addOutbound(call: OutboundCall): void {
    this.unnamed.add(call);
    call.once('named', (wacid) => {
      this.unnamed.delete(call);
      this.outbound.set(wacid, call);
      this.emit('named', wacid, call);
    });
    call.once('ended', () => {
      this.unnamed.delete(call);
      if (call.wacid) this.outbound.delete(call.wacid);
      this.ended(call.id, call.id);
    });
  }

  inboundCall(wacid: string): InboundCall | undefined {
    return this.inbound.get(wacid);
  }

  outboundCall(wacid: string): OutboundCall | undefined {
    return this.outbound.get(wacid);
  }

  /** The call with this wacid, either direction. */
  byWacid(wacid: string): InboundCall | OutboundCall | undefined {
    return this.inbound.get(wacid) ?? this.outbound.get(wacid);
  }

  /** An agent's call not yet named that this answer is for (it came before calls/connect returned). */
  unnamedFor(answer: CallAnswered): OutboundCall | undefined {
    return [...this.unnamed].find((o) => o.matchesUnnamed(answer));
  }

  /** A call with this wacid ended here lately (a repeated connect is not a new call). */
  endedLately(wacid: string): boolean {
    return this.recentlyEnded.has(wacid);
  }

  /** A digit from rtpengine's DTMF log: to the call it belongs to (rtpengine's call-id is the call's id). */
  digit(ev: DtmfEvent): void {
    this.all().find((c) => c.id === ev.callId)?.onMediaDigit(ev.sourceTag, { digit: ev.digit, durationMs: ev.durationMs });
  }

  /** Calls in progress (either direction, named or not yet). */
  get active(): number {
    return this.inbound.size + this.outbound.size + this.unnamed.size;
  }

  /** Calls in progress by direction (wasb_calls_in_progress). */
  get activeByDirection(): { inbound: number; outbound: number } {
    return { inbound: this.inbound.size, outbound: this.outbound.size + this.unnamed.size };
  }

  /** Resolves once no call is in progress. */
  whenIdle(): Promise<void> {
    if (this.active === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const on = () => {
        if (this.active > 0) return;
        this.off('call-ended', on);
        resolve();
      };
      this.on('call-ended', on);
    });
  }

  /** Calls in progress, oldest first. */
  list(): LiveCall[] {
    const now = Date.now();
    return this.all().filter((c) => !c.isEnding).map((c) => c.toLive(now)).sort((a, b) => a.startedAt.localeCompare(b.startedAt));
  }

  /** An operator ends a call in progress (bridge id); false when there is none with that id. */
  async hangup(id: string): Promise<boolean> {
    const call = this.all().find((c) => c.id === id && !c.isEnding);
    if (!call) return false;
    await call.hangup('ended by an operator');
    return true;
  }

  /** Stops taking calls and ends the ones in progress (each step of a teardown is bounded). */
  async shutdown(): Promise<void> {
    this.accepting = false;
    await Promise.all(this.all().map((c) => c.hangup()));
  }

  private all(): Array<InboundCall | OutboundCall> {
    return [...this.inbound.values(), ...this.outbound.values(), ...this.unnamed];
  }

  private ended(key: string, id: string): void {
    this.recentlyEnded.set(key, id);
    this.emit('call-ended', key, id);
  }
}
