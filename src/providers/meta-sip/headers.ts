import Srf from 'drachtio-srf';
import { CallOffered } from '../../calls/call-events';
import { NumberRoute } from '../../calls/numbers-port';
import { BSUID, normalizeE164 } from '../../util/numbers';

/**
 * What Meta's SIP requests say about a call, in its own headers (`x-wa-meta-*`; "Meta's native SIP" in
 * docs/meta-sip.md): read into the bridge's call events, so a SIP call reaches the PBX and the CDR as a
 * Graph call does.
 */
export const META_HEADERS = {
  wacid: 'x-wa-meta-wacid',
  duration: 'x-wa-meta-call-duration',
  phoneId: 'x-wa-meta-phone-number-id',
  countryCode: 'x-wa-meta-country-code',
  ctaPayload: 'x-wa-meta-cta-payload',
  deeplinkPayload: 'x-wa-meta-deeplink-payload',
  /** Seen in 2026 reports only (see the reference's "?"): read when present. */
  userId: 'x-wa-meta-user-id',
  username: 'x-wa-meta-username',
} as const;

/** The longest header value kept (a payload Meta echoes is at most 512 characters). */
const MAX_VALUE = 512;

/** A header's value, trimmed and bounded; null when absent or empty. */
export function metaHeader(msg: { has(name: string): boolean; get(name: string): string }, name: string): string | null {
  if (!msg.has(name)) return null;
  const v = String(msg.get(name) ?? '').trim();
  return v ? v.slice(0, MAX_VALUE) : null;
}

/** The call id a SIP call is known by: Meta's wacid, else one made of the SIP Call-ID. */
export function sipCallKey(wacid: string | null, callId: string): string {
  return wacid ?? `sip-${callId}`;
}

/** The user part of a SIP URI (`sip:+15551234567@host;transport=tls` -> `+15551234567`), unescaped. */
export function uriUser(uri: string): string | null {
  const m = /^sips?:([^@;>]+)@/i.exec(uri.trim().replace(/^<|>$/g, ''));
  if (!m) return null;
  try {
    return decodeURIComponent(m[1]!);
  } catch {
    return m[1]!;
  }
}

/** The host of a SIP URI, lower case. */
export function uriHost(uri: string): string | null {
  const m = /^sips?:(?:[^@]+@)?(\[[^\]]+\]|[^:;>]+)/i.exec(uri.trim().replace(/^<|>$/g, ''));
  return m ? m[1]!.toLowerCase() : null;
}

/** The display name of a From header (`"Ana Lima" <sip:...>`), unquoted; null when none. */
export function displayName(from: string): string | null {
  const quoted = /^\s*"((?:[^"\\]|\\.)*)"\s*</.exec(from);
  if (quoted) return quoted[1]!.replace(/\\(.)/g, '$1').trim() || null;
  const token = /^\s*([^<"]+?)\s*</.exec(from);
  return token ? token[1]!.trim() || null : null;
}

/** Meta's INVITE for a user's call, read as the bridge's offer. `route`: the number it called. */
export function offerFromInvite(req: Srf.SrfRequest, route: NumberRoute): CallOffered {
  const from = req.get('From');
  const fromUri = /<([^>]+)>/.exec(from)?.[1] ?? from.split(';')[0]!;
  const user = uriUser(fromUri) ?? '';
  const number = BSUID.test(user) ? null : normalizeE164(user);
  const headerUserId = metaHeader(req, META_HEADERS.userId);
  const userId = headerUserId && BSUID.test(headerUserId) ? headerUserId : BSUID.test(user) ? user : null;
  const wacid = sipCallKey(metaHeader(req, META_HEADERS.wacid), req.get('Call-ID'));
  return {
    kind: 'offered',
    wacid,
    phoneId: metaHeader(req, META_HEADERS.phoneId) ?? route.line.phoneId ?? '',
    sdpType: 'offer',
    sdp: req.body,
    from: number ?? userId ?? user,
    to: route.line.number,
    dialTime: Date.now(),
    user: { number, userId, profileName: displayName(from), username: metaHeader(req, META_HEADERS.username) },
    ctaPayload: metaHeader(req, META_HEADERS.ctaPayload),
    deeplinkPayload: metaHeader(req, META_HEADERS.deeplinkPayload),
    countryCode: countryCodeOf(metaHeader(req, META_HEADERS.countryCode)),
  };
}

/** Meta's x-wa-meta-call-duration (seconds, on its BYE), as a number; null when absent or not one. */
export function durationOf(msg: { has(name: string): boolean; get(name: string): string } | undefined): number | null {
  if (!msg) return null;
  const v = metaHeader(msg, META_HEADERS.duration);
  const n = v === null ? NaN : Number(v);
  return Number.isFinite(n) && n >= 0 ? n : null;
}

/** A country calling code as Meta gives it ("62", "+62"): digits only, at most 4; null otherwise. */
function countryCodeOf(v: string | null): string | null {
  const d = v?.replace(/^\+/, '') ?? '';
  return /^\d{1,4}$/.test(d) ? d : null;
}
