import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { z } from 'zod';
import { isDnsName } from '../config/addresses';
import { CODEC_POLICIES } from '../config/codec-policy';
import { PBX_CODECS } from '../config/settings';
import { AccountSpec, NumberDefaults, NumberSpec, NumbersSpec } from './spec';

/**
 * NUMBERS_FILE: several business numbers, each on a provider account, with its own PBX route
 * (docs/numbers.md). The file is read whole and checked whole: every problem is listed with its place in
 * the YAML (`numbers[1].pbx.targets[0]: ...`), and a file with any problem is refused as a whole. Secrets
 * are never written in it: each is a reference, `{env: NAME}` or `{file: /path}`, resolved as the file is
 * read, and a problem names the reference, never a value.
 */

export class NumbersFileError extends Error {
  constructor(readonly file: string, readonly problems: string[]) {
    super(`NUMBERS_FILE ${file} is refused: ${problems.join('; ')}`);
    this.name = 'NumbersFileError';
  }
}

type Env = Record<string, string | undefined>;

/** A provider account's name: its webhook path segment, POST /webhooks/<name>. */
const ACCOUNT_NAME = /^[a-z0-9-]{1,32}$/;
const NUMBER_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
const E164 = /^\+[1-9]\d{6,14}$/;
const SIP_URI = /^sips?:([^@\s]+@)?[^@\s:;]+(:\d+)?(;[^\s]*)?$/;
/** A SIP user part (RFC 3261 "user": unreserved, escaped and user-unreserved characters). */
const SIP_USER = /^[A-Za-z0-9\-_.!~*'()&=+$,;?/%]{1,64}$/;
/** The port Meta's settings name when none is given (SIP over TLS). */
const META_SIP_PORT = 5061;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Where a secret is: an environment variable, or a file (a mounted secret). Never the secret itself. */
export type SecretRef = { env: string } | { file: string };

const LITERAL_SECRET = 'a secret is never written in the numbers file: give a reference, {env: VARIABLE} or {file: /path/to/secret}';

const secretRef = z.unknown().transform((v, ctx): SecretRef => {
  const refuse = (message: string): never => {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message });
    return z.NEVER;
  };
  if (v === undefined) return refuse('is required: {env: VARIABLE} or {file: /path/to/secret}');
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return refuse(LITERAL_SECRET);
  const keys = Object.keys(v);
  const o = v as Record<string, unknown>;
  if (keys.length !== 1 || !(keys[0] === 'env' || keys[0] === 'file')) return refuse(`must be {env: VARIABLE} or {file: /path} (got keys: ${keys.join(', ') || 'none'})`);
  if (keys[0] === 'env') {
    return typeof o.env === 'string' && ENV_NAME.test(o.env) ? { env: o.env } : refuse('env must name an environment variable (letters, digits, _)');
  }
  return typeof o.file === 'string' && path.isAbsolute(o.file) ? { file: o.file } : refuse('file must be an absolute path');
});

/** A whole number (YAML integers are read as bigints, so that long ids stay exact). */
const int = (min: number, max: number) => z.union([z.number(), z.bigint()]).transform((v, ctx) => {
  const n = Number(v);
  if (Number.isInteger(n) && n >= min && n <= max) return n;
  ctx.addIssue({ code: z.ZodIssueCode.custom, message: `must be an integer between ${min} and ${max}` });
  return z.NEVER;
});

/** An id the provider gives (phone number id, WABA id): digits YAML may read as an integer, kept as written. */
const providerId = z.union([z.string().trim().min(1, 'must not be empty'), z.bigint().transform(String)], {
  errorMap: () => ({ message: 'must be the provider\'s id, e.g. "106540352242922"' }),
});

/** E.164; an unquoted +14155550100 is a YAML integer, taken as the number it spells. */
const e164 = z.union([z.string(), z.bigint().transform((v) => `+${v}`)]).refine((v) => E164.test(v.trim()), {
  message: 'must be an E.164 number, e.g. "+14155550100"',
}).transform((v) => v.trim());

const httpUrl = z.string().refine((v) => {
  try {
    return ['http:', 'https:'].includes(new URL(v).protocol);
  } catch {
    return false;
  }
}, { message: 'must be an http(s) URL' }).transform((v) => v.replace(/\/+$/, ''));

const ycloudAccount = z.object({
  kind: z.literal('ycloud'),
  apiKey: secretRef,
  webhookSecret: secretRef,
  apiBaseUrl: httpUrl.optional(),
  timeoutMs: int(100, 60000).optional(),
  webhookToleranceSeconds: int(1, 3600).optional(),
}).strict();

const metaAccount = z.object({
  kind: z.literal('meta'),
  accessToken: secretRef,
  appSecret: secretRef,
  verifyToken: secretRef,
  apiBaseUrl: httpUrl.optional(),
  authHeader: z.string().regex(HEADER_NAME, 'must be an HTTP header name').optional(),
  timeoutMs: int(100, 60000).optional(),
}).strict();

const account = z.discriminatedUnion('kind', [ycloudAccount, metaAccount], {
  errorMap: (issue, ctx) => (issue.code === z.ZodIssueCode.invalid_union_discriminator
    ? { message: 'kind must be "ycloud" or "meta"' }
    : { message: ctx.defaultError }),
});

/**
 * Meta's native SIP for a number (on a Meta account): what its calling settings say (`sip.servers[0]`,
 * `srtp_key_exchange_protocol`, `audio.additional_codecs`, `sip.webhook_delivery`) and its SIP password.
 */
const sipMode = z.object({
  hostname: z.string({ required_error: 'is required: the DNS name Meta\'s settings give as the SIP server, e.g. sip.example.com' })
    .trim().refine(isDnsName, 'must be a DNS name, e.g. sip.example.com (not an IP address): the name the bridge\'s TLS certificate covers')
    .transform((v) => v.toLowerCase()),
  port: int(1, 65535).optional(),
  username: z.union([z.string().regex(SIP_USER, 'must be a SIP user part, e.g. "15551234567"'), z.bigint().transform(String)]).optional(),
  password: secretRef,
  srtp: z.enum(['dtls', 'sdes'], { errorMap: () => ({ message: 'must be dtls or sdes' }) }).optional(),
  g711: z.boolean().optional(),
  webhooks: z.boolean().optional(),
}).strict();

const number = z.object({
  name: z.string().regex(NUMBER_NAME, 'must be 1-64 letters, digits, _ or - (starting with a letter or digit)'),
  number: e164,
  phoneId: providerId,
  wabaId: providerId.optional(),
  provider: z.string(),
  pbx: z.object({
    targets: z.array(z.string().regex(SIP_URI, 'is not a SIP URI, e.g. sip:10.0.0.10:5060')).min(1, 'must name at least one SIP URI'),
    requestUser: z.union([z.string().regex(SIP_USER, 'must be a SIP user part, e.g. 2001'), z.bigint().transform(String)]).optional(),
    codecs: z.array(z.enum(PBX_CODECS, { errorMap: () => ({ message: `must be one of ${PBX_CODECS.join(', ')}` }) }))
      .min(1, 'must name at least one codec').optional(),
    /** Digest credentials this PBX challenges the bridge for (its own, e.g. another site's); the password by reference. */
    auth: z.object({ username: z.string().min(1).max(128), password: secretRef }).strict().optional(),
  }).strict(),
  codecPolicy: z.enum(CODEC_POLICIES, { errorMap: () => ({ message: `must be one of ${CODEC_POLICIES.join(', ')}` }) }).optional(),
  recording: z.boolean().optional(),
  catchAll: z.boolean().optional(),
  agentDefault: z.boolean().optional(),
  sip: sipMode.optional(),
}).strict();

const numbersFile = z.object({
  providers: z.record(z.string().regex(ACCOUNT_NAME, 'a provider account\'s name must be 1-32 of a-z, 0-9 and - (it is its webhook path, /webhooks/<name>)'), account)
    .refine((p) => Object.keys(p).length > 0, 'must name at least one provider account'),
  numbers: z.array(number).min(1, 'must list at least one number'),
}).strict();

/**
 * The checks across numbers, on the file as read (so they are listed beside any problem of a field):
 * unique names, numbers and phone ids, providers that exist, one catch-all per provider, one agents' default.
 */
function crossProblems(raw: unknown): string[] {
  if (!isRecord(raw) || !Array.isArray(raw.numbers)) return [];
  const providers = isRecord(raw.providers) ? Object.keys(raw.providers) : [];
  const out: string[] = [];
  const seen = { name: new Map<string, number>(), number: new Map<string, number>(), phoneId: new Map<string, number>() };
  const catchAll = new Map<string, number>();
  let agentDefault: number | null = null;
  raw.numbers.forEach((n: unknown, i) => {
    if (!isRecord(n)) return;
    const values = {
      name: typeof n.name === 'string' ? n.name : null,
      number: typeof n.number === 'string' ? n.number.trim() : typeof n.number === 'bigint' ? `+${n.number}` : null,
      phoneId: typeof n.phoneId === 'string' ? n.phoneId.trim() : typeof n.phoneId === 'bigint' ? String(n.phoneId) : null,
    };
    for (const key of ['name', 'number', 'phoneId'] as const) {
      const v = values[key];
      if (v === null) continue;
      const first = seen[key].get(v);
      if (first !== undefined) out.push(`numbers[${i}].${key}: "${v}" is already numbers[${first}]'s ${key}`);
      else seen[key].set(v, i);
    }
    const provider = typeof n.provider === 'string' ? n.provider : null;
    if (provider === null) out.push(`numbers[${i}].provider: must name one of the providers (${providers.join(', ') || 'none'})`);
    else if (!providers.includes(provider)) out.push(`numbers[${i}].provider: "${provider}" is not under providers (${providers.join(', ') || 'none'})`);
    const kind = provider !== null && isRecord(raw.providers) && isRecord(raw.providers[provider]) ? raw.providers[provider].kind : null;
    if (n.sip !== undefined && typeof kind === 'string' && kind !== 'meta') {
      out.push(`numbers[${i}].sip: only a number on a Meta account (kind: meta) can be in Meta's SIP mode; "${provider}" is kind ${kind}`);
    }
    if (n.catchAll === true && provider !== null) {
      const first = catchAll.get(provider);
      if (first !== undefined) out.push(`numbers[${i}].catchAll: provider "${provider}" already has its catch-all number, numbers[${first}]`);
      else catchAll.set(provider, i);
    }
    if (n.agentDefault === true) {
      if (agentDefault !== null) out.push(`numbers[${i}].agentDefault: numbers[${agentDefault}] is already the agents' default number`);
      else agentDefault = i;
    }
  });
  return out;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

type FileContent = z.infer<typeof numbersFile>;

/** `numbers[1].pbx.targets[0]`, `providers.sales.kind`: where in the YAML a problem is. */
function yamlPath(p: ReadonlyArray<string | number>): string {
  return p.reduce<string>((out, k) => (typeof k === 'number' ? `${out}[${k}]` : out ? `${out}.${k}` : k), '') || '(the file)';
}

/**
 * Reads and checks the numbers file, resolving its secret references from `env` and the files they name.
 * Throws NumbersFileError listing every problem (never a secret's value).
 */
export function loadNumbersFile(file: string, defaults: NumberDefaults, env: Env): NumbersSpec {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new NumbersFileError(file, [`cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`]);
  }
  const doc = YAML.parseDocument(text, { intAsBigInt: true });
  if (doc.errors.length) {
    // The first line of the parser's message only: the rest quotes the file, which may hold a mistyped secret.
    throw new NumbersFileError(file, doc.errors.map((e) => {
      const where = e.linePos ? `line ${e.linePos[0].line}, column ${e.linePos[0].col}: ` : '';
      return `${where}not YAML (${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')})`;
    }));
  }
  const raw: unknown = doc.toJS();
  const parsed = numbersFile.safeParse(raw);
  const shapeProblems = parsed.success ? [] : parsed.error.issues.map((i) => `${yamlPath(i.path)}: ${i.message}`);
  const listed = [...shapeProblems, ...crossProblems(raw)];
  if (!parsed.success || listed.length) throw new NumbersFileError(file, listed);
  const problems: string[] = [];
  const resolve = (ref: SecretRef, where: string): string => {
    const value = readSecret(ref, env);
    if (typeof value === 'string') return value;
    problems.push(`${where}: ${value.problem}`);
    return '';
  };
  const spec = specOf(parsed.data, defaults, resolve);
  if (problems.length) throw new NumbersFileError(file, problems);
  return spec;
}

/** The secret a reference names, or why it cannot be had (naming the reference, never a value). */
function readSecret(ref: SecretRef, env: Env): string | { problem: string } {
  if ('env' in ref) {
    const v = env[ref.env]?.trim();
    return v ? v : { problem: `environment variable ${ref.env} is not set (or empty)` };
  }
  try {
    const v = fs.readFileSync(ref.file, 'utf8').trim();
    return v ? v : { problem: `secret file ${ref.file} is empty` };
  } catch (err) {
    return { problem: `cannot read secret file ${ref.file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` };
  }
}

function specOf(f: FileContent, d: NumberDefaults, secret: (ref: SecretRef, where: string) => string): NumbersSpec {
  const accounts: AccountSpec[] = Object.entries(f.providers).map(([name, a]) => {
    const s = (key: string, ref: SecretRef) => secret(ref, `providers.${name}.${key}`);
    return a.kind === 'ycloud'
      ? {
        kind: 'ycloud', name,
        apiKey: s('apiKey', a.apiKey),
        webhookSecret: s('webhookSecret', a.webhookSecret),
        apiBaseUrl: a.apiBaseUrl ?? d.ycloud.apiBaseUrl,
        timeoutMs: a.timeoutMs ?? d.ycloud.timeoutMs,
        webhookToleranceSeconds: a.webhookToleranceSeconds ?? d.ycloud.webhookToleranceSeconds,
      }
      : {
        kind: 'meta', name,
        accessToken: s('accessToken', a.accessToken),
        appSecret: s('appSecret', a.appSecret),
        verifyToken: s('verifyToken', a.verifyToken),
        apiBaseUrl: a.apiBaseUrl ?? d.meta.apiBaseUrl,
        authHeader: a.authHeader ?? d.meta.authHeader,
        timeoutMs: a.timeoutMs ?? d.meta.timeoutMs,
      };
  });
  const numbers: NumberSpec[] = f.numbers.map((n, i) => ({
    name: n.name,
    number: n.number,
    phoneId: n.phoneId,
    wabaId: n.wabaId ?? null,
    account: n.provider,
    pbx: {
      targets: n.pbx.targets, requestUser: n.pbx.requestUser ?? null, codecs: n.pbx.codecs ?? d.pbxCodecs,
      auth: n.pbx.auth ? { username: n.pbx.auth.username, password: secret(n.pbx.auth.password, `numbers[${i}].pbx.auth.password`) } : d.pbxAuth,
    },
    codecPolicy: n.codecPolicy ?? d.codecPolicy,
    recording: n.recording ?? d.recording,
    catchAll: n.catchAll ?? false,
    agentDefault: n.agentDefault ?? false,
    sip: n.sip ? {
      hostname: n.sip.hostname,
      port: n.sip.port ?? META_SIP_PORT,
      username: n.sip.username ?? n.number.slice(1),
      password: secret(n.sip.password, `numbers[${i}].sip.password`),
      srtp: n.sip.srtp ?? 'dtls',
      g711: n.sip.g711 ?? false,
      webhooks: n.sip.webhooks ?? false,
    } : null,
  }));
  // One number and none named the agents' default: that one is.
  if (numbers.length === 1 && f.numbers[0]!.agentDefault === undefined) numbers[0]!.agentDefault = true;
  return { accounts, numbers };
}
