import dns from 'node:dns';
import net from 'node:net';
import os from 'node:os';
import { withTimeout } from './dialog-requests';
import { ReferTarget } from './refer';
import { SourceAllowList } from './trust';

export interface TransferPolicyOptions {
  /** PBX_TARGET's hosts (names or addresses): the configured PBX is always a transfer target. */
  pbxHosts: string[];
  /** SIP_TRUSTED_SOURCES (addresses, CIDRs): the PBX's own addresses are transfer targets too. */
  trusted: string[];
  /** TRANSFER_TARGET_PATTERN, anchored: other targets the operator allows (the whole URI must match). */
  pattern: RegExp | null;
  /** This host's addresses besides its interfaces' (PUBLIC_IP, drachtio-server's). */
  ownAddresses: () => string[];
  /** The bridge's own ports (drachtio-server's SIP and admin ports, HTTP, rtpengine's ng), read at each check. */
  ownPorts: () => number[];
  /** Resolves a host name to its addresses; default: the system resolver, bounded by `lookupTimeoutMs`. */
  lookup?: (host: string) => Promise<string[]>;
  lookupTimeoutMs?: number;
}

export type TransferVerdict = { ok: true } | { ok: false; reason: string };

/**
 * Where a REFER may send the bridge's new INVITE (with the WhatsApp user's number and SDP): to the
 * configured PBX (PBX_TARGET's hosts, SIP_TRUSTED_SOURCES) and to what TRANSFER_TARGET_PATTERN allows,
 * nowhere else. Whatever the pattern says, never to loopback, link-local, unspecified or multicast
 * addresses (unless the PBX itself is configured there), never to one of the bridge's own ports on
 * this host, and never with a maddr parameter (it would send the INVITE to another address than the
 * one checked). A host name is resolved and each of its addresses checked.
 */
export class TransferPolicy {
  private readonly trusted: SourceAllowList;
  private readonly pbxHosts: Set<string>;
  private readonly lookup: (host: string) => Promise<string[]>;

  constructor(private readonly o: TransferPolicyOptions) {
    this.trusted = new SourceAllowList(o.trusted);
    this.pbxHosts = new Set(o.pbxHosts.map((h) => h.toLowerCase()));
    const timeoutMs = o.lookupTimeoutMs ?? 2000;
    this.lookup = o.lookup ?? ((host) => withTimeout(dns.promises.lookup(host, { all: true }), timeoutMs, `could not resolve ${host} in time`)
      .then((rs) => rs.map((r) => r.address)));
  }

  async check(t: ReferTarget): Promise<TransferVerdict> {
    if (/;maddr=/i.test(t.params)) return { ok: false, reason: 'a maddr parameter' };
    const isIp = net.isIP(t.host) !== 0;
    const isPbx = this.pbxHosts.has(t.host) || (isIp && this.trusted.allows(t.host));
    if (!isPbx && !this.o.pattern?.test(t.uri)) {
      return { ok: false, reason: 'not the configured PBX (PBX_TARGET, SIP_TRUSTED_SOURCES) and not allowed by TRANSFER_TARGET_PATTERN' };
    }
    let addresses: string[];
    try {
      addresses = isIp ? [t.host] : await this.lookup(t.host);
    } catch (err) {
      return { ok: false, reason: `its host does not resolve (${(err as Error).message})` };
    }
    if (addresses.length === 0) return { ok: false, reason: 'its host does not resolve' };
    const port = t.port ?? (t.scheme === 'sips' ? 5061 : 5060);
    const own = this.ownAddresses();
    const ownPorts = new Set(this.o.ownPorts());
    for (const a of addresses) {
      const special = specialRange(a);
      // The PBX's own address is fine even on loopback (a lab, or the PBX on the bridge's host)...
      if (special && !isPbx) return { ok: false, reason: `${a} is a ${special} address` };
      // ... but never one of the bridge's own sockets.
      if ((special || own.has(a)) && ownPorts.has(port)) return { ok: false, reason: `${a}:${port} is one of the bridge's own ports` };
    }
    return { ok: true };
  }

  private ownAddresses(): Set<string> {
    const out = new Set(this.o.ownAddresses().map((a) => a.toLowerCase()));
    for (const list of Object.values(os.networkInterfaces())) for (const i of list ?? []) out.add(i.address.toLowerCase());
    return out;
  }
}

/** Address ranges no transfer may reach (unless the PBX is configured there): what kind, or null. */
export function specialRange(address: string): string | null {
  const v4 = net.isIP(address) === 4 ? address : /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
  if (v4) {
    const [a, b] = v4.split('.').map(Number) as [number, number];
    if (a === 127) return 'loopback';
    if (a === 0) return 'unspecified';
    if (a === 169 && b === 254) return 'link-local';
    if (a >= 224) return 'multicast or reserved';
    return null;
  }
  const s = address.toLowerCase();
  if (s === '::1') return 'loopback';
  if (s === '::') return 'unspecified';
  if (/^fe[89ab]/.test(s)) return 'link-local';
  if (s.startsWith('ff')) return 'multicast';
  return null;
}

/** The host of each PBX_TARGET URI (sip:[user@]host[:port][;params]). */
export function targetHosts(targets: string[]): string[] {
  return targets.map((t) => /^sips?:(?:[^@]+@)?([^:;>]+)/i.exec(t)?.[1]?.toLowerCase()).filter((h): h is string => Boolean(h));
}
