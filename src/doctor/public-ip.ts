import os from 'node:os';
import { isNonPublicAddress } from '../config';
import { CheckResult, failed, ok, warn } from '../preflight/report';

/** This host's interface addresses, by interface name (os.networkInterfaces, injectable for tests). */
export type Interfaces = Record<string, Array<{ address: string }> | undefined>;

/**
 * PUBLIC_IP is where WhatsApp sends the calls' media: this host's own address (on one of its interfaces)
 * or, behind 1:1 NAT (EC2, GCE, Azure), the public address the NAT maps to this host, which no
 * interface carries and which cannot be proven from inside. A private, loopback or CGNAT address is one
 * WhatsApp cannot reach: FAIL unless ALLOW_PRIVATE_PUBLIC_IP says this is a lab.
 */
export function checkPublicIp(publicIp: string, allowPrivate: boolean, interfaces: Interfaces = os.networkInterfaces()): CheckResult[] {
  const check = 'PUBLIC_IP';
  const ip = publicIp.toLowerCase();
  const on = Object.entries(interfaces).find(([, addrs]) => (addrs ?? []).some((a) => a.address.toLowerCase() === ip))?.[0] ?? null;
  if (isNonPublicAddress(ip)) {
    if (!allowPrivate) {
      return [failed(check, `${ip} is a private/loopback address WhatsApp cannot send media to, and the bridge will not start with it: `
        + 'set PUBLIC_IP to this host\'s public address (behind 1:1 NAT, its elastic/external IP), or ALLOW_PRIVATE_PUBLIC_IP=true in a lab')];
    }
    return [warn(check, `${ip} is not public (ALLOW_PRIVATE_PUBLIC_IP=true): a lab only, WhatsApp cannot send media to it${on ? `; on ${on}` : ''}`)];
  }
  if (on) return [ok(check, `${ip} is on this host's interface ${on}`)];
  const mine = Object.values(interfaces).flatMap((a) => a ?? []).map((a) => a.address).filter((a) => !isNonPublicAddress(a));
  return [warn(check, `${ip} is on none of this host's interfaces (${mine.length ? `public ones: ${mine.join(', ')}` : 'it has no public one'}): `
    + 'it must be this host\'s 1:1 NAT address (elastic/external IP) with rtpengine\'s UDP port range forwarded; that cannot be proven from inside')];
}
