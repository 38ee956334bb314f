import { CallFields } from '../cdr/store';
import { CallEnded } from './call-events';

/** What the provider says about a call's end, as CDR columns. */
export function providerEndFields(t: CallEnded): CallFields {
  return {
    provider_status: t.cause,
    provider_duration: t.durationS,
    provider_start_at: t.startedAt ? new Date(t.startedAt) : null,
    provider_end_at: t.endedAt ? new Date(t.endedAt) : null,
  };
}

/** Talk time in seconds (3 decimals) from acceptance to the end; null for a call never accepted. */
export function talkSeconds(acceptedAt: Date | null, endedAt: Date): string | null {
  return acceptedAt ? ((endedAt.getTime() - acceptedAt.getTime()) / 1000).toFixed(3) : null;
}
