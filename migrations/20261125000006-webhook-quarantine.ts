import { QueryInterface } from 'sequelize';

/**
 * Signed webhook events that were refused (4xx) as they can never be valid: not UTF-8 or JSON, an
 * unstorable string (NUL, an unpaired surrogate), too deep, a field out of bounds. Kept as the exact
 * bytes (bytea, at most the 64 KiB body cap), once per body: a redelivery of the same bytes counts
 * in `deliveries`. Also widens webhook_events.type to the 100 characters a type may have.
 */
export async function up({ context: qi }: { context: QueryInterface }): Promise<void> {
  await qi.sequelize.query(`CREATE TABLE IF NOT EXISTS webhook_quarantine (
    id BIGSERIAL PRIMARY KEY,
    body_sha256 BYTEA NOT NULL UNIQUE CHECK (octet_length(body_sha256) = 32),
    body BYTEA NOT NULL CHECK (octet_length(body) <= 65536),
    reason VARCHAR(500) NOT NULL,
    client_ip VARCHAR(64),
    received_at TIMESTAMPTZ NOT NULL,
    last_received_at TIMESTAMPTZ NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 1
  )`);
  await qi.sequelize.query('CREATE INDEX IF NOT EXISTS webhook_quarantine_received_at ON webhook_quarantine (received_at)');
  await qi.sequelize.query('ALTER TABLE webhook_events ALTER COLUMN type TYPE VARCHAR(100)');
}

export async function down({ context: qi }: { context: QueryInterface }): Promise<void> {
  await qi.sequelize.query('DROP TABLE IF EXISTS webhook_quarantine');
}
