import { CreationOptional, DataTypes, InferAttributes, InferCreationAttributes, Model, ModelAttributes, Sequelize } from 'sequelize';
import { stringWidths } from './write-safety';

export type Direction = 'inbound' | 'outbound';
export type Outcome =
  | 'answered' | 'busy' | 'no_answer' | 'rejected' | 'unreachable' | 'caller_hangup' | 'failed';
export type HangupBy = 'whatsapp' | 'pbx' | 'bridge';
/** What kind of provider API a call went through (the provider account's kind; "meta-sip": Meta's native SIP). */
export type ProviderKind = 'ycloud' | 'meta' | 'meta-sip';
/** How SRTP was keyed on Meta's leg of a call in Meta's SIP mode. */
export type MetaSipSrtp = 'dtls' | 'sdes';

/*
 * The models' attributes. The classes are not exported as values: each CdrStore binds subclasses of its
 * own to its own Sequelize (defineModels), so two stores (two bridges) in one process never share one.
 * `CallRecord` and the others are exported as types: a row as read back.
 */
class CallRecordModel extends Model<InferAttributes<CallRecordModel>, InferCreationAttributes<CallRecordModel>> {
  declare id: string;
  declare direction: Direction;
  declare wacid: string | null;
  declare phone_id: CreationOptional<string | null>;
  declare business_number: CreationOptional<string | null>;
  declare customer_number: CreationOptional<string | null>;
  declare sip_call_id: CreationOptional<string | null>;
  declare pbx_target: CreationOptional<string | null>;
  declare agent: CreationOptional<string | null>;
  declare state: string;
  declare outcome: CreationOptional<Outcome | null>;
  declare hangup_by: CreationOptional<HangupBy | null>;
  declare sip_final_code: CreationOptional<number | null>;
  declare sip_final_reason: CreationOptional<string | null>;
  declare error: CreationOptional<string | null>;
  declare offered_at: Date;
  declare pre_accepted_at: CreationOptional<Date | null>;
  declare pbx_ringing_at: CreationOptional<Date | null>;
  declare pbx_answered_at: CreationOptional<Date | null>;
  declare accepted_at: CreationOptional<Date | null>;
  declare early_media_at: CreationOptional<Date | null>;
  declare ended_at: CreationOptional<Date | null>;
  declare talk_seconds: CreationOptional<string | null>;
  declare provider_duration: CreationOptional<number | null>;
  declare provider_status: CreationOptional<string | null>;
  declare provider_start_at: CreationOptional<Date | null>;
  declare provider_end_at: CreationOptional<Date | null>;
  declare wa_codec: CreationOptional<string | null>;
  declare pbx_codec: CreationOptional<string | null>;
  declare media_stats: CreationOptional<object | null>;
  declare node_id: CreationOptional<string | null>;
  /** What ending this call after a crash needs (see src/cluster/recovery.ts). */
  declare recovery: CreationOptional<object | null>;
  declare mos: CreationOptional<string | null>;
  declare packet_loss_pct: CreationOptional<string | null>;
  declare jitter_ms: CreationOptional<string | null>;
  declare rtt_ms: CreationOptional<string | null>;
  declare recording_path: CreationOptional<string | null>;
  declare recording_bytes: CreationOptional<string | null>;
  declare recording_seconds: CreationOptional<string | null>;
  declare recording_deleted_at: CreationOptional<Date | null>;
  /** The provider account the call went through (its webhook path name: "ycloud", "meta", "meta-eu"). */
  declare provider: CreationOptional<string | null>;
  declare provider_kind: CreationOptional<ProviderKind | null>;
  /** The business number's name in NUMBERS_FILE (or the single number's name). */
  declare number_name: CreationOptional<string | null>;
  /** The WhatsApp user's business-scoped user id (BSUID), profile name and username, when known. */
  declare user_id: CreationOptional<string | null>;
  declare profile_name: CreationOptional<string | null>;
  declare username: CreationOptional<string | null>;
  /** Which call button or deep link the user called from (Meta's cta_payload, deeplink_payload). */
  declare cta_payload: CreationOptional<string | null>;
  declare deeplink_payload: CreationOptional<string | null>;
  /** The agent's X-WhatsApp-Context, as the provider echoed it back (Meta's biz_opaque_callback_data). */
  declare context: CreationOptional<string | null>;
  /** The WhatsApp user's country, as Meta's SIP INVITE names it (x-wa-meta-country-code). */
  declare country_code: CreationOptional<string | null>;
  /** Meta's SIP mode: how SRTP was keyed on Meta's leg; null: the call went by the provider's API. */
  declare meta_sip_srtp: CreationOptional<MetaSipSrtp | null>;
  declare created_at: CreationOptional<Date>;
  declare updated_at: CreationOptional<Date>;
}

class CallEventModel extends Model<InferAttributes<CallEventModel>, InferCreationAttributes<CallEventModel>> {
  declare id: CreationOptional<string>;
  declare call_id: string;
  declare at: Date;
  declare type: string;
  declare detail: object | null;
}

class WebhookEventModel extends Model<InferAttributes<WebhookEventModel>, InferCreationAttributes<WebhookEventModel>> {
  declare id: string;
  declare type: string;
  declare wacid: string | null;
  declare received_at: Date;
  declare processed_at: CreationOptional<Date | null>;
  declare error: CreationOptional<string | null>;
  declare payload: object;
  /** The provider account whose webhook source decodes this event. */
  declare provider: CreationOptional<string>;
}

const str = (n: number) => ({ type: DataTypes.STRING(n) });
const date = () => ({ type: DataTypes.DATE });

export type CallRecord = CallRecordModel;
export type CallEvent = CallEventModel;
export type WebhookEventRecord = WebhookEventModel;

/** A call row's fields as written (all but the key and the timestamps Sequelize keeps). */
export type CallFields = Partial<Omit<InferAttributes<CallRecord>, 'id' | 'created_at' | 'updated_at'>>;

/** What creating a call row needs. */
export type NewCall = CallFields & Pick<CallRecord, 'direction' | 'state' | 'offered_at'>;

/** The models of one Sequelize instance (one CdrStore). */
export interface CdrModels {
  CallRecord: typeof CallRecordModel;
  CallEvent: typeof CallEventModel;
  WebhookEventRecord: typeof WebhookEventModel;
}

// Fresh definitions each time: Sequelize writes into attribute definitions.
const callColumns = (): ModelAttributes<CallRecordModel> => ({
  id: { type: DataTypes.UUID, primaryKey: true },
  direction: { type: DataTypes.STRING(8), allowNull: false },
  wacid: str(255),
  phone_id: str(64),
  business_number: str(32),
  // The user's address: E.164, or the BSUID when no number is known.
  customer_number: str(160),
  sip_call_id: str(255),
  pbx_target: str(255),
  agent: str(255),
  state: { type: DataTypes.STRING(24), allowNull: false },
  outcome: str(24),
  hangup_by: str(16),
  sip_final_code: { type: DataTypes.INTEGER },
  sip_final_reason: str(255),
  error: { type: DataTypes.TEXT },
  offered_at: { type: DataTypes.DATE, allowNull: false },
  pre_accepted_at: date(),
  pbx_ringing_at: date(),
  pbx_answered_at: date(),
  accepted_at: date(),
  early_media_at: date(),
  ended_at: date(),
  talk_seconds: { type: DataTypes.DECIMAL(10, 3) },
  provider_duration: { type: DataTypes.INTEGER },
  provider_status: str(24),
  provider_start_at: date(),
  provider_end_at: date(),
  wa_codec: str(32),
  pbx_codec: str(32),
  media_stats: { type: DataTypes.JSONB },
  node_id: str(128),
  recovery: { type: DataTypes.JSONB },
  mos: { type: DataTypes.DECIMAL(3, 2) },
  packet_loss_pct: { type: DataTypes.DECIMAL(5, 2) },
  jitter_ms: { type: DataTypes.DECIMAL(8, 2) },
  rtt_ms: { type: DataTypes.DECIMAL(8, 2) },
  recording_path: str(1024),
  recording_bytes: { type: DataTypes.BIGINT },
  recording_seconds: { type: DataTypes.DECIMAL(10, 3) },
  recording_deleted_at: date(),
  provider: str(64),
  provider_kind: str(16),
  number_name: str(64),
  user_id: str(160),
  profile_name: str(255),
  username: str(100),
  cta_payload: str(512),
  deeplink_payload: str(512),
  context: str(512),
  country_code: str(16),
  meta_sip_srtp: str(8),
  created_at: date(),
  updated_at: date(),
});

const eventColumns = (): ModelAttributes<CallEventModel> => ({
  id: { type: DataTypes.BIGINT, autoIncrement: true, primaryKey: true },
  call_id: { type: DataTypes.UUID, allowNull: false },
  at: { type: DataTypes.DATE, allowNull: false },
  type: { type: DataTypes.STRING(48), allowNull: false },
  detail: { type: DataTypes.JSONB },
});

const webhookColumns = (): ModelAttributes<WebhookEventModel> => ({
  id: { type: DataTypes.STRING(200), primaryKey: true },
  type: { type: DataTypes.STRING(100), allowNull: false },
  wacid: str(255),
  received_at: { type: DataTypes.DATE, allowNull: false },
  processed_at: date(),
  error: { type: DataTypes.TEXT },
  payload: { type: DataTypes.JSONB, allowNull: false },
  provider: { type: DataTypes.STRING(64), allowNull: false, defaultValue: 'ycloud' },
});

/**
 * Model classes bound to `sequelize` alone: subclasses made for this call, so binding a second
 * Sequelize (a second store, a second bridge in one process) leaves the first one's untouched.
 */
export function defineModels(sequelize: Sequelize): CdrModels {
  class CallRecord extends CallRecordModel {}
  class CallEvent extends CallEventModel {}
  class WebhookEventRecord extends WebhookEventModel {}
  CallRecord.init(callColumns(), { sequelize, modelName: 'CallRecord', tableName: 'calls', underscored: true, timestamps: true, createdAt: 'created_at', updatedAt: 'updated_at' });
  CallEvent.init(eventColumns(), { sequelize, modelName: 'CallEvent', tableName: 'call_events', timestamps: false });
  WebhookEventRecord.init(webhookColumns(), { sequelize, modelName: 'WebhookEventRecord', tableName: 'webhook_events', timestamps: false });
  return { CallRecord, CallEvent, WebhookEventRecord };
}

/** Each string column's width (VARCHAR(n)), read from the definitions: no Sequelize instance needed. */
export const CALL_WIDTHS = stringWidths(callColumns());
export const EVENT_WIDTHS = stringWidths(eventColumns());
