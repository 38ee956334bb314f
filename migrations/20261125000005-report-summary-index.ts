import { QueryInterface } from 'sequelize';

/**
 * Summary reports (GET /api/reports/summary) read every call of their range: a month is a third of a
 * million rows at 10,000 calls a day. This index holds every column they read, so Postgres answers
 * them from the index alone (an index-only scan) instead of visiting each wide CDR row (media_stats,
 * SIP ids, errors). Built CONCURRENTLY: CDR writes go on while it is built on a large table.
 */
export async function up({ context: qi }: { context: QueryInterface }): Promise<void> {
  await qi.sequelize.query(`CREATE INDEX CONCURRENTLY IF NOT EXISTS calls_report_cover ON calls (offered_at)
    INCLUDE (direction, outcome, talk_seconds, accepted_at, agent, business_number)`);
}

export async function down({ context: qi }: { context: QueryInterface }): Promise<void> {
  await qi.sequelize.query('DROP INDEX CONCURRENTLY IF EXISTS calls_report_cover');
}
