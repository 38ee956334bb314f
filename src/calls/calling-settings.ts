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

const SIP_ENUMS: Record<string, readonly string[]> = {
  status: ['ENABLED', 'DISABLED'],
  srtpKeyExchange: ['DTLS', 'SDES'],
  webhookDelivery: ['ENABLED', 'DISABLED'],
};
/** A host name (an IPv4 address passes too: some set Meta's server as an address, and the certificate must then cover it). */
const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** Checks a requested change; returns the problems (empty when it is good). */
export function validateSettingsChange(c: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const known = new Set([...Object.keys(ENUMS), 'callHours', 'sip']);
  for (const k of Object.keys(c)) if (!known.has(k)) problems.push(`unknown setting "${k}"`);
  for (const [k, allowed] of Object.entries(ENUMS)) {
    if (c[k] !== undefined && !allowed.includes(String(c[k]))) problems.push(`${k} must be one of ${allowed.join(', ')}`);
  }
  if (c.callHours !== undefined && (typeof c.callHours !== 'object' || c.callHours === null || Array.isArray(c.callHours))) {
    problems.push('callHours must be an object');
  }
  if (c.sip !== undefined) problems.push(...sipProblems(c.sip));
  if (Object.keys(c).length === 0) problems.push('nothing to change');
  return problems;
}

/** The SIP part's problems: Meta takes one server, named by hostname and port together (it replaces the list). */
function sipProblems(sip: unknown): string[] {
  if (typeof sip !== 'object' || sip === null || Array.isArray(sip)) return ['sip must be an object'];
  const s = sip as Record<string, unknown>;
  const problems: string[] = [];
  const known = new Set([...Object.keys(SIP_ENUMS), 'hostname', 'port', 'g711']);
  for (const k of Object.keys(s)) if (!known.has(k)) problems.push(`unknown SIP setting "sip.${k}"`);
  for (const [k, allowed] of Object.entries(SIP_ENUMS)) {
    if (s[k] !== undefined && !allowed.includes(String(s[k]))) problems.push(`sip.${k} must be one of ${allowed.join(', ')}`);
  }
  if (s.hostname !== undefined && (typeof s.hostname !== 'string' || !HOSTNAME.test(s.hostname))) {
    problems.push('sip.hostname must be a host name (the one the bridge\'s TLS certificate covers), e.g. sip.example.com');
  }
  if (s.port !== undefined && (typeof s.port !== 'number' || !Number.isInteger(s.port) || s.port < 1 || s.port > 65535)) {
    problems.push('sip.port must be a port number (1-65535; Meta\'s default is 5061)');
  }
  if (s.port !== undefined && s.hostname === undefined) problems.push('sip.port needs sip.hostname: Meta\'s SIP server is set as a whole');
  if (s.g711 !== undefined && typeof s.g711 !== 'boolean') problems.push('sip.g711 must be true or false');
  if (Object.keys(s).length === 0) problems.push('sip: nothing to change');
  return problems;
}
