import http from 'node:http';
import { AddressInfo } from 'node:net';

/**
 * A round-robin HTTP load balancer on loopback, in front of several bridge nodes: each request goes to
 * the next node in turn, as any HTTP balancer in front of a cluster would send YCloud's webhooks.
 * `hits` counts the requests each backend got.
 */
export class HttpBalancer {
  private server: http.Server | null = null;
  private next = 0;
  readonly hits: number[];

  constructor(private readonly backends: Array<() => number>) {
    this.hits = backends.map(() => 0);
  }

  async start(): Promise<string> {
    this.server = http.createServer((req, res) => {
      const i = this.next++ % this.backends.length;
      this.hits[i]!++;
      const up = http.request({ host: '127.0.0.1', port: this.backends[i]!(), method: req.method, path: req.url, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      up.on('error', () => {
        res.writeHead(502);
        res.end();
      });
      req.pipe(up);
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}
