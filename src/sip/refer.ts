/** The target of a REFER: where to send the new INVITE, and headers embedded in the URI (Replaces). */
export interface ReferTarget { uri: string; user: string | null; host: string; headers: Record<string, string> }

const ALLOWED_EMBEDDED = new Set(['replaces', 'require', 'referred-by']);

/** Parses a Refer-To header value (`<sip:200@pbx;transport=udp?Replaces=...>`); null if unusable. */
export function parseReferTo(value: string): ReferTarget | null {
  const inner = /<([^>]+)>/.exec(value)?.[1] ?? value.trim().split(/[;\s]/)[0] ?? '';
  const m = /^(sips?):(?:([^@]+)@)?([^;?:]+)(:\d+)?([^?]*)(?:\?(.*))?$/.exec(inner);
  if (!m) return null;
  const [, scheme, user, host, port, params, query] = m;
  const headers: Record<string, string> = {};
  for (const pair of (query ?? '').split('&').filter(Boolean)) {
    const eq = pair.indexOf('=');
    if (eq <= 0) continue;
    const name = decodeURIComponent(pair.slice(0, eq));
    if (!ALLOWED_EMBEDDED.has(name.toLowerCase())) continue;
    headers[canonical(name)] = decodeURIComponent(pair.slice(eq + 1));
  }
  const userPart = user ? `${decodeURIComponent(user)}@` : '';
  return { uri: `${scheme}:${userPart}${host}${port ?? ''}${params ?? ''}`, user: user ? decodeURIComponent(user) : null, host: host!, headers };
}

function canonical(name: string): string {
  return name.split('-').map((w) => w.charAt(0).toUpperCase() + w.slice(1).toLowerCase()).join('-');
}
