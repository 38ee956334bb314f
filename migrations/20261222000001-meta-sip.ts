import { DataTypes, QueryInterface } from 'sequelize';

/**
 * Issue 20: calls carried by Meta's native SIP.
 * - calls.country_code: the WhatsApp user's country, as Meta's INVITE names it (x-wa-meta-country-code).
 * - calls.meta_sip_srtp: how SRTP was keyed on Meta's leg ('dtls' or 'sdes'); null for a call that went by
 *   the provider's API. provider_kind is 'meta-sip' for these calls (VARCHAR(16) already holds it).
 * The duration Meta gives on its BYE (x-wa-meta-call-duration) goes in provider_duration, as a terminate
 * webhook's does: no column of its own. Nullable columns without defaults: no table rewrite.
 */
const CALL_COLUMNS: Array<[string, number]> = [['country_code', 16], ['meta_sip_srtp', 8]];

export async function up({ context: qi }: { context: QueryInterface }): Promise<void> {
  for (const [column, width] of CALL_COLUMNS) await qi.addColumn('calls', column, { type: DataTypes.STRING(width) });
}

export async function down({ context: qi }: { context: QueryInterface }): Promise<void> {
  for (const [column] of CALL_COLUMNS) await qi.removeColumn('calls', column);
}
