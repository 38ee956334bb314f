import pino from 'pino';
import type { Config } from './config';

export type Logger = pino.Logger;

export interface LoggerOptions {
  /**
   * Values that must never appear in a log line (the API key, passwords, tokens from the
   * configuration): replaced in every line as written, whatever field or message carries them.
   */
  secrets?: Array<string | null | undefined>;
  /**
   * Secrets known only later, and that may change (NUMBERS_FILE's credentials, read after the logger
   * exists and again at each reload): asked for at each line, cheap when unchanged.
   */
  moreSecrets?: () => readonly string[];
  /** Where the lines go (default: stdout). */
  destination?: pino.DestinationStream;
  /** Phone numbers in log lines: masked (default, see maskPhoneNumber) or written in full (LOG_PHONE_NUMBERS=full). */
  phoneNumbers?: 'masked' | 'full';
}

export const REDACTED = '[Redacted]';

/**
 * No secret ever reaches a log line. Four layers, each catching what the one before cannot:
 * 1. pino `redact` paths: the usual places (headers objects, apiKey, password, token, secret fields);
 * 2. every logged object is walked (bounded depth) and any field whose *name* says it holds a secret
 *    (authorization, api key, password, secret, token, signature, cookie, credential) is replaced, at
 *    any depth; errors are reduced to their own plain fields (a drachtio-srf SipError's `res`, with the
 *    raw SIP message, never goes out);
 * 3. every line as written: SDES keys (`a=crypto ... inline:KEY`), ICE passwords, Authorization /
 *    Proxy-Authorization / X-API-Key / YCloud-Signature header values in raw text, bearer tokens, the
 *    password in a URL's user info (`postgres://user:PASSWORD@host`);
 * 4. every line as written: the configured secret values themselves (LoggerOptions.secrets), except
 *    those that read as an ordinary word or number (see isWordLike): searched for, they would mangle
 *    every line holding that word (the compose database password "bridge" turned the logger's own name
 *    into "wa-sip-[Redacted]"); such a secret is still kept out by layers 1-3.
 * And unless LOG_PHONE_NUMBERS=full, phone numbers are masked (+1555****0001): in fields whose name says
 * they hold one (at any depth), and E.164 numbers or numeric sip:/tel: users anywhere in a line.
 */
const HEADERS = [
  'authorization', 'Authorization', 'proxy-authorization', 'Proxy-Authorization', 'x-api-key', 'X-API-Key', 'X-Api-Key',
  'ycloud-signature', 'YCloud-Signature', 'cookie', 'Cookie', 'set-cookie', 'Set-Cookie',
];
const FIELDS = ['apiKey', 'password', 'secret', 'token', 'webhookSecret', 'authorization', 'Authorization'];
export const REDACT_PATHS: string[] = [
  ...HEADERS.flatMap((h) => [`headers["${h}"]`, `*.headers["${h}"]`, `*.*.headers["${h}"]`]),
  ...FIELDS.flatMap((f) => [f, `*.${f}`, `*.*.${f}`]),
];

const SECRET_KEY = /authorization|api[-_]?key|passw(?:or)?d|secret|token|signature|cookie|credential/i;
const MAX_DEPTH = 8;

const LINE_PATTERNS: Array<[RegExp, string]> = [
  // SDES-SRTP master keys: a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:KEY|2^31|1:1
  [/(inline:)[A-Za-z0-9+/]+=*/g, `$1${REDACTED}`],
  [/(a=ice-pwd:)[^\s\\"]+/g, `$1${REDACTED}`],
  // Header values in raw text (a SIP message, an HTTP request) as it appears inside a JSON string:
  // the value runs to the end of its line (an escaped \r or \n) or of the string; also catches these
  // headers as fields of JSON held in a string (then the rest of that string goes too).
  [/((?:proxy-)?authorization|x-api-key|ycloud-signature)(\\"\s*:\s*\\"|\s*:\s*)(?:[^\\"]|\\[^rn])+/gi, `$1$2${REDACTED}`],
  [/\b(Bearer\s+)[A-Za-z0-9._~+/=-]+/g, `$1${REDACTED}`],
  // A URL's user info: scheme://user:PASSWORD@host (DATABASE_URL in a connection error, say).
  [/(\b[A-Za-z][A-Za-z0-9+.-]*:\/\/[^\s/:@"\\]*:)[^\s/@"\\]+@/g, `$1${REDACTED}@`],
];

/**
 * Fields whose name says they hold a phone number (from, to, number, phone, wa_id, caller, callee,
 * customer, business, businessNumber, customer_number, msisdn ...): a value that looks like a number is
 * masked. Ids (phoneId, wacid, callId) are not phone numbers and are left alone.
 */
const PHONE_KEY = /^(?:from|to|number|phone|msisdn|wa_?id|caller|callee|customer|business|recipient|sender)$|(?:number|phone|msisdn|caller|callee)s?$/i;
/** A value that is a phone number: an optional +, 7 to 15 digits, visual separators between them. */
const PHONE_VALUE = /^\s*(?!\d{4}-\d\d-\d\d)\+?\d[\d\s().-]{5,22}\d\s*$/;
/** E.164-looking strings anywhere in a line (a message, any field), not inside an id or a longer number. */
const E164_IN_TEXT = /(?<![\w+/=.-])\+[1-9]\d{6,14}(?![\w])/g;
/** The user part of a sip:/tel: URI that is a number (sip:6283138205150@host). */
const URI_NUMBER = /(\b(?:sips?|tel):)(\+?\d{7,15})(?=[@;>"\\]|$)/g;

/**
 * A phone number as logged by default: the first digits (country, area) and the last 4, the middle
 * replaced by a fixed **** (its length not told): +15550000001 -> +1555****0001.
 */
export function maskPhoneNumber(value: string): string {
  const digits = value.replace(/\D/g, '');
  if (digits.length < 7 || digits.length > 15) return value;
  const head = digits.length >= 10 ? 4 : 2;
  return `${value.trim().startsWith('+') ? '+' : ''}${digits.slice(0, head)}****${digits.slice(-4)}`;
}

/** Masks E.164 numbers and numeric SIP/tel URI users in a serialized line. */
export function maskPhoneNumbersInLine(line: string): string {
  return line.replace(E164_IN_TEXT, (m) => maskPhoneNumber(m)).replace(URI_NUMBER, (_m, scheme: string, n: string) => `${scheme}${maskPhoneNumber(n)}`);
}

/** Secrets shorter than this are not searched for in lines (they would mangle ordinary words). */
const MIN_SECRET_LENGTH = 6;
/** Letters-only or digits-only secrets shorter than this read as words or numbers: not searched for either. */
const MIN_WORD_SECRET_LENGTH = 16;

/**
 * A secret made only of letters, or only of digits, shorter than MIN_WORD_SECRET_LENGTH: "bridge",
 * "sandbox", "123456". Found as a substring it would be found in ordinary text (names, messages,
 * timestamps), and replacing it there would hide what the line says without protecting anything that
 * layers 1-3 do not already protect.
 */
export function isWordLike(secret: string): boolean {
  return secret.length < MIN_WORD_SECRET_LENGTH && /^(?:[A-Za-z]+|[0-9]+)$/.test(secret);
}

/** Replaces secrets in one serialized log line (layers 3 and 4). */
export function scrubLine(line: string, secrets: readonly string[] = []): string {
  let s = line;
  for (const [re, to] of LINE_PATTERNS) s = s.replace(re, to);
  for (const secret of secrets) {
    if (s.includes(secret)) s = s.split(secret).join(REDACTED);
  }
  return s;
}

/** The strings to look for: each secret as given and as it appears inside a JSON string. */
function searchForms(secrets: LoggerOptions['secrets']): string[] {
  const out = new Set<string>();
  for (const v of secrets ?? []) {
    if (typeof v !== 'string' || v.length < MIN_SECRET_LENGTH || isWordLike(v)) continue;
    out.add(v);
    out.add(JSON.stringify(v).slice(1, -1));
  }
  // Longest first, so a secret containing another is replaced whole.
  return [...out].sort((a, b) => b.length - a.length);
}

function isPlain(v: object): boolean {
  const p: unknown = Object.getPrototypeOf(v);
  return p === Object.prototype || p === null;
}

/**
 * A copy of a logged value with secret-named fields replaced and errors reduced to plain fields (layer
 * 2); with `phones`, phone numbers in phone-named fields masked.
 */
export function scrubValue(value: unknown, depth = 0, seen: WeakSet<object> = new WeakSet(), phones = false): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (seen.has(value)) return '[Circular]';
  if (depth >= MAX_DEPTH) return '[Truncated]';
  if (value instanceof Error) return errorFields(value, depth, seen, phones);
  if (Array.isArray(value)) {
    seen.add(value);
    const out = value.map((v) => scrubValue(v, depth + 1, seen, phones));
    seen.delete(value);
    return out;
  }
  if (value instanceof Date || Buffer.isBuffer(value) || ArrayBuffer.isView(value)) return value;
  // Anything with its own JSON form (a drachtio-srf message, a URL): that form, walked like the rest.
  const toJSON = (value as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === 'function') {
    seen.add(value);
    let json: unknown;
    try {
      json = toJSON.call(value);
    } catch {
      json = '[Unserializable]';
    }
    const out = json === value ? '[Unserializable]' : scrubValue(json, depth + 1, seen, phones);
    seen.delete(value);
    return out;
  }
  seen.add(value);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (SECRET_KEY.test(k) && v !== null && v !== undefined && v !== '') out[k] = REDACTED;
    else if (phones && typeof v === 'string' && PHONE_KEY.test(k) && PHONE_VALUE.test(v)) out[k] = maskPhoneNumber(v);
    else out[k] = scrubValue(v, depth + 1, seen, phones);
  }
  seen.delete(value);
  return out;
}

/**
 * An error as logged: type, message, stack, and its own fields that are plain data (status codes,
 * YCloud's error code and request id, a PbxFailure); objects such as a SIP response or a socket are
 * left out, `cause` is followed.
 */
function errorFields(e: Error, depth: number, seen: WeakSet<object>, phones: boolean): Record<string, unknown> {
  seen.add(e);
  const type = typeof e.constructor === 'function' && e.constructor.name ? e.constructor.name : e.name;
  const out: Record<string, unknown> = { type, message: e.message, stack: e.stack };
  for (const [k, v] of Object.entries(e)) {
    if (k in out) continue;
    if (SECRET_KEY.test(k)) out[k] = REDACTED;
    else if (v === null || typeof v !== 'object') out[k] = v;
    else if (v instanceof Error || Array.isArray(v) || isPlain(v)) out[k] = scrubValue(v, depth + 1, seen, phones);
  }
  const cause = (e as { cause?: unknown }).cause;
  if (cause !== undefined && !('cause' in out)) out.cause = scrubValue(cause, depth + 1, seen, phones);
  seen.delete(e);
  return out;
}

/** The fields every line of one call carries once known: its bridge id is bound, these are filled in. */
export interface CallLogFields { wacid?: string; sipCallId?: string }

const CALL_FIELDS = Symbol('wasb.callLogFields');
type WithCallFields = { [CALL_FIELDS]?: CallLogFields };

function callFieldsMixin(_merge: object, _level: number, logger: Logger): object {
  const f = (logger as unknown as WithCallFields)[CALL_FIELDS];
  return f ? { ...f } : {};
}

/**
 * A call's logger: every line it writes carries `callId` and, once setCallLogFields() has named them,
 * `wacid` and `sipCallId`, and so does every child logger made from it, before or after (pino children
 * inherit from their parent, and the fields live in one object they all read at each line).
 */
export function callLogger(parent: Logger, callId: string, fields: CallLogFields = {}): Logger {
  const log = parent.child({ callId });
  if ((parent as unknown as Record<symbol, unknown>)[pino.symbols.mixinSym] === callFieldsMixin) {
    (log as unknown as WithCallFields)[CALL_FIELDS] = {};
  }
  setCallLogFields(log, fields);
  return log;
}

/** Names (or renames: a transfer's new PBX leg) the call's wacid or SIP Call-ID in its log lines from now on. */
export function setCallLogFields(log: Logger, fields: CallLogFields): void {
  try {
    const known = (log as unknown as WithCallFields)[CALL_FIELDS];
    const set = Object.fromEntries(Object.entries(fields).filter(([, v]) => typeof v === 'string' && v !== '')) as CallLogFields;
    if (known) Object.assign(known, set);
    else if (Object.keys(set).length) log.setBindings(set); // a logger not made by createLogger: bound once
  } catch {
    // logging context must never break a call
  }
}

export function createLogger(level: string, base: Record<string, unknown> = {}, opts: LoggerOptions = {}): Logger {
  const fixed = searchForms(opts.secrets);
  let later: { of: readonly string[]; forms: string[] } | null = null;
  const secrets = (): string[] => {
    const more = opts.moreSecrets?.();
    if (!more || more.length === 0) return fixed;
    if (later?.of !== more) later = { of: more, forms: searchForms([...(opts.secrets ?? []), ...more]) };
    return later.forms;
  };
  const phones = opts.phoneNumbers !== 'full';
  const options: pino.LoggerOptions = {
    level,
    base: { name: 'wa-sip-bridge', ...base },
    redact: { paths: REDACT_PATHS, censor: REDACTED },
    mixin: callFieldsMixin,
    formatters: { log: (obj) => scrubValue(obj, 0, new WeakSet(), phones) as Record<string, unknown> },
    serializers: { err: (e: unknown) => scrubValue(e, 0, new WeakSet(), phones) },
    hooks: { streamWrite: (line) => (phones ? maskPhoneNumbersInLine(scrubLine(line, secrets())) : scrubLine(line, secrets())) },
  };
  return opts.destination ? pino(options, opts.destination) : pino(options);
}

/** The configured secrets a logger must never write (for createLogger's `secrets`). */
export function configSecrets(c: Pick<Config, 'drachtio' | 'ycloud' | 'meta' | 'pbx' | 'outbound' | 'admin' | 'metrics' | 'databaseUrl'>): string[] {
  const dbPassword = (() => {
    try {
      return c.databaseUrl ? decodeURIComponent(new URL(c.databaseUrl).password) : '';
    } catch {
      return '';
    }
  })();
  return [
    c.drachtio.secret, c.ycloud.apiKey ?? '', c.ycloud.webhookSecret ?? '', c.meta.accessToken ?? '', c.meta.appSecret ?? '',
    c.meta.verifyToken ?? '', c.meta.sip.password ?? '', c.pbx.auth?.password ?? '', c.outbound.auth?.password ?? '',
    c.admin.token ?? '', ...c.admin.reportingTokens, c.metrics.token ?? '', dbPassword,
  ].filter((s) => s.length > 0);
}
