import crypto from 'node:crypto';

/**
 * Meta's digest challenge to business-initiated INVITEs: `407 Proxy Authentication Required` with
 * `realm="wa.meta.vc"`, qop=auth, MD5, and the check of the retry's Proxy-Authorization. Written on
 * its own (not the bridge's DigestAuth) so a bug in the bridge's digest code cannot hide behind it.
 */

export const META_REALM = 'wa.meta.vc';

export type DigestCheck = 'ok' | 'missing' | 'malformed' | 'stale' | 'wrong-credentials';

const md5 = (s: string): string => crypto.createHash('md5').update(s).digest('hex');

/** Splits `a="b", c=d` into a map (quoted values unquoted). */
export function parseDigestParams(header: string): Record<string, string> {
  const out: Record<string, string> = {};
  const re = /([a-zA-Z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]+))/g;
  for (let m = re.exec(header); m; m = re.exec(header)) out[m[1]!.toLowerCase()] = m[2] ?? m[3] ?? '';
  return out;
}

export class MetaDigest {
  /** Nonces handed out and not yet expired, with the highest nc seen. */
  private readonly nonces = new Map<string, { expiresAt: number; nc: number }>();

  constructor(private readonly ttlMs = 30_000, private readonly max = 1000) {}

  /** A Proxy-Authenticate value with a fresh nonce. */
  challenge(stale = false): string {
    const now = Date.now();
    for (const [n, e] of this.nonces) if (e.expiresAt < now || this.nonces.size >= this.max) this.nonces.delete(n);
    const nonce = crypto.randomBytes(16).toString('hex');
    this.nonces.set(nonce, { expiresAt: now + this.ttlMs, nc: 0 });
    return `Digest realm="${META_REALM}", nonce="${nonce}", qop="auth", algorithm=MD5${stale ? ', stale=true' : ''}`;
  }

  /** Checks a request's Proxy-Authorization against the number's credentials. */
  verify(method: string, requestUri: string, header: string | undefined, creds: { username: string; password: string }): DigestCheck {
    if (!header) return 'missing';
    if (!/^Digest\s/i.test(header)) return 'malformed';
    const p = parseDigestParams(header.slice(7));
    const { username, realm, nonce, uri, response, qop, nc, cnonce } = p;
    if (!username || !realm || !nonce || !uri || !response) return 'malformed';
    if (p.algorithm && p.algorithm.toUpperCase() !== 'MD5') return 'malformed';
    if (qop && qop !== 'auth') return 'malformed';
    if (qop && (!nc || !cnonce)) return 'malformed';
    if (username !== creds.username || realm !== META_REALM) return 'wrong-credentials';
    const ha1 = md5(`${username}:${realm}:${creds.password}`);
    const ha2 = md5(`${method}:${uri}`);
    const expected = qop ? md5(`${ha1}:${nonce}:${nc}:${cnonce}:auth:${ha2}`) : md5(`${ha1}:${nonce}:${ha2}`);
    if (expected !== response.toLowerCase()) return 'wrong-credentials';
    if (uri !== requestUri) return 'wrong-credentials';
    const known = this.nonces.get(nonce);
    if (!known || known.expiresAt < Date.now()) return 'stale';
    const count = nc ? parseInt(nc, 16) : known.nc + 1;
    if (!(count > known.nc)) return 'stale';
    known.nc = count;
    return 'ok';
  }
}
