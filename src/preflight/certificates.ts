import crypto, { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import tls from 'node:tls';
import { CheckResult, failed, ok, warn } from './report';

/** A certificate expiring within this many days is warned about (renewal must have failed). */
export const EXPIRY_WARNING_DAYS = 14;
const DAY_MS = 24 * 3600 * 1000;
const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * The CAs a TLS client is taken to trust: Node's bundled public roots (Mozilla's list, close to what
 * Meta's SIP gateway trusts), plus NODE_EXTRA_CA_CERTS and `--ca` (a test CA, or a private CA to check
 * a chain against: Meta still needs a public one).
 */
export interface TrustStore {
  /** PEM, for tls.connect's `ca`. */
  pem: string[];
  certs: X509Certificate[];
  /** The files added to the public CAs (a chain verified only thanks to them is no proof for Meta). */
  extraFiles: readonly string[];
}

export function trustStore(extraPemFiles: readonly string[]): TrustStore {
  const pem = [...tls.rootCertificates];
  for (const file of extraPemFiles) pem.push(...pemBlocks(fs.readFileSync(file, 'utf8')));
  const certs: X509Certificate[] = [];
  for (const p of pem) {
    try {
      certs.push(new X509Certificate(p));
    } catch {
      // A root Node ships that this OpenSSL cannot read is no root for us either.
    }
  }
  return { pem, certs, extraFiles: [...extraPemFiles] };
}

export function pemBlocks(text: string): string[] {
  return text.match(PEM_BLOCK) ?? [];
}

export function parseChain(text: string): X509Certificate[] {
  return pemBlocks(text).map((p) => new X509Certificate(p));
}

/** A certificate's subject in one short phrase (its CN, else the whole subject). */
export function nameOf(c: X509Certificate): string {
  return oneLine(c.subject);
}

function issuerOf(c: X509Certificate): string {
  return oneLine(c.issuer);
}

function oneLine(dn: string): string {
  const cn = /^CN=(.*)$/m.exec(dn);
  return cn ? `"${cn[1]}"` : `"${dn.replace(/\n/g, ', ')}"`;
}

/** Whether `issuer` issued and signed `cert`. */
export function issued(issuer: X509Certificate, cert: X509Certificate): boolean {
  try {
    return cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

function selfIssued(c: X509Certificate): boolean {
  return issued(c, c);
}

/** Not yet valid or expired: fail; expiring within EXPIRY_WARNING_DAYS: warn. */
export function checkDates(leaf: X509Certificate, now: Date, check = 'certificate dates'): CheckResult {
  const from = new Date(leaf.validFrom);
  const to = new Date(leaf.validTo);
  if (now < from) return failed(check, `${nameOf(leaf)} is not valid before ${from.toISOString()}: check this host's clock, or reissue it`);
  if (now > to) return failed(check, `${nameOf(leaf)} expired on ${to.toISOString()}: renew it (and reload drachtio-server)`);
  const days = Math.floor((to.getTime() - now.getTime()) / DAY_MS);
  if (days < EXPIRY_WARNING_DAYS) return warn(check, `${nameOf(leaf)} expires in ${days} day(s), on ${to.toISOString()}: renewal should have happened by now`);
  return ok(check, `valid until ${to.toISOString()} (${days} days)`);
}

/** The leaf covers `hostname` as a TLS client checks it (tls.checkServerIdentity: SAN DNS names and wildcards, or an IP SAN). */
export function checkName(leaf: X509Certificate, hostname: string, check = 'certificate name'): CheckResult {
  const err = tls.checkServerIdentity(hostname, leaf.toLegacyObject() as unknown as tls.PeerCertificate);
  const names = leaf.subjectAltName ?? '(no subjectAltName)';
  if (err) return failed(check, `${nameOf(leaf)} does not cover ${hostname} (it names ${names}): get a certificate for ${hostname}, or set Meta's SIP hostname to a name it covers`);
  return ok(check, `covers ${hostname} (${names})`);
}

/**
 * The chain as sent: each certificate issued by the next, and the last one either a root or issued by a
 * trusted root. A leaf sent without its intermediate verifies in a browser that fetches it (AIA) but not
 * in a strict client such as Meta's gateway.
 */
export function checkChainSent(sent: readonly X509Certificate[], trust: TrustStore, what = 'the server', check = 'full chain sent'): CheckResult {
  if (sent.length === 0) return failed(check, `${what} sent no certificate`);
  for (let i = 0; i + 1 < sent.length; i++) {
    if (!issued(sent[i + 1]!, sent[i]!)) {
      return failed(check, `certificate ${i + 2} (${nameOf(sent[i + 1]!)}) did not issue certificate ${i + 1} (${nameOf(sent[i]!)}): `
        + 'put them in order, the leaf first, then each issuer');
    }
  }
  const top = sent[sent.length - 1]!;
  if (selfIssued(top)) return ok(check, `${sent.length} certificate(s), ending at the root ${nameOf(top)}`);
  if (trust.certs.some((root) => issued(root, top))) return ok(check, `${sent.length} certificate(s), up to ${issuerOf(top)}`);
  return failed(check, `${what} sends ${sent.length} certificate(s) and stops at ${nameOf(top)}, issued by ${issuerOf(top)}, which is neither sent `
    + 'nor a trusted root: the intermediate certificate is missing. Give the full chain (leaf, then intermediates: e.g. Let\'s Encrypt\'s fullchain.pem)');
}

/**
 * A chain from a file verified as a client would: every link signed by the next, each within its dates,
 * ending at a trusted root (a file may leave the root out). Returns the problem, or null.
 */
export function chainProblem(chain: readonly X509Certificate[], trust: TrustStore, now: Date): string | null {
  if (chain.length === 0) return 'no certificate';
  for (const c of chain) {
    if (now > new Date(c.validTo)) return `${nameOf(c)} expired on ${new Date(c.validTo).toISOString()}`;
    if (now < new Date(c.validFrom)) return `${nameOf(c)} is not valid before ${new Date(c.validFrom).toISOString()}`;
  }
  const leaf = chain[0]!;
  if (chain.length === 1 && selfIssued(leaf) && !trust.certs.some((r) => r.fingerprint256 === leaf.fingerprint256)) {
    return `${nameOf(leaf)} is self-signed: Meta accepts only a certificate from a public CA (e.g. Let's Encrypt)`;
  }
  let cur = leaf;
  for (let i = 1; ; i++) {
    if (trust.certs.some((r) => r.fingerprint256 === cur.fingerprint256 || issued(r, cur))) return null;
    const next = chain[i];
    if (!next) return `${nameOf(cur)} is issued by ${issuerOf(cur)}, which is not a trusted CA (nor given in the chain)`;
    if (!issued(next, cur)) return `${nameOf(next)} did not issue ${nameOf(cur)}: the chain is out of order or mixed up`;
    cur = next;
  }
}

/** What a TLS verification error (Node's authorizationError code) means for a server Meta connects to. */
export function explainVerifyError(code: string): string {
  switch (code) {
    case 'CERT_HAS_EXPIRED':
      return 'a certificate in the chain has expired: renew it';
    case 'CERT_NOT_YET_VALID':
      return 'a certificate in the chain is not valid yet: check the clocks, or reissue it';
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
      return 'the certificate is self-signed: Meta accepts only a certificate from a public CA (e.g. Let\'s Encrypt)';
    case 'SELF_SIGNED_CERT_IN_CHAIN':
      return 'the chain ends at a root that is not a trusted (public) CA';
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'UNABLE_TO_GET_ISSUER_CERT':
      return 'the chain does not reach a trusted CA: its intermediate is not sent, or its CA is not a public one';
    default:
      return 'the chain does not verify';
  }
}

/** The key file's key is the certificate's (drachtio-server would start, and every handshake would fail). */
export function checkKeyMatches(leaf: X509Certificate, keyPem: string, check = 'key matches'): CheckResult {
  let key: crypto.KeyObject;
  try {
    key = crypto.createPrivateKey(keyPem);
  } catch (err) {
    return failed(check, `the key file holds no readable private key (${(err as Error).message}); drachtio-server needs an unencrypted PEM key`);
  }
  return leaf.checkPrivateKey(key)
    ? ok(check, `the key is ${nameOf(leaf)}'s`)
    : failed(check, `the key file's key is not ${nameOf(leaf)}'s: give the key the certificate was issued for`);
}
