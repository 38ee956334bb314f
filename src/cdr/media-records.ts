import { QueryTypes, Sequelize } from 'sequelize';

/** The files WhatsApp makes of a call (Meta: per-call recording and transcription, a voicemail). */
export type CallMediaKind = 'recording' | 'transcription' | 'voicemail';
export const CALL_MEDIA_KINDS: readonly CallMediaKind[] = ['recording', 'transcription', 'voicemail'];

/** A file announced by a webhook, as it is first recorded (before it is fetched). */
export interface NewCallMedia {
  wacid: string;
  /** The provider account that announced it (its webhook path name). */
  provider: string | null;
  kind: CallMediaKind;
  /** The provider's media id. */
  mediaId: string;
  mimeType: string | null;
  /** As the provider gave it (hex or base64), checked against the file once fetched. */
  sha256: string | null;
}

/** One row of call_media as read back. */
export interface CallMediaRow {
  id: number;
  call_id: string | null;
  wacid: string;
  provider: string | null;
  kind: CallMediaKind;
  media_id: string;
  mime_type: string | null;
  sha256: string | null;
  path: string | null;
  bytes: number | null;
  received_at: Date;
  fetched_at: Date | null;
  attempts: number;
  error: string | null;
  deleted_at: Date | null;
}

const COLUMNS = `id::int AS id, call_id, wacid, provider, kind, media_id, mime_type, sha256, path, bytes::float8 AS bytes,
  received_at, fetched_at, attempts, error, deleted_at`;

/** The widths of call_media's text columns (longer values are cut, never refused). */
const cut = (v: string | null, n: number): string | null => (v === null ? null : v.slice(0, n));

/**
 * The statements of call_media: one row per (wacid, kind, media id), recorded when the webhook names
 * the file, completed once it is fetched (or its error kept), linked to the CDR by wacid.
 */
export class MediaRecords {
  constructor(private readonly sequelize: Sequelize) {}

  /**
   * Records a file announced for a call, once: the row's id, and whether this call made it (false: the
   * same file was announced before, a redelivery). The CDR is linked at once when it is there.
   */
  async add(m: NewCallMedia): Promise<{ id: number; fresh: boolean; row: CallMediaRow }> {
    const inserted = await this.sequelize.query<CallMediaRow>(
      `INSERT INTO call_media (call_id, wacid, provider, kind, media_id, mime_type, sha256, received_at)
       VALUES ((SELECT id FROM calls WHERE wacid = :wacid LIMIT 1), :wacid, :provider, :kind, :mediaId, :mime, :sha, now())
       ON CONFLICT (wacid, kind, media_id) DO NOTHING RETURNING ${COLUMNS}`,
      {
        replacements: {
          wacid: cut(m.wacid, 255), provider: cut(m.provider, 64), kind: m.kind, mediaId: cut(m.mediaId, 255),
          mime: cut(m.mimeType, 100), sha: cut(m.sha256, 100),
        },
        type: QueryTypes.SELECT,
      },
    );
    if (inserted[0]) return { id: inserted[0].id, fresh: true, row: inserted[0] };
    const [row] = await this.sequelize.query<CallMediaRow>(
      `SELECT ${COLUMNS} FROM call_media WHERE wacid = :wacid AND kind = :kind AND media_id = :mediaId`,
      { replacements: { wacid: cut(m.wacid, 255), kind: m.kind, mediaId: cut(m.mediaId, 255) }, type: QueryTypes.SELECT },
    );
    if (!row) throw new Error(`call_media row for ${m.kind} ${m.mediaId} vanished between its insert and its read`);
    return { id: row.id, fresh: false, row };
  }

  /** The file is on disk: where, how big, its type; the error of earlier attempts is cleared. */
  async stored(id: number, f: { path: string; bytes: number; mimeType: string | null; attempts: number }): Promise<void> {
    await this.sequelize.query(
      `UPDATE call_media SET path = :path, bytes = :bytes, mime_type = coalesce(:mime, mime_type), fetched_at = now(),
         attempts = attempts + :attempts, error = NULL WHERE id = :id`,
      { replacements: { id, path: f.path, bytes: f.bytes, mime: cut(f.mimeType, 100), attempts: f.attempts }, type: QueryTypes.UPDATE },
    );
  }

  /** The file could not be fetched (or checked): why, kept on the row. */
  async failed(id: number, error: string, attempts: number): Promise<void> {
    await this.sequelize.query('UPDATE call_media SET error = :error, attempts = attempts + :attempts WHERE id = :id', {
      replacements: { id, error: error.slice(0, 2000), attempts }, type: QueryTypes.UPDATE,
    });
  }

  /** Links the files of `wacid` not yet linked to its CDR (when there is one); how many were linked. */
  async linkByWacid(wacid: string): Promise<number> {
    const [, meta] = await this.sequelize.query(
      `UPDATE call_media m SET call_id = c.id FROM calls c WHERE m.wacid = :wacid AND m.call_id IS NULL AND c.wacid = :wacid`,
      { replacements: { wacid }, type: QueryTypes.RAW },
    );
    return (meta as { rowCount?: number } | undefined)?.rowCount ?? 0;
  }

  /** A call's files, oldest first: those linked to it, and those of its wacid not linked yet. */
  forCall(callId: string): Promise<CallMediaRow[]> {
    return this.sequelize.query<CallMediaRow>(
      `SELECT ${COLUMNS} FROM call_media
       WHERE call_id = :callId OR (call_id IS NULL AND wacid = (SELECT wacid FROM calls WHERE id = :callId))
       ORDER BY received_at, id`,
      { replacements: { callId }, type: QueryTypes.SELECT },
    );
  }

  /** One file by its row id. */
  async get(id: number): Promise<CallMediaRow | null> {
    const [row] = await this.sequelize.query<CallMediaRow>(`SELECT ${COLUMNS} FROM call_media WHERE id = :id`, { replacements: { id }, type: QueryTypes.SELECT });
    return row ?? null;
  }

  /** Files still on disk fetched more than `days` ago, oldest first (the media retention). */
  expired(days: number, limit: number): Promise<Array<{ id: number; path: string }>> {
    return this.sequelize.query<{ id: number; path: string }>(
      `SELECT id::int AS id, path FROM call_media WHERE path IS NOT NULL AND deleted_at IS NULL AND fetched_at < now() - make_interval(days => :days)
       ORDER BY fetched_at LIMIT :limit`,
      { replacements: { days, limit }, type: QueryTypes.SELECT },
    );
  }

  /** Notes that these files were deleted. */
  async markDeleted(ids: number[]): Promise<void> {
    if (ids.length === 0) return;
    await this.sequelize.query('UPDATE call_media SET deleted_at = now() WHERE id IN (:ids)', { replacements: { ids }, type: QueryTypes.UPDATE });
  }
}
