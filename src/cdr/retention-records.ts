import { QueryTypes, Sequelize } from 'sequelize';
import { Config } from '../config';

/** One kind of row the sweep deletes (or scrubs), batch by batch. */
export interface RetentionTask {
  name: string;
  /** The cutoff, or null when the task is off (0 days). */
  cutoff: (now: number) => Date | null;
  /** One batch: at most `limit` rows older than `cutoff`; resolves with how many it touched. */
  batch: (cutoff: Date, limit: number) => Promise<number>;
}

interface TaskStatement {
  name: string;
  /** One batch: a statement touching at most :limit rows, with :cutoff (a timestamp) bound. */
  sql: string;
  cutoff: (now: number) => Date | null;
}

const DAY_MS = 24 * 3600 * 1000;
const daysAgo = (days: number) => (now: number): Date | null => (days > 0 ? new Date(now - days * DAY_MS) : null);

/**
 * Where a stored connect event keeps its SDP, by event type: YCloud's `whatsapp.call.connect` body
 * (`callingConnect.sdp`), and Meta's stored delivery (src/providers/meta/events.ts MetaStored:
 * `item.session.sdp` of a `calls.connect`, the user's offer or the user's answer to an agent's call).
 */
const SDP_PATHS: Record<string, string> = { 'whatsapp.call.connect': '{callingConnect,sdp}', 'calls.connect': '{item,session,sdp}' };
const CONNECT_TYPES = Object.keys(SDP_PATHS).map((t) => `'${t}'`).join(', ');
const SDP_PATH = `CASE type ${Object.entries(SDP_PATHS).map(([t, p]) => `WHEN '${t}' THEN '${p}'::text[]`).join(' ')} END`;

/** One batch of a table's rows matching `where` (which binds :cutoff), deleted; rows other sweepers hold are skipped. */
const deleteBatch = (table: string, where: string): string =>
  `DELETE FROM ${table} WHERE ctid IN (SELECT ctid FROM ${table} WHERE ${where} LIMIT :limit FOR UPDATE SKIP LOCKED)`;

/** Same customer and business: a later reply (by time, then id) than r. */
const NEWER_REPLY = `EXISTS (SELECT 1 FROM call_permission_replies n
  WHERE n.business_number = r.business_number AND n.customer_number = r.customer_number
    AND (n.replied_at > r.replied_at OR (n.replied_at = r.replied_at AND n.id > r.id)))`;

/**
 * One batch of each task: rows picked by ctid with FOR UPDATE SKIP LOCKED, so sweepers on several
 * nodes take different rows and never wait on each other (running on all of them is harmless). Rows
 * still in use are never picked: unprocessed events, calls not ended, a call whose recording file is
 * still on disk (the recording sweep needs its row), the permission reply in force for a customer.
 */
function statements(r: Config['retention'], sdpScrubAfterMs: number): TaskStatement[] {
  return [
    {
      // Not a deletion: ICE passwords and SDES keys are of no use once a call is set up. The SDP is where
      // each provider's stored connect keeps it (SDP_PATHS).
      name: 'connect SDP secrets',
      sql: `WITH picked AS (
              SELECT ctid AS row_ctid, ${SDP_PATH} AS path FROM webhook_events
              WHERE type IN (${CONNECT_TYPES}) AND processed_at < :cutoff
                AND (payload #>> ${SDP_PATH}) ~ 'a=ice-pwd:[^[]|inline:[^[]'
              LIMIT :limit FOR UPDATE SKIP LOCKED)
            UPDATE webhook_events w SET payload = jsonb_set(w.payload, picked.path, to_jsonb(
              regexp_replace(regexp_replace(w.payload #>> picked.path,
                'a=ice-pwd:[^\\r\\n]*', 'a=ice-pwd:[Redacted]', 'g'), 'inline:[^\\s|]+', 'inline:[Redacted]', 'g')))
            FROM picked WHERE w.ctid = picked.row_ctid`,
      cutoff: (now) => new Date(now - sdpScrubAfterMs),
    },
    {
      name: 'webhook_events',
      sql: deleteBatch('webhook_events', 'received_at < :cutoff AND processed_at IS NOT NULL'),
      cutoff: daysAgo(r.webhookEventsDays),
    },
    {
      name: 'webhook_quarantine',
      sql: deleteBatch('webhook_quarantine', 'last_received_at < :cutoff'),
      cutoff: daysAgo(r.quarantineDays),
    },
    {
      // call_events go with their call (ON DELETE CASCADE).
      name: 'calls',
      // call_media rows go with their call too, once their files are gone (the media sweep's, as recordings).
      sql: `DELETE FROM calls WHERE ctid IN (SELECT ctid FROM calls c
              WHERE ended_at < :cutoff AND (recording_path IS NULL OR recording_deleted_at IS NOT NULL)
                AND NOT EXISTS (SELECT 1 FROM call_media m WHERE m.call_id = c.id AND m.path IS NOT NULL AND m.deleted_at IS NULL)
              LIMIT :limit FOR UPDATE OF c SKIP LOCKED)`,
      cutoff: daysAgo(r.cdrDays),
    },
    {
      // Files never linked to a CDR (the call's record was lost), with nothing left on disk.
      name: 'call_media unlinked',
      sql: deleteBatch('call_media', 'call_id IS NULL AND received_at < :cutoff AND (path IS NULL OR deleted_at IS NOT NULL)'),
      cutoff: daysAgo(r.cdrDays),
    },
    {
      name: 'account_notices',
      sql: deleteBatch('account_notices', 'received_at < :cutoff'),
      cutoff: daysAgo(r.cdrDays),
    },
    {
      // A reply a later one has replaced: the decision stays with the later one.
      name: 'permission replies replaced',
      sql: `DELETE FROM call_permission_replies WHERE ctid IN (SELECT r.ctid FROM call_permission_replies r
              WHERE r.replied_at < :cutoff AND ${NEWER_REPLY} LIMIT :limit FOR UPDATE OF r SKIP LOCKED)`,
      cutoff: daysAgo(r.permissionsDays),
    },
    {
      // A customer's only reply, a temporary grant expired long ago: "no permission" either way.
      name: 'permission replies expired',
      sql: `DELETE FROM call_permission_replies WHERE ctid IN (SELECT r.ctid FROM call_permission_replies r
              WHERE r.replied_at < :cutoff AND r.response = 'accept' AND NOT r.is_permanent AND r.expires_at < :cutoff
                AND NOT EXISTS (SELECT 1 FROM call_permission_replies o
                  WHERE o.business_number = r.business_number AND o.customer_number = r.customer_number AND o.id <> r.id)
              LIMIT :limit FOR UPDATE OF r SKIP LOCKED)`,
      cutoff: daysAgo(r.permissionsDays),
    },
    {
      name: 'permission requests',
      sql: deleteBatch('call_permission_requests', 'sent_at < :cutoff'),
      cutoff: daysAgo(r.permissionsDays),
    },
  ];
}

/** The statements of the retention sweep (see RetentionSweeper, which paces them). */
export class RetentionRecords {
  constructor(private readonly sequelize: Sequelize) {}

  /** Every task, in the order a round runs them. */
  tasks(r: Config['retention'], sdpScrubAfterMs: number): RetentionTask[] {
    return statements(r, sdpScrubAfterMs).map((t) => ({ name: t.name, cutoff: t.cutoff, batch: (cutoff, limit) => this.batch(t.sql, cutoff, limit) }));
  }

  private async batch(sql: string, cutoff: Date, limit: number): Promise<number> {
    const [, meta] = await this.sequelize.query(sql, { replacements: { cutoff, limit }, type: QueryTypes.RAW });
    return (meta as { rowCount?: number } | undefined)?.rowCount ?? 0;
  }
}
