import crypto from 'node:crypto';
import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import { AddressInfo } from 'node:net';
import { parseSipMessage } from '../../src/sandbox/demo-agent/sip-message';

/** A SIP message as read off the wire (src/sandbox/demo-agent/sip-message.ts parses it), with its sender. */
export interface SipMessage {
  /** A request's method, or null for a response. */
  method: string | null;
  /** A request's Request-URI, or null for a response. */
  uri: string | null;
  /** A response's status, or null for a request. */
  status: number | null;
  /** Names lower case (compact forms expanded), in order. */
  headers: Array<[string, string]>;
  body: string;
  from: { address: string; port: number };
}

/** The first value of a header (case-insensitive name), or ''. */
export function header(m: SipMessage, name: string): string {
  const n = name.toLowerCase();
  return m.headers.find(([k]) => k === n)?.[1] ?? '';
}

export function parseSip(buf: Buffer, from: { address: string; port: number }): SipMessage | null {
  const m = parseSipMessage(buf);
  if (!m) return null;
  return {
    method: m.kind === 'request' ? m.method : null,
    uri: m.kind === 'request' ? m.uri : null,
    status: m.kind === 'response' ? m.status : null,
    headers: m.headers.map((h): [string, string] => [h.name, h.value]),
    body: m.body,
    from,
  };
}

/** A tag or branch value. */
export const token = (prefix = ''): string => `${prefix}${crypto.randomBytes(6).toString('hex')}`;

/**
 * A bare SIP endpoint on one loopback address and UDP port, for tests that need to send exactly the
 * bytes an attacker (or a PBX) would: every message received is emitted as 'request' or 'response'.
 * Nothing is retransmitted or answered unless the test does it.
 */
export class RawSip extends EventEmitter {
  private readonly sock = dgram.createSocket('udp4');
  readonly received: SipMessage[] = [];
  port = 0;

  constructor(readonly address: string) {
    super();
  }

  async start(port = 0): Promise<this> {
    this.sock.on('message', (buf, r) => {
      const m = parseSip(buf, { address: r.address, port: r.port });
      if (!m) return;
      this.received.push(m);
      this.emit(m.method ? 'request' : 'response', m);
    });
    await new Promise<void>((resolve, reject) => {
      this.sock.once('error', reject);
      this.sock.bind(port, this.address, () => resolve());
    });
    this.port = (this.sock.address() as AddressInfo).port;
    return this;
  }

  close(): void {
    this.sock.close();
  }

  send(text: string, port: number, host = '127.0.0.1'): void {
    this.sock.send(text.replace(/\r?\n/g, '\r\n'), port, host);
  }

  /** Sends a request and resolves with its final response (provisional ones skipped), or rejects after `ms`. */
  request(text: string, port: number, host = '127.0.0.1', ms = 5000): Promise<SipMessage> {
    const callId = /^Call-ID: *(.+)$/im.exec(text)?.[1]?.trim();
    const cseq = /^CSeq: *(.+)$/im.exec(text)?.[1]?.trim();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.off('response', on);
        reject(new Error(`no final response to ${text.split(/\r?\n/)[0]} within ${ms} ms`));
      }, ms);
      const on = (m: SipMessage) => {
        if (header(m, 'call-id') !== callId || header(m, 'cseq') !== cseq || (m.status ?? 0) < 200) return;
        clearTimeout(t);
        this.off('response', on);
        resolve(m);
      };
      this.on('response', on);
      this.send(text, port, host);
    });
  }

  /** Resolves with the next request matching `pred`, or rejects after `ms`. */
  nextRequest(pred: (m: SipMessage) => boolean, ms = 5000, what = 'a request'): Promise<SipMessage> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.off('request', on);
        reject(new Error(`${what} did not arrive within ${ms} ms`));
      }, ms);
      const on = (m: SipMessage) => {
        if (!pred(m)) return;
        clearTimeout(t);
        this.off('request', on);
        resolve(m);
      };
      this.on('request', on);
    });
  }

  /** A response to `req` (Via, From, To, Call-ID, CSeq copied; `toTag` added to a To without one). */
  respond(req: SipMessage, status: string, o: { toTag?: string; contact?: string; headers?: string[]; sdp?: string } = {}): void {
    const copy = (name: string) => req.headers.filter(([k]) => k === name).map(([, v]) => `${name === 'call-id' ? 'Call-ID' : name === 'cseq' ? 'CSeq' : name.charAt(0).toUpperCase() + name.slice(1)}: ${v}`);
    let to = header(req, 'to');
    if (o.toTag && !/;tag=/.test(to)) to += `;tag=${o.toTag}`;
    const lines = [
      `SIP/2.0 ${status}`, ...copy('via'), ...copy('from'), `To: ${to}`, ...copy('call-id'), ...copy('cseq'),
      ...(o.contact ? [`Contact: ${o.contact}`] : []), ...(o.headers ?? []),
      ...(o.sdp ? ['Content-Type: application/sdp'] : []), `Content-Length: ${Buffer.byteLength(o.sdp ?? '')}`, '', o.sdp ?? '',
    ];
    this.send(lines.join('\r\n'), req.from.port, req.from.address);
  }
}

/** A plain-RTP audio SDP (PCMU) at `address`:`port`, with `extraStreams` more m= lines (an attack's 100). */
export function pbxSdp(address: string, port: number, extraStreams = 0): string {
  return [
    'v=0', `o=pbx ${Date.now()} 1 IN IP4 ${address}`, 's=-', `c=IN IP4 ${address}`, 't=0 0',
    `m=audio ${port} RTP/AVP 0`, 'a=rtpmap:0 PCMU/8000', 'a=sendrecv',
    ...Array.from({ length: extraStreams }, (_, i) => `m=audio ${port + 2 * (i + 1)} RTP/AVP 0`),
    '',
  ].join('\r\n');
}
