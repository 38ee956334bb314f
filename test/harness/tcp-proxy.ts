import net from 'node:net';

/**
 * A TCP relay on loopback in front of a real server (Postgres), that a test can cut: close() refuses
 * new connections and drops the open ones, as a network failure or a stopped server would;
 * blackhole() leaves every connection open but lets nothing through (a network that drops packets:
 * the client hears nothing, not even a refusal) until restore().
 */
export class TcpProxy {
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  /** Open relays (client, upstream) and connections taken while blackholed (client only). */
  private readonly pairs = new Set<{ client: net.Socket; upstream: net.Socket | null }>();
  private holding = false;

  constructor(private readonly target: net.NetConnectOpts) {}

  /** Listens on `port` (default: any free one) and resolves with it. */
  async start(port = 0): Promise<number> {
    this.server = net.createServer((client) => {
      if (this.holding) return this.hold(client);
      const upstream = net.connect(this.target);
      const pair = { client, upstream };
      this.pairs.add(pair);
      client.on('close', () => this.pairs.delete(pair));
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => s.destroy());
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((r) => this.server!.listen(port, '127.0.0.1', r));
    return (this.server.address() as net.AddressInfo).port;
  }

  /** Nothing gets through any more, either way, and new connections are taken but never answered. */
  blackhole(): void {
    this.holding = true;
    for (const { client, upstream } of this.pairs) {
      if (!upstream) continue;
      client.unpipe(upstream);
      upstream.unpipe(client);
      client.pause();
      upstream.pause();
    }
  }

  /**
   * The network is back for new connections. Those that were open through the outage are reset (as a
   * stateful firewall or NAT that lost them would): nothing held is delivered late, so a query the
   * client gave up on never runs behind its back.
   */
  restore(): void {
    this.holding = false;
    for (const { client, upstream } of this.pairs) {
      client.destroy();
      upstream?.destroy();
    }
  }

  private hold(client: net.Socket): void {
    const pair = { client, upstream: null };
    this.pairs.add(pair);
    this.sockets.add(client);
    client.pause();
    client.on('error', () => client.destroy());
    client.on('close', () => {
      this.sockets.delete(client);
      this.pairs.delete(pair);
    });
  }

  async close(): Promise<void> {
    this.holding = false;
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }
}
