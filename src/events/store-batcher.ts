import { WebhookEvents, WebhookRow } from '../cdr/webhook-events';

interface Pending { row: WebhookRow; resolve: (fresh: boolean) => void; reject: (err: unknown) => void }

/**
 * Group commit for webhook events: rows that arrive within `windowMs` of each other (or `maxRows`
 * of them) are stored in one INSERT, so under load there is one commit per batch rather than one
 * per event, and the write of an event never competes with the first step of the call it starts.
 * Should a batch fail, each of its rows is tried alone, so one bad row does not fail the others.
 */
export class WebhookStoreBatcher {
  private pending: Pending[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly events: WebhookEvents, private readonly windowMs: number, private readonly maxRows = 100) {}

  /** Resolves true when this call stored the event, false when it was stored before. */
  store(row: WebhookRow): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      this.pending.push({ row, resolve, reject });
      if (this.pending.length >= this.maxRows) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), this.windowMs);
    });
  }

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const batch = this.pending.splice(0);
    if (batch.length > 0) void this.write(batch);
  }

  private async write(batch: Pending[]): Promise<void> {
    try {
      const fresh = await this.events.recordWebhooks(batch.map((p) => p.row));
      for (const p of batch) p.resolve(fresh.has(p.row.id));
    } catch (err) {
      if (batch.length === 1) return batch[0]!.reject(err);
      await Promise.all(batch.map((p) => this.events.recordWebhooks([p.row]).then((fresh) => p.resolve(fresh.has(p.row.id)), p.reject)));
    }
  }
}
