import { DataTypes, QueryInterface } from 'sequelize';

/** Every call-permission reply received and every permission request sent (append-only). */
export async function up({ context: qi }: { context: QueryInterface }): Promise<void> {
  await qi.createTable('call_permission_replies', {
    id: { type: DataTypes.BIGINT, autoIncrement: true, primaryKey: true },
    business_number: { type: DataTypes.STRING(32), allowNull: false },
    customer_number: { type: DataTypes.STRING(32), allowNull: false },
    response: { type: DataTypes.STRING(8), allowNull: false },
    is_permanent: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: false },
    expires_at: { type: DataTypes.DATE },
    response_source: { type: DataTypes.STRING(32) },
    replied_at: { type: DataTypes.DATE, allowNull: false },
    wamid: { type: DataTypes.STRING(255) },
    event_id: { type: DataTypes.STRING(200) },
    created_at: { type: DataTypes.DATE, allowNull: false },
  });
  // "What is the latest answer of this customer to this business?" is the hot query.
  await qi.addIndex('call_permission_replies', ['business_number', 'customer_number', 'replied_at'], { name: 'permission_replies_pair_time' });

  await qi.createTable('call_permission_requests', {
    id: { type: DataTypes.BIGINT, autoIncrement: true, primaryKey: true },
    business_number: { type: DataTypes.STRING(32), allowNull: false },
    customer_number: { type: DataTypes.STRING(32), allowNull: false },
    kind: { type: DataTypes.STRING(16), allowNull: false },
    trigger: { type: DataTypes.STRING(16), allowNull: false },
    message_id: { type: DataTypes.STRING(255) },
    error: { type: DataTypes.TEXT },
    sent_at: { type: DataTypes.DATE, allowNull: false },
  });
  await qi.addIndex('call_permission_requests', ['business_number', 'customer_number', 'sent_at'], { name: 'permission_requests_pair_time' });
}

export async function down({ context: qi }: { context: QueryInterface }): Promise<void> {
  await qi.dropTable('call_permission_requests');
  await qi.dropTable('call_permission_replies');
}
