import { QueryTypes, Sequelize } from 'sequelize';

export type NoticeSeverity = 'restriction' | 'warning' | 'info';

/** A notice about the business account or one of its numbers, as it is stored. */
export interface AccountNoticeRow {
  /** The provider account that sent it (its webhook path name). */
  provider: string;
  /** The number it is about (phone number id), when it names one. */
  phoneId: string | null;
  /** The provider's field (account_update, account_settings_update). */
  field: string;
  /** The provider's event (ACCOUNT_VIOLATION, ...) or "settings_changed". */
  event: string;
  severity: NoticeSeverity;
  /** The provider's own words (cut to MAX_DETAIL_CHARS of JSON when longer). */
  detail: unknown;
  /** The webhook event it came in (one notice per event). */
  eventId: string;
}

/** A stored notice as the admin API lists it. */
export interface ListedNotice {
  provider: string; phone_id: string | null; field: string; event: string; severity: NoticeSeverity; detail: unknown; received_at: Date;
}

/** The most JSON of a notice's detail kept as it came; a longer one is kept as its first characters. */
export const MAX_DETAIL_CHARS = 8192;

/** What is stored of a notice's detail: the value itself, or its JSON cut short. */
function boundedDetail(detail: unknown): string {
  const text = JSON.stringify(detail ?? null) ?? 'null';
  return text.length <= MAX_DETAIL_CHARS ? text : JSON.stringify({ truncated: text.slice(0, MAX_DETAIL_CHARS) });
}

/** The statements of account_notices (account_update, account_settings_update), one row per webhook event. */
export class AccountNotices {
  constructor(private readonly sequelize: Sequelize) {}

  /** Stores a notice once per event id: false when that event's notice is there already (a redelivery). */
  async add(n: AccountNoticeRow): Promise<boolean> {
    const stored = await this.sequelize.query<{ id: string }>(
      `INSERT INTO account_notices (provider, phone_id, field, event, severity, detail, received_at, event_id)
       VALUES (:provider, :phoneId, :field, :event, :severity, CAST(:detail AS jsonb), now(), :eventId)
       ON CONFLICT (event_id) DO NOTHING RETURNING id`,
      {
        replacements: {
          provider: n.provider.slice(0, 64), phoneId: n.phoneId?.slice(0, 64) ?? null, field: n.field.slice(0, 64), event: n.event.slice(0, 100),
          severity: n.severity, detail: boundedDetail(n.detail), eventId: n.eventId,
        },
        type: QueryTypes.SELECT,
      },
    );
    return stored.length > 0;
  }

  /** The latest notice of each number (and of each provider account for notices naming no number), newest first. */
  latestPerNumber(provider: string | null = null): Promise<ListedNotice[]> {
    return this.sequelize.query<ListedNotice>(
      `SELECT * FROM (
         SELECT DISTINCT ON (provider, phone_id) provider, phone_id, field, event, severity, detail, received_at
         FROM account_notices WHERE (CAST(:provider AS text) IS NULL OR provider = :provider)
         ORDER BY provider, phone_id, received_at DESC, id DESC
       ) latest ORDER BY received_at DESC`,
      { replacements: { provider }, type: QueryTypes.SELECT },
    );
  }

  /** A number's notices (or a provider account's, phoneId null: those naming no number), newest first. */
  forNumber(provider: string, phoneId: string | null, limit = 50): Promise<ListedNotice[]> {
    return this.sequelize.query<ListedNotice>(
      `SELECT provider, phone_id, field, event, severity, detail, received_at FROM account_notices
       WHERE provider = :provider AND phone_id IS NOT DISTINCT FROM :phoneId ORDER BY received_at DESC, id DESC LIMIT :limit`,
      { replacements: { provider, phoneId, limit }, type: QueryTypes.SELECT },
    );
  }
}
