import { CallEvent } from '../calls/call-events';

/** What webhook_events keeps of an event the bridge does not act on: enough to deduplicate a redelivery. */
export interface RedactedPayload { id: string; type: string; redacted: true }

/**
 * What of a webhook is stored (webhook_events.payload): in full what the bridge acts on and may have to
 * replay (call events, call-permission replies); of anything else (chat messages, message status,
 * types the bridge does not know) only its id and type, so no message text, profile name or number is
 * kept for events the bridge never needed. Connect SDPs lose their ICE password and SDES keys later,
 * once the call is set up (src/cdr/retention.ts).
 */
export function storedPayload(e: { id: string; type: string; payload: unknown; event: CallEvent | null }): unknown {
  return e.event ? e.payload : redacted(e);
}

function redacted(e: { id: string; type: string }): RedactedPayload {
  return { id: e.id, type: e.type, redacted: true };
}
