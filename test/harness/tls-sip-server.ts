import net from 'node:net';
import tls from 'node:tls';
import { CertFiles } from './test-pki';

export interface TlsSipServer {
  port: number;
  /** The ALPN protocol each handshake ended with (false: none), in order. */
  alpn: Array<string | false>;
  /** The OPTIONS requests received (their heads). */
  options: string[];
  stop(): Promise<void>;
}

/**
 * A SIP-over-TLS stand-in on 127.0.0.1: answers each request head with `SIP/2.0 200 OK` (Via, From, To,
 * Call-ID and CSeq copied). `requestCert` asks clients for a certificate; `alpn` offers ALPN protocols.
 */
export async function startTlsSipServer(c: CertFiles, o: { requestCert?: boolean; alpn?: string[]; answer?: string } = {}): Promise<TlsSipServer> {
  const alpn: Array<string | false> = [];
  const options: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = tls.createServer({
    key: c.keyPem, cert: c.certPem, requestCert: o.requestCert ?? false, rejectUnauthorized: false,
    ...(o.alpn ? { ALPNProtocols: o.alpn } : {}),
  }, (socket) => {
    alpn.push(socket.alpnProtocol ?? false);
    let buf = '';
    socket.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      let end;
      while ((end = buf.indexOf('\r\n\r\n')) >= 0) {
        const head = buf.slice(0, end);
        buf = buf.slice(end + 4);
        options.push(head);
        const copy = head.split('\r\n').filter((l) => /^(Via|From|To|Call-ID|CSeq):/i.test(l));
        socket.write([o.answer ?? 'SIP/2.0 200 OK', ...copy, 'Server: test-sip-tls', 'Content-Length: 0', '', ''].join('\r\n'));
      }
    });
    socket.on('error', () => undefined);
  });
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    alpn,
    options,
    stop: () => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}
