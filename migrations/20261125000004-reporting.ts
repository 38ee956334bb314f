import { DataTypes, QueryInterface } from 'sequelize';

/**
 * Reporting: call quality (the worst leg's figures, per-leg detail stays in media_stats), recordings,
 * and the indexes the CDR API's keyset pagination and filters use.
 */
export async function up({ context: qi }: { context: QueryInterface }): Promise<void> {
  await qi.addColumn('calls', 'mos', { type: DataTypes.DECIMAL(3, 2) });
  await qi.addColumn('calls', 'packet_loss_pct', { type: DataTypes.DECIMAL(5, 2) });
  await qi.addColumn('calls', 'jitter_ms', { type: DataTypes.DECIMAL(8, 2) });
  await qi.addColumn('calls', 'rtt_ms', { type: DataTypes.DECIMAL(8, 2) });
  await qi.addColumn('calls', 'recording_path', { type: DataTypes.STRING(1024) });
  await qi.addColumn('calls', 'recording_bytes', { type: DataTypes.BIGINT });
  await qi.addColumn('calls', 'recording_seconds', { type: DataTypes.DECIMAL(10, 3) });
  await qi.addColumn('calls', 'recording_deleted_at', { type: DataTypes.DATE });
  // Keyset pagination orders by (offered_at, id); the other filters already have (column, offered_at).
  await qi.addIndex('calls', ['offered_at', 'id'], { name: 'calls_offered_at_id' });
  await qi.addIndex('calls', ['pbx_target', 'offered_at'], { name: 'calls_pbx_target_offered_at' });
  await qi.sequelize.query('CREATE INDEX calls_mos_offered_at ON calls (mos, offered_at) WHERE mos IS NOT NULL');
  // Retention sweeps look for recordings still on disk, oldest first.
  await qi.sequelize.query('CREATE INDEX calls_recorded ON calls (offered_at) WHERE recording_path IS NOT NULL AND recording_deleted_at IS NULL');
}

export async function down({ context: qi }: { context: QueryInterface }): Promise<void> {
  for (const i of ['calls_offered_at_id', 'calls_pbx_target_offered_at', 'calls_mos_offered_at', 'calls_recorded']) await qi.removeIndex('calls', i);
  for (const c of ['mos', 'packet_loss_pct', 'jitter_ms', 'rtt_ms', 'recording_path', 'recording_bytes', 'recording_seconds', 'recording_deleted_at']) {
    await qi.removeColumn('calls', c);
  }
}
