import dgram from 'node:dgram';
import { AddressInfo } from 'node:net';

/** A bencoded value as rtpengine's ng protocol carries it. */
export type Bencoded = string | number | Bencoded[] | { [k: string]: Bencoded };

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

/** One ng command that went through the tap. */
export interface NgSeen { command: string; callId: string | null; sdp: string | null }

/**
 * A tap on the ng protocol in front of the real rtpengine: the bridge is pointed at the tap, which
 * forwards every command to rtpengine unchanged and relays its answer back, and records each command
 * on its way, so a test can tell that an SDP never reached rtpengine (or what did).
 */
export class NgTap {
  readonly seen: NgSeen[] = [];
  private readonly sock = dgram.createSocket('udp4');
  private readonly upstream = dgram.createSocket('udp4');
  /** Where each command's answer goes back to, by its cookie. */
  private readonly askers = new Map<string, { port: number; address: string }>();

  constructor(private readonly rtpengine: { host: string; port: number }) {}

  async start(host = '127.0.0.1'): Promise<{ host: string; port: number }> {
    this.sock.on('message', (msg, from) => this.onCommand(msg, from));
    this.upstream.on('message', (msg) => this.onAnswer(msg));
    await new Promise<void>((resolve) => this.upstream.bind(0, '127.0.0.1', resolve));
    await new Promise<void>((resolve) => this.sock.bind(0, host, resolve));
    return { host, port: (this.sock.address() as AddressInfo).port };
  }

  stop(): void {
    this.sock.close();
    this.upstream.close();
  }

  /** Commands of one kind (offer, answer, ...), optionally for one call. */
  commands(command: string, callId?: string): NgSeen[] {
    return this.seen.filter((s) => s.command === command && (callId === undefined || s.callId === callId));
  }

  private onCommand(msg: Buffer, from: dgram.RemoteInfo): void {
    const space = msg.indexOf(0x20);
    if (space <= 0) return;
    const cookie = msg.subarray(0, space).toString();
    try {
      const req = bdecode(msg.subarray(space + 1)) as Record<string, Bencoded>;
      const sdp = typeof req.sdp === 'string' ? req.sdp : null;
      this.seen.push({ command: String(req.command ?? ''), callId: typeof req['call-id'] === 'string' ? req['call-id'] : null, sdp });
    } catch {
      // not readable here: rtpengine answers it as it will
    }
    this.askers.set(cookie, { port: from.port, address: from.address });
    this.upstream.send(msg, this.rtpengine.port, this.rtpengine.host);
  }

  private onAnswer(msg: Buffer): void {
    const space = msg.indexOf(0x20);
    if (space <= 0) return;
    const cookie = msg.subarray(0, space).toString();
    const to = this.askers.get(cookie);
    if (!to) return;
    this.askers.delete(cookie);
    this.sock.send(msg, to.port, to.address);
  }
}
