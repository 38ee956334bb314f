import crypto from 'node:crypto';
import { QueryTypes, Sequelize } from 'sequelize';

/** The most bytes of a body kept (the webhook body cap; the table's CHECK says the same). */
export const QUARANTINE_MAX_BYTES = 64 * 1024;
const MAX_REASON = 500;

/** A quarantined body as read back (tests, an operator's replay). */
export interface QuarantinedWebhook {
  body: Buffer;
  reason: string;
  clientIp: string | null;
  receivedAt: Date;
  lastReceivedAt: Date;
  deliveries: number;
}

/**
 * Keeps the raw bytes of signed webhook events that were refused as never valid (webhook_quarantine),
 * so answering them 4xx loses nothing. One row per distinct body: a redelivery adds to `deliveries`.
 */
export class WebhookQuarantine {
  constructor(private readonly sequelize: Sequelize) {}

  /** Stores (or counts again) the body; throws when the database does not take it. */
  async keep(raw: Buffer, reason: string, clientIp: string | null): Promise<void> {
    const body = raw.subarray(0, QUARANTINE_MAX_BYTES);
    const digest = crypto.createHash('sha256').update(body).digest();
    await this.sequelize.query(
      `INSERT INTO webhook_quarantine (body_sha256, body, reason, client_ip, received_at, last_received_at)
       VALUES ($1, $2, $3, $4, now(), now())
       ON CONFLICT (body_sha256) DO UPDATE SET deliveries = webhook_quarantine.deliveries + 1, last_received_at = now()`,
      { bind: [digest, body, cleanText(reason, MAX_REASON), clientIp === null ? null : cleanText(clientIp, 64)], type: QueryTypes.INSERT },
    );
  }

  /** The quarantined bodies, newest first. */
  async list(limit = 100): Promise<QuarantinedWebhook[]> {
    const rows = await this.sequelize.query<Row>(`${SELECT} ORDER BY last_received_at DESC, id DESC LIMIT $1`, { bind: [limit], type: QueryTypes.SELECT });
    return rows.map(fromRow);
  }

  /** The row of exactly these bytes, or null. */
  async find(raw: Buffer): Promise<QuarantinedWebhook | null> {
    const digest = crypto.createHash('sha256').update(raw.subarray(0, QUARANTINE_MAX_BYTES)).digest();
    const [r] = await this.sequelize.query<Row>(`${SELECT} WHERE body_sha256 = $1`, { bind: [digest], type: QueryTypes.SELECT });
    return r ? fromRow(r) : null;
  }
}

const SELECT = 'SELECT body, reason, client_ip, received_at, last_received_at, deliveries FROM webhook_quarantine';
interface Row { body: Buffer; reason: string; client_ip: string | null; received_at: Date; last_received_at: Date; deliveries: number }
const fromRow = (r: Row): QuarantinedWebhook => ({
  body: r.body, reason: r.reason, clientIp: r.client_ip, receivedAt: r.received_at, lastReceivedAt: r.last_received_at, deliveries: r.deliveries,
});

/** Text a varchar column takes: no NUL or unpaired surrogate (replaced by U+FFFD), at most `max` characters. */
function cleanText(s: string, max: number): string {
  return s.slice(0, max).replace(/\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
}
