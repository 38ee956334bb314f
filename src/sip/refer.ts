/**
 * The target of a REFER: where to send the new INVITE (`uri`, without the embedded headers), its parts
 * (`params`: the URI parameters as written, e.g. ";transport=tcp"), and the headers embedded in the
 * URI that the new INVITE carries (Replaces).
 */
export interface ReferTarget {
  uri: string;
  scheme: 'sip' | 'sips';
  user: string | null;
  host: string;
  port: number | null;
  params: string;
  headers: Record<string, string>;
}

const ALLOWED_EMBEDDED = new Set(['replaces', 'require', 'referred-by']);

/** Parses a Refer-To header value (`<sip:200@pbx;transport=udp?Replaces=...>`); null if unusable. */
export function parseReferTo(value: string): ReferTarget | null {
  try {
    return parse(value);
  } catch {
    return null; // a malformed %-escape
  }
}

/** A user part, once decoded, must still be one: no controls, spaces or URI delimiters. */
const USER = /^[^\x00-\x20\x7f<>"@;?]+$/;

function parse(value: string): ReferTarget | null {
  const inner = /<([^>]+)>/.exec(value)?.[1] ?? value.trim().split(/[;\s]/)[0] ?? '';
  const m = /^(sips?):(?:([^@]+)@)?([A-Za-z0-9.-]+)(:\d{1,5})?((?:;[^?]*)?)(?:\?(.*))?$/.exec(inner);
  if (!m) return null;
  const [, scheme, rawUser, host, port, params, query] = m;
  const portNumber = port ? Number(port.slice(1)) : null;
  if (portNumber !== null && (portNumber < 1 || portNumber > 65535)) return null;
  if (/[\x00-\x20\x7f<>"]/.test(params ?? '')) return null;
  const user = rawUser === undefined ? null : decodeURIComponent(rawUser);
  if (user !== null && !USER.test(user)) return null;
  const headers: Record<string, string> = {};
  for (const pair of (query ?? '').split('&').filter(Boolean)) {
    const eq = pair.indexOf('=');
    if (eq <= 0) continue;
    const name = decodeURIComponent(pair.slice(0, eq));
    if (!ALLOWED_EMBEDDED.has(name.toLowerCase())) continue;
    headers[canonical(name)] = decodeURIComponent(pair.slice(eq + 1));
  }
  return {
    uri: `${scheme}:${user !== null ? `${user}@` : ''}${host}${port ?? ''}${params ?? ''}`,
    scheme: scheme === 'sips' ? 'sips' : 'sip',
    user,
    host: host!.toLowerCase(),
    port: portNumber,
    params: params ?? '',
    headers,
  };
}

function canonical(name: string): string {
  return name.split('-').map((w) => w.charAt(0).toUpperCase() + w.slice(1).toLowerCase()).join('-');
}
