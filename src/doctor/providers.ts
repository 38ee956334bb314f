import { BusinessLine, ProviderError, WhatsAppProvider } from '../calls/provider-port';
import { providerAccount } from '../numbers/provider-accounts';
import { AccountSpec, NumberSpec } from '../numbers/spec';
import { CheckResult, failed, ok, skipped, warn } from '../preflight/report';
import { messageOf } from './check';
import { whyUnreachable } from './net-probe';

/** One number's settings read: the body, or why not (the error, or what the configuration lacks to address it). */
type Read = { number: NumberSpec; body: unknown } | { number: NumberSpec; error: unknown } | { number: NumberSpec; unaddressable: string };

/**
 * A provider account's credentials and its numbers' calling status, by one harmless authenticated read
 * per number (its calling settings: `npm run settings -- get` reads the same). The credentials line comes
 * first: a wrong key explains every number's failure after it.
 */
export async function checkAccount(account: AccountSpec, numbers: NumberSpec[], timeoutMs: number, fromFile: boolean): Promise<CheckResult[]> {
  // The doctor's bound, not the bridge's (YCLOUD_TIMEOUT_MS / META_TIMEOUT_MS may be longer).
  const provider = providerAccount({ ...account, timeoutMs: Math.min(account.timeoutMs, timeoutMs) }).provider;
  const mine = numbers.filter((n) => n.account === account.name);
  const reads = await Promise.all(mine.map((n) => readSettings(account, provider, n, fromFile)));
  return [await credentials(account, reads, timeoutMs, fromFile), ...reads.map((r) => callingStatus(account, r))];
}

async function readSettings(account: AccountSpec, provider: WhatsAppProvider, number: NumberSpec, fromFile: boolean): Promise<Read> {
  const unaddressable = whyUnaddressable(account, number, fromFile);
  if (unaddressable) return { number, unaddressable };
  const line: BusinessLine = { number: number.number ?? '', phoneId: number.phoneId, wabaId: number.wabaId };
  try {
    return { number, body: await provider.getCallingSettings(line) };
  } catch (error) {
    return { number, error };
  }
}

/** What the configuration lacks for the provider's settings endpoint to name the number (YCloud: WABA id and number; Meta: phone id). */
function whyUnaddressable(account: AccountSpec, n: NumberSpec, fromFile: boolean): string | null {
  const env = !fromFile;
  if (account.kind === 'ycloud') {
    if (!n.number) return `the number is not known (${env ? 'WA_BUSINESS_NUMBER' : 'its number:'} unset)`;
    if (!n.wabaId) return `no WABA id (${env ? 'WA_WABA_ID' : 'its wabaId:'} unset): YCloud's settings are addressed by WABA id and number`;
    return null;
  }
  return n.phoneId ? null : `no phone number id (${env ? 'WA_PHONE_ID' : 'its phoneId:'} unset): Graph's settings are addressed by it`;
}

const keyName = (a: AccountSpec, fromFile: boolean): string => (!fromFile
  ? (a.kind === 'ycloud' ? 'YCLOUD_API_KEY' : 'META_ACCESS_TOKEN')
  : `the ${a.kind === 'ycloud' ? 'apiKey' : 'accessToken'} of account "${a.name}" in NUMBERS_FILE`);

async function credentials(account: AccountSpec, reads: Read[], timeoutMs: number, fromFile: boolean): Promise<CheckResult> {
  const check = 'credentials';
  const answered = reads.find((r) => 'body' in r || ('error' in r && r.error instanceof ProviderError && r.error.httpStatus !== null
    && r.error.httpStatus !== 401 && r.error.httpStatus !== 403 && r.error.httpStatus < 500));
  const errors = reads.flatMap((r) => ('error' in r ? [r.error] : []));
  const refused = errors.find((e) => e instanceof ProviderError && (e.httpStatus === 401 || e.httpStatus === 403)) as ProviderError | undefined;
  if (refused && !reads.some((r) => 'body' in r)) {
    const what = refused.httpStatus === 401
      ? 'wrong key: the API refused it (HTTP 401)'
      : 'wrong key, or one without access to this account\'s numbers: the API refused it (HTTP 403)';
    return failed(check, `${what}: ${refused.message}. Check ${keyName(account, fromFile)}`);
  }
  if (answered) return ok(check, `accepted by ${account.apiBaseUrl} (read ${answered.number.number ?? answered.number.name}'s calling settings)`);
  const unanswered = errors.find((e) => e instanceof ProviderError && e.httpStatus === null) as ProviderError | undefined;
  if (unanswered) {
    return failed(check, unanswered.timedOut
      ? `${account.apiBaseUrl} did not answer within ${timeoutMs} ms: unchecked`
      : `${await whyUnreachable(account.apiBaseUrl, timeoutMs)}: unchecked (${unanswered.message})`);
  }
  if (errors.length) return failed(check, `the API failed: ${messageOf(errors[0])}`);
  const why = reads.map((r) => ('unaddressable' in r ? r.unaddressable : '')).find(Boolean);
  return skipped(check, reads.length ? `not read: ${why}` : 'not read: no number is on this account');
}

function callingStatus(account: AccountSpec, r: Read): CheckResult {
  const who = r.number.number ?? `number "${r.number.name}"`;
  const check = `calling ${who}`;
  if ('unaddressable' in r) return warn(check, `unknown: ${r.unaddressable}`);
  if ('error' in r) {
    const e = r.error;
    if (!(e instanceof ProviderError)) return failed(check, `unknown: ${messageOf(e)}`);
    if (e.httpStatus === 404) {
      return failed(check, `the provider does not know this number (HTTP 404): check its ${account.kind === 'ycloud' ? 'WABA id and number' : 'phone number id'}`);
    }
    if (e.httpStatus === null || e.httpStatus === 401 || e.httpStatus === 403) return skipped(check, 'unknown: the settings could not be read (credentials above)');
    return failed(check, `unknown: the settings read failed (HTTP ${e.httpStatus}: ${e.message})`);
  }
  const calling = objectAt(r.body, 'calling');
  const status = typeof calling?.status === 'string' ? calling.status : null;
  const enable = `npm run settings -- set --phone ${r.number.number ?? '<number>'} --status ENABLED`;
  if (status === null) return warn(check, 'the settings name no calling status: calls may be refused by the provider');
  if (status.toUpperCase() !== 'ENABLED') return failed(check, `calling is ${status}: WhatsApp users cannot call it and agents cannot call out. Enable it: ${enable}`);
  if (r.number.sip) {
    const sip = objectAt(calling, 'sip');
    const sipStatus = typeof sip?.status === 'string' ? sip.status : 'unset';
    if (sipStatus.toUpperCase() !== 'ENABLED') {
      return failed(check, `calling is ENABLED but SIP is ${sipStatus}, and the numbers file puts it in Meta's SIP mode: `
        + `npm run settings -- set --phone ${r.number.number ?? '<number>'} --sip ENABLED --sip-host ${r.number.sip.hostname}`);
    }
    return ok(check, 'ENABLED, SIP ENABLED');
  }
  return ok(check, 'ENABLED');
}

function objectAt(v: unknown, key: string): Record<string, unknown> | null {
  if (typeof v !== 'object' || v === null) return null;
  const x = (v as Record<string, unknown>)[key];
  return typeof x === 'object' && x !== null && !Array.isArray(x) ? (x as Record<string, unknown>) : null;
}
