import crypto from 'node:crypto';
import dns from 'node:dns/promises';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { isNonPublicAddress } from '../config';
import { AccountSpec } from '../numbers/spec';
import { EXPIRY_WARNING_DAYS } from '../preflight/certificates';
import { CheckResult, failed, ok, warn } from '../preflight/report';
import { errorCode, messageOf } from './check';
import { whyUnreachable, withDeadline } from './net-probe';

export interface WebhookCheck {
  /** The public base (https://wa.example.com), and which setting or flag gave it; null: none did. */
  url: { value: string; from: string } | null;
  accounts: AccountSpec[];
  /** The CAs trusted (PEM): Node's public ones, plus NODE_EXTRA_CA_CERTS and --ca (preflight/certificates.ts trustStore). */
  ca: string[];
  timeoutMs: number;
}

/** A TLS failure's code as Node names it, said so an operator knows what to fix. */
const CERT_PROBLEMS: Record<string, string> = {
  CERT_HAS_EXPIRED: 'the certificate has expired',
  CERT_NOT_YET_VALID: 'the certificate is not valid yet',
  ERR_TLS_CERT_ALTNAME_INVALID: 'the certificate does not cover this hostname',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'the certificate is self-signed',
  SELF_SIGNED_CERT_IN_CHAIN: 'the chain ends in a CA nobody trusts (self-signed)',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'the chain is incomplete (serve the intermediates: fullchain.pem)',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'the issuer is not a public CA, or the intermediates are missing',
};

const DAY_MS = 24 * 3600 * 1000;

/**
 * The webhook URL as the providers call it: https, the name resolves (to a public address), the
 * certificate verifies against the public CAs, /healthz answers as the bridge does, and each account's
 * path is this bridge's (Meta: its subscription check passes with the verify token; YCloud: an unsigned
 * POST is refused, not unknown). All from this host: that the internet reaches it cannot be proven here.
 */
export async function checkWebhook(o: WebhookCheck): Promise<CheckResult[]> {
  if (!o.url) {
    return [warn('URL', 'unset, unchecked: set PUBLIC_WEBHOOK_URL (or pass --webhook-url) to the https:// address the provider\'s console calls, without /webhooks/<account>')];
  }
  let base: URL;
  try {
    base = new URL(o.url.value.replace(/\/webhooks\/[^/]*\/?$/, '').replace(/\/+$/, ''));
  } catch {
    return [failed('URL', `${o.url.from} "${o.url.value}" is not a URL`)];
  }
  const shown = base.toString().replace(/\/$/, '');
  if (base.protocol !== 'https:') return [failed('URL', `${shown} (${o.url.from}) is not https://: YCloud and Meta only call https URLs. Put an HTTPS front (Caddy, nginx) before HTTP_PORT`)];
  const results: CheckResult[] = [ok('URL', `${shown} (${o.url.from})`)];

  const host = base.hostname.replace(/^\[|\]$/g, '');
  if (net.isIP(host) === 0) {
    try {
      const addrs = (await withDeadline(dns.lookup(host, { all: true }), o.timeoutMs, 'DNS')).map((a) => a.address);
      results.push(addrs.every(isNonPublicAddress)
        ? warn('DNS', `${host} resolves to ${addrs.join(', ')} only, which the providers cannot reach (split DNS? a lab?)`)
        : ok('DNS', `${host} resolves to ${addrs.join(', ')}`));
    } catch (err) {
      results.push(failed('DNS', `${host} does not resolve (${errorCode(err) ?? messageOf(err)}): add its A record (to PUBLIC_IP, or the HTTPS front's address)`));
      return results;
    }
  } else {
    results.push(warn('DNS', `${host} is an address: providers need a DNS name with a certificate for it`));
  }

  const ca = o.ca;
  const health = await get(new URL(`${base.pathname.replace(/\/$/, '')}/healthz`, base), ca, o.timeoutMs);
  if ('error' in health) {
    const code = errorCode(health.error);
    const cert = code ? CERT_PROBLEMS[code] : undefined;
    results.push(cert || /certificate|self.signed/i.test(messageOf(health.error))
      ? failed('certificate', `${cert ?? messageOf(health.error)} (${code ?? 'TLS'}): the providers refuse it. Get one from a public CA (Let's Encrypt) for ${host}`)
      : failed('HTTPS', code === 'ETIMEDOUT' ? `${shown} did not answer within ${o.timeoutMs} ms` : await whyUnreachable(shown, o.timeoutMs)));
    return results;
  }
  results.push(certificateLine(health.cert, host));
  let healthy = false;
  try {
    healthy = health.status === 200 && (JSON.parse(health.body) as { ok?: unknown }).ok === true;
  } catch { /* not JSON: not the bridge */ }
  if (!healthy) {
    results.push(failed('bridge', `GET /healthz answered ${health.status} (${health.body.slice(0, 80).replace(/\s+/g, ' ')}), not the bridge's {"ok":true}: `
      + `is the bridge running, and does the HTTPS front forward ${shown} to its HTTP_PORT?`));
    return results;
  }
  results.push(ok('bridge', 'GET /healthz answers as the bridge does'));
  for (const a of o.accounts) results.push(await accountPath(base, a, ca, o.timeoutMs));
  results.push(warn('from outside', 'reachable from this host; that the providers reach it from the internet (firewall, security group, split DNS) '
    + 'cannot be proven from inside: send a test from the provider\'s console, or curl it from another network'));
  return results;
}

/** The account's webhook path answers as this bridge's door does. */
async function accountPath(base: URL, a: AccountSpec, ca: string[], timeoutMs: number): Promise<CheckResult> {
  const check = `/webhooks/${a.name}`;
  const path = `${base.pathname.replace(/\/$/, '')}/webhooks/${encodeURIComponent(a.name)}`;
  if (a.kind === 'meta') {
    const challenge = crypto.randomBytes(8).toString('hex');
    const q = new URLSearchParams({ 'hub.mode': 'subscribe', 'hub.verify_token': a.verifyToken, 'hub.challenge': challenge });
    const r = await get(new URL(`${path}?${q}`, base), ca, timeoutMs);
    if ('error' in r) return failed(check, `no answer: ${messageOf(r.error)}`);
    if (r.status === 200 && r.body === challenge) return ok(check, 'Meta\'s subscription check passes (the running bridge has this verify token)');
    if (r.status === 403) return failed(check, 'the running bridge refuses this verify token (403): it runs with another; restart it with this configuration');
    return failed(check, `Meta's subscription check gets ${r.status}: ${r.status === 404 ? `the running bridge has no Meta account "${a.name}"` : r.body.slice(0, 80)}`);
  }
  // An unsigned, empty POST: the door refuses it (401) when the account exists, 404 when it does not.
  const r = await get(new URL(path, base), ca, timeoutMs, 'POST');
  if ('error' in r) return failed(check, `no answer: ${messageOf(r.error)}`);
  if (r.status === 404) return failed(check, `the running bridge has no account "${a.name}" (404): is it running this configuration?`);
  if (r.status === 401 || r.status === 400) return ok(check, `the running bridge's webhook door for "${a.name}" (an unsigned POST is refused: ${r.status})`);
  return warn(check, `an unsigned POST got ${r.status}, not the bridge's 401: is something else answering there?`);
}

function certificateLine(cert: tls.PeerCertificate | null, host: string): CheckResult {
  if (!cert?.valid_to) return ok('certificate', `verified for ${host}`);
  const left = (Date.parse(cert.valid_to) - Date.now()) / DAY_MS;
  const issuer = cert.issuer?.O ?? cert.issuer?.CN ?? 'unknown issuer';
  const text = `verified for ${host}, issued by ${issuer}, valid until ${new Date(cert.valid_to).toISOString().slice(0, 10)}`;
  return left < EXPIRY_WARNING_DAYS ? warn('certificate', `${text}: ${Math.floor(left)} days left (is renewal working?)`) : ok('certificate', text);
}

type Answer = { status: number; body: string; cert: tls.PeerCertificate | null } | { error: unknown };

/** One HTTPS request, verified against `ca`, bounded by `timeoutMs`; at most 4 KiB of body read. */
function get(url: URL, ca: string[], timeoutMs: number, method: 'GET' | 'POST' = 'GET'): Promise<Answer> {
  return new Promise((resolve) => {
    const req = https.request(url, { method, ca, rejectUnauthorized: true, agent: false, headers: { 'User-Agent': 'wa-sip-bridge-doctor', ...(method === 'POST' ? { 'Content-Type': 'application/json', 'Content-Length': '0' } : {}) } }, (res) => {
      const cert = (res.socket as tls.TLSSocket).getPeerCertificate?.() ?? null;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        if (body.length < 4096) body += chunk;
      });
      res.on('end', () => done({ status: res.statusCode ?? 0, body, cert }));
      res.on('error', (error) => done({ error }));
    });
    const timer = setTimeout(() => req.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })), timeoutMs);
    const done = (a: Answer) => {
      clearTimeout(timer);
      resolve(a);
    };
    req.on('error', (error) => done({ error }));
    req.end();
  });
}
