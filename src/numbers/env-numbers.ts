import { Config } from '../config';
import { AccountSpec, NumberDefaults, NumbersSpec } from './spec';

/** What the numbers file's accounts and numbers take from the bridge's settings where they say nothing. */
export function numberDefaults(c: Config): NumberDefaults {
  return {
    ycloud: { apiBaseUrl: c.ycloud.apiBaseUrl, timeoutMs: c.ycloud.timeoutMs, webhookToleranceSeconds: c.ycloud.webhookToleranceSeconds },
    meta: { apiBaseUrl: c.meta.apiBaseUrl, authHeader: c.meta.authHeader, timeoutMs: c.meta.timeoutMs },
    pbxCodecs: c.pbx.codecs,
    pbxAuth: c.pbx.auth,
    codecPolicy: c.media.codecPolicy,
    recording: c.recording.enabled,
  };
}

/**
 * A single-number deployment (no NUMBERS_FILE): one account of WA_PROVIDER's kind, named for it (its
 * webhooks at /webhooks/ycloud or /webhooks/meta), and one number, "default", on it. The number takes
 * every phone id its provider sends (catch-all: the bridge has always answered whatever number YCloud
 * named) and is the agents' default. With META_SIP_HOSTNAME (on Meta), Meta's native SIP carries its calls.
 * loadConfig has already checked the account's credentials (and the SIP mode's) are set.
 */
export function envNumbers(c: Config): NumbersSpec {
  const d = numberDefaults(c);
  const kind = c.numbers.provider;
  const missing = (name: string): never => {
    throw new Error(`${name} is not set (loadConfig requires it when WA_PROVIDER=${kind} and NUMBERS_FILE is unset)`);
  };
  const account: AccountSpec = kind === 'ycloud'
    ? {
      kind, name: kind,
      apiKey: c.ycloud.apiKey ?? missing('YCLOUD_API_KEY'),
      webhookSecret: c.ycloud.webhookSecret ?? missing('YCLOUD_WEBHOOK_SECRET'),
      ...d.ycloud,
    }
    : {
      kind, name: kind,
      accessToken: c.meta.accessToken ?? missing('META_ACCESS_TOKEN'),
      appSecret: c.meta.appSecret ?? missing('META_APP_SECRET'),
      verifyToken: c.meta.verifyToken ?? missing('META_VERIFY_TOKEN'),
      ...d.meta,
    };
  // Meta's SIP mode (META_SIP_HOSTNAME): loadConfig has checked WA_PROVIDER=meta, the password and the number are set.
  const sip = c.meta.sip.hostname === null || kind !== 'meta' ? null : {
    hostname: c.meta.sip.hostname.toLowerCase(),
    port: c.meta.sip.port,
    username: c.meta.sip.username ?? (c.outbound.defaultBusinessNumber ?? missing('WA_BUSINESS_NUMBER (with META_SIP_HOSTNAME)')).slice(1),
    password: c.meta.sip.password ?? missing('META_SIP_PASSWORD (with META_SIP_HOSTNAME)'),
    srtp: c.meta.sip.srtp,
    g711: c.meta.sip.g711,
    webhooks: c.meta.sip.webhooks,
  };
  return {
    accounts: [account],
    numbers: [{
      name: 'default',
      // Unset, the number is learnt from the webhooks (the catch-all takes them); agents must then name theirs.
      number: c.outbound.defaultBusinessNumber,
      phoneId: c.outbound.defaultPhoneId,
      wabaId: c.admin.wabaId,
      account: account.name,
      pbx: { targets: c.pbx.targets, requestUser: null, codecs: d.pbxCodecs, auth: d.pbxAuth },
      codecPolicy: d.codecPolicy,
      recording: d.recording,
      catchAll: true,
      agentDefault: true,
      sip,
    }],
  };
}
