import { InferAttributes, QueryTypes, Sequelize } from 'sequelize';
import { Logger } from '../log';
import { CallEvent, CallRecord, defineModels, WebhookEventRecord } from './models';

export type CallFields = Partial<Omit<InferAttributes<CallRecord>, 'id' | 'created_at' | 'updated_at'>>;

/** Postgres access for CDRs, their timelines and raw webhook events. */
export class CdrStore {
  constructor(readonly sequelize: Sequelize) {
    defineModels(sequelize);
  }

  /** Stores a webhook event once. Returns false when the event id was already recorded (a redelivery). */
  async recordWebhook(id: string, type: string, wacid: string | null, payload: unknown): Promise<boolean> {
    const rows = await this.sequelize.query<{ id: string }>(
      `INSERT INTO webhook_events (id, type, wacid, received_at, payload)
       VALUES (:id, :type, :wacid, now(), :payload::jsonb)
       ON CONFLICT (id) DO NOTHING RETURNING id`,
      { replacements: { id, type, wacid, payload: JSON.stringify(payload) }, type: QueryTypes.SELECT },
    );
    return rows.length === 1;
  }

  async markWebhookProcessed(id: string, error?: string): Promise<void> {
    await WebhookEventRecord.update({ processed_at: new Date(), error: error ?? null }, { where: { id } });
  }

  async createCall(id: string, fields: CallFields & Pick<CallRecord, 'direction' | 'state' | 'offered_at'>): Promise<void> {
    await CallRecord.create({ id, wacid: null, ...fields });
  }

  async updateCall(id: string, fields: CallFields): Promise<void> {
    await CallRecord.update(fields, { where: { id } });
  }

  async updateCallByWacid(wacid: string, fields: CallFields): Promise<string | null> {
    const [n, rows] = await CallRecord.update(fields, { where: { wacid }, returning: ['id'] });
    return n > 0 && rows[0] ? rows[0].id : null;
  }

  async addEvent(callId: string, type: string, detail: object | null, at = new Date()): Promise<void> {
    await CallEvent.create({ call_id: callId, at, type, detail });
  }

  findCallByWacid(wacid: string): Promise<CallRecord | null> {
    return CallRecord.findOne({ where: { wacid } });
  }

  events(callId: string): Promise<CallEvent[]> {
    return CallEvent.findAll({ where: { call_id: callId }, order: [['at', 'ASC'], ['id', 'ASC']] });
  }

}

/**
 * Writes one call's record in order without holding up signalling: each write is queued behind the
 * previous one, and a failed write is logged rather than breaking the call.
 */
export class CallRecorder {
  private chain: Promise<void> = Promise.resolve();
  private readonly known: CallFields = {};

  constructor(private readonly store: CdrStore, readonly callId: string, private readonly log: Logger) {}

  /** The CDR as written so far (what the live-calls view shows), without waiting for Postgres. */
  get fields(): Readonly<CallFields> {
    return this.known;
  }

  create(fields: Parameters<CdrStore['createCall']>[1]): void {
    Object.assign(this.known, fields);
    this.enqueue('create', () => this.store.createCall(this.callId, fields));
  }

  update(fields: CallFields): void {
    Object.assign(this.known, fields);
    this.enqueue('update', () => this.store.updateCall(this.callId, fields));
  }

  event(type: string, detail: object | null = null): void {
    const at = new Date();
    this.enqueue(`event ${type}`, () => this.store.addEvent(this.callId, type, detail, at));
  }

  /** Resolves once every write queued so far has finished. */
  flushed(): Promise<void> {
    return this.chain;
  }

  private enqueue(what: string, fn: () => Promise<unknown>): void {
    this.chain = this.chain.then(fn).then(
      () => undefined,
      (err: unknown) => this.log.error({ err, callId: this.callId }, `CDR ${what} failed`),
    );
  }
}
