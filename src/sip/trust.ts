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

/**
 * SIP digest authentication (RFC 2617/3261, MD5, qop=auth) with stateless nonces: a nonce is its
 * issue time plus an HMAC of it, valid for `nonceTtlMs`.
 */
export class DigestAuth {
  private readonly key = crypto.randomBytes(32);

  constructor(private readonly creds: { username: string; password: string; realm: string }, private readonly nonceTtlMs = 5 * 60 * 1000) {}

  challenge(): string {
    const t = Date.now().toString(16);
    const nonce = `${t}.${this.sign(t)}`;
    return `Digest realm="${this.creds.realm}", nonce="${nonce}", algorithm=MD5, qop="auth"`;
  }

  /** True when the Authorization header answers a fresh challenge with the right credentials. */
  verify(method: string, header: string | undefined): boolean {
    if (!header || !/^Digest /i.test(header)) return false;
    const p = parseParams(header.slice(7));
    const { username, realm, nonce, uri, response } = p;
    if (!username || !realm || !nonce || !uri || !response) return false;
    if (username !== this.creds.username || realm !== this.creds.realm) return false;
    const [t, sig] = nonce.split('.');
    if (!t || !sig || !safeEqual(sig, this.sign(t)) || Date.now() - parseInt(t, 16) > this.nonceTtlMs) return false;
    const ha1 = md5(`${username}:${realm}:${this.creds.password}`);
    const ha2 = md5(`${method}:${uri}`);
    const expected = p.qop ? md5(`${ha1}:${nonce}:${p.nc ?? ''}:${p.cnonce ?? ''}:${p.qop}:${ha2}`) : md5(`${ha1}:${nonce}:${ha2}`);
    return safeEqual(response.toLowerCase(), expected);
  }

  private sign(t: string): string {
    return crypto.createHmac('sha256', this.key).update(t).digest('hex').slice(0, 32);
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
