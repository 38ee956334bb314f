import { AccountSpec } from '../numbers/spec';
import { CheckResult, failed, ok, warn } from '../preflight/report';

/** Shorter than this, a signing secret is more likely a placeholder than the provider's. */
const MIN_SECRET_CHARS = 16;
const PLACEHOLDER = /^(change-?me|changeme|secret|test|todo|xxx+|placeholder|none|null|<.*>)$/i;

/**
 * The signing secrets of an account are set, and look like secrets: YCloud's webhook secret (it signs
 * each webhook), Meta's app secret (X-Hub-Signature-256) and verify token (the subscription check).
 * Without the right one every webhook is refused (401) and no call ever rings: whether it is the
 * provider's own shows only in the webhook check (Meta's verify token) and the first delivery.
 */
export function checkSecrets(a: AccountSpec, fromFile: boolean): CheckResult[] {
  const name = (setting: string, field: string): string => (!fromFile ? setting : `"${a.name}".${field} in NUMBERS_FILE`);
  if (a.kind === 'ycloud') {
    return [secret('webhook secret', a.webhookSecret, name('YCLOUD_WEBHOOK_SECRET', 'webhookSecret'), [[a.apiKey, 'the API key']])];
  }
  return [
    secret('app secret', a.appSecret, name('META_APP_SECRET', 'appSecret'), [[a.accessToken, 'the access token']]),
    secret('verify token', a.verifyToken, name('META_VERIFY_TOKEN', 'verifyToken'), [[a.appSecret, 'the app secret'], [a.accessToken, 'the access token']]),
  ];
}

function secret(check: string, value: string, where: string, others: Array<[string, string]>): CheckResult {
  const v = value.trim();
  if (!v) return failed(check, `${where} is empty: every webhook will be refused`);
  const same = others.find(([o]) => o.trim() === v);
  if (same) return failed(check, `${where} is the same as ${same[1]}: copy the signing secret from the provider's console`);
  if (PLACEHOLDER.test(v)) return failed(check, `${where} is a placeholder ("${v.length > 12 ? `${v.slice(0, 12)}...` : v}"): set the provider's secret`);
  if (v.length < MIN_SECRET_CHARS) return warn(check, `${where} is set but only ${v.length} characters: is it the provider's?`);
  return ok(check, `${where} set (${v.length} characters)`);
}
