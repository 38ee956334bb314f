import { DataTypes, QueryInterface } from 'sequelize';

/** When a WhatsApp call was accepted on the PBX's early media (PBX_EARLY_MEDIA=accept), before an agent answered. */
export async function up({ context: qi }: { context: QueryInterface }): Promise<void> {
  await qi.addColumn('calls', 'early_media_at', { type: DataTypes.DATE });
}

export async function down({ context: qi }: { context: QueryInterface }): Promise<void> {
  await qi.removeColumn('calls', 'early_media_at');
}
