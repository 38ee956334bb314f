/**
 * The CDR columns the reporting API returns, in one fixed order (JSON objects and CSV columns alike).
 * DECIMAL and BIGINT columns are read as float8, so they reach JSON as numbers, not strings.
 */

/** One call as the list, the export and the detail view return it (timestamps are UTC instants). */
export interface CallRow {
  id: string;
  direction: string;
  wacid: string | null;
  phone_id: string | null;
  business_number: string | null;
  customer_number: string | null;
  sip_call_id: string | null;
  pbx_target: string | null;
  agent: string | null;
  state: string;
  outcome: string | null;
  hangup_by: string | null;
  sip_final_code: number | null;
  sip_final_reason: string | null;
  error: string | null;
  offered_at: Date;
  pre_accepted_at: Date | null;
  pbx_ringing_at: Date | null;
  pbx_answered_at: Date | null;
  accepted_at: Date | null;
  early_media_at: Date | null;
  ended_at: Date | null;
  talk_seconds: number | null;
  provider_duration: number | null;
  provider_status: string | null;
  provider_start_at: Date | null;
  provider_end_at: Date | null;
  wa_codec: string | null;
  pbx_codec: string | null;
  node_id: string | null;
  mos: number | null;
  packet_loss_pct: number | null;
  jitter_ms: number | null;
  rtt_ms: number | null;
  recording_path: string | null;
  recording_bytes: number | null;
  recording_seconds: number | null;
  recording_deleted_at: Date | null;
  created_at: Date;
  updated_at: Date;
  provider: string | null;
  provider_kind: string | null;
  number_name: string | null;
  user_id: string | null;
  profile_name: string | null;
  username: string | null;
  cta_payload: string | null;
  deeplink_payload: string | null;
  context: string | null;
  country_code: string | null;
  meta_sip_srtp: string | null;
}

/** The detail view adds rtpengine's per-leg statistics (the media_stats JSONB column). */
export interface CallDetailRow extends CallRow {
  media_stats: Record<string, unknown> | null;
}

export type ColumnKind = 'text' | 'int' | 'number' | 'time';
export interface Column { name: keyof CallRow; kind: ColumnKind }

const col = (name: keyof CallRow, kind: ColumnKind = 'text'): Column => ({ name, kind });

/** Every column of a listed call, in CSV order. */
export const CALL_COLUMNS: readonly Column[] = [
  col('id'), col('direction'), col('wacid'), col('phone_id'), col('business_number'), col('customer_number'),
  col('sip_call_id'), col('pbx_target'), col('agent'), col('state'), col('outcome'), col('hangup_by'),
  col('sip_final_code', 'int'), col('sip_final_reason'), col('error'),
  col('offered_at', 'time'), col('pre_accepted_at', 'time'), col('pbx_ringing_at', 'time'), col('pbx_answered_at', 'time'),
  col('accepted_at', 'time'), col('early_media_at', 'time'), col('ended_at', 'time'),
  col('talk_seconds', 'number'), col('provider_duration', 'int'), col('provider_status'),
  col('provider_start_at', 'time'), col('provider_end_at', 'time'), col('wa_codec'), col('pbx_codec'), col('node_id'),
  col('mos', 'number'), col('packet_loss_pct', 'number'), col('jitter_ms', 'number'), col('rtt_ms', 'number'),
  col('recording_path'), col('recording_bytes', 'number'), col('recording_seconds', 'number'), col('recording_deleted_at', 'time'),
  col('created_at', 'time'), col('updated_at', 'time'),
  // Issue 19, after the earlier columns so a CSV reader that counts columns keeps working.
  col('provider'), col('provider_kind'), col('number_name'), col('user_id'), col('profile_name'), col('username'),
  col('cta_payload'), col('deeplink_payload'), col('context'),
  // Issue 20 (Meta's native SIP), after those for the same reason.
  col('country_code'), col('meta_sip_srtp'),
];

/**
 * What a reporting (read-only) token sees of a call: every column but recording_path, the file's
 * place on the bridge's host (GET /api/calls/{id}/recording serves the file itself). The admin token
 * sees every column.
 */
export const REPORTING_COLUMNS: readonly Column[] = CALL_COLUMNS.filter((c) => c.name !== 'recording_path');

/** A row without recording_path, for a reporting token. */
export function withoutRecordingPath<T extends CallRow>(row: T): Omit<T, 'recording_path'> {
  const { recording_path: _hidden, ...rest } = row;
  return rest;
}

/** The SELECT list for CALL_COLUMNS. */
export function selectList(columns: readonly Column[] = CALL_COLUMNS): string {
  return columns.map((c) => (c.kind === 'number' ? `"${c.name}"::float8 AS "${c.name}"` : `"${c.name}"`)).join(', ');
}
