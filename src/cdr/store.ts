import { QueryTypes, Sequelize } from 'sequelize';
import { CdrModels, CallEvent, CallFields, CallRecord, defineModels, NewCall } from './models';
import { CdrSpillSink } from './call-recorder';
import { WebhookEvents } from './webhook-events';
import { TypedEmitter } from '../util/typed-emitter';

// What src/calls and others have always imported from here.
export { CallRecorder, DEFAULT_RECORDER_OPTIONS } from './call-recorder';
export type { CdrWrites, RecorderOptions } from './call-recorder';
export type { CallFields } from './models';
export type { StoredWebhook, WebhookCursor, WebhookRow } from './webhook-events';

/** An open call of some node, with what ending it needs. */
export interface OpenCall {
  id: string; direction: string; wacid: string | null; phoneId: string | null; acceptedAt: Date | null; recovery: unknown;
  /** The provider account that carried the call (null: written before issue 19, the env's provider). */
  provider: string | null;
}

/** What a CdrStore has written, as it is written (the sandbox's live timeline listens). */
export interface CdrWritten {
  /** A call row was created or updated with these fields. */
  call: [callId: string, fields: CallFields];
  /** A timeline event was appended to a call. */
  event: [callId: string, type: string, detail: object | null, at: Date];
}

export interface CdrStoreOptions {
  /** The webhook events on the same pool (wacidHistory asks them); default: its own on `sequelize`. */
  webhookEvents?: WebhookEvents;
  /** Where calls' CDR writes go when Postgres stays away (CDR_SPILL_DIR); none: they are given up. */
  spill?: CdrSpillSink | null;
}

/**
 * Postgres access for CDRs and their timelines, through models bound to this store's Sequelize
 * alone (two stores in one process, on one database or two, each keep their own).
 */
export class CdrStore extends TypedEmitter<CdrWritten> {
  /** This store's models (reads in tests and tools; writes go through the methods). */
  readonly models: CdrModels;
  readonly spill: CdrSpillSink | null;
  private readonly webhookEvents: WebhookEvents;

  constructor(private readonly sequelize: Sequelize, o: CdrStoreOptions = {}) {
    super();
    this.models = defineModels(sequelize);
    this.webhookEvents = o.webhookEvents ?? new WebhookEvents(sequelize);
    this.spill = o.spill ?? null;
  }

  /**
   * What Postgres already knows of a wacid before a connect for it is bridged: whether a call row
   * has it (bridged before a restart, or by another node) and whether its terminate was stored.
   */
  async wacidHistory(wacid: string): Promise<{ call: boolean; terminated: boolean }> {
    const [call, terminated] = await Promise.all([
      this.sequelize.query<{ call: boolean }>('SELECT EXISTS (SELECT 1 FROM calls WHERE wacid = :wacid) AS call', { replacements: { wacid }, type: QueryTypes.SELECT })
        .then((rows) => rows[0]?.call === true),
      this.webhookEvents.terminateStored(wacid),
    ]);
    return { call, terminated };
  }

  /** Calls a node left open (it crashed or was killed), with what ending them needs. */
  async openCalls(nodeId: string): Promise<OpenCall[]> {
    const rows = await this.models.CallRecord.findAll({ where: { node_id: nodeId, ended_at: null } });
    return rows.map((r) => ({ id: r.id, direction: r.direction, wacid: r.wacid, phoneId: r.phone_id, acceptedAt: r.accepted_at, recovery: r.recovery, provider: r.provider ?? null }));
  }

  /**
   * Closes the CDR of a call its node left open (see src/cluster/recovery.ts), unless it was closed
   * meanwhile: ended now by the bridge, answered if it had been accepted (talk time up to now), else failed.
   */
  async closeOrphan(id: string, accepted: boolean, reason: string): Promise<void> {
    await this.sequelize.query(
      `UPDATE calls SET state = 'ended', outcome = :outcome, hangup_by = 'bridge', ended_at = now(), updated_at = now(),
         talk_seconds = CASE WHEN accepted_at IS NULL THEN NULL ELSE round(extract(epoch FROM now() - accepted_at)::numeric, 3) END,
         error = :error
       WHERE id = :id AND ended_at IS NULL`,
      { replacements: { id, outcome: accepted ? 'answered' : 'failed', error: reason }, type: QueryTypes.UPDATE },
    );
  }

  async createCall(id: string, fields: NewCall): Promise<void> {
    await this.models.CallRecord.create({ id, wacid: null, ...fields });
    this.emit('call', id, fields);
  }

  async updateCall(id: string, fields: CallFields): Promise<void> {
    await this.models.CallRecord.update(fields, { where: { id } });
    this.emit('call', id, fields);
  }

  async addEvent(callId: string, type: string, detail: object | null, at = new Date()): Promise<void> {
    await this.models.CallEvent.create({ call_id: callId, at, type, detail });
    this.emit('event', callId, type, detail, at);
  }

  /** addEvent, unless the call has an event of this type at this very time already (a replayed write); true when added. */
  async addEventOnce(callId: string, type: string, detail: object | null, at: Date): Promise<boolean> {
    const [rows] = await this.sequelize.query(
      `INSERT INTO call_events (call_id, at, type, detail)
       SELECT :callId, :at, :type, CAST(:detail AS jsonb)
       WHERE NOT EXISTS (SELECT 1 FROM call_events WHERE call_id = :callId AND type = :type AND at = :at)
       RETURNING id`,
      { replacements: { callId, at, type, detail: detail === null ? null : JSON.stringify(detail) }, type: QueryTypes.RAW },
    );
    const added = Array.isArray(rows) && rows.length > 0;
    if (added) this.emit('event', callId, type, detail, at);
    return added;
  }

  findCall(id: string): Promise<CallRecord | null> {
    return this.models.CallRecord.findByPk(id);
  }

  findCallByWacid(wacid: string): Promise<CallRecord | null> {
    return this.models.CallRecord.findOne({ where: { wacid } });
  }

  events(callId: string): Promise<CallEvent[]> {
    return this.models.CallEvent.findAll({ where: { call_id: callId }, order: [['at', 'ASC'], ['id', 'ASC']] });
  }

  /** Calls with a recording file still on disk, offered more than `days` ago, oldest first (the recording retention). */
  async expiredRecordings(days: number, limit: number): Promise<Array<{ id: string; recording_path: string }>> {
    return this.sequelize.query<{ id: string; recording_path: string }>(
      `SELECT id, recording_path FROM calls
        WHERE recording_path IS NOT NULL AND recording_deleted_at IS NULL AND offered_at < now() - make_interval(days => :days)
        ORDER BY offered_at LIMIT :limit`,
      { replacements: { days, limit }, type: QueryTypes.SELECT },
    );
  }

  /** Notes that these calls' recording files were deleted. */
  async markRecordingsDeleted(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.sequelize.query('UPDATE calls SET recording_deleted_at = now() WHERE id IN (:ids)', { replacements: { ids }, type: QueryTypes.UPDATE });
  }
}
