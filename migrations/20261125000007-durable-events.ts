import { DataTypes, QueryInterface } from 'sequelize';

/**
 * Events processed at least once, calls recoverable after a crash, and several nodes:
 * - webhook_events.node_id: the node that stored the event (its replay is that node's, or a survivor's);
 *   unprocessed events are found through a partial index;
 * - calls.recovery: what ending an orphaned call needs (its rtpengine, SIP dialog identifiers);
 * - bridge_nodes: each node's heartbeat, so survivors can tell a dead node and take over its calls.
 */
export async function up({ context: qi }: { context: QueryInterface }): Promise<void> {
  await qi.addColumn('webhook_events', 'node_id', { type: DataTypes.STRING(128) });
  await qi.addColumn('webhook_events', 'attempts', { type: DataTypes.INTEGER, allowNull: false, defaultValue: 0 });
  await qi.addIndex('webhook_events', ['received_at'], { name: 'webhook_events_unprocessed', where: { processed_at: null } });
  await qi.addColumn('calls', 'recovery', { type: DataTypes.JSONB });
  await qi.addIndex('calls', ['node_id'], { name: 'calls_open_by_node', where: { ended_at: null } });
  await qi.createTable('bridge_nodes', {
    node_id: { type: DataTypes.STRING(128), primaryKey: true },
    started_at: { type: DataTypes.DATE, allowNull: false },
    heartbeat_at: { type: DataTypes.DATE, allowNull: false },
    stopped_at: { type: DataTypes.DATE },
    /** A survivor that has taken over this node's calls after it went silent, and when. */
    reaped_by: { type: DataTypes.STRING(128) },
    reaped_at: { type: DataTypes.DATE },
  });
}

export async function down({ context: qi }: { context: QueryInterface }): Promise<void> {
  await qi.dropTable('bridge_nodes');
  await qi.removeIndex('calls', 'calls_open_by_node');
  await qi.removeColumn('calls', 'recovery');
  await qi.removeIndex('webhook_events', 'webhook_events_unprocessed');
  await qi.removeColumn('webhook_events', 'attempts');
  await qi.removeColumn('webhook_events', 'node_id');
}
