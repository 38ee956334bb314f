import net from 'node:net';

/** An IPv4 client seen through a dual-stack socket (::ffff:192.0.2.1) as its IPv4 address, one spelling per client. */
export function plainAddress(ip: string): string {
  return ip.startsWith('::ffff:') && net.isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
}
