import { QueryTypes, Sequelize } from 'sequelize';

/**
 * A webhook event as it is stored. `provider`: the provider account (its webhook path name, e.g.
 * "ycloud", "meta-eu") whose webhook source decodes the payload when it is read back.
 */
export interface WebhookRow { id: string; type: string; wacid: string | null; payload: unknown; nodeId: string | null; provider: string }

/** A stored webhook event as replay reads it back (decoded by `provider`'s webhook source). */
export interface StoredWebhook {
  id: string; type: string; wacid: string | null; receivedAt: Date; payload: unknown; provider: string; cursor: WebhookCursor;
}

/** Where a walk over stored events stands: received_at as Postgres writes it (microseconds), and the id. */
export interface WebhookCursor { at: string; id: string }

/** The raw webhook events (webhook_events): stored before they are acted on, marked once they have been, replayed when not. */
export class WebhookEvents {
  constructor(private readonly sequelize: Sequelize) {}

  /**
   * Stores several webhook events in one statement (one commit); returns the ids stored now (the
   * others were recorded before: redeliveries).
   */
  async recordWebhooks(rows: WebhookRow[]): Promise<Set<string>> {
    if (rows.length === 0) return new Set();
    const stored = await this.sequelize.query<{ id: string }>(
      `INSERT INTO webhook_events (id, type, wacid, received_at, payload, node_id, provider)
       SELECT r.id, r.type, r.wacid, now(), r.payload::jsonb, r.node_id, r.provider
       FROM unnest(ARRAY[:ids]::text[], ARRAY[:types]::text[], ARRAY[:wacids]::text[], ARRAY[:payloads]::text[], ARRAY[:nodes]::text[], ARRAY[:providers]::text[])
         AS r(id, type, wacid, payload, node_id, provider)
       ON CONFLICT (id) DO NOTHING RETURNING id`,
      {
        replacements: {
          ids: rows.map((r) => r.id), types: rows.map((r) => r.type), wacids: rows.map((r) => r.wacid),
          payloads: rows.map((r) => JSON.stringify(r.payload)), nodes: rows.map((r) => r.nodeId),
          providers: rows.map((r) => r.provider),
        },
        type: QueryTypes.SELECT,
      },
    );
    return new Set(stored.map((r) => r.id));
  }

  /** Events a node stored but never marked processed, oldest first (replayed at start-up or by a survivor). */
  unprocessedWebhooks(nodeId: string, limit = 1000, after: WebhookCursor | null = null): Promise<StoredWebhook[]> {
    const from = after ? 'AND (received_at, id) > (:at::timestamptz, :id)' : '';
    return this.webhooks(`processed_at IS NULL AND node_id = :nodeId ${from} ORDER BY received_at, id LIMIT :limit`, { nodeId, limit, ...after });
  }

  /** One stored event (another node asked this one to process it). */
  async webhook(id: string): Promise<StoredWebhook | null> {
    return (await this.webhooks('id = :id', { id }))[0] ?? null;
  }

  /** Marks several events processed in one statement (each with its error, or none). */
  async markWebhooksProcessed(marks: Array<{ id: string; error: string | null }>): Promise<void> {
    if (marks.length === 0) return;
    await this.sequelize.query(
      `UPDATE webhook_events AS w SET processed_at = now(), error = m.error
       FROM unnest(ARRAY[:ids]::text[], ARRAY[:errors]::text[]) AS m(id, error) WHERE w.id = m.id`,
      { replacements: { ids: marks.map((m) => m.id), errors: marks.map((m) => m.error) }, type: QueryTypes.UPDATE },
    );
  }

  /** Whether a terminate for this wacid was stored (the webhook half of CdrStore.wacidHistory). */
  async terminateStored(wacid: string): Promise<boolean> {
    const rows = await this.sequelize.query<{ terminated: boolean }>(
      `SELECT EXISTS (SELECT 1 FROM webhook_events WHERE wacid = :wacid AND type = 'whatsapp.call.terminate') AS terminated`,
      { replacements: { wacid }, type: QueryTypes.SELECT },
    );
    return rows[0]?.terminated === true;
  }

  private async webhooks(where: string, replacements: Record<string, unknown>): Promise<StoredWebhook[]> {
    const rows = await this.sequelize.query<{ id: string; type: string; wacid: string | null; received_at: Date; at: string; payload: unknown; provider: string }>(
      `SELECT id, type, wacid, received_at, received_at::text AS at, payload, provider FROM webhook_events WHERE ${where}`,
      { replacements, type: QueryTypes.SELECT },
    );
    return rows.map((r) => ({
      id: r.id, type: r.type, wacid: r.wacid, receivedAt: new Date(r.received_at), payload: r.payload, provider: r.provider, cursor: { at: r.at, id: r.id },
    }));
  }
}
