import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';

/**
 * What Meta checks before it sends a number's calls to its SIP server: a TLS handshake to the server
 * with SNI set to the configured hostname and no ALPN (Meta refuses ALPN, see livekit/sip#685), the
 * chain verified against trusted roots, the dates, and the hostname (a DNS name or an IP address)
 * covered by the certificate. Resolves null when all is well, else Node's reason
 * (e.g. "certificate has expired", "Hostname/IP does not match certificate's altnames: ...").
 */
export async function checkBridgeCertificate(o: { host: string; port: number; hostname: string; ca?: string | string[]; timeoutMs: number }): Promise<string | null> {
  const ca = o.ca === undefined ? undefined : (Array.isArray(o.ca) ? o.ca : [o.ca]).map((f) => fs.readFileSync(f, 'utf8'));
  return new Promise((resolve) => {
    let done = false;
    const finish = (reason: string | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(reason);
    };
    const socket = tls.connect({
      host: o.host,
      port: o.port,
      // SNI must be a DNS name (RFC 6066): none when the configured server is an IP address.
      servername: net.isIP(o.hostname) ? undefined : o.hostname,
      ca,
      rejectUnauthorized: true,
      checkServerIdentity: (_host, cert) => tls.checkServerIdentity(o.hostname, cert),
    });
    const timer = setTimeout(() => finish(`tls: no handshake with ${o.host}:${o.port} within ${o.timeoutMs} ms`), o.timeoutMs);
    socket.once('secureConnect', () => finish(null));
    socket.once('error', (err: Error) => finish(`tls: ${err.message}`));
  });
}
