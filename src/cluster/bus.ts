import { Client } from 'pg';
import { Logger } from '../log';
import { TypedEmitter } from '../util/typed-emitter';

/** What nodes tell each other through Postgres NOTIFY on one channel. */
export type ClusterMessage =
  /** A stored event this node could not place: the node whose call it concerns processes it. */
  | { kind: 'event'; from: string; eventId: string; wacid: string | null }
  /** `from` has taken a call with this wacid: events buffered elsewhere for it go there. */
  | { kind: 'claimed'; from: string; wacid: string };

export interface ClusterBusEvents {
  message: [ClusterMessage];
  /** LISTEN is (re-)established or lost. */
  listening: [boolean];
}

const CHANNEL = 'wasb_cluster';
/** NOTIFY payloads are limited to 8000 bytes; ours carry ids only. */
const MAX_PAYLOAD = 7900;

/**
 * The nodes' message bus: Postgres LISTEN/NOTIFY on a dedicated connection (the bridge already
 * depends on Postgres, so no other engine is needed). The connection is re-opened with backoff when
 * it drops; every wait on it is bounded by `timeoutMs`, and stop() closes it within that bound.
 * NOTIFY goes through the pooled connection (`notify`), so a lost LISTEN never blocks sending.
 */
export class ClusterBus extends TypedEmitter<ClusterBusEvents> {
  private client: Client | null = null;
  private stopped = false;
  private retry: NodeJS.Timeout | null = null;
  private attempts = 0;

  constructor(
    private readonly url: string,
    readonly nodeId: string,
    private readonly notify: (channel: string, payload: string) => Promise<unknown>,
    private readonly timeoutMs: number,
    private readonly log: Logger,
  ) {
    super();
  }

  get listening(): boolean {
    return this.client !== null;
  }

  /** Opens the LISTEN connection; resolves (true/false) within the bound, retrying in the background. */
  async start(): Promise<boolean> {
    return this.connect();
  }

  async send(msg: ClusterMessage): Promise<void> {
    const payload = JSON.stringify(msg);
    if (payload.length > MAX_PAYLOAD) throw new Error('cluster message too large');
    await this.notify(CHANNEL, payload);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    const c = this.client;
    this.client = null;
    if (!c) return;
    await Promise.race([c.end().catch(() => undefined), new Promise((r) => setTimeout(r, this.timeoutMs).unref())]);
  }

  private async connect(): Promise<boolean> {
    if (this.stopped) return false;
    const c = new Client({ connectionString: this.url, connectionTimeoutMillis: this.timeoutMs, keepAlive: true, query_timeout: this.timeoutMs });
    c.on('error', (err) => this.lost(c, err));
    c.on('end', () => this.lost(c, null));
    c.on('notification', (n) => {
      if (n.channel !== CHANNEL || !n.payload) return;
      const msg = parseMessage(n.payload);
      if (msg && msg.from !== this.nodeId) this.emit('message', msg);
    });
    try {
      await c.connect();
      await c.query(`LISTEN ${CHANNEL}`);
    } catch (err) {
      c.end().catch(() => undefined);
      this.log.warn({ err }, 'cluster bus: cannot LISTEN on Postgres; retrying');
      this.scheduleRetry();
      return false;
    }
    if (this.stopped) {
      await c.end().catch(() => undefined);
      return false;
    }
    this.client = c;
    this.attempts = 0;
    this.emit('listening', true);
    return true;
  }

  private lost(c: Client, err: Error | null): void {
    if (this.client !== c) return;
    this.client = null;
    this.emit('listening', false);
    if (this.stopped) return;
    this.log.warn({ err: err?.message ?? 'connection ended' }, 'cluster bus: lost the LISTEN connection; reconnecting');
    c.end().catch(() => undefined);
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.stopped || this.retry) return;
    this.attempts++;
    const ms = Math.min(5000, 200 * 2 ** Math.min(this.attempts, 5));
    this.retry = setTimeout(() => {
      this.retry = null;
      void this.connect();
    }, ms);
    this.retry.unref();
  }
}

function parseMessage(payload: string): ClusterMessage | null {
  try {
    const m = JSON.parse(payload) as Record<string, unknown>;
    if (typeof m.from !== 'string') return null;
    if (m.kind === 'event' && typeof m.eventId === 'string') return { kind: 'event', from: m.from, eventId: m.eventId, wacid: typeof m.wacid === 'string' ? m.wacid : null };
    if (m.kind === 'claimed' && typeof m.wacid === 'string') return { kind: 'claimed', from: m.from, wacid: m.wacid };
  } catch {
    // not ours
  }
  return null;
}
