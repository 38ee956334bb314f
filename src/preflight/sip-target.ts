import dns from 'node:dns/promises';
import fs from 'node:fs';
import { checkChainSent, checkDates, checkKeyMatches, checkName, chainProblem, explainVerifyError, parseChain, TrustStore } from './certificates';
import { CheckResult, failed, ok, skipped, warn } from './report';
import { sipOptions } from './sip-options';
import { handshake, opensslProbe, TlsTarget } from './tls-probe';

/** Where Meta will connect for a number, and where the preflight does. */
export interface SipEndpoint {
  hostname: string;
  port: number;
  /** `--connect host:port`: connect here instead of the hostname's address (the name checks stay on the hostname). */
  connect: { host: string; port: number } | null;
}

export interface ProbeOptions {
  trust: TrustStore;
  /** Bound on each step (DNS, handshake, openssl, the OPTIONS answer). */
  timeoutMs: number;
  now: Date;
  /** The openssl binary (null: not used, its checks are skipped). */
  openssl: string | null;
}

/**
 * What Meta's gateway meets at the number's SIP server, in the order it meets it: the name resolves, the
 * TLS port answers a handshake without ALPN and without being asked for a client certificate, the
 * certificate chain verifies, is sent whole, is in its dates and covers the hostname, and SIP answers
 * an OPTIONS on that connection.
 */
export async function checkSipEndpoint(e: SipEndpoint, o: ProbeOptions): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  let host = e.connect?.host ?? null;
  try {
    const addresses = await bounded(dns.lookup(e.hostname, { all: true }), o.timeoutMs, 'DNS');
    const list = addresses.map((a) => a.address).join(', ');
    results.push(ok('DNS', `${e.hostname} resolves to ${list}${e.connect ? ` (probing ${e.connect.host}:${e.connect.port} as told)` : ''}`));
    host ??= addresses[0]!.address;
  } catch (err) {
    if (e.connect) results.push(warn('DNS', `${e.hostname} does not resolve here (${(err as Error).message}): Meta must resolve it; probing ${e.connect.host}:${e.connect.port} as told`));
    else {
      results.push(failed('DNS', `${e.hostname} does not resolve (${(err as Error).message}): publish an A record for it (Meta connects to this name)`));
      return results;
    }
  }
  const target: TlsTarget = { hostname: e.hostname, host: host!, port: e.connect?.port ?? e.port, timeoutMs: o.timeoutMs };
  const where = `${target.host}:${target.port}`;

  let hs;
  try {
    hs = await handshake(target, o.trust);
  } catch (err) {
    results.push(failed('TLS port', `${where}: ${(err as Error).message}. Meta needs SIP over TLS there (drachtio-server's sips contact; open TCP ${e.port} to Meta)`));
    return results;
  }
  try {
    results.push(ok('TLS port', `${where} answers (${hs.protocol ?? 'TLS'}, handshake without ALPN, SNI ${e.hostname})`));
    results.push(hs.alpn === false
      ? ok('no ALPN', 'the server selects no ALPN protocol (Meta offers none)')
      : failed('no ALPN', `the server selected ALPN "${hs.alpn}" although none was offered: Meta's gateway aborts such a handshake; turn ALPN off on the SIP TLS port`));

    let sent = null;
    if (o.openssl) {
      try {
        const probe = await opensslProbe(target, o.openssl);
        sent = probe.sent;
        results.push(probe.certificateRequested
          ? failed('no client certificate', 'the server asks for a client certificate (CertificateRequest): Meta has none and does no mutual TLS; stop requesting one on the SIP TLS port')
          : ok('no client certificate', 'the server asks for none (Meta has none)'));
      } catch (err) {
        results.push(skipped('no client certificate', `not checked: ${(err as Error).message}`));
      }
    } else results.push(skipped('no client certificate', 'not checked: openssl is not available'));

    results.push(hs.authorized
      ? ok('certificate chain', verifiedBy(o.trust))
      : failed('certificate chain', `${explainVerifyError(hs.verifyError ?? '')} (${hs.verifyError})`));
    results.push(sent ? checkChainSent(sent, o.trust) : skipped('full chain sent', 'not checked: needs openssl'));
    if (hs.leaf) {
      results.push(checkDates(hs.leaf, o.now));
      results.push(checkName(hs.leaf, e.hostname));
    } else results.push(failed('certificate', 'the server sent no certificate'));

    try {
      const answer = await sipOptions(hs.socket, e.hostname, e.port, o.timeoutMs);
      const said = `OPTIONS answered ${answer.status} ${answer.reason}${answer.agent ? ` (${answer.agent})` : ''}`;
      results.push(answer.status < 500
        ? ok('SIP OPTIONS', said)
        : warn('SIP OPTIONS', `${said}: SIP answers, but the bridge may not be connected to drachtio-server`));
    } catch (err) {
      results.push(failed('SIP OPTIONS', `${(err as Error).message}: the TLS port does not serve SIP (is it drachtio-server's sips contact?)`));
    }
  } finally {
    hs.socket.destroy();
  }
  return results;
}

/**
 * The certificate and key files drachtio-server's TLS contact uses (META_SIP_TLS_CERT_FILE / _KEY_FILE):
 * readable, the key the certificate's, the chain verifying, dates and names as above. Catches a renewed
 * file drachtio-server has not loaded yet, when the served certificate differs.
 */
export function checkCertificateFiles(certFile: string, keyFile: string | null, hostname: string, o: Pick<ProbeOptions, 'trust' | 'now'>): CheckResult[] {
  const results: CheckResult[] = [];
  let chain;
  try {
    chain = parseChain(fs.readFileSync(certFile, 'utf8'));
  } catch (err) {
    return [failed('certificate file', `${certFile}: ${(err as Error).message}`)];
  }
  if (chain.length === 0) return [failed('certificate file', `${certFile} holds no PEM certificate`)];
  const leaf = chain[0]!;
  results.push(ok('certificate file', `${certFile}: ${chain.length} certificate(s)`));
  if (keyFile) {
    try {
      results.push(checkKeyMatches(leaf, fs.readFileSync(keyFile, 'utf8'), 'key file'));
    } catch (err) {
      results.push(failed('key file', `${keyFile}: ${(err as Error).message}`));
    }
  }
  const problem = chainProblem(chain, o.trust, o.now);
  results.push(problem ? failed('file chain', problem) : ok('file chain', verifiedBy(o.trust)));
  results.push(checkDates(leaf, o.now, 'file dates'));
  results.push(checkName(leaf, hostname, 'file name'));
  return results;
}

function verifiedBy(trust: TrustStore): string {
  return trust.extraFiles.length === 0
    ? 'verifies against the public CAs'
    : `verifies against the public CAs and ${trust.extraFiles.join(', ')} (Meta trusts only public CAs)`;
}

function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    }),
  ]);
}
