import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { parseChain, TrustStore } from './certificates';

/** Where to connect and which name to check: Meta connects to `hostname` and checks its certificate against it. */
export interface TlsTarget {
  hostname: string;
  /** Where the probe connects (default: the hostname's address and the port); the name checks stay on `hostname`. */
  host: string;
  port: number;
  timeoutMs: number;
}

/** A TLS handshake as Meta's gateway makes it: SNI with the hostname, no ALPN offered, no client certificate. */
export interface TlsHandshake {
  socket: tls.TLSSocket;
  /** The chain verifies against the trust store (Node's own OpenSSL verification, names aside). */
  authorized: boolean;
  /** Node's verification error code (e.g. CERT_HAS_EXPIRED) when not authorized. */
  verifyError: string | null;
  leaf: X509Certificate | null;
  /** The ALPN protocol the server selected although none was offered (false: none, as it should be). */
  alpn: string | false;
  protocol: string | null;
}

/** The SNI a TLS client sends for a host: its name; none for an IP address (RFC 6066). */
export function sniOf(hostname: string): string | undefined {
  return net.isIP(hostname) ? undefined : hostname;
}

/** Connects and completes the handshake (verification is reported, never enforced), bounded by `timeoutMs`. Throws with the reason when it cannot. */
export function handshake(t: TlsTarget, trust: TrustStore): Promise<TlsHandshake> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: t.host, port: t.port, servername: sniOf(t.hostname), ca: trust.pem,
      rejectUnauthorized: false,
      // The name is checked on its own (checkName), so a wrong name and a broken chain are told apart.
      checkServerIdentity: () => undefined,
      // Meta offers no ALPN: neither does the probe (a server that insists on one fails here).
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no TLS handshake within ${t.timeoutMs} ms (is the port firewalled, or not TLS?)`));
    }, t.timeoutMs);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      socket.on('error', () => undefined);
      const err = socket.authorizationError as unknown;
      resolve({
        socket,
        authorized: socket.authorized,
        verifyError: socket.authorized ? null : errorCode(err),
        leaf: socket.getPeerX509Certificate() ?? null,
        alpn: socket.alpnProtocol ?? false,
        protocol: socket.getProtocol(),
      });
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      reject(new Error(err.code === 'ECONNREFUSED' ? 'connection refused: nothing listens there' : `${err.code ?? ''} ${err.message}`.trim()));
    });
  });
}

function errorCode(err: unknown): string {
  if (typeof err === 'string') return err;
  if (err instanceof Error) return (err as NodeJS.ErrnoException).code ?? err.message;
  return 'unknown';
}

/**
 * What only a packet-level client can see: whether the server sent a CertificateRequest (asks for a
 * client certificate, which Meta does not have) and exactly which certificates it sent. Node's TLS
 * socket exposes neither (its peer chain is completed from the trust store), so `openssl s_client`
 * is run with `-state -msg -showcerts`, no ALPN and stdin closed: its trace names the CertificateRequest
 * message in TLS 1.2 and 1.3 ("read server certificate request" / "CertificateRequest").
 */
export interface OpensslProbe {
  certificateRequested: boolean;
  sent: X509Certificate[];
}

export function opensslProbe(t: TlsTarget, openssl = 'openssl'): Promise<OpensslProbe> {
  const sni = sniOf(t.hostname);
  const args = ['s_client', '-connect', `${net.isIPv6(t.host) ? `[${t.host}]` : t.host}:${t.port}`, ...(sni ? ['-servername', sni] : ['-noservername']),
    '-state', '-msg', '-showcerts'];
  return new Promise((resolve, reject) => {
    const child = execFile(openssl, args, { timeout: t.timeoutMs, killSignal: 'SIGKILL', maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
      const out = `${stdout}\n${stderr}`;
      const sent = parseChain(stdout.split(/^Server certificate$/m)[0] ?? stdout);
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') return reject(new Error(`${openssl} not found`));
      if (sent.length === 0 && err) return reject(new Error(`openssl s_client failed: ${lastLine(stderr) || err.message}`));
      resolve({ certificateRequested: /certificate request|CertificateRequest/i.test(out), sent });
    });
    child.stdin?.end();
  });
}

function lastLine(s: string): string {
  return s.trim().split('\n').filter(Boolean).slice(-1)[0] ?? '';
}
