import net from 'node:net';

/** The shortest prefix SIP_TRUSTED_SOURCES may name: a /7 or ::/0 is "anyone", not a PBX. */
export const MIN_TRUSTED_PREFIX = { v4: 8, v6: 32 };

/** A CIDR (already checked by isAddressOrCidr) whose prefix is shorter than MIN_TRUSTED_PREFIX. */
export function tooBroad(s: string): boolean {
  const [addr, bits] = s.split('/');
  if (bits === undefined) return false;
  if (net.isIP(addr!) === 4) return Number(bits) < MIN_TRUSTED_PREFIX.v4;
  // ::ffff:0:0/96 is all of IPv4, written as IPv6.
  const v4mapped = /^::ffff:/i.test(addr!);
  return Number(bits) < (v4mapped ? 96 + MIN_TRUSTED_PREFIX.v4 : MIN_TRUSTED_PREFIX.v6);
}

export function isAddressOrCidr(s: string): boolean {
  const [addr, bits, extra] = s.split('/');
  if (extra !== undefined || !addr) return false;
  const family = net.isIP(addr);
  if (!family) return false;
  if (bits === undefined) return true;
  const n = Number(bits);
  return /^\d{1,3}$/.test(bits) && n >= 0 && n <= (family === 4 ? 32 : 128);
}

/**
 * Loopback, private (RFC 1918, RFC 4193), carrier-grade NAT, link-local and unspecified addresses:
 * none of them is reachable from WhatsApp's media servers.
 */
export function isNonPublicAddress(ip: string): boolean {
  if (net.isIPv4(ip)) {
    const [a, b] = ip.split('.').map(Number) as [number, number];
    return a === 0 || a === 10 || a === 127 || (a === 169 && b === 254) || (a === 172 && b >= 16 && b <= 31)
      || (a === 192 && b === 168) || (a === 100 && b >= 64 && b <= 127);
  }
  const v6 = ip.toLowerCase();
  if (v6 === '::' || v6 === '::1') return true;
  if (v6.startsWith('::ffff:')) return isNonPublicAddress(v6.slice(7));
  return /^f[cd]/.test(v6) || /^fe[89ab]/.test(v6);
}

export function isHttpUrl(s: string): boolean {
  try {
    const u = new URL(s);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
}

/** `host:port` (IPv6 in brackets) as RTPENGINE_NG lists it; undefined when it is not one. */
export function parseHostPort(s: string): { host: string; port: number } | undefined {
  const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(s);
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return undefined;
  return { host: m[1]!, port };
}

/**
 * A DNS name of two labels or more (`sip.example.com`), not an IP address: what a TLS certificate is
 * issued for, and what Meta's calling settings name as a number's SIP server.
 */
export function isDnsName(s: string): boolean {
  if (s.length > 253 || net.isIP(s) !== 0) return false;
  const labels = s.split('.');
  return labels.length >= 2 && labels.every((l) => /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(l)) && !/^\d+$/.test(labels[labels.length - 1]!);
}
