import dgram from 'node:dgram';
import { AddressInfo } from 'node:net';

/** A bencoded value as rtpengine's ng protocol carries it. */
export type Bencoded = string | number | Bencoded[] | { [k: string]: Bencoded };

export function bencode(v: Bencoded): string {
  if (typeof v === 'number') return `i${Math.trunc(v)}e`;
  if (typeof v === 'string') return `${Buffer.byteLength(v)}:${v}`;
  if (Array.isArray(v)) return `l${v.map(bencode).join('')}e`;
  return `d${Object.keys(v).sort().map((k) => bencode(k) + bencode(v[k]!)).join('')}e`;
}

export function bdecode(buf: Buffer): Bencoded {
  let i = 0;
  const read = (): Bencoded => {
    const c = String.fromCharCode(buf[i]!);
    if (c === 'i') {
      const end = buf.indexOf(0x65, i);
      const n = Number(buf.subarray(i + 1, end).toString());
      i = end + 1;
      return n;
    }
    if (c === 'l') {
      i++;
      const out: Bencoded[] = [];
      while (buf[i] !== 0x65) out.push(read());
      i++;
      return out;
    }
    if (c === 'd') {
      i++;
      const out: Record<string, Bencoded> = {};
      while (buf[i] !== 0x65) {
        const k = read() as string;
        out[k] = read();
      }
      i++;
      return out;
    }
    const colon = buf.indexOf(0x3a, i);
    const len = Number(buf.subarray(i, colon).toString());
    const s = buf.subarray(colon + 1, colon + 1 + len).toString();
    i = colon + 1 + len;
    return s;
  };
  return read();
}

/** One ng command the fake received. */
export interface NgSeen { command: string; callId: string | null; sdp: string | null }

/**
 * A stand-in for rtpengine's control side (ng protocol over UDP) for tests about signalling only: it
 * answers every command with "ok", and an offer or answer with the SDP it was given, its connection
 * address and ports rewritten to 127.0.0.1 and ports of its own (no media is relayed). Every command
 * is recorded, so a test can tell that an SDP never reached rtpengine.
 */
export class FakeRtpengine {
  readonly seen: NgSeen[] = [];
  private readonly sock = dgram.createSocket('udp4');
  private nextPort = 30000;

  async start(host = '127.0.0.1'): Promise<{ host: string; port: number }> {
    this.sock.on('message', (msg, from) => this.onMessage(msg, from));
    await new Promise<void>((resolve) => this.sock.bind(0, host, resolve));
    return { host, port: (this.sock.address() as AddressInfo).port };
  }

  stop(): void {
    this.sock.close();
  }

  /** Commands of one kind (offer, answer, ...), optionally for one call. */
  commands(command: string, callId?: string): NgSeen[] {
    return this.seen.filter((s) => s.command === command && (callId === undefined || s.callId === callId));
  }

  private onMessage(msg: Buffer, from: dgram.RemoteInfo): void {
    const space = msg.indexOf(0x20);
    if (space <= 0) return;
    const cookie = msg.subarray(0, space).toString();
    let req: Record<string, Bencoded>;
    try {
      req = bdecode(msg.subarray(space + 1)) as Record<string, Bencoded>;
    } catch {
      return;
    }
    const command = String(req.command ?? '');
    const sdp = typeof req.sdp === 'string' ? req.sdp : null;
    this.seen.push({ command, callId: typeof req['call-id'] === 'string' ? req['call-id'] : null, sdp });
    const res: Record<string, Bencoded> = command === 'ping' ? { result: 'pong' } : { result: 'ok' };
    if (sdp && (command === 'offer' || command === 'answer')) res.sdp = this.rewrite(sdp);
    if (command === 'query') res.totals = { RTP: { packets: 0, bytes: 0, errors: 0 }, RTCP: { packets: 0, bytes: 0, errors: 0 } };
    if (command === 'play media') res.duration = 1000;
    this.sock.send(`${cookie} ${bencode(res)}`, from.port, from.address);
  }

  private rewrite(sdp: string): string {
    return sdp
      .replace(/^c=IN IP[46] \S+/gm, 'c=IN IP4 127.0.0.1')
      .replace(/^(m=\S+ )(\d+)/gm, (_, head: string) => `${head}${(this.nextPort += 2)}`)
      .replace(/^a=candidate:.*\r?\n/gm, '');
  }
}
