import net from 'node:net';

/**
 * A minimal FreeSWITCH event-socket (ESL, inbound mode) client: one TCP connection, `auth`, then
 * `api` commands one at a time, each answered by an `api/response` (Content-Length-framed). Enough to
 * drive FreeSWITCH from a test the way `fs_cli -x` does, without starting a process per command.
 */
export class EslClient {
  private buf = Buffer.alloc(0);
  private waiters: Array<{ resolve: (m: EslMessage) => void; reject: (e: Error) => void }> = [];
  private chain: Promise<unknown> = Promise.resolve();
  private closedWith: Error | null = null;

  private constructor(private readonly sock: net.Socket) {
    sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.drain();
    });
    const fail = (err: Error) => {
      this.closedWith = err;
      for (const w of this.waiters.splice(0)) w.reject(err);
    };
    sock.on('error', fail);
    sock.on('close', () => fail(new Error('event socket closed')));
  }

  /** Connects and authenticates; rejects if FreeSWITCH does not accept within `timeoutMs`. */
  static async connect(port: number, password: string, timeoutMs = 5000): Promise<EslClient> {
    const sock = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', reject);
    });
    const c = new EslClient(sock);
    try {
      const hello = await c.next(timeoutMs);
      if (hello.headers['content-type'] !== 'auth/request') throw new Error(`event socket greeted with ${hello.headers['content-type']}`);
      sock.write(`auth ${password}\n\n`);
      const reply = await c.next(timeoutMs);
      if (!/^\+OK/.test(reply.headers['reply-text'] ?? '')) throw new Error(`event socket auth: ${reply.headers['reply-text']}`);
      return c;
    } catch (err) {
      sock.destroy();
      throw err;
    }
  }

  /** Runs an API command (as typed at fs_cli) and resolves with its output; bounded by `timeoutMs`. */
  api(command: string, timeoutMs = 10000): Promise<string> {
    const run = async () => {
      if (this.closedWith) throw this.closedWith;
      this.sock.write(`api ${command}\n\n`);
      for (;;) {
        const m = await this.next(timeoutMs, command);
        if (m.headers['content-type'] === 'api/response') return m.body;
      }
    };
    const p = this.chain.then(run, run);
    this.chain = p.catch(() => undefined);
    return p;
  }

  close(): void {
    this.sock.destroy();
  }

  private next(timeoutMs: number, what = 'event socket message'): Promise<EslMessage> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`event socket: no answer to ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = {
        resolve: (m: EslMessage) => {
          clearTimeout(t);
          resolve(m);
        },
        reject: (e: Error) => {
          clearTimeout(t);
          reject(e);
        },
      };
      this.waiters.push(waiter);
      this.drain();
    });
  }

  private drain(): void {
    while (this.waiters.length > 0) {
      const end = this.buf.indexOf('\n\n');
      if (end < 0) return;
      const headers: Record<string, string> = {};
      for (const line of this.buf.subarray(0, end).toString('utf8').split('\n')) {
        const c = line.indexOf(':');
        if (c > 0) headers[line.slice(0, c).trim().toLowerCase()] = line.slice(c + 1).trim();
      }
      const len = Number(headers['content-length'] ?? 0);
      if (this.buf.length < end + 2 + len) return;
      const body = this.buf.subarray(end + 2, end + 2 + len).toString('utf8');
      this.buf = this.buf.subarray(end + 2 + len);
      this.waiters.shift()!.resolve({ headers, body });
    }
  }
}

export interface EslMessage {
  headers: Record<string, string>;
  body: string;
}
