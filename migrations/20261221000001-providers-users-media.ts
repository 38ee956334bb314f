import { DataTypes, QueryInterface } from 'sequelize';

/**
 * Issue 19: several numbers on several providers, WhatsApp users known only by a BSUID, and what Meta's
 * webhooks carry.
 * - calls: the provider account and kind and the number's name (numbers file) a call went through; the
 *   user as WhatsApp names them (BSUID, profile name, username); the call button or deep link they
 *   called from; the agent's X-WhatsApp-Context echoed back. customer_number holds the user's address,
 *   a BSUID (up to 160 characters) when no number is known, here and in the permission tables.
 * - webhook_events.provider: the provider account whose webhook source decodes the stored event.
 * - call_media: each file WhatsApp made of a call (recording, transcription, voicemail), fetched into
 *   RECORDING_DIR and linked to the CDR by wacid (call_id stays null until the CDR is there).
 * - account_notices: account_update / account_settings_update, once per webhook event.
 * The widening is binary-compatible (VARCHAR(32) to VARCHAR(160)): no table rewrite, no index rebuild.
 */
const ADDRESS_COLUMNS: Array<[string, string]> = [
  ['calls', 'customer_number'], ['call_permission_replies', 'customer_number'], ['call_permission_requests', 'customer_number'],
];

const CALL_COLUMNS: Array<[string, number]> = [
  ['provider', 64], ['provider_kind', 16], ['number_name', 64], ['user_id', 160], ['profile_name', 255], ['username', 100],
  ['cta_payload', 512], ['deeplink_payload', 512], ['context', 512],
];

/** The reporting filters' indexes: each (column, offered_at), as the other filters have. */
const CALL_INDEXES: Array<[string, string]> = [
  ['calls_provider_offered_at', 'calls (provider, offered_at)'],
  ['calls_number_name_offered_at', 'calls (number_name, offered_at)'],
  ['calls_user_id_offered_at', 'calls (user_id, offered_at) WHERE user_id IS NOT NULL'],
  ['calls_username_offered_at', 'calls (lower(username), offered_at) WHERE username IS NOT NULL'],
  ['calls_cta_payload_offered_at', 'calls (cta_payload, offered_at) WHERE cta_payload IS NOT NULL'],
];

export async function up({ context: qi }: { context: QueryInterface }): Promise<void> {
  for (const [table, column] of ADDRESS_COLUMNS) await qi.sequelize.query(`ALTER TABLE ${table} ALTER COLUMN ${column} TYPE VARCHAR(160)`);
  for (const [column, width] of CALL_COLUMNS) await qi.addColumn('calls', column, { type: DataTypes.STRING(width) });
  for (const [name, on] of CALL_INDEXES) await qi.sequelize.query(`CREATE INDEX IF NOT EXISTS ${name} ON ${on}`);

  await qi.addColumn('webhook_events', 'provider', { type: DataTypes.STRING(64), allowNull: false, defaultValue: 'ycloud' });

  await qi.createTable('call_media', {
    id: { type: DataTypes.BIGINT, autoIncrement: true, primaryKey: true },
    call_id: { type: DataTypes.UUID, allowNull: true, references: { model: 'calls', key: 'id' }, onDelete: 'CASCADE' },
    wacid: { type: DataTypes.STRING(255), allowNull: false },
    provider: { type: DataTypes.STRING(64) },
    kind: { type: DataTypes.STRING(16), allowNull: false },
    media_id: { type: DataTypes.STRING(255), allowNull: false },
    mime_type: { type: DataTypes.STRING(100) },
    sha256: { type: DataTypes.STRING(100) },
    path: { type: DataTypes.STRING(1024) },
    bytes: { type: DataTypes.BIGINT },
    received_at: { type: DataTypes.DATE, allowNull: false },
    fetched_at: { type: DataTypes.DATE },
    attempts: { type: DataTypes.INTEGER, allowNull: false, defaultValue: 0 },
    error: { type: DataTypes.TEXT },
    deleted_at: { type: DataTypes.DATE },
  });
  await qi.addIndex('call_media', ['wacid', 'kind', 'media_id'], { name: 'call_media_once', unique: true });
  await qi.addIndex('call_media', ['call_id'], { name: 'call_media_call_id' });
  // The media retention looks for files still on disk, oldest first.
  await qi.sequelize.query('CREATE INDEX call_media_on_disk ON call_media (fetched_at) WHERE path IS NOT NULL AND deleted_at IS NULL');
  await qi.addIndex('call_media', ['received_at'], { name: 'call_media_received_at' });

  await qi.createTable('account_notices', {
    id: { type: DataTypes.BIGINT, autoIncrement: true, primaryKey: true },
    provider: { type: DataTypes.STRING(64), allowNull: false },
    phone_id: { type: DataTypes.STRING(64) },
    field: { type: DataTypes.STRING(64), allowNull: false },
    event: { type: DataTypes.STRING(100), allowNull: false },
    severity: { type: DataTypes.STRING(16), allowNull: false },
    detail: { type: DataTypes.JSONB },
    received_at: { type: DataTypes.DATE, allowNull: false },
    event_id: { type: DataTypes.STRING(200), allowNull: false, unique: true },
  });
  await qi.addIndex('account_notices', ['provider', 'phone_id', 'received_at'], { name: 'account_notices_number_time' });
  await qi.addIndex('account_notices', ['received_at'], { name: 'account_notices_received_at' });
}

export async function down({ context: qi }: { context: QueryInterface }): Promise<void> {
  // First: it fails (and nothing is changed) while a BSUID longer than 32 characters is stored, as narrowing would lose it.
  for (const [table, column] of ADDRESS_COLUMNS) await qi.sequelize.query(`ALTER TABLE ${table} ALTER COLUMN ${column} TYPE VARCHAR(32)`);
  await qi.dropTable('account_notices');
  await qi.dropTable('call_media');
  await qi.removeColumn('webhook_events', 'provider');
  for (const [name] of CALL_INDEXES) await qi.sequelize.query(`DROP INDEX IF EXISTS ${name}`);
  for (const [column] of CALL_COLUMNS) await qi.removeColumn('calls', column);
}
