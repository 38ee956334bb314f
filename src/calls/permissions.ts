import { QueryTypes, Sequelize } from 'sequelize';
import { Logger } from '../log';
import { Metrics } from '../metrics/metrics';
import { YCloudClient, YCloudError } from '../providers/ycloud/client';
import { normalizeE164 } from '../util/numbers';

export interface PermissionReply {
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

export type PermissionState =
  | { allowed: true; permanent: boolean; expiresAt: Date | null }
  | { allowed: false; reason: 'none' | 'rejected' | 'expired'; since: Date | null };

export type PermissionRequestBody =
  | { kind: 'interactive'; text: string }
  | { kind: 'template'; name: string; language: string; components?: unknown[] };

/** A temporary grant lasts 7 days when the reply does not say otherwise (Meta's documented default). */
const DEFAULT_GRANT_MS = 7 * 24 * 3600 * 1000;

/** Call permissions: every reply and request is kept; the latest reply decides, with expiry honoured. */
export class PermissionStore {
  constructor(private readonly db: Sequelize, private readonly ycloud: YCloudClient, private readonly log: Logger, private readonly metrics?: Metrics) {}

  async recordReply(r: PermissionReply): Promise<void> {
    const expiresAt = r.response === 'accept' && !r.isPermanent ? (r.expiresAt ?? new Date(r.repliedAt.getTime() + DEFAULT_GRANT_MS)) : r.expiresAt;
    await this.db.query(
      `INSERT INTO call_permission_replies
         (business_number, customer_number, response, is_permanent, expires_at, response_source, replied_at, wamid, event_id, created_at)
       VALUES (:b, :c, :response, :perm, :exp, :src, :at, :wamid, :eventId, now())`,
      {
        replacements: {
          b: r.businessNumber, c: r.customerNumber, response: r.response, perm: r.isPermanent, exp: expiresAt,
          src: r.responseSource, at: r.repliedAt, wamid: r.wamid, eventId: r.eventId,
        },
      },
    );
  }

  async check(businessNumber: string, customerNumber: string, now = new Date()): Promise<PermissionState> {
    const rows = await this.db.query<{ response: string; is_permanent: boolean; expires_at: Date | null; replied_at: Date }>(
      `SELECT response, is_permanent, expires_at, replied_at FROM call_permission_replies
       WHERE business_number = :b AND customer_number = :c ORDER BY replied_at DESC, id DESC LIMIT 1`,
      { replacements: { b: businessNumber, c: customerNumber }, type: QueryTypes.SELECT },
    );
    const last = rows[0];
    if (!last) return { allowed: false, reason: 'none', since: null };
    if (last.response !== 'accept') return { allowed: false, reason: 'rejected', since: last.replied_at };
    if (!last.is_permanent && last.expires_at && last.expires_at <= now) return { allowed: false, reason: 'expired', since: last.expires_at };
    return { allowed: true, permanent: last.is_permanent, expiresAt: last.is_permanent ? null : last.expires_at };
  }

  async list(filter: { businessNumber?: string; customerNumber?: string; limit?: number }): Promise<unknown[]> {
    return this.db.query(
      `SELECT business_number, customer_number, response, is_permanent, expires_at, response_source, replied_at, wamid
       FROM call_permission_replies
       WHERE (:b::text IS NULL OR business_number = :b) AND (:c::text IS NULL OR customer_number = :c)
       ORDER BY replied_at DESC, id DESC LIMIT :limit`,
      { replacements: { b: filter.businessNumber ?? null, c: filter.customerNumber ?? null, limit: filter.limit ?? 100 }, type: QueryTypes.SELECT },
    );
  }

  /** Sends a call-permission request through messages/sendDirectly and records it (sent or failed). */
  async request(businessNumber: string, customerNumber: string, body: PermissionRequestBody, trigger: 'api' | 'auto'): Promise<{ messageId: string | null }> {
    let messageId: string | null = null;
    let error: string | null = null;
    try {
      const res = await this.ycloud.sendPermissionRequest(businessNumber, customerNumber, body);
      messageId = res.id;
      this.metrics?.permissionRequest(trigger, 'sent');
    } catch (err) {
      error = (err as Error).message;
      this.metrics?.permissionRequest(trigger, err instanceof YCloudError && err.httpStatus === 429 ? 'rate_limited' : 'failed');
    }
    await this.db.query(
      `INSERT INTO call_permission_requests (business_number, customer_number, kind, trigger, message_id, error, sent_at)
       VALUES (:b, :c, :kind, :trigger, :mid, :error, now())`,
      { replacements: { b: businessNumber, c: customerNumber, kind: body.kind, trigger, mid: messageId, error } },
    );
    if (error) {
      this.log.warn({ businessNumber, customerNumber, error }, 'call permission request failed');
      throw new Error(error);
    }
    return { messageId };
  }

  async requests(businessNumber: string, customerNumber: string): Promise<Array<{ kind: string; trigger: string; message_id: string | null; error: string | null; sent_at: Date }>> {
    return this.db.query(
      `SELECT kind, trigger, message_id, error, sent_at FROM call_permission_requests
       WHERE business_number = :b AND customer_number = :c ORDER BY sent_at DESC, id DESC`,
      { replacements: { b: businessNumber, c: customerNumber }, type: QueryTypes.SELECT },
    );
  }
}

/** Reads a call_permission_reply out of an inbound-message webhook payload; null for any other message. */
export function permissionReplyOf(msg: Record<string, unknown>, eventId: string | null): PermissionReply | { error: string } | null {
  const interactive = msg.interactive as Record<string, unknown> | undefined;
  if (!interactive || interactive.type !== 'call_permission_reply') return null;
  const reply = interactive.call_permission_reply as Record<string, unknown> | undefined;
  const from = typeof msg.from === 'string' ? normalizeE164(msg.from) : null;
  const to = typeof msg.to === 'string' ? normalizeE164(msg.to) : null;
  if (!reply || !from || !to) return { error: 'call_permission_reply without reply, from or to' };
  if (reply.response !== 'accept' && reply.response !== 'reject') return { error: `unknown permission response "${String(reply.response)}"` };
  const sendTime = typeof msg.sendTime === 'string' ? new Date(msg.sendTime) : new Date();
  return {
    businessNumber: to,
    customerNumber: from,
    response: reply.response,
    isPermanent: reply.is_permanent === true || reply.is_permanent === 'true',
    expiresAt: parseTimestamp(reply.expiration_timestamp),
    responseSource: typeof reply.response_source === 'string' ? reply.response_source : null,
    repliedAt: Number.isNaN(sendTime.getTime()) ? new Date() : sendTime,
    wamid: typeof msg.wamid === 'string' ? msg.wamid : null,
    eventId,
  };
}

/** Unix seconds (number or numeric string), milliseconds, or an ISO date; null when absent or unreadable. */
function parseTimestamp(v: unknown): Date | null {
  if (v === undefined || v === null || v === '') return null;
  if (typeof v === 'number' || (typeof v === 'string' && /^\d+$/.test(v))) {
    const n = Number(v);
    return new Date(n < 1e12 ? n * 1000 : n);
  }
  if (typeof v === 'string') {
    const d = new Date(v);
    return Number.isNaN(d.getTime()) ? null : d;
  }
  return null;
}
