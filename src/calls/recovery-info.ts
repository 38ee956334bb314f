import { DialogIds } from '../sip/out-of-dialog';

/** Kept in calls.recovery while a call is up: where its media lives and how to end its PBX leg. */
export interface RecoveryInfo { rtpengine?: string; sip?: DialogIds }

export function parseRecovery(v: unknown): RecoveryInfo {
  if (!v || typeof v !== 'object') return {};
  const r = v as Record<string, unknown>;
  const out: RecoveryInfo = {};
  if (typeof r.rtpengine === 'string') out.rtpengine = r.rtpengine;
  const s = r.sip as Record<string, unknown> | undefined;
  if (s && ['callId', 'uri', 'from', 'to'].every((k) => typeof s[k] === 'string')) {
    // A row written before the route set was kept has none: its BYE goes to the remote target as before.
    const route = Array.isArray(s.route) ? s.route.filter((r): r is string => typeof r === 'string') : [];
    out.sip = { callId: String(s.callId), uri: String(s.uri), from: String(s.from), to: String(s.to), route };
  }
  return out;
}
