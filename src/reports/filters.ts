import { BSUID } from '../calls/call-events';
import { CallState, TRANSITIONS } from '../calls/lifecycle';
import { Direction, Outcome } from '../cdr/models';

/**
 * Parsing and validation of the reporting API's query parameters, with no database: every problem is a
 * ReportInputError that names the parameter, so the API answers 400 { error, field }.
 */

/** A query parameter the API cannot use; `field` names it. */
export class ReportInputError extends Error {
  constructor(readonly field: string, message: string) {
    super(message);
    this.name = 'ReportInputError';
  }
}

/** Koa's ctx.query: each parameter once (a string) or repeated (an array). */
export type QueryParams = Record<string, string | string[] | undefined>;

export const DIRECTIONS: readonly Direction[] = ['inbound', 'outbound'];
export const OUTCOMES: readonly Outcome[] = ['answered', 'busy', 'no_answer', 'rejected', 'unreachable', 'caller_hangup', 'failed'];
export const STATES: readonly CallState[] = Object.keys(TRANSITIONS) as CallState[];
export const GROUP_BY = ['hour', 'day', 'agent', 'business_number'] as const;
export type GroupBy = (typeof GROUP_BY)[number];

export const LIMIT_DEFAULT = 100;
export const LIMIT_MAX = 1000;
/** The longest range one summary may cover. */
export const SUMMARY_MAX_DAYS = 400;

/**
 * A point in time from a query parameter. `instant`: it named its offset (or Z), `iso` is the exact UTC
 * instant with microseconds and `micros` the same as microseconds since the epoch. `local`: a date or a
 * date and time without offset, read in the report's time zone (UTC for lists).
 */
export type TimeBound =
  | { kind: 'instant'; iso: string; micros: number }
  | { kind: 'local'; iso: string };

/** Which calls a list or export covers; null: no condition. Every condition must hold. */
export interface CallFilter {
  /** offered_at >= from (exact UTC instant, ISO 8601 with microseconds). */
  from: string | null;
  /** offered_at < to. */
  to: string | null;
  direction: Direction | null;
  /** outcome is one of these. */
  outcomes: Outcome[] | null;
  customer: string | null;
  business: string | null;
  agent: string | null;
  pbxTarget: string | null;
  state: CallState | null;
  /** mos < this (calls without a MOS never match). */
  mosBelow: number | null;
  /** A recording is on record and has not been deleted. */
  recorded: boolean;
  /** The WhatsApp user's BSUID. */
  userId: string | null;
  /** The user's WhatsApp username, without "@" (matched case-insensitively). */
  username: string | null;
  /** Part of the user's profile name (case-insensitive substring). */
  profileName: string | null;
  /** The provider account (its webhook path name). */
  provider: string | null;
  /** The business number's name (NUMBERS_FILE). */
  numberName: string | null;
  /** The call button the user called from (Meta's cta_payload), exactly. */
  ctaPayload: string | null;
}

/** Where a page starts: after this row in (offered_at DESC, id DESC) order. */
export interface Cursor { offeredAt: string; id: string }
export interface PageRequest { limit: number; cursor: Cursor | null }
export type ListFormat = 'json' | 'csv';
export interface ListRequest { filter: CallFilter; page: PageRequest; format: ListFormat | null }

export interface SummaryRequest {
  from: TimeBound;
  to: TimeBound;
  groupBy: GroupBy;
  /** IANA zone name (checked against Postgres' pg_timezone_names by the store). */
  tz: string;
  direction: Direction | null;
}

export const FILTER_PARAMS = [
  'from', 'to', 'direction', 'outcome', 'customer', 'business', 'agent', 'pbx_target', 'state', 'mos_below', 'poor_quality', 'recorded',
  'user_id', 'username', 'profile_name', 'provider', 'number_name', 'cta_payload',
] as const;
export const LIST_PARAMS = [...FILTER_PARAMS, 'cursor', 'limit', 'format'] as const;
export const SUMMARY_PARAMS = ['from', 'to', 'group_by', 'tz', 'direction'] as const;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const E164 = /^\+[1-9]\d{6,14}$/;
const TIME = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?(Z|[+-]\d{2}(?::?\d{2})?)?)?$/;
const CURSOR_AT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;
const EARLIEST_MICROS = Date.UTC(1000, 0, 1) * 1000;
const LATEST_MICROS = Date.UTC(10000, 0, 1) * 1000;
const PLUS_HINT = ' (a "+" in a query string must be sent as %2B)';

/** Refuses parameters the route does not know, and parameters given more than once. */
export function checkParams(q: QueryParams, known: readonly string[]): void {
  for (const [name, v] of Object.entries(q)) {
    if (!known.includes(name)) throw new ReportInputError(name, `unknown query parameter "${name}"; this route takes: ${known.join(', ')}`);
    if (Array.isArray(v)) throw new ReportInputError(name, `give ${name} once`);
  }
}

/** The parameter's value, or null when absent. An empty value counts as absent. */
function param(q: QueryParams, name: string): string | null {
  const v = q[name];
  return typeof v === 'string' && v !== '' ? v : null;
}

export function isUuid(s: string): boolean {
  return UUID.test(s);
}

/** Throws a 400 for `field` unless `id` is a UUID. */
export function parseCallId(id: string, field = 'id'): string {
  if (!isUuid(id)) throw new ReportInputError(field, `${field} must be a call id (a UUID), got "${id}"`);
  return id.toLowerCase();
}

/** GET /api/calls: filters, page and format. `mosThreshold` is what poor_quality=true means. */
export function parseListQuery(q: QueryParams, mosThreshold: number): ListRequest {
  checkParams(q, LIST_PARAMS);
  const format = parseEnum(q, 'format', ['json', 'csv'] as const);
  const page: PageRequest = { limit: parseLimit(param(q, 'limit')), cursor: parseCursor(param(q, 'cursor')) };
  return { filter: parseFilter(q, mosThreshold), page, format };
}

/** The filter parameters (FILTER_PARAMS) of a list or export. */
export function parseFilter(q: QueryParams, mosThreshold: number): CallFilter {
  const from = optionalTime(q, 'from');
  const to = optionalTime(q, 'to');
  if (from && to && to.micros <= from.micros) throw new ReportInputError('to', 'to must be later than from');
  const mosBelow = parseMosBelow(param(q, 'mos_below'));
  const poor = parseTrue(q, 'poor_quality');
  return {
    from: from?.iso ?? null,
    to: to?.iso ?? null,
    direction: parseEnum(q, 'direction', DIRECTIONS),
    outcomes: parseOutcomes(param(q, 'outcome')),
    customer: parseAddress(q, 'customer'),
    business: parseNumber(q, 'business'),
    agent: parseText(q, 'agent'),
    pbxTarget: parseText(q, 'pbx_target'),
    state: parseEnum(q, 'state', STATES),
    mosBelow: poor ? Math.min(mosBelow ?? mosThreshold, mosThreshold) : mosBelow,
    recorded: parseTrue(q, 'recorded'),
    userId: parseBsuid(q, 'user_id'),
    username: parseUsername(q, 'username'),
    profileName: parseText(q, 'profile_name', PROFILE_NAME_MAX),
    provider: parseText(q, 'provider', 64),
    numberName: parseText(q, 'number_name', 64),
    ctaPayload: parseText(q, 'cta_payload', 512),
  };
}

/** The longest profile_name a filter takes (a substring of a name). */
export const PROFILE_NAME_MAX = 100;

/** GET /api/reports/summary. Ranges between two instants are checked here, others once resolved in `tz`. */
export function parseSummaryQuery(q: QueryParams): SummaryRequest {
  checkParams(q, SUMMARY_PARAMS);
  const from = requiredTime(q, 'from');
  const to = requiredTime(q, 'to');
  if (from.kind === 'instant' && to.kind === 'instant') checkSummaryRange(from.micros, to.micros);
  return {
    from,
    to,
    groupBy: parseEnum(q, 'group_by', GROUP_BY) ?? 'day',
    tz: parseTimeZoneName(param(q, 'tz') ?? 'UTC'),
    direction: parseEnum(q, 'direction', DIRECTIONS),
  };
}

/** to after from, and at most SUMMARY_MAX_DAYS apart (instants in microseconds since the epoch). */
export function checkSummaryRange(fromMicros: number, toMicros: number): void {
  if (toMicros <= fromMicros) throw new ReportInputError('to', 'to must be later than from');
  if (toMicros - fromMicros > SUMMARY_MAX_DAYS * 86400e6) throw new ReportInputError('to', `a summary covers at most ${SUMMARY_MAX_DAYS} days`);
}

/**
 * 400 unless a bound resolved in a time zone is still within the years 1000 to 9999 in UTC: a local
 * 9999-12-31T23:00 in a zone 12 hours behind UTC is in the year 10000, which Postgres cannot read back
 * as ISO text.
 */
export function checkResolvedBound(micros: number, field: 'from' | 'to', tz: string): void {
  if (!Number.isFinite(micros) || micros < EARLIEST_MICROS || micros >= LATEST_MICROS) {
    throw new ReportInputError(field, `${field} in time zone ${tz} falls outside the years 1000 to 9999 in UTC`);
  }
}

/** A syntactically plausible IANA zone name; whether Postgres knows it is the store's check. */
export function parseTimeZoneName(tz: string): string {
  if (!/^[A-Za-z][A-Za-z0-9_+\-/]{0,63}$/.test(tz)) throw new ReportInputError('tz', `tz must be an IANA time zone such as Asia/Jakarta, got "${tz}"`);
  return tz;
}

function optionalTime(q: QueryParams, name: string): Extract<TimeBound, { kind: 'instant' }> | null {
  const v = param(q, name);
  if (v === null) return null;
  const t = parseTime(v, name);
  // Lists have no time zone: a bound without an offset is UTC.
  return t.kind === 'instant' ? t : parseTime(`${t.iso}Z`, name) as Extract<TimeBound, { kind: 'instant' }>;
}

function requiredTime(q: QueryParams, name: string): TimeBound {
  const v = param(q, name);
  if (v === null) throw new ReportInputError(name, `${name} is required (ISO 8601, e.g. 2026-11-24 or 2026-11-24T08:00:00Z)`);
  return parseTime(v, name);
}

/**
 * An ISO 8601 date (2026-11-24) or date and time (2026-11-24T08:00, 2026-11-24T08:00:00.123456+07:00).
 * Without an offset it is a local time (TimeBound 'local').
 */
export function parseTime(v: string, field: string): TimeBound {
  const m = TIME.exec(v);
  const bad = (why = '') => new ReportInputError(field, `${field} must be an ISO 8601 date or timestamp such as 2026-11-24T08:00:00Z, got "${v}"${why}`);
  if (!m) throw bad(/\d \d{2}:?\d{2}$/.test(v) ? PLUS_HINT : '');
  const [y, mo, d, h = 0, mi = 0, s = 0] = [m[1], m[2], m[3], m[4], m[5], m[6]].map((x) => (x === undefined ? undefined : Number(x))) as number[];
  const fraction = (m[7] ?? '').padEnd(6, '0');
  const utcMs = Date.UTC(y!, mo! - 1, d!, h, mi, s);
  const check = new Date(utcMs);
  if (y! < 1000 || check.getUTCMonth() !== mo! - 1 || check.getUTCDate() !== d! || h > 23 || mi > 59 || s > 59) throw bad(': no such date or time');
  const local = `${check.toISOString().slice(0, 19)}.${fraction}`;
  if (m[8] === undefined) return { kind: 'local', iso: local };
  const offsetMin = parseOffset(m[8]);
  if (offsetMin === null) throw bad(': bad UTC offset');
  const micros = (utcMs - offsetMin * 60000) * 1000 + Number(fraction);
  // An offset can carry 1000-01-01 or 9999-12-31 out of the four-digit years (Postgres would refuse the ISO text).
  if (micros < EARLIEST_MICROS || micros >= LATEST_MICROS) throw bad(': outside the years 1000 to 9999 in UTC');
  return { kind: 'instant', iso: microsToIso(micros), micros };
}

/** Minutes east of UTC for Z, +07, +0700 or +07:00; null when out of range. */
function parseOffset(o: string): number | null {
  if (o === 'Z') return 0;
  const digits = o.slice(1).replace(':', '');
  const h = Number(digits.slice(0, 2));
  const m = digits.length > 2 ? Number(digits.slice(2)) : 0;
  if (h > 23 || m > 59) return null;
  return (o[0] === '-' ? -1 : 1) * (h * 60 + m);
}

/** Microseconds since the epoch -> 2026-11-24T08:00:00.123456Z. */
export function microsToIso(micros: number): string {
  const ms = Math.floor(micros / 1000);
  const rest = String(micros - ms * 1000).padStart(3, '0');
  return `${new Date(ms).toISOString().slice(0, 23)}${rest}Z`;
}

function parseLimit(v: string | null): number {
  if (v === null) return LIMIT_DEFAULT;
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > LIMIT_MAX) throw new ReportInputError('limit', `limit must be an integer from 1 to ${LIMIT_MAX}, got "${v}"`);
  return n;
}

function parseMosBelow(v: string | null): number | null {
  if (v === null) return null;
  const n = Number(v);
  if (!/^\d+(\.\d+)?$/.test(v) || n < 1 || n > 5) throw new ReportInputError('mos_below', `mos_below must be a number from 1 to 5, got "${v}"`);
  return n;
}

function parseOutcomes(v: string | null): Outcome[] | null {
  if (v === null) return null;
  const list = [...new Set(v.split(',').map((s) => s.trim()))];
  for (const o of list) {
    if (!(OUTCOMES as readonly string[]).includes(o)) throw new ReportInputError('outcome', `unknown outcome "${o}"; outcomes are ${OUTCOMES.join(', ')} (comma-separated)`);
  }
  return list as Outcome[];
}

function parseEnum<T extends string>(q: QueryParams, name: string, allowed: readonly T[]): T | null {
  const v = param(q, name);
  if (v === null) return null;
  if (!(allowed as readonly string[]).includes(v)) throw new ReportInputError(name, `${name} must be one of ${allowed.join(', ')}, got "${v}"`);
  return v as T;
}

/** `name=true`; absent is false. Only "true" is accepted. */
function parseTrue(q: QueryParams, name: string): boolean {
  const v = param(q, name);
  if (v === null) return false;
  if (v !== 'true') throw new ReportInputError(name, `${name} takes only "true", got "${v}"`);
  return true;
}

function parseNumber(q: QueryParams, name: string): string | null {
  const v = param(q, name);
  if (v === null) return null;
  if (!E164.test(v)) throw new ReportInputError(name, `${name} must be an E.164 number such as +6281361905133, got "${v}"${/^ \d+$/.test(v) ? PLUS_HINT : ''}`);
  return v;
}

/** A WhatsApp user's address: an E.164 number, or a BSUID for a user known without one. */
function parseAddress(q: QueryParams, name: string): string | null {
  const v = param(q, name);
  if (v === null || BSUID.test(v)) return v;
  if (!E164.test(v)) {
    throw new ReportInputError(name, `${name} must be an E.164 number such as +6281361905133 or a WhatsApp user id (BSUID) such as US.13491208655302741918, got "${v}"${/^ \d+$/.test(v) ? PLUS_HINT : ''}`);
  }
  return v;
}

function parseBsuid(q: QueryParams, name: string): string | null {
  const v = param(q, name);
  if (v !== null && !BSUID.test(v)) throw new ReportInputError(name, `${name} must be a WhatsApp user id (BSUID) such as US.13491208655302741918, got "${v.slice(0, 200)}"`);
  return v;
}

/** A WhatsApp username, with or without its "@". */
function parseUsername(q: QueryParams, name: string): string | null {
  const v = param(q, name);
  if (v === null) return null;
  const u = v.startsWith('@') ? v.slice(1) : v;
  if (u === '' || u.length > 100 || /[\s\p{Cc}]/u.test(u)) throw new ReportInputError(name, `${name} must be a WhatsApp username (1 to 100 characters, no spaces), got "${v.slice(0, 200)}"`);
  return u;
}

function parseText(q: QueryParams, name: string, max = 255): string | null {
  const v = param(q, name);
  if (v !== null && v.length > max) throw new ReportInputError(name, `${name} is longer than ${max} characters`);
  return v;
}

/** The opaque page cursor: base64url of "<offered_at with microseconds>|<id>" of a page's last row. */
export function encodeCursor(c: Cursor): string {
  return Buffer.from(`${c.offeredAt}|${c.id}`, 'utf8').toString('base64url');
}

export function parseCursor(v: string | null): Cursor | null {
  if (v === null) return null;
  const bad = () => new ReportInputError('cursor', 'cursor is not one this API issued (use next_cursor of the previous page unchanged)');
  if (!/^[A-Za-z0-9_-]{1,120}$/.test(v)) throw bad();
  const [offeredAt, id, extra] = Buffer.from(v, 'base64url').toString('utf8').split('|');
  if (extra !== undefined || !offeredAt || !id || !CURSOR_AT.test(offeredAt) || !isUuid(id)) throw bad();
  let t: TimeBound;
  try {
    t = parseTime(offeredAt, 'cursor');
  } catch {
    throw bad();
  }
  if (t.kind !== 'instant' || t.iso !== offeredAt) throw bad();
  return { offeredAt, id: id.toLowerCase() };
}
