import { QueryInterface } from 'sequelize';

/**
 * Indexes the retention sweep (src/cdr/retention.ts) walks, so each of its small batches reads only the
 * rows it deletes: quarantined bodies by when they were last seen, permission replies and requests by
 * age, and connects whose stored SDP still holds an ICE password or an SDES key (a partial index the
 * rows leave once scrubbed). Built CONCURRENTLY: webhooks and CDR writes go on while they are built.
 */
const INDEXES: Array<[string, string]> = [
  ['webhook_quarantine_last_received_at', 'webhook_quarantine (last_received_at)'],
  ['permission_replies_replied_at', 'call_permission_replies (replied_at)'],
  ['permission_requests_sent_at', 'call_permission_requests (sent_at)'],
  ['calls_ended_at', 'calls (ended_at) WHERE ended_at IS NOT NULL'],
  ['webhook_events_sdp_secrets', `webhook_events (processed_at)
    WHERE type = 'whatsapp.call.connect' AND (payload #>> '{callingConnect,sdp}') ~ 'a=ice-pwd:[^[]|inline:[^[]'`],
];

export async function up({ context: qi }: { context: QueryInterface }): Promise<void> {
  for (const [name, on] of INDEXES) await qi.sequelize.query(`CREATE INDEX CONCURRENTLY IF NOT EXISTS ${name} ON ${on}`);
}

export async function down({ context: qi }: { context: QueryInterface }): Promise<void> {
  for (const [name] of INDEXES) await qi.sequelize.query(`DROP INDEX CONCURRENTLY IF EXISTS ${name}`);
}
