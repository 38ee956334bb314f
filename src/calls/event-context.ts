/** What processing an event is told about it. */
export interface EventContext {
  eventId: string;
  /** The provider account the event came from (its webhook path, POST /webhooks/<provider>). */
  provider: string;
  /** The provider's event type (metrics, logs). */
  type: string;
  arrivedAt: number;
  /**
   * Settles once the event's durable write has: true when this delivery stored it first, false when
   * it was stored before (a redelivery, another node, before a restart) or could not be stored. What
   * needs the row (the processed mark, an offer to another node) waits for it; the call does not.
   */
  stored: Promise<boolean>;
  /** Replayed from Postgres (at start-up, for a dead node, or on another node's request). */
  replay: boolean;
  /** When it was first received (replays: how old it is). */
  receivedAt: Date;
  /**
   * Carried by Meta's SIP (a number in SIP mode), not by a webhook: never stored, never offered to
   * another node (the SIP dialog is this node's), and the only source that drives a SIP-mode call.
   */
  sip?: boolean;
}

/** The context of an event Meta's SIP carried for a call on this node (see EventContext.sip). */
export function sipEventContext(provider: string, type: string, key: string): EventContext {
  return {
    eventId: `sip:${key}:${type}`, provider, type, arrivedAt: performance.now(), stored: Promise.resolve(false),
    replay: false, receivedAt: new Date(), sip: true,
  };
}

/** The context of an event read back from webhook_events (replayed, offered by another node, buffered). */
export function storedEventContext(eventId: string, type: string, provider: string, receivedAt = new Date()): EventContext {
  return { eventId, type, provider, arrivedAt: performance.now(), stored: Promise.resolve(true), replay: true, receivedAt };
}

/**
 * Thrown by processing when an event was acted on in part and what it left must not be lost (a call
 * rejected whose CDR could not be written): the event is not marked processed, so it is replayed
 * after a restart or by a survivor.
 */
export class LeaveUnprocessed extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LeaveUnprocessed';
  }
}
