import crypto from 'node:crypto';
import net from 'node:net';

/** Source-address allow-list for INVITEs that place WhatsApp calls. */
export class SourceAllowList {
  private readonly list = new net.BlockList();
  private readonly empty: boolean;

  constructor(entries: string[]) {
    this.empty = entries.length === 0;
    for (const e of entries) {
      const [addr, bits] = e.split('/');
      const type = net.isIP(addr!) === 6 ? 'ipv6' : 'ipv4';
      if (bits === undefined) this.list.addAddress(addr!, type);
      else this.list.addSubnet(addr!, Number(bits), type);
    }
  }

  allows(address: string): boolean {
    if (this.empty) return false;
    const type = net.isIP(address) === 6 ? 'ipv6' : 'ipv4';
    return net.isIP(address) !== 0 && this.list.check(address, type);
  }
}

/** Why an INVITE's Authorization was not accepted (or `ok`). */
export type DigestVerdict =
  | 'ok'
  /** No Digest Authorization at all: challenge it. */
  | 'missing'
  /** A parameter is missing or malformed (including no qop=auth, a non-MD5 algorithm). */
  | 'malformed'
  | 'wrong-credentials'
  /** The digest was computed for another Request-URI (a captured header re-used for another number). */
  | 'uri-mismatch'
  /** A nonce this bridge did not issue (bad signature). */
  | 'bad-nonce'
  /** A nonce that has expired (or been forgotten): challenged again with stale=true. */
  | 'stale'
  /** This (nonce, nc) was accepted before, or nc did not increase. */
  | 'replayed';

export interface DigestOptions {
  /** How long a nonce is honoured after it was issued. */
  nonceTtlMs?: number;
  /** The most nonces whose last nc is remembered (the oldest is forgotten, and goes stale, beyond it). */
  maxNonces?: number;
  /** The clock (ms); tests move it. */
  now?: () => number;
}

/**
 * SIP digest authentication of INVITEs (RFC 2617/3261, MD5, qop=auth required). Nonces are issued by
 * the bridge: issue time and a random part, signed with an HMAC keyed by the credentials, so every
 * node sharing them can verify any node's nonce without shared state. The digest must be computed for
 * the INVITE's own Request-URI, and each (nonce, nc) is accepted once with nc strictly increasing.
 * That last check is per node: the remembered nonces are bounded by a TTL and a size cap, and a
 * nonce forgotten to make room is answered stale (it can never be accepted again).
 */
export class DigestAuth {
  private readonly key: Buffer;
  private readonly ttlMs: number;
  private readonly max: number;
  private readonly now: () => number;
  /** nonce -> highest nc accepted and when the nonce expires, in first-use order. */
  private readonly seen = new Map<string, { nc: number; issuedAt: number; expiresAt: number }>();
  /** Nonces issued at or before this time that are not in `seen` were forgotten: stale. */
  private forgottenUpTo = -Infinity;

  constructor(private readonly creds: { username: string; password: string; realm: string }, opts: DigestOptions = {}) {
    this.key = crypto.createHash('sha256').update(`wa-sip-bridge digest nonce\0${creds.realm}\0${creds.username}\0${creds.password}`).digest();
    this.ttlMs = opts.nonceTtlMs ?? 60_000;
    this.max = opts.maxNonces ?? 10_000;
    this.now = opts.now ?? Date.now;
  }

  /** The WWW-Authenticate header of a 401; `stale`: the credentials were right, the nonce old. */
  challenge(stale = false): string {
    const body = `${Math.floor(this.now()).toString(16)}.${crypto.randomBytes(8).toString('hex')}`;
    const nonce = `${body}.${this.sign(body)}`;
    return `Digest realm="${this.creds.realm}", nonce="${nonce}", algorithm=MD5, qop="auth"${stale ? ', stale=true' : ''}`;
  }

  /** Checks the Authorization header of a `method` request sent to `requestUri`. */
  verify(method: string, requestUri: string, header: string | undefined): DigestVerdict {
    if (!header || !/^Digest\s/i.test(header)) return 'missing';
    const p = parseParams(header.slice(7));
    const { username, realm, nonce, uri, response, qop, nc, cnonce } = p;
    if (!username || !realm || !nonce || !uri || !response || !cnonce || !nc) return 'malformed';
    if (qop !== 'auth' || !/^[0-9a-f]{8}$/i.test(nc) || !/^[0-9a-f]{32}$/i.test(response)) return 'malformed';
    if (p.algorithm !== undefined && p.algorithm.toUpperCase() !== 'MD5') return 'malformed';
    if (username !== this.creds.username || realm !== this.creds.realm) return 'wrong-credentials';
    const m = /^([0-9a-f]{1,13})\.([0-9a-f]{16})\.([0-9a-f]{32})$/.exec(nonce);
    if (!m || !safeEqual(m[3]!, this.sign(`${m[1]}.${m[2]}`))) return 'bad-nonce';
    const ha1 = md5(`${username}:${realm}:${this.creds.password}`);
    const ha2 = md5(`${method}:${uri}`);
    if (!safeEqual(response.toLowerCase(), md5(`${ha1}:${nonce}:${nc}:${cnonce}:auth:${ha2}`))) return 'wrong-credentials';
    // Only a correct digest tells the caller about the URI and the nonce's age.
    if (uri !== requestUri) return 'uri-mismatch';
    const now = this.now();
    const issuedAt = parseInt(m[1]!, 16);
    if (issuedAt > now + 5_000 || now - issuedAt > this.ttlMs) return 'stale';
    this.prune(now);
    const count = parseInt(nc, 16);
    const entry = this.seen.get(nonce);
    if (!entry && issuedAt <= this.forgottenUpTo) return 'stale';
    if (entry && count <= entry.nc) return 'replayed';
    if (entry) entry.nc = count;
    else this.remember(nonce, { nc: count, issuedAt, expiresAt: issuedAt + this.ttlMs });
    return 'ok';
  }

  /** How many nonces are remembered now (bounded by maxNonces). */
  get remembered(): number {
    return this.seen.size;
  }

  private remember(nonce: string, entry: { nc: number; issuedAt: number; expiresAt: number }): void {
    while (this.seen.size >= this.max) {
      const [oldest, e] = this.seen.entries().next().value as [string, { issuedAt: number }];
      this.seen.delete(oldest);
      this.forgottenUpTo = Math.max(this.forgottenUpTo, e.issuedAt);
    }
    this.seen.set(nonce, entry);
  }

  /** Drops expired nonces (their age alone makes them stale). Oldest first use first: stops at a live one. */
  private prune(now: number): void {
    for (const [nonce, e] of this.seen) {
      if (e.expiresAt >= now) {
        // First-use order is not expiry order; a full sweep happens only when the map is full.
        if (this.seen.size < this.max) return;
        continue;
      }
      this.seen.delete(nonce);
    }
  }

  private sign(body: string): string {
    return crypto.createHmac('sha256', this.key).update(body).digest('hex').slice(0, 32);
  }
}

function md5(s: string): string {
  return crypto.createHash('md5').update(s).digest('hex');
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && crypto.timingSafeEqual(x, y);
}

function parseParams(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of s.matchAll(/([a-zA-Z]+)\s*=\s*(?:"([^"]*)"|([^,\s]*))/g)) out[m[1]!.toLowerCase()] = m[2] ?? m[3] ?? '';
  return out;
}
