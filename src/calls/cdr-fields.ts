import { CallFields } from '../cdr/store';
import { ProviderKind } from '../cdr/models';
import { CallEnded, WhatsAppUser } from './call-events';
import { NumberRoute } from './numbers-port';

/**
 * Which configured number and provider account carried a call (null: no number on this bridge had it), and,
 * in Meta's SIP mode, how SRTP was keyed on Meta's leg.
 */
export function routeFields(route: NumberRoute | null): CallFields {
  return route
    ? { provider: route.providerName, provider_kind: route.providerKind as ProviderKind, number_name: route.name, meta_sip_srtp: route.sip?.srtp ?? null }
    : {};
}

/** Who the WhatsApp user is beyond their address: BSUID, profile name, username. */
export function userFields(u: WhatsAppUser): CallFields {
  return { user_id: u.userId, profile_name: u.profileName, username: u.username };
}

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
