import { TypedEmitter } from './util/typed-emitter';

/**
 * What happens in a bridge that someone outside its calls may watch: the sandbox's timeline, tests
 * waiting for an outcome instead of sleeping, an embedding application. One typed seam; nothing
 * here changes what the bridge does.
 */
export interface Observations {
  /** A call has ended and its CDR is written: `key` is its wacid (inbound) or bridge id (outbound). */
  'call-ended': [key: string, callId: string];
  /** A webhook event has been acted on (ok false: failed, or left unprocessed for a replay). */
  'event-processed': [eventId: string, type: string, ok: boolean];
  /** What a previous run of this node left unprocessed has been acted on (start-up does not wait for it). */
  'replay-done': [];
  /** A call's recording has become its audio file. */
  'recording-finished': [callId: string, file: string];
  /** Webhook bodies being read at once, on every change. */
  'webhook-reads': [reading: number];
}

export class BridgeObserver extends TypedEmitter<Observations> {
  /** Tells the watchers (the bridge's own parts only). */
  tell<K extends keyof Observations & string>(event: K, ...args: Observations[K]): void {
    this.emit(event, ...args);
  }
}
