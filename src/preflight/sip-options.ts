import crypto from 'node:crypto';
import tls from 'node:tls';

/** The status line of the answer to an OPTIONS. */
export interface SipAnswer {
  status: number;
  reason: string;
  /** Its Server or User-Agent header, when given. */
  agent: string | null;
}

/** An answer head is at most this long: anything longer is not a SIP server. */
const MAX_HEAD = 16 * 1024;

/**
 * Sends one SIP OPTIONS to `hostname:port` over an established TLS connection, as Meta would send a
 * request there, and reads the answer's head (bounded by `timeoutMs`). Any SIP answer, even 403 or
 * 404, proves SIP is served on the port; throws when none comes.
 */
export function sipOptions(socket: tls.TLSSocket, hostname: string, port: number, timeoutMs: number): Promise<SipAnswer> {
  const local = `${socket.localAddress ?? '127.0.0.1'}:${socket.localPort ?? 0}`;
  const id = crypto.randomBytes(8).toString('hex');
  const request = [
    `OPTIONS sip:${hostname}:${port};transport=tls SIP/2.0`,
    `Via: SIP/2.0/TLS ${local.includes('::') ? `[${socket.localAddress}]:${socket.localPort}` : local};branch=z9hG4bK${id};rport`,
    'Max-Forwards: 70',
    `From: <sip:preflight@${hostname}>;tag=${id.slice(0, 8)}`,
    `To: <sip:${hostname}:${port}>`,
    `Call-ID: preflight-${id}`,
    'CSeq: 1 OPTIONS',
    `Contact: <sip:preflight@${local};transport=tls>`,
    'Accept: application/sdp',
    'User-Agent: wa-sip-bridge-preflight',
    'Content-Length: 0',
    '', '',
  ].join('\r\n');
  return new Promise((resolve, reject) => {
    let buf = '';
    const done = (err: Error | null, answer?: SipAnswer) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      if (err) reject(err);
      else resolve(answer!);
    };
    const onData = (chunk: Buffer) => {
      buf += chunk.toString('latin1');
      // Skip keepalive CRLFs (RFC 5626) before the answer.
      buf = buf.replace(/^(\r\n)+/, '');
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) {
        if (buf.length > MAX_HEAD) done(new Error('the answer is not SIP (no header end within 16 KiB)'));
        return;
      }
      const head = buf.slice(0, end);
      const m = /^SIP\/2\.0 (\d{3}) ?([^\r\n]*)/.exec(head);
      if (!m) return done(new Error(`the answer is not SIP: "${head.split('\r\n')[0]!.slice(0, 80)}"`));
      const agent = /^(?:Server|User-Agent):[ \t]*(.*)$/im.exec(head);
      done(null, { status: Number(m[1]), reason: m[2]!, agent: agent ? agent[1]!.trim() : null });
    };
    const onClose = () => done(new Error('the server closed the connection without a SIP answer'));
    const timer = setTimeout(() => done(new Error(`no SIP answer within ${timeoutMs} ms`)), timeoutMs);
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.write(request);
  });
}
