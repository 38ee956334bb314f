import { DataTypes, QueryInterface } from 'sequelize';

/** Call detail records, their event timeline, and the raw webhook events (unique by event id). */
export async function up({ context: qi }: { context: QueryInterface }): Promise<void> {
  await qi.createTable('calls', {
    id: { type: DataTypes.UUID, primaryKey: true },
    direction: { type: DataTypes.STRING(8), allowNull: false },
    wacid: { type: DataTypes.STRING(255), allowNull: true, unique: true },
    phone_id: { type: DataTypes.STRING(64) },
    business_number: { type: DataTypes.STRING(32) },
    customer_number: { type: DataTypes.STRING(32) },
    sip_call_id: { type: DataTypes.STRING(255) },
    pbx_target: { type: DataTypes.STRING(255) },
    agent: { type: DataTypes.STRING(255) },
    state: { type: DataTypes.STRING(24), allowNull: false },
    outcome: { type: DataTypes.STRING(24) },
    hangup_by: { type: DataTypes.STRING(16) },
    sip_final_code: { type: DataTypes.INTEGER },
    sip_final_reason: { type: DataTypes.STRING(255) },
    error: { type: DataTypes.TEXT },
    offered_at: { type: DataTypes.DATE, allowNull: false },
    pre_accepted_at: { type: DataTypes.DATE },
    pbx_ringing_at: { type: DataTypes.DATE },
    pbx_answered_at: { type: DataTypes.DATE },
    accepted_at: { type: DataTypes.DATE },
    ended_at: { type: DataTypes.DATE },
    talk_seconds: { type: DataTypes.DECIMAL(10, 3) },
    provider_duration: { type: DataTypes.INTEGER },
    provider_status: { type: DataTypes.STRING(24) },
    provider_start_at: { type: DataTypes.DATE },
    provider_end_at: { type: DataTypes.DATE },
    wa_codec: { type: DataTypes.STRING(32) },
    pbx_codec: { type: DataTypes.STRING(32) },
    media_stats: { type: DataTypes.JSONB },
    node_id: { type: DataTypes.STRING(128) },
    created_at: { type: DataTypes.DATE, allowNull: false },
    updated_at: { type: DataTypes.DATE, allowNull: false },
  });
  // Reporting filters by time range plus one of direction/outcome/number/agent.
  await qi.addIndex('calls', ['offered_at'], { name: 'calls_offered_at' });
  await qi.addIndex('calls', ['direction', 'offered_at'], { name: 'calls_direction_offered_at' });
  await qi.addIndex('calls', ['outcome', 'offered_at'], { name: 'calls_outcome_offered_at' });
  await qi.addIndex('calls', ['customer_number', 'offered_at'], { name: 'calls_customer_offered_at' });
  await qi.addIndex('calls', ['business_number', 'offered_at'], { name: 'calls_business_offered_at' });
  await qi.addIndex('calls', ['agent', 'offered_at'], { name: 'calls_agent_offered_at' });
  await qi.addIndex('calls', ['sip_call_id'], { name: 'calls_sip_call_id' });
  await qi.addIndex('calls', ['state'], { name: 'calls_open', where: { ended_at: null } });

  await qi.createTable('call_events', {
    id: { type: DataTypes.BIGINT, autoIncrement: true, primaryKey: true },
    call_id: { type: DataTypes.UUID, allowNull: false, references: { model: 'calls', key: 'id' }, onDelete: 'CASCADE' },
    at: { type: DataTypes.DATE, allowNull: false },
    type: { type: DataTypes.STRING(48), allowNull: false },
    detail: { type: DataTypes.JSONB },
  });
  await qi.addIndex('call_events', ['call_id', 'at'], { name: 'call_events_call_at' });

  await qi.createTable('webhook_events', {
    id: { type: DataTypes.STRING(200), primaryKey: true },
    type: { type: DataTypes.STRING(64), allowNull: false },
    wacid: { type: DataTypes.STRING(255) },
    received_at: { type: DataTypes.DATE, allowNull: false },
    processed_at: { type: DataTypes.DATE },
    error: { type: DataTypes.TEXT },
    payload: { type: DataTypes.JSONB, allowNull: false },
  });
  await qi.addIndex('webhook_events', ['wacid'], { name: 'webhook_events_wacid' });
  await qi.addIndex('webhook_events', ['received_at'], { name: 'webhook_events_received_at' });
}

export async function down({ context: qi }: { context: QueryInterface }): Promise<void> {
  await qi.dropTable('webhook_events');
  await qi.dropTable('call_events');
  await qi.dropTable('calls');
}
