import { QueryInterface } from 'sequelize';

/**
 * One permission reply per webhook event: a reply redelivered after a restart (the process has
 * forgotten it saw the event, webhook_events still holds it) is acted on again, and recordReply's
 * INSERT ... ON CONFLICT (event_id) DO NOTHING keeps it from becoming a second row. Replies recorded
 * without an event (NULL) are not constrained. The copies such redeliveries left before this index are
 * deleted first (the earliest row of each event stays), with writers held off until the index exists.
 */
export async function up({ context: qi }: { context: QueryInterface }): Promise<void> {
  await qi.sequelize.transaction(async (transaction) => {
    await qi.sequelize.query('LOCK TABLE call_permission_replies IN SHARE ROW EXCLUSIVE MODE', { transaction });
    await qi.sequelize.query(
      `DELETE FROM call_permission_replies r USING call_permission_replies kept
       WHERE r.event_id IS NOT NULL AND r.event_id = kept.event_id AND r.id > kept.id`,
      { transaction },
    );
    await qi.sequelize.query('CREATE UNIQUE INDEX permission_replies_event_id ON call_permission_replies (event_id)', { transaction });
  });
}

export async function down({ context: qi }: { context: QueryInterface }): Promise<void> {
  await qi.sequelize.query('DROP INDEX IF EXISTS permission_replies_event_id');
}
