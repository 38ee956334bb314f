import { QueryTypes, Sequelize } from 'sequelize';

/** A call-permission reply as it is stored (its expiry already worked out). */
export interface PermissionReplyRow {
  businessNumber: string;
  customerNumber: string;
  response: 'accept' | 'reject';
  isPermanent: boolean;
  expiresAt: Date | null;
  responseSource: string | null;
  repliedAt: Date;
  wamid: string | null;
  eventId: string | null;
}

/** A permission request as it is stored (sent, with its message id, or failed, with the error). */
export interface PermissionRequestRow {
  businessNumber: string;
  customerNumber: string;
  kind: string;
  trigger: string;
  messageId: string | null;
  error: string | null;
}

/** The latest reply of a customer to a business. */
export interface LatestReply { response: string; is_permanent: boolean; expires_at: Date | null; replied_at: Date }

/** A reply as the admin API lists it. */
export interface ListedReply {
  business_number: string; customer_number: string; response: string; is_permanent: boolean; expires_at: Date | null;
  response_source: string | null; replied_at: Date; wamid: string | null;
}

/** A request as the admin API lists it. */
export interface ListedRequest { kind: string; trigger: string; message_id: string | null; error: string | null; sent_at: Date }

/** The statements of call permissions (call_permission_replies, call_permission_requests); the rules are PermissionStore's. */
export class PermissionRecords {
  constructor(private readonly sequelize: Sequelize) {}

  /** Stores a reply once per webhook event (unique event_id): false when that event's reply is there already. */
  async addReply(r: PermissionReplyRow): Promise<boolean> {
    const stored = await this.sequelize.query<{ id: string }>(
      `INSERT INTO call_permission_replies
         (business_number, customer_number, response, is_permanent, expires_at, response_source, replied_at, wamid, event_id, created_at)
       VALUES (:b, :c, :response, :perm, :exp, :src, :at, :wamid, :eventId, now())
       ON CONFLICT (event_id) DO NOTHING RETURNING id`,
      {
        replacements: {
          b: r.businessNumber, c: r.customerNumber, response: r.response, perm: r.isPermanent, exp: r.expiresAt,
          src: r.responseSource, at: r.repliedAt, wamid: r.wamid, eventId: r.eventId,
        },
        type: QueryTypes.SELECT,
      },
    );
    return stored.length > 0;
  }

  async latestReply(businessNumber: string, customerNumber: string): Promise<LatestReply | null> {
    const rows = await this.sequelize.query<LatestReply>(
      `SELECT response, is_permanent, expires_at, replied_at FROM call_permission_replies
       WHERE business_number = :b AND customer_number = :c ORDER BY replied_at DESC, id DESC LIMIT 1`,
      { replacements: { b: businessNumber, c: customerNumber }, type: QueryTypes.SELECT },
    );
    return rows[0] ?? null;
  }

  listReplies(filter: { businessNumber?: string; customerNumber?: string; limit?: number }): Promise<ListedReply[]> {
    return this.sequelize.query<ListedReply>(
      `SELECT business_number, customer_number, response, is_permanent, expires_at, response_source, replied_at, wamid
       FROM call_permission_replies
       WHERE (:b::text IS NULL OR business_number = :b) AND (:c::text IS NULL OR customer_number = :c)
       ORDER BY replied_at DESC, id DESC LIMIT :limit`,
      { replacements: { b: filter.businessNumber ?? null, c: filter.customerNumber ?? null, limit: filter.limit ?? 100 }, type: QueryTypes.SELECT },
    );
  }

  async addRequest(r: PermissionRequestRow): Promise<void> {
    await this.sequelize.query(
      `INSERT INTO call_permission_requests (business_number, customer_number, kind, trigger, message_id, error, sent_at)
       VALUES (:b, :c, :kind, :trigger, :mid, :error, now())`,
      { replacements: { b: r.businessNumber, c: r.customerNumber, kind: r.kind, trigger: r.trigger, mid: r.messageId, error: r.error } },
    );
  }

  listRequests(businessNumber: string, customerNumber: string): Promise<ListedRequest[]> {
    return this.sequelize.query<ListedRequest>(
      `SELECT kind, trigger, message_id, error, sent_at FROM call_permission_requests
       WHERE business_number = :b AND customer_number = :c ORDER BY sent_at DESC, id DESC`,
      { replacements: { b: businessNumber, c: customerNumber }, type: QueryTypes.SELECT },
    );
  }
}
