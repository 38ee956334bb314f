import { QueryTypes, Sequelize } from 'sequelize';
import { AccountNotices } from './account-notices';
import { CdrSpillSink } from './call-recorder';
import { connectDatabase, migrate, pendingMigrations } from './db';
import { MediaRecords } from './media-records';
import { NodeRecords } from './node-records';
import { PermissionRecords } from './permission-records';
import { WebhookQuarantine } from './quarantine';
import { RetentionRecords } from './retention-records';
import { CdrStore } from './store';
import { WebhookEvents } from './webhook-events';

export interface DatabaseOptions {
  /** Where calls' CDR writes go when Postgres stays away (see CdrSpill); none: they are given up. */
  spill?: CdrSpillSink | null;
}

/**
 * The pool calls, webhooks, CDR writes and heartbeats use, and the data-access objects on it: each
 * component gets the one with the statements it needs, never the pool itself. The pool's own
 * operations (ping, notify, close) are named here.
 */
export class Database {
  /** CDRs and their timelines. */
  readonly cdr: CdrStore;
  /** Raw webhook events (the events pipeline). */
  readonly webhookEvents: WebhookEvents;
  /** Call permission replies and requests. */
  readonly permissions: PermissionRecords;
  /** Signed webhook bodies refused as never valid. */
  readonly quarantine: WebhookQuarantine;
  /** The nodes' heartbeats. */
  readonly nodes: NodeRecords;
  /** The retention sweep's statements. */
  readonly retention: RetentionRecords;
  /** The files WhatsApp made of calls (recordings, transcriptions, voicemails), fetched into RECORDING_DIR. */
  readonly media: MediaRecords;
  /** Notices about the business account and its numbers (account_update, account_settings_update). */
  readonly notices: AccountNotices;

  constructor(private readonly sequelize: Sequelize, o: DatabaseOptions = {}) {
    this.webhookEvents = new WebhookEvents(sequelize);
    this.cdr = new CdrStore(sequelize, { webhookEvents: this.webhookEvents, spill: o.spill ?? null });
    this.permissions = new PermissionRecords(sequelize);
    this.quarantine = new WebhookQuarantine(sequelize);
    this.nodes = new NodeRecords(sequelize);
    this.retention = new RetentionRecords(sequelize);
    this.media = new MediaRecords(sequelize);
    this.notices = new AccountNotices(sequelize);
  }

  /** A pool whose every wait is bounded by `timeoutMs` (see connectDatabase). */
  static connect(url: string, timeoutMs: number, o: DatabaseOptions = {}): Database {
    return new Database(connectDatabase(url, timeoutMs), o);
  }

  /** Opens a connection and checks it (start-up waits for Postgres with this). */
  async authenticate(): Promise<void> {
    await this.sequelize.authenticate();
  }

  /** The migrations of this build the database has not applied (none: the schema is current). */
  async pendingMigrations(): Promise<string[]> {
    return pendingMigrations(this.sequelize);
  }

  /** Applies pending migrations under the migration lock (MIGRATE_ON_START); returns those applied. */
  async migrate(): Promise<string[]> {
    return migrate(this.sequelize);
  }

  /** One round trip (readiness). */
  async ping(): Promise<void> {
    await this.sequelize.query('SELECT 1', { type: QueryTypes.SELECT });
  }

  /** Postgres NOTIFY through the pool (the cluster bus sends with it). */
  async notify(channel: string, payload: string): Promise<void> {
    await this.sequelize.query('SELECT pg_notify(:channel, :payload)', { replacements: { channel, payload }, type: QueryTypes.SELECT });
  }

  /** Connections open in the pool and requests waiting for one. */
  get poolUse(): { size: number; waiting: number } {
    const pool = (this.sequelize.connectionManager as unknown as { pool: { size: number; waiting: number } }).pool;
    return { size: pool.size, waiting: pool.waiting };
  }

  async close(): Promise<void> {
    await this.sequelize.close();
  }
}
