/**
 * A change to the calling part of a number's settings, in the bridge's words (the admin API and the
 * settings command take it); each provider adapter writes it in its own API's shape.
 */
export interface CallingSettingsChange {
  status?: 'ENABLED' | 'DISABLED';
  iconVisibility?: 'DEFAULT' | 'DISABLE_ALL';
  callbackPermissionStatus?: 'ENABLED' | 'DISABLED';
  /** Weekly hours, time zone and holidays, passed through as given (field names follow Meta's call_hours). */
  callHours?: Record<string, unknown>;
  /**
   * Meta's native SIP for the number (Meta only; YCloud refuses it): `status` ENABLED makes the number
   * SIP-only (Graph call actions stop), with the one SIP server Meta sends to.
   */
  sip?: SipSettingsChange;
}

export interface SipSettingsChange {
  status?: 'ENABLED' | 'DISABLED';
  hostname?: string;
  port?: number;
  /** srtp_key_exchange_protocol. */
  srtpKeyExchange?: 'DTLS' | 'SDES';
  /** audio.additional_codecs: PCMA and PCMU besides opus (on), or opus only (off). */
  g711?: boolean;
  /** sip.webhook_delivery: call webhooks are sent for SIP calls too. */
  webhookDelivery?: 'ENABLED' | 'DISABLED';
}

const ENUMS: Record<string, readonly string[]> = {
  status: ['ENABLED', 'DISABLED'],
  iconVisibility: ['DEFAULT', 'DISABLE_ALL'],
  callbackPermissionStatus: ['ENABLED', 'DISABLED'],
};

/** Checks a requested change; returns the problems (empty when it is good). */
export function validateSettingsChange(c: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const known = new Set([...Object.keys(ENUMS), 'callHours']);
  for (const k of Object.keys(c)) if (!known.has(k)) problems.push(`unknown setting "${k}"`);
  for (const [k, allowed] of Object.entries(ENUMS)) {
    if (c[k] !== undefined && !allowed.includes(String(c[k]))) problems.push(`${k} must be one of ${allowed.join(', ')}`);
  }
  if (c.callHours !== undefined && (typeof c.callHours !== 'object' || c.callHours === null || Array.isArray(c.callHours))) {
    problems.push('callHours must be an object');
  }
  if (Object.keys(c).length === 0) problems.push('nothing to change');
  return problems;
}
