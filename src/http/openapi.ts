import Router from '@koa/router';
import type { InferAttributes } from 'sequelize';
import type { CallState } from '../calls/lifecycle';
import type { CallRecord, Direction, HangupBy, Outcome } from '../cdr/models';
import type { CallDetailRow, CallRow } from '../reports/columns';
import type { CallDetail, CallMediaEntry, SummaryFigures, SummaryGroup, SummaryReport, TimelineEntry } from '../reports/store';
import type { LiveCallJson } from './calls-api';
import type { NumberSummary } from '../numbers';

/**
 * The OpenAPI 3.1 description of the bridge's HTTP interface: the admin and reporting API under /api,
 * health and readiness, Prometheus metrics and YCloud's webhook endpoint. Served (without auth) at
 * GET /api/openapi.json. test/openapi.test.ts keeps it true: every route the real Koa app registers is
 * described here and nothing else is, the document is structurally valid OpenAPI 3.1, and every GET
 * against a started bridge answers with a documented status and a body matching its schema.
 *
 * Schemas are JSON Schema 2020-12 (OpenAPI 3.1's dialect): a nullable value is `type: [T, 'null']`.
 * The record schemas are typed against the code that writes the answers (CallRow and CallDetailRow of
 * src/reports/columns.ts, the summary and timeline types of src/reports/store.ts, LiveCallJson, the
 * enums), and CallDetailRow against the calls table's columns: a field added there without being
 * described here, or a column the API stops returning, does not compile.
 */

/** A JSON Schema (2020-12) object. */
export type Schema = { [key: string]: unknown };

export interface Parameter {
  name: string;
  in: 'query' | 'path' | 'header';
  required?: boolean;
  description: string;
  schema: Schema;
  example?: unknown;
  style?: string;
  explode?: boolean;
}

export interface MediaType { schema: Schema; example?: unknown }
export interface Response { description: string; content?: Record<string, MediaType>; headers?: Record<string, { description: string; schema: Schema }> }
export type Ref = { $ref: string };

export interface Operation {
  operationId: string;
  summary: string;
  description?: string;
  tags: string[];
  security?: Array<Record<string, string[]>>;
  parameters?: Array<Parameter | Ref>;
  requestBody?: { required: boolean; description?: string; content: Record<string, MediaType> };
  responses: Record<string, Response | Ref>;
}

export type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';
export type PathItem = { parameters?: Array<Parameter | Ref> } & { [M in Method]?: Operation };

export interface OpenApiDocument {
  openapi: '3.1.0';
  jsonSchemaDialect: string;
  info: { title: string; version: string; description: string; license: { name: string; identifier: string } };
  tags: Array<{ name: string; description: string }>;
  security: Array<Record<string, string[]>>;
  paths: Record<string, PathItem>;
  components: {
    securitySchemes: Record<string, { type: 'http'; scheme: 'bearer'; description: string }>;
    schemas: Record<string, Schema>;
    parameters: Record<string, Parameter>;
    responses: Record<string, Response>;
  };
}

// ---------------------------------------------------------------------------------------------------
// Enums, checked against the code's unions: a value added there and not here fails to compile.

/** Fails to compile unless `Listed` covers every member of `Union`. */
type Exhaustive<Union, Listed> = [Exclude<Union, Listed>] extends [never] ? true : { missing: Exclude<Union, Listed> };
const exhaustive = <U, L>(_: Exhaustive<U, L>): void => undefined;

const DIRECTIONS = ['inbound', 'outbound'] as const satisfies readonly Direction[];
const OUTCOMES = ['answered', 'busy', 'no_answer', 'rejected', 'unreachable', 'caller_hangup', 'failed'] as const satisfies readonly Outcome[];
const HANGUP_BY = ['whatsapp', 'pbx', 'bridge'] as const satisfies readonly HangupBy[];
const CALL_STATES = [
  'offered', 'pre_accepted', 'connecting', 'ringing', 'early_media', 'answered', 'accepted', 'held', 'transferring', 'ended',
] as const satisfies readonly CallState[];
exhaustive<Direction, (typeof DIRECTIONS)[number]>(true);
exhaustive<Outcome, (typeof OUTCOMES)[number]>(true);
exhaustive<HangupBy, (typeof HANGUP_BY)[number]>(true);
exhaustive<CallState, (typeof CALL_STATES)[number]>(true);
const GROUP_BY = ['hour', 'day', 'agent', 'business_number'] as const satisfies readonly SummaryReport['group_by'][];
exhaustive<SummaryReport['group_by'], (typeof GROUP_BY)[number]>(true);

// ---------------------------------------------------------------------------------------------------
// Small builders.

const ref = (name: string): Ref => ({ $ref: `#/components/schemas/${name}` });
const param = (name: string): Ref => ({ $ref: `#/components/parameters/${name}` });
const resp = (name: string): Ref => ({ $ref: `#/components/responses/${name}` });
const nullable = (s: Schema): Schema => ({ ...s, type: [s.type as string, 'null'] });
const str = (description: string, extra: Schema = {}): Schema => ({ type: 'string', description, ...extra });
const nstr = (description: string, extra: Schema = {}): Schema => nullable(str(description, extra));
const ntime = (description: string): Schema => nstr(description, { format: 'date-time' });
const nnum = (description: string, extra: Schema = {}): Schema => nullable({ type: 'number', description, ...extra });
const nint = (description: string, extra: Schema = {}): Schema => nullable({ type: 'integer', description, ...extra });
const E164 = '^\\+[1-9][0-9]{6,14}$';
/** A BSUID (src/calls/call-events.ts). */
const BSUID_PATTERN = '^[A-Z]{2}\\.(ENT\\.)?[A-Za-z0-9]{1,128}$';
/** An ISO 8601 date, or date and time with an optional fraction (to microseconds) and UTC offset. */
const ISO_TIME = '^[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}(:?[0-9]{2})?)?)?$';
const UUID = { type: 'string', format: 'uuid' } as const;

const json = (description: string, schema: Schema | Ref, example?: unknown): Response => ({
  description,
  content: { 'application/json': { schema: schema as Schema, ...(example === undefined ? {} : { example }) } },
});

/** Who may call an operation: the admin token only, or also a read-only reporting token. */
type Security = Array<Record<string, string[]>>;
const ADMIN_ONLY: Security = [{ adminToken: [] }];
const READABLE: Security = [{ adminToken: [] }, { reportingToken: [] }];
const PUBLIC: Security = [];

/** The answers every /api operation can give before it runs: no token configured, bad token. */
const authResponses = (reporting: boolean): Record<string, Ref> => ({
  '401': resp('Unauthorized'),
  ...(reporting ? {} : { '403': resp('Forbidden') }),
  '404': resp('ApiDisabled'),
});

// ---------------------------------------------------------------------------------------------------
// Record schemas, typed against the code.

/** Every column of the calls table (src/cdr/models.ts) is in the detail view, but `recovery` (internal: how to end an orphaned call). */
exhaustive<Exclude<keyof InferAttributes<CallRecord>, 'recovery'>, keyof CallDetailRow>(true);

/** One property per field of a listed call (CallRow: every column but media_stats). */
const CALL_FIELDS: { [K in keyof CallRow]: Schema } = {
  id: { ...UUID, description: "The bridge's call id (also the recording's file name)." },
  direction: { type: 'string', enum: [...DIRECTIONS], description: 'inbound: a WhatsApp user called the business; outbound: an agent called a WhatsApp user.' },
  wacid: nstr("YCloud's/WhatsApp's call id; null until YCloud has named an agent's call."),
  phone_id: nstr("The business number's WhatsApp phone number id."),
  business_number: nstr('The WhatsApp business number (E.164).'),
  customer_number: nstr("The WhatsApp user's address: their number (E.164), or their WhatsApp user id (BSUID, see user_id) when no number is known.", { maxLength: 160 }),
  sip_call_id: nstr("The PBX leg's SIP Call-ID."),
  pbx_target: nstr('The PBX SIP URI the call went to (inbound) or came from (outbound).'),
  agent: nstr('Who answered on the PBX (or placed an outbound call): the user part of the answering Contact/From; after a transfer, the new answerer.'),
  state: { type: 'string', enum: [...CALL_STATES], description: 'The call state (src/calls/lifecycle.ts); ended once the record is final.' },
  outcome: { type: ['string', 'null'], enum: [...OUTCOMES, null], description: 'How the call ended; null while it is in progress.' },
  hangup_by: { type: ['string', 'null'], enum: [...HANGUP_BY, null], description: 'Which side ended the call.' },
  sip_final_code: nint('The final SIP status of the PBX leg (200 for an answered call).', { minimum: 100, maximum: 699 }),
  sip_final_reason: nstr('The reason phrase of that final status.'),
  error: nstr('What went wrong, for outcome failed (and some unreachable calls).'),
  offered_at: str('When the call was offered: the connect webhook (inbound) or the agent\'s INVITE (outbound).', { format: 'date-time' }),
  pre_accepted_at: ntime('Inbound: when the WhatsApp leg was pre-accepted.'),
  pbx_ringing_at: ntime('When the far end started ringing (PBX 18x inbound; RINGING webhook outbound).'),
  pbx_answered_at: ntime('When the PBX answered (inbound) or the bridge answered the agent (outbound).'),
  accepted_at: ntime('When both legs were up (WhatsApp accepted); the wait before answer is accepted_at - offered_at.'),
  early_media_at: ntime('Inbound with PBX_EARLY_MEDIA=accept: when the WhatsApp call was accepted on the PBX\'s early media.'),
  ended_at: ntime('When the call ended.'),
  talk_seconds: nnum('Seconds from accepted_at to ended_at; null for a call never accepted.', { minimum: 0 }),
  provider_duration: nint('The duration YCloud reported in its terminate webhook (s).'),
  provider_status: nstr('The status YCloud reported in its terminate webhook (e.g. COMPLETED, FAILED).'),
  provider_start_at: ntime('The start time YCloud reported.'),
  provider_end_at: ntime('The end time YCloud reported.'),
  wa_codec: nstr('The codec on the WhatsApp leg (opus).'),
  pbx_codec: nstr('The codec on the PBX leg (PCMU, PCMA, G722).'),
  node_id: nstr('The bridge instance that handled the call (NODE_ID).'),
  mos: nnum("Estimated MOS of the worst leg (1-5), from rtpengine's statistics; null without media statistics.", { minimum: 1, maximum: 5 }),
  packet_loss_pct: nnum('Packet loss of the worst leg, in percent.', { minimum: 0, maximum: 100 }),
  jitter_ms: nnum('Jitter of the worst leg, in milliseconds.', { minimum: 0 }),
  rtt_ms: nnum('Round-trip time of the worst leg, in milliseconds.', { minimum: 0 }),
  recording_path: nstr("The recording's file on the bridge's host (RECORDING=all). Admin token only: absent for a reporting token, which fetches the file with GET /api/calls/{id}/recording."),
  recording_bytes: nint("The recording's size in bytes.", { minimum: 0 }),
  recording_seconds: nnum("The recording's length in seconds.", { minimum: 0 }),
  recording_deleted_at: ntime('When the retention sweep (RECORDING_RETENTION_DAYS) deleted the recording file.'),
  created_at: str('When the record was created.', { format: 'date-time' }),
  updated_at: str('When the record was last written.', { format: 'date-time' }),
  provider: nstr('The provider account the call went through: its webhook path name (ycloud, meta, or a name from NUMBERS_FILE).'),
  provider_kind: {
    type: ['string', 'null'], enum: ['ycloud', 'meta', 'meta-sip', null],
    description: "The provider's API: YCloud's, Meta's Cloud API (directly or through a provider that passes it through), or Meta's native SIP (meta-sip).",
  },
  number_name: nstr("The business number's name (NUMBERS_FILE)."),
  user_id: nstr("The WhatsApp user's business-scoped user id (BSUID, e.g. US.13491208655302741918), when the provider gave it.", { maxLength: 160 }),
  profile_name: nstr("The WhatsApp user's profile name (the SIP display name toward the PBX)."),
  username: nstr("The WhatsApp user's username (without @), when they have one."),
  cta_payload: nstr('The call button (CTA) the user called from (Meta cta_payload).'),
  deeplink_payload: nstr('The deep link the user called from (Meta deeplink_payload).'),
  context: nstr("What the agent's INVITE gave in X-WhatsApp-Context, echoed back by the provider (Meta biz_opaque_callback_data).", { maxLength: 512 }),
  country_code: nstr("The WhatsApp user's country, as Meta's SIP INVITE names it (x-wa-meta-country-code).", { maxLength: 16 }),
  meta_sip_srtp: { type: ['string', 'null'], enum: ['dtls', 'sdes', null], description: "Meta's native SIP: how SRTP was keyed on Meta's leg; null: the call went by the provider's API." },
};

const MEDIA_FIELDS: { [K in keyof CallMediaEntry]: Schema } = {
  id: { type: 'integer', minimum: 1, description: "The file's id (GET /api/calls/{id}/media/{mediaId})." },
  kind: { type: 'string', enum: ['recording', 'transcription', 'voicemail'], description: "What WhatsApp made: the call's recording or transcription, or a voicemail left after a missed call." },
  media_id: str("The provider's media id."),
  mime_type: nstr('The type the provider gave.'),
  sha256: nstr("The file's SHA-256 as the provider gave it (checked when the file was fetched)."),
  bytes: nint('Its size in bytes, once fetched.', { minimum: 0 }),
  received_at: str('When the webhook announced it.', { format: 'date-time' }),
  fetched_at: ntime('When it was fetched into RECORDING_DIR.'),
  deleted_at: ntime('When the retention sweep (RECORDING_RETENTION_DAYS) deleted the file.'),
  error: nstr('Why it could not be fetched (the download window is short).'),
  url: nstr('Where this API serves the file; null while it is not on disk.'),
};

/** The fields every token gets: all but recording_path, which a reporting token does not see. */
const withoutAdminOnly = (fields: Record<string, Schema>): string[] => Object.keys(fields).filter((k) => k !== 'recording_path');

const MEDIA_STATS: Schema = {
  type: ['object', 'null'],
  description: "rtpengine's statistics at the end of the call, per leg (packets, bytes, loss, jitter, RTT, MOS).",
  additionalProperties: true,
};
const CALL_DETAIL_FIELDS: { [K in keyof CallDetailRow]: Schema } = { ...CALL_FIELDS, media_stats: MEDIA_STATS };

const TIMELINE_FIELDS: { [K in keyof TimelineEntry]: Schema } = {
  at: str('When it happened.', { format: 'date-time' }),
  type: str('What happened (state changes, pbx_hold, dtmf, transferred, ...).'),
  detail: { type: ['object', 'null'], additionalProperties: true, description: 'Event-specific detail.' },
};

const LIVE_CALL_FIELDS: { [K in keyof LiveCallJson]: Schema } = {
  id: { ...UUID, description: "The bridge's call id." },
  direction: { type: 'string', enum: [...DIRECTIONS] },
  wacid: nstr("YCloud's call id; null for an agent's call YCloud has not named yet."),
  state: { type: 'string', enum: [...CALL_STATES] },
  customer_number: nstr("The WhatsApp user's number (E.164)."),
  business_number: nstr('The WhatsApp business number (E.164).'),
  agent: nstr('The agent on the PBX leg, once known.'),
  sip_call_id: nstr("The PBX leg's SIP Call-ID, once known."),
  started_at: str('When the call was offered.', { format: 'date-time' }),
  duration_seconds: { type: 'number', minimum: 0, description: 'Seconds since the call was offered.' },
  talk_seconds: nnum('Seconds since both legs were connected; null before.', { minimum: 0 }),
};

const objectOf = (properties: Record<string, Schema>, description: string, extra: Schema = {}): Schema => ({
  type: 'object',
  description,
  required: Object.keys(properties),
  properties,
  additionalProperties: false,
  ...extra,
});

const SUMMARY_FIGURES: { [K in keyof SummaryFigures]: Schema } = {
  offered: { type: 'integer', minimum: 0, description: 'Calls offered (every call that started in the range).' },
  answered: { type: 'integer', minimum: 0, description: 'Calls with outcome answered.' },
  missed: { type: 'integer', minimum: 0, description: 'Inbound calls that ended with any other outcome (outbound calls are never missed; calls in progress are only offered).' },
  answer_rate: nnum('answered / offered (0-1); null when nothing was offered.', { minimum: 0, maximum: 1 }),
  talk_seconds_total: { type: 'number', minimum: 0, description: 'Sum of talk_seconds of the answered calls.' },
  talk_seconds_avg: nnum('Average talk_seconds of the answered calls; null without any.', { minimum: 0 }),
  wait_seconds_avg: nnum('Average wait before answer (accepted_at - offered_at) of the answered calls.', { minimum: 0 }),
  wait_seconds_p90: nnum('90th percentile of that wait (interpolated, as percentile_cont).', { minimum: 0 }),
  abandoned: { type: 'integer', minimum: 0, description: 'Inbound calls the caller hung up while they rang (outcome caller_hangup).' },
};

const errorSchema: Schema = {
  type: 'object',
  description: 'Every error answer. `field` names the query parameter or body field that was refused.',
  required: ['error'],
  properties: {
    error: { type: 'string', description: 'What was wrong, for a human.' },
    field: { type: 'string', description: 'The parameter or field that was refused (400).' },
    code: { type: ['string', 'null'], description: "YCloud's error code, when the error came from YCloud." },
    whatsappCode: { type: ['integer', 'null'], description: "Meta's error code, when YCloud passed one through." },
  },
  additionalProperties: false,
};

// ---------------------------------------------------------------------------------------------------
// Parameters.

const q = (name: string, description: string, schema: Schema, extra: Partial<Parameter> = {}): Parameter => ({ name, in: 'query', description, schema, ...extra });

const parameters: Record<string, Parameter> = {
  CallId: { name: 'id', in: 'path', required: true, description: "The call's id (a UUID); anything else gets 400.", schema: UUID, example: '3f1c3a52-6f0e-4d0c-9b7f-0b6f3f7a9c21' },
  From: q('from', 'Start of the range (inclusive): offered_at >= from. ISO 8601: 2026-11-24, 2026-11-24T08:00, 2026-11-24T08:00:00.123+07:00; without an offset it is UTC.',
    { type: 'string', pattern: ISO_TIME }, { example: '2025-11-24T00:00:00Z' }),
  To: q('to', 'End of the range (exclusive): offered_at < to; later than from. ISO 8601 as for from.', { type: 'string', pattern: ISO_TIME }, { example: '2025-11-25T00:00:00Z' }),
  Direction: q('direction', 'Only calls of this direction.', { type: 'string', enum: [...DIRECTIONS] }),
};
const onlyTrue: Schema = { type: 'boolean', enum: [true], description: 'Only "true" is accepted; leave the parameter out for no condition.' };

const listFilters: Array<Parameter | Ref> = [
  param('From'),
  param('To'),
  param('Direction'),
  q('outcome', `Only calls with one of these outcomes, comma-separated (${OUTCOMES.join(', ')}).`,
    { type: 'array', items: { type: 'string', enum: [...OUTCOMES] }, minItems: 1, uniqueItems: true },
    { style: 'form', explode: false, example: ['no_answer', 'busy'] }),
  q('customer', "Only calls with this WhatsApp user's address: their number (E.164), or their BSUID for users known without one.",
    { type: 'string', anyOf: [{ pattern: E164 }, { pattern: BSUID_PATTERN }] }),
  q('business', 'Only calls on this business number (E.164).', { type: 'string', pattern: E164 }),
  q('agent', 'Only calls answered (or placed) by this agent.', { type: 'string', maxLength: 255 }),
  q('pbx_target', 'Only calls to/from this PBX SIP URI.', { type: 'string', maxLength: 255 }),
  q('state', 'Only calls in this state (e.g. ringing, for calls still in progress).', { type: 'string', enum: [...CALL_STATES] }),
  q('mos_below', 'Only calls whose estimated MOS is below this (calls without quality figures are left out).', { type: 'number', minimum: 1, maximum: 5 }),
  q('poor_quality', 'true: only calls whose MOS is below CALL_QUALITY_MOS_THRESHOLD (with mos_below, the lower of the two).', onlyTrue),
  q('recorded', 'true: only calls with a recording that has not been deleted.', onlyTrue),
  q('user_id', "Only calls with this WhatsApp user id (BSUID).", { type: 'string', pattern: BSUID_PATTERN }),
  q('username', 'Only calls with this WhatsApp username (with or without @, any case).', { type: 'string', minLength: 1, maxLength: 101 }),
  q('profile_name', 'Only calls whose profile name contains this (any case). Give a time range with it: no index serves a substring.', { type: 'string', maxLength: 100 }),
  q('provider', 'Only calls through this provider account (ycloud, meta, or a name from NUMBERS_FILE).', { type: 'string', maxLength: 64 }),
  q('number_name', "Only calls on the business number of this name (NUMBERS_FILE).", { type: 'string', maxLength: 64 }),
  q('cta_payload', 'Only calls placed from the call button with this payload.', { type: 'string', maxLength: 512 }),
  q('limit', 'Page size.', { type: 'integer', minimum: 1, maximum: 1000, default: 100 }),
  q('cursor', 'The next_cursor of the previous page, unchanged (opaque). Pages run newest first, by (offered_at, id). Not with CSV.', { type: 'string', pattern: '^[A-Za-z0-9_-]{1,120}$' }),
  q('format', 'json or csv; without it, the Accept header decides (text/csv preferred: CSV).', { type: 'string', enum: ['json', 'csv'] }),
];

// ---------------------------------------------------------------------------------------------------
// The document.

export const openApiDocument: OpenApiDocument = {
  openapi: '3.1.0',
  jsonSchemaDialect: 'https://spec.openapis.org/oas/3.1/dialect/base',
  info: {
    title: 'wa-sip-bridge',
    version: '1.0.0',
    description: [
      'The HTTP interface of wa-sip-bridge (WhatsApp Business Calling via YCloud <-> SIP PBX).',
      '',
      '**Auth.** Everything under /api (except this document) takes `Authorization: Bearer <token>`: ADMIN_API_TOKEN may do',
      'everything; an entry of REPORTING_API_TOKENS may only read calls and reports (GET /api/calls*, /api/reports/*) and gets',
      '403 elsewhere. A missing or wrong token gets 401; with no token configured at all, /api answers 404.',
      '',
      '**Errors** are `{"error": "...", "field": "..."}`; an invalid, unknown or repeated query parameter gets 400 naming it in',
      '`field`. A `+` in a query string must be sent as `%2B` (E.164 numbers).',
    ].join('\n'),
    license: { name: 'MIT', identifier: 'MIT' },
  },
  tags: [
    { name: 'calls', description: 'Call detail records, live calls, recordings.' },
    { name: 'reports', description: 'Summary statistics over the call records.' },
    { name: 'permissions', description: 'WhatsApp call permissions (requests and the users\' replies).' },
    { name: 'settings', description: "The business number's calling settings at YCloud." },
    { name: 'numbers', description: 'The business numbers this bridge serves (NUMBERS_FILE, or the environment\'s one): docs/numbers.md.' },
    { name: 'operations', description: 'Health, readiness, metrics, this document.' },
    { name: 'webhooks', description: "YCloud's webhooks." },
  ],
  security: ADMIN_ONLY,
  paths: {
    '/api/openapi.json': {
      get: {
        operationId: 'getOpenApi',
        summary: 'This document',
        tags: ['operations'],
        security: PUBLIC,
        responses: { '200': json('The OpenAPI 3.1 description of this API.', { type: 'object', required: ['openapi', 'paths'], properties: { openapi: { type: 'string', const: '3.1.0' }, paths: { type: 'object' } } }) },
      },
    },

    '/api/calls': {
      get: {
        operationId: 'listCalls',
        summary: 'List call detail records (filters, keyset pagination, CSV export)',
        description: [
          'Calls offered in [from, to), newest first, `limit` at a time; pass `next_cursor` back as `cursor` for the next page',
          '(null on the last). With `Accept: text/csv` or `format=csv` every matching call is streamed as CSV (a header row with',
          'the columns of Call, then one row per call, fetched in batches), so a month of calls exports without being held in',
          'memory; limit and cursor are refused there. Unknown or repeated parameters get 400.',
        ].join('\n'),
        tags: ['calls'],
        security: READABLE,
        parameters: listFilters,
        responses: {
          '200': {
            description: 'A page of calls (JSON), or every matching call (CSV, as an attachment calls_<from>_<to>.csv).',
            content: {
              'application/json': { schema: ref('CallPage') },
              'text/csv': { schema: { type: 'string', description: 'RFC 4180 CSV (CRLF) with a header row: the Call fields, timestamps in ISO 8601 UTC, NULL as an empty field; a text field starting with = + - @, a tab or a CR (but a plain number) has a single quote in front.' } },
            },
          },
          '400': resp('BadRequest'),
          ...authResponses(true),
          '429': resp('TooManyReports'),
          '503': resp('DatabaseBusy'),
        },
      },
    },

    '/api/calls/live': {
      get: {
        operationId: 'listLiveCalls',
        summary: 'Calls in progress on this bridge, with their state and duration',
        tags: ['calls'],
        security: READABLE,
        responses: {
          '200': json('The calls in progress (none: an empty list).', objectOf({ calls: { type: 'array', items: ref('LiveCall') } }, 'Calls in progress.')),
          '400': resp('BadRequest'),
          ...authResponses(true),
        },
      },
    },

    '/api/calls/{id}': {
      parameters: [param('CallId')],
      get: {
        operationId: 'getCall',
        summary: 'One call: its record, event timeline and media statistics',
        tags: ['calls'],
        security: READABLE,
        responses: {
          '200': json('The call (every column, media_stats included) and its timeline, oldest first.', ref('CallDetail')),
          '400': resp('BadRequest'),
          ...authResponses(true),
          '404': json('No such call (or, with no token configured, the API is off).', ref('Error')),
          '429': resp('TooManyReports'),
          '503': resp('DatabaseBusy'),
        },
      },
    },

    '/api/calls/{id}/hangup': {
      parameters: [param('CallId')],
      post: {
        operationId: 'hangupCall',
        summary: 'End a call in progress from the bridge (both legs)',
        tags: ['calls'],
        security: ADMIN_ONLY,
        responses: {
          '200': json('The call is being ended.', objectOf({ ended: { type: 'boolean', const: true } }, 'Hangup started.')),
          '400': resp('BadRequest'),
          ...authResponses(false),
          '404': json('No such call in progress on this bridge (or the API is off).', ref('Error')),
        },
      },
    },

    '/api/calls/{id}/recording': {
      parameters: [param('CallId')],
      get: {
        operationId: 'getCallRecording',
        summary: "The call's recording (RECORDING=all)",
        tags: ['calls'],
        security: READABLE,
        responses: {
          '200': {
            description: 'The recording file (served only from RECORDING_DIR), with its length; the type follows its extension (WAV as the recording daemon writes it).',
            content: Object.fromEntries(['audio/wav', 'audio/mpeg', 'audio/ogg', 'application/vnd.tcpdump.pcap', 'application/octet-stream']
              .map((t) => [t, { schema: { type: 'string', contentMediaType: t } }])),
          },
          '400': resp('BadRequest'),
          ...authResponses(true),
          '404': json('No such call, the call was not recorded, or its file is gone (retention).', ref('Error')),
          '429': resp('TooManyReports'),
          '503': resp('DatabaseBusy'),
        },
      },
    },

    '/api/calls/{id}/media/{mediaId}': {
      parameters: [param('CallId'), { name: 'mediaId', in: 'path', required: true, description: "The file's id in the call's media list (GET /api/calls/{id}).", schema: { type: 'integer', minimum: 1 }, example: 1 }],
      get: {
        operationId: 'getCallMedia',
        summary: "A file WhatsApp made of the call: its recording, transcription or voicemail",
        tags: ['calls'],
        security: READABLE,
        responses: {
          '200': {
            description: 'The file (served only from RECORDING_DIR), with its length, as the type the provider gave when that is audio, plain text or JSON (else application/octet-stream).',
            content: Object.fromEntries(['audio/ogg', 'audio/mpeg', 'audio/mp4', 'text/plain', 'application/json', 'application/octet-stream']
              .map((t) => [t, { schema: { type: 'string', contentMediaType: t } }])),
          },
          '400': resp('BadRequest'),
          ...authResponses(true),
          '404': json('No such call or file of it, the file was not fetched, or it is gone (retention).', ref('Error')),
          '429': resp('TooManyReports'),
          '503': resp('DatabaseBusy'),
        },
      },
    },

    '/api/reports/summary': {
      get: {
        operationId: 'getReportSummary',
        summary: 'Summary statistics over a range, grouped by hour, day, agent or business number',
        description: 'Calls offered in [from, to), at most 400 days. A bound without a UTC offset, and the hours and days, are those of `tz`.',
        tags: ['reports'],
        security: READABLE,
        parameters: [
          { ...parameters.From!, required: true, description: 'Start of the range (inclusive). ISO 8601 as for GET /api/calls; without an offset it is read in tz.' },
          { ...parameters.To!, required: true, description: 'End of the range (exclusive). ISO 8601; without an offset it is read in tz.' },
          q('group_by', 'How to group the calls.', { type: 'string', enum: [...GROUP_BY], default: 'day' }, { example: 'day' }),
          q('tz', 'IANA time zone (one Postgres knows) the hours and days are cut in.', { type: 'string', pattern: '^[A-Za-z][A-Za-z0-9_+\\-/]{0,63}$', default: 'UTC' }, { example: 'Asia/Jakarta' }),
          param('Direction'),
        ],
        responses: {
          '200': json('One entry per group with calls (in time or name order) and the totals over the range.', ref('Summary')),
          '400': resp('BadRequest'),
          ...authResponses(true),
          '429': resp('TooManyReports'),
          '503': resp('DatabaseBusy'),
        },
      },
    },

    '/api/permission-requests': {
      post: {
        operationId: 'sendPermissionRequest',
        summary: 'Ask a WhatsApp user for permission to call them',
        description: 'A free-form interactive request (`text`) or a template that carries the request (`template`). Recorded in call_permission_requests.',
        tags: ['permissions'],
        security: ADMIN_ONLY,
        requestBody: { required: true, content: { 'application/json': { schema: ref('PermissionRequest') } } },
        responses: {
          '202': json('Sent to YCloud.', objectOf({ sent: { type: 'boolean', const: true }, messageId: { type: ['string', 'null'] } }, 'The request went out.')),
          '400': resp('BadRequest'),
          ...authResponses(false),
          '502': json('YCloud refused or did not answer.', ref('Error')),
        },
      },
    },

    '/api/permissions': {
      get: {
        operationId: 'listPermissionReplies',
        summary: "The users' call-permission replies on record, newest first",
        tags: ['permissions'],
        security: ADMIN_ONLY,
        parameters: [
          q('business', 'Only replies to this business number (E.164).', { type: 'string' }),
          q('customer', "Only this WhatsApp user's replies (E.164).", { type: 'string' }, { example: '+6281234567890' }),
        ],
        responses: {
          '200': json('At most 100 replies.', objectOf({ replies: { type: 'array', items: ref('PermissionReply') } }, 'Replies.')),
          ...authResponses(false),
        },
      },
    },

    '/api/permissions/check': {
      get: {
        operationId: 'checkPermission',
        summary: 'Whether the bridge would call this user now, and why not',
        tags: ['permissions'],
        security: ADMIN_ONLY,
        parameters: [
          q('customer', "The WhatsApp user's number (E.164).", { type: 'string' }, { required: true, example: '+6281234567890' }),
          q('business', 'The business number (E.164); default WA_BUSINESS_NUMBER.', { type: 'string' }),
        ],
        responses: {
          '200': json('The latest reply decides (permanent, or temporary until it expires).', ref('PermissionCheck')),
          '400': resp('BadRequest'),
          ...authResponses(false),
        },
      },
    },

    '/api/settings': {
      get: {
        operationId: 'getCallingSettings',
        summary: "The business number's settings at YCloud (calling part included)",
        tags: ['settings'],
        security: ADMIN_ONLY,
        parameters: [q('phoneNumber', 'The business number (E.164); default WA_BUSINESS_NUMBER.', { type: 'string' })],
        responses: {
          '200': json("YCloud's answer, passed through.", ref('PhoneNumberSettings')),
          '400': resp('BadRequest'),
          ...authResponses(false),
          '404': json('YCloud does not know the number, or the API is off.', ref('Error')),
          '502': json('YCloud failed or did not answer.', ref('Error')),
        },
      },
      post: {
        operationId: 'updateCallingSettings',
        summary: "Change the business number's calling settings at YCloud",
        tags: ['settings'],
        security: ADMIN_ONLY,
        requestBody: { required: true, content: { 'application/json': { schema: ref('CallingSettingsChange') } } },
        responses: {
          '200': json("YCloud's answer, passed through.", ref('PhoneNumberSettings')),
          '400': resp('BadRequest'),
          ...authResponses(false),
          '404': json('YCloud does not know the number, or the API is off.', ref('Error')),
          '502': json('YCloud failed or did not answer.', ref('Error')),
        },
      },
    },

    '/api/numbers': {
      get: {
        operationId: 'listNumbers',
        summary: 'The business numbers, each with its provider account, phone number id and PBX route (never a secret)',
        tags: ['numbers'],
        security: ADMIN_ONLY,
        responses: {
          '200': json('The numbers, in the order of NUMBERS_FILE.', ref('NumberList')),
          ...authResponses(false),
        },
      },
    },
    '/api/numbers/reload': {
      post: {
        operationId: 'reloadNumbers',
        summary: 'Re-read NUMBERS_FILE, as SIGHUP does: the new numbers for new calls, or every problem and the running numbers kept',
        tags: ['numbers'],
        security: ADMIN_ONLY,
        responses: {
          '200': json('The file passed: its numbers now take new calls (calls in progress keep their route).', ref('NumbersReloaded')),
          ...authResponses(false),
          '409': json('No NUMBERS_FILE: the number comes from the environment, read at start-up only.', ref('NumbersNotReloaded')),
          '422': json('The file was refused as a whole (every problem listed with its YAML path): the running numbers stay.', ref('NumbersNotReloaded')),
        },
      },
    },

    '/healthz': {
      get: {
        operationId: 'getHealth',
        summary: 'Liveness: the process answers HTTP',
        tags: ['operations'],
        security: PUBLIC,
        responses: { '200': json('Alive.', objectOf({ ok: { type: 'boolean', const: true } }, 'Alive.')) },
      },
    },

    '/readyz': {
      get: {
        operationId: 'getReadiness',
        summary: 'Readiness: Postgres, drachtio-server and an rtpengine answer, and the bridge is not draining',
        description: 'Open: each check true or false. With the admin token, also `details` (rtpengine addresses, errors).',
        tags: ['operations'],
        security: [{}, { adminToken: [] }],
        responses: {
          '200': json('Ready to take calls.', ref('Readiness')),
          '503': json('Not ready: the failing check is false.', ref('Readiness')),
        },
      },
    },

    '/metrics': {
      get: {
        operationId: 'getMetrics',
        summary: 'Prometheus metrics (text exposition format)',
        description: 'Open, or with METRICS_TOKEN set, only with `Authorization: Bearer <METRICS_TOKEN>`.',
        tags: ['operations'],
        security: [{}, { metricsToken: [] }],
        responses: {
          '200': { description: 'The metrics.', content: { 'text/plain': { schema: { type: 'string' } } } },
          '401': json('METRICS_TOKEN is set and the request did not carry it.', ref('Error')),
        },
      },
    },

    '/webhooks/{account}': {
      parameters: [{
        name: 'account', in: 'path', required: true,
        description: 'The provider account (NUMBERS_FILE `providers:` key; without a numbers file, `ycloud` or `meta` as WA_PROVIDER says). Unknown: 404.',
        schema: { type: 'string', pattern: '^[a-z0-9-]{1,32}$' },
        example: 'ycloud',
      }],
      get: {
        operationId: 'verifyWebhookSubscription',
        summary: "Meta's webhook subscription check (hub.challenge)",
        description: "Meta accounts only: with hub.mode=subscribe and the account's verify token, the challenge is answered as sent; a wrong token gets 403. A YCloud account has no such check (404).",
        tags: ['webhooks'],
        security: PUBLIC,
        parameters: [
          { name: 'hub.mode', in: 'query', required: false, description: 'subscribe', schema: { type: 'string', const: 'subscribe' } },
          { name: 'hub.verify_token', in: 'query', required: false, description: "The account's verify token (META_VERIFY_TOKEN, or verifyToken in NUMBERS_FILE).", schema: { type: 'string' } },
          { name: 'hub.challenge', in: 'query', required: false, description: '1-256 printable characters, answered as the body.', schema: { type: 'string' } },
        ],
        responses: {
          '200': { description: 'The challenge, as sent.', content: { 'text/plain': { schema: { type: 'string' } } } },
          '400': { description: 'The challenge is not 1-256 printable characters.', content: { 'text/plain': { schema: { type: 'string' } } } },
          '403': { description: 'Wrong verify token or mode.', content: { 'text/plain': { schema: { type: 'string' } } } },
          '404': json('No Meta account of that name.', ref('Error')),
        },
      },
      post: {
        operationId: 'receiveWebhook',
        summary: "A provider account's webhooks (YCloud's events, or Meta's envelope)",
        description: [
          'YCloud: subscribe the endpoint to whatsapp.call.connect, whatsapp.call.status.updated, whatsapp.call.terminate and',
          'whatsapp.inbound_message.received; one event per POST, signed with YCloud-Signature. Meta: subscribe the app to the',
          'calls, messages, account_update and account_settings_update fields; one POST may carry several entries, changes,',
          'calls and statuses (at most 50 events: more are quarantined), signed with X-Hub-Signature-256. The signature is',
          'checked over the raw body; each event is stored once by its id (Meta: wacid + event + timestamp, or id + status) and',
          'answered at once, then processed. A part of a Meta batch that can never be valid is quarantined and the rest processed.',
        ].join(' '),
        tags: ['webhooks'],
        security: PUBLIC,
        parameters: [
          {
            name: 'YCloud-Signature', in: 'header', required: false,
            description: "YCloud accounts: `t=<unix seconds>,s=<hex HMAC-SHA256 of \"<t>.<raw body>\" with the endpoint's secret>`, within YCLOUD_WEBHOOK_TOLERANCE_SECONDS.",
            schema: { type: 'string', pattern: '^t=\\d+,s=[0-9a-fA-F]{64}$' },
          },
          {
            name: 'X-Hub-Signature-256', in: 'header', required: false,
            description: 'Meta accounts: `sha256=<hex HMAC-SHA256 of the raw body with the App Secret>`.',
            schema: { type: 'string', pattern: '^sha256=[0-9a-fA-F]{64}$' },
          },
        ],
        requestBody: {
          required: true,
          description: 'At most 64 KiB from a YCloud account, 512 KiB from a Meta account (a batch), read within WEBHOOK_READ_TIMEOUT_MS; the signature header is checked before the body is read.',
          content: { 'application/json': { schema: { oneOf: [ref('WebhookEvent'), ref('MetaWebhookEnvelope')] } } },
        },
        responses: {
          '200': json('Stored (or a redelivery, ignored).', objectOf({ ok: { type: 'boolean', const: true }, duplicate: { type: 'boolean' } }, 'Acknowledged.')),
          '202': json('Signed but malformed or unstorable: kept in webhook_quarantine, not acted on (a 2xx, because the providers redeliver any non-2xx).', objectOf({ ok: { type: 'boolean', const: false }, quarantined: { type: 'boolean', const: true }, error: { type: 'string' } }, 'Quarantined.')),
          '401': json('Missing, malformed, wrong or stale signature.', ref('Error')),
          '404': json('No provider account of that name.', ref('Error')),
          '408': json('The body did not arrive within WEBHOOK_READ_TIMEOUT_MS, or after its first second arrived slower than WEBHOOK_MIN_BYTES_PER_S.', ref('Error')),
          '413': json('Body larger than 64 KiB (YCloud) or 512 KiB (Meta).', ref('Error')),
          '503': json('The event could not be stored, or this body, the slowest of too many being read at once, made way for another (Retry-After): the provider retries.', ref('Error')),
        },
      },
    },
  },

  components: {
    securitySchemes: {
      adminToken: { type: 'http', scheme: 'bearer', description: 'ADMIN_API_TOKEN: every /api operation.' },
      reportingToken: { type: 'http', scheme: 'bearer', description: 'An entry of REPORTING_API_TOKENS: read-only, GET on /api/calls* and /api/reports/*.' },
      metricsToken: { type: 'http', scheme: 'bearer', description: 'METRICS_TOKEN, when set: GET /metrics.' },
    },
    parameters,
    responses: {
      BadRequest: json('An invalid parameter or body; `field` names it.', ref('Error'), { error: 'limit must be an integer from 1 to 1000', field: 'limit' }),
      Unauthorized: json('Missing or wrong bearer token.', ref('Error'), { error: 'bad or missing bearer token' }),
      Forbidden: json('A reporting token on an operation that needs ADMIN_API_TOKEN.', ref('Error')),
      ApiDisabled: json('No ADMIN_API_TOKEN and no REPORTING_API_TOKENS configured: /api is off.', ref('Error')),
      TooManyReports: {
        ...json('Too many reporting requests in progress, for this token (REPORTING_MAX_CONCURRENT_PER_TOKEN) or in all (REPORTING_MAX_CONCURRENT): retry after Retry-After seconds.', ref('Error')),
        headers: { 'Retry-After': { description: 'Seconds to wait before retrying.', schema: { type: 'integer' } } },
      },
      DatabaseBusy: {
        ...json('Postgres did not answer in time: retry (after Retry-After seconds), or narrow the range.', ref('Error')),
        headers: { 'Retry-After': { description: 'Seconds to wait before retrying.', schema: { type: 'integer' } } },
      },
    },
    schemas: {
      MetaWebhookEnvelope: {
        type: 'object',
        description: "Meta's webhook envelope (Graph API): entries of changes, each a field (calls, messages, account_update, account_settings_update) and its value.",
        required: ['object', 'entry'],
        properties: {
          object: { type: 'string', const: 'whatsapp_business_account' },
          entry: {
            type: 'array',
            items: {
              type: 'object',
              properties: {
                id: { type: 'string', description: 'The WhatsApp Business Account id.' },
                changes: { type: 'array', items: { type: 'object', properties: { field: { type: 'string' }, value: { type: 'object' } }, required: ['field', 'value'] } },
              },
            },
          },
        },
      },
      Error: errorSchema,
      Number: objectOf({
        name: str('Its name in NUMBERS_FILE ("default": the environment\'s number).'),
        number: nstr('E.164; null: the environment\'s number without WA_BUSINESS_NUMBER.', { pattern: E164 }),
        phoneId: nstr('Its phone number id at the provider; null: not configured (its provider\'s catch-all).'),
        wabaId: nstr('Its WhatsApp Business Account id.'),
        provider: objectOf({
          name: str('The provider account: its webhooks arrive at POST /webhooks/<name>.'),
          kind: { type: 'string', enum: ['ycloud', 'meta'] },
        }, 'The provider account the number is on.'),
        pbx: objectOf({
          targets: {
            type: 'array',
            description: 'Where its callers go, in order (failover).',
            items: objectOf({
              uri: str('A SIP URI.'),
              health: { type: 'string', enum: ['up', 'down', 'unknown'], description: 'Its OPTIONS pings (PBX_OPTIONS_PING_S): unknown before the first, or with pings off.' },
            }, 'A PBX target.'),
          },
          requestUser: nstr('The Request-URI user toward the PBX; null: the business number.'),
          codecs: { type: 'array', items: { type: 'string', enum: ['PCMU', 'PCMA', 'G722'] }, description: 'Codecs offered to the PBX.' },
        }, 'Its PBX route.'),
        codecPolicy: { type: 'string', enum: ['transcode', 'prefer-g711'] },
        recording: { type: 'boolean', description: 'Its calls are recorded.' },
        catchAll: { type: 'boolean', description: 'It takes its provider\'s webhooks for phone ids no number names.' },
        agentDefault: { type: 'boolean', description: 'Agents call from it when their INVITE names no business number.' },
        sip: nullable(objectOf({
          hostname: str('The SIP server its calling settings name: the From domain of the bridge\'s INVITEs to Meta, covered by its TLS certificate.'),
          port: { type: 'integer', minimum: 1, maximum: 65535, description: 'The port its settings name beside the hostname: where Meta sends its INVITEs over TLS.' },
          username: str('The digest user of the bridge\'s answers to Meta\'s challenges.'),
          srtp: { type: 'string', enum: ['dtls', 'sdes'], description: 'How SRTP is keyed on Meta\'s leg (srtp_key_exchange_protocol).' },
          g711: { type: 'boolean', description: 'Meta\'s additional codecs PCMA/PCMU are on.' },
          webhooks: { type: 'boolean', description: 'Meta also sends call webhooks for it (matched to the SIP call by wacid).' },
        }, 'Meta\'s native SIP carries its calls (its SIP password is never shown); null: its provider\'s API does.')),
        notices: { type: 'array', items: ref('AccountNotice'), description: 'What the provider last said about this number (or its whole account): calling restricted, quality warnings, settings changed.' },
      } satisfies { [K in keyof NumberSummary]: Schema } & { notices: Schema }, 'A business number.'),
      AccountNotice: objectOf({
        provider: str('The provider account.'),
        phone_id: nstr('The number it names; null: the whole account.'),
        field: str('The provider\'s webhook field (account_update, account_settings_update).'),
        event: str('The provider\'s event (ACCOUNT_RESTRICTION, ACCOUNT_VIOLATION, ...; settings_changed).'),
        severity: { type: 'string', enum: ['restriction', 'warning', 'info'] },
        detail: { description: 'The provider\'s own words, as sent (bounded).' },
        received_at: { type: 'string', format: 'date-time' },
      }, 'A notice from the provider about an account or number.'),
      NumberList: objectOf({ numbers: { type: 'array', items: ref('Number') } }, 'The business numbers.'),
      NumbersReloaded: objectOf({
        reloaded: { type: 'boolean', const: true },
        numbers: { type: 'integer', minimum: 1, description: 'Numbers now served.' },
        accounts: { type: 'integer', minimum: 1, description: 'Provider accounts now served.' },
      }, 'NUMBERS_FILE was read again.'),
      NumbersNotReloaded: objectOf({
        reloaded: { type: 'boolean', const: false },
        error: str('Why, for a human.'),
        problems: { type: 'array', items: { type: 'string' }, description: 'Every problem, each with its place in the YAML (numbers[1].pbx.targets[0]: ...).' },
      }, 'The numbers were not reloaded.'),
      Call: objectOf(CALL_FIELDS, 'A call detail record as listed: the columns of the calls table but media_stats (the detail view has it). Decimals are numbers. recording_path only for the admin token.',
        { required: withoutAdminOnly(CALL_FIELDS) }),
      CallWithMediaStats: objectOf(CALL_DETAIL_FIELDS, 'A call detail record with every column of the calls table, media_stats included (recording_path only for the admin token).',
        { required: withoutAdminOnly(CALL_DETAIL_FIELDS) }),
      CallEvent: objectOf(TIMELINE_FIELDS, "One entry of a call's timeline."),
      CallDetail: objectOf({
        call: ref('CallWithMediaStats'),
        timeline: { type: 'array', items: ref('CallEvent'), description: 'The events, oldest first.' },
        media: { type: 'array', items: ref('CallMedia'), description: 'The files WhatsApp made of the call (recording, transcription, voicemail), oldest first.' },
      } satisfies { [K in keyof CallDetail]: Schema }, 'A call with its event timeline, media statistics and media files.'),
      CallMedia: objectOf(MEDIA_FIELDS, 'A file WhatsApp made of a call, fetched into the bridge\'s recording store.'),
      CallPage: objectOf({
        calls: { type: 'array', items: ref('Call') },
        next_cursor: { type: ['string', 'null'], description: 'Pass as `cursor` for the next page; null on the last page.' },
      }, 'A page of calls, newest first.'),
      LiveCall: objectOf(LIVE_CALL_FIELDS, 'A call in progress.'),
      SummaryGroup: objectOf({
        group: {
          type: ['string', 'null'],
          description: 'The group: the local date (YYYY-MM-DD, group_by=day), the local hour (YYYY-MM-DDTHH:00, group_by=hour), the agent, or the business number (null: calls without one, e.g. calls no agent answered).',
        },
        period_start: ntime('The UTC instant the day or hour starts (null for agent and business_number).'),
        ...SUMMARY_FIGURES,
      } satisfies { [K in keyof SummaryGroup]: Schema }, 'The figures of one group.'),
      SummaryTotals: objectOf(SUMMARY_FIGURES, 'The figures over the whole range.'),
      Summary: objectOf({
        from: str('The start of the range as a UTC instant (a local bound resolved in tz).', { format: 'date-time' }),
        to: str('The end of the range (exclusive), a UTC instant.', { format: 'date-time' }),
        tz: str('The time zone hours and days were cut in.'),
        group_by: { type: 'string', enum: [...GROUP_BY] },
        direction: { type: ['string', 'null'], enum: [...DIRECTIONS, null] },
        groups: { type: 'array', items: ref('SummaryGroup'), description: 'Groups with at least one call, in time or name order.' },
        totals: ref('SummaryTotals'),
      } satisfies { [K in keyof SummaryReport]: Schema }, 'Summary statistics over [from, to).'),
      PermissionRequest: {
        description: 'Give `text` (a free-form interactive request) or `template`.',
        oneOf: [
          objectOf({ to: str('The WhatsApp user (E.164).'), from: str('The business number (E.164); default WA_BUSINESS_NUMBER.'), text: str('The request text.', { minLength: 1 }) },
            'A free-form request.', { required: ['to', 'text'] }),
          objectOf({
            to: str('The WhatsApp user (E.164).'),
            from: str('The business number (E.164); default WA_BUSINESS_NUMBER.'),
            template: objectOf({
              name: str('The approved template.'),
              language: str('Its language code, e.g. en_US.'),
              components: { type: 'array', items: { type: 'object' }, description: 'Template components (parameters), as WhatsApp takes them.' },
            }, 'A template that carries the call-permission request.', { required: ['name', 'language'] }),
          }, 'A template request.', { required: ['to', 'template'] }),
        ],
      },
      PermissionReply: objectOf({
        business_number: str('The business number (E.164).'),
        customer_number: str('The WhatsApp user (E.164).'),
        response: { type: 'string', enum: ['accept', 'reject'] },
        is_permanent: { type: 'boolean' },
        expires_at: ntime('When a temporary grant ends.'),
        response_source: nstr('How the user answered (e.g. user_action, automatic).'),
        replied_at: str('When the user replied.', { format: 'date-time' }),
        wamid: nstr('The WhatsApp message id of the reply.'),
      }, 'One call-permission reply.'),
      PermissionCheck: {
        description: 'Whether an agent\'s call to this user would be placed now.',
        oneOf: [
          objectOf({ allowed: { type: 'boolean', const: true }, permanent: { type: 'boolean' }, expiresAt: ntime('When a temporary grant ends.') }, 'Allowed.'),
          objectOf({
            allowed: { type: 'boolean', const: false },
            reason: { type: 'string', enum: ['none', 'rejected', 'expired'] },
            since: ntime('Since when (the reply, or the expiry).'),
          }, 'Not allowed.'),
        ],
      },
      CallingSettingsChange: {
        type: 'object',
        description: 'The calling settings to change (at least one); phoneNumber picks the number (default WA_BUSINESS_NUMBER).',
        minProperties: 1,
        properties: {
          phoneNumber: str('The business number (E.164).'),
          status: { type: 'string', enum: ['ENABLED', 'DISABLED'] },
          iconVisibility: { type: 'string', enum: ['DEFAULT', 'DISABLE_ALL'] },
          callbackPermissionStatus: { type: 'string', enum: ['ENABLED', 'DISABLED'] },
          callHours: { type: 'object', description: "Weekly hours, time zone and holidays (Meta's call_hours fields), passed through.", additionalProperties: true },
        },
        additionalProperties: false,
      },
      PhoneNumberSettings: {
        type: 'object',
        description: "YCloud's phone number settings, passed through; `calling` holds the calling part.",
        properties: { calling: { type: 'object', additionalProperties: true } },
        additionalProperties: true,
      },
      Readiness: {
        type: 'object',
        required: ['ok', 'checks'],
        properties: {
          ok: { type: 'boolean' },
          checks: {
            type: 'object',
            required: ['postgres', 'sip', 'rtpengine', 'draining', 'cluster'],
            properties: {
              postgres: { type: 'boolean' },
              sip: { type: 'boolean', description: 'drachtio-server connected.' },
              rtpengine: { type: 'boolean', description: 'At least one rtpengine answers pings.' },
              draining: { type: 'boolean' },
              cluster: { type: 'boolean', description: 'The LISTEN connection that carries messages between nodes is up (informational: not part of ok).' },
            },
            additionalProperties: { type: 'boolean' },
          },
          details: {
            type: 'object',
            description: 'Only with the admin token (Authorization: Bearer <ADMIN_API_TOKEN>): what is behind the checks.',
            properties: {
              rtpengine: { type: 'object', additionalProperties: { type: 'boolean' }, description: 'Each rtpengine (host:port) and whether it answers pings.' },
              postgres: { type: ['string', 'null'], description: "Postgres's error, or null." },
            },
            additionalProperties: true,
          },
        },
        additionalProperties: false,
        description: 'Each check by name, true or false; the details (addresses, errors) with the admin token only.',
      },
      WebhookEvent: {
        type: 'object',
        description: "A YCloud webhook event. Known types carry their payload under the key YCloud names (callingConnect, callingStatusUpdated, callingTerminate, whatsappInboundMessage).",
        required: ['id', 'type'],
        properties: {
          id: { type: 'string', minLength: 1, maxLength: 200 },
          type: { type: 'string', examples: ['whatsapp.call.connect', 'whatsapp.call.status.updated', 'whatsapp.call.terminate', 'whatsapp.inbound_message.received'] },
          apiVersion: { type: 'string' },
          createTime: { type: 'string' },
        },
        additionalProperties: true,
      },
    },
  },
};

/** GET /api/openapi.json: the document, public (the /api auth leaves this path alone). */
export function openApiRoutes(): Router {
  const router = new Router();
  const body = JSON.stringify(openApiDocument);
  router.get('/api/openapi.json', (ctx) => {
    ctx.type = 'application/json';
    ctx.set('Cache-Control', 'no-cache');
    ctx.body = body;
  });
  return router;
}
