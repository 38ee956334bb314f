import { CallFields } from '../cdr/store';
import { CallingTerminate } from '../providers/ycloud/events';

/** What YCloud's terminate webhook says about a call, as CDR columns. */
export function providerEndFields(t: CallingTerminate): CallFields {
  return {
    provider_status: t.status ?? null,
    provider_duration: t.duration ?? null,
    provider_start_at: t.startTime ? new Date(t.startTime) : null,
    provider_end_at: t.endTime ? new Date(t.endTime) : null,
  };
}

/** Talk time in seconds (3 decimals) from acceptance to the end; null for a call never accepted. */
export function talkSeconds(acceptedAt: Date | null, endedAt: Date): string | null {
  return acceptedAt ? ((endedAt.getTime() - acceptedAt.getTime()) / 1000).toFixed(3) : null;
}
