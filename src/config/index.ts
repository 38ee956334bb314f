import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** Everything the bridge reads from its environment, validated once at start-up. */
export interface Config {
  databaseUrl: string;
  httpPort: number;
  nodeId: string;
  logLevel: string;
  ycloud: {
    apiBaseUrl: string;
    apiKey: string;
    webhookSecret: string;
    /** Accepted age (and clock skew) of a webhook signature's timestamp. */
    webhookToleranceSeconds: number;
    timeoutMs: number;
  };
  drachtio: { host: string; port: number; secret: string };
  rtpengine: {
    ng: Array<{ host: string; port: number }>;
    timeoutMs: number;
    /** Where the bridge receives rtpengine's DTMF log (rtpengine's --dtmf-log-dest); null: digits unseen. */
    dtmfLog: { host: string; port: number } | null;
  };
  pbx: {
    /** SIP URIs tried in order; the next one only when the previous was unreachable. */
    targets: string[];
    codecs: string[];
    /** Give up ringing before WhatsApp's 30-60 s accept window closes. */
    noAnswerTimeoutMs: number;
    /** No SIP response at all within this time: the target counts as unreachable. */
    responseTimeoutMs: number;
    /** Bound on requests the bridge sends inside a dialog (BYE, NOTIFY, INFO). */
    requestTimeoutMs: number;
    /** Accept the WhatsApp call on a 183 with SDP, so the caller hears the PBX's announcements. */
    earlyMedia: boolean;
    /** How the WhatsApp user's digits reach the PBX: RFC 4733 in the media, or SIP INFO. */
    dtmfMode: 'rfc4733' | 'info';
    /** REFER targets whose user part matches are refused (no PSTN legs on WhatsApp calls); null: none. */
    transferRefusePattern: RegExp | null;
    /** The shortest session interval (RFC 4028 Min-SE) the bridge accepts. */
    minSessionExpiresS: number;
    /** How often each PBX target is pinged with OPTIONS; 0: never. */
    optionsPingMs: number;
  };
  media: {
    /** Played to the WhatsApp user while the PBX sends nothing (a path rtpengine can read). */
    holdFile: string;
    /** True when holdFile is the bridge's generated silence (no MEDIA_HOLD_FILE given). */
    holdIsSilence: boolean;
    /** Where the bridge writes its generated silence file (must be readable by rtpengine). */
    dir: string;
    keepalivePollMs: number;
    /** How long the PBX may send nothing before the file starts (WhatsApp gives up after 20-30 s). */
    keepaliveAfterMs: number;
  };
  /** Agent -> WhatsApp calls (INVITEs from the PBX). */
  outbound: {
    /** Source addresses/CIDRs allowed to place WhatsApp calls; empty means none (toll-fraud safe default). */
    trustedSources: string[];
    /** Optional SIP digest credentials required on top of the address check. */
    auth: { username: string; password: string; realm: string } | null;
    /** Business number used when the INVITE names none (X-WhatsApp-Business-Number header). */
    defaultBusinessNumber: string | null;
    /** Phone number id of the default business number (needed to terminate before any webhook). */
    defaultPhoneId: string | null;
    /** Give up when WhatsApp has not accepted within this time. */
    ringTimeoutMs: number;
    /** Send a call-permission request automatically when an agent dials someone without permission. */
    autoPermissionRequest: { text: string } | null;
  };
  admin: { token: string | null; wabaId: string | null };
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration: ${problems.join('; ')}`);
    this.name = 'ConfigError';
  }
}

const PBX_CODECS = new Set(['PCMU', 'PCMA', 'G722']);
type Env = Record<string, string | undefined>;

/** Reads and checks every setting, collecting all problems so an operator fixes them in one go. */
export function loadConfig(env: Env = process.env): Config {
  const problems: string[] = [];
  const str = (key: string, fallback?: string): string => {
    const v = env[key]?.trim();
    if (v) return v;
    if (fallback !== undefined) return fallback;
    problems.push(`${key} is required`);
    return '';
  };
  const int = (key: string, fallback: number, min: number, max: number): number => {
    const raw = env[key]?.trim();
    if (!raw) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) {
      problems.push(`${key} must be an integer between ${min} and ${max} (got "${raw}")`);
      return fallback;
    }
    return n;
  };

  const databaseUrl = str('DATABASE_URL');
  if (databaseUrl && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    problems.push('DATABASE_URL must be a postgres:// URL');
  }
  const apiBaseUrl = str('YCLOUD_API_BASE_URL', 'https://api.ycloud.com/v2').replace(/\/+$/, '');
  if (!isHttpUrl(apiBaseUrl)) problems.push(`YCLOUD_API_BASE_URL must be an http(s) URL (got "${apiBaseUrl}")`);

  const ngRaw = str('RTPENGINE_NG');
  const ng: Array<{ host: string; port: number }> = [];
  for (const item of ngRaw.split(',').map((s) => s.trim()).filter(Boolean)) {
    const hp = parseHostPort(item);
    if (hp) ng.push(hp);
    else problems.push(`RTPENGINE_NG entry "${item}" is not host:port`);
  }

  const dtmfLogRaw = str('RTPENGINE_DTMF_LOG', '');
  const dtmfLog = dtmfLogRaw ? parseHostPort(dtmfLogRaw) ?? null : null;
  if (dtmfLogRaw && !dtmfLog) problems.push(`RTPENGINE_DTMF_LOG must be host:port (got "${dtmfLogRaw}")`);
  const dtmfModeRaw = env.PBX_DTMF_MODE?.trim();
  if (dtmfModeRaw === 'info' && !dtmfLogRaw) problems.push('PBX_DTMF_MODE=info needs RTPENGINE_DTMF_LOG (the bridge learns the digits from rtpengine\'s DTMF log)');

  const targets = str('PBX_TARGET').split(',').map((s) => s.trim()).filter(Boolean);
  for (const t of targets) {
    if (!/^sips?:([^@\s]+@)?[^@\s:;]+(:\d+)?(;[^\s]*)?$/.test(t)) problems.push(`PBX_TARGET entry "${t}" is not a SIP URI`);
  }
  const codecs = str('PBX_CODECS', 'PCMU,PCMA').split(',').map((s) => s.trim().toUpperCase()).filter(Boolean);
  for (const c of codecs) if (!PBX_CODECS.has(c)) problems.push(`PBX_CODECS entry "${c}" is not one of ${[...PBX_CODECS].join(', ')}`);

  const earlyMedia = str('PBX_EARLY_MEDIA', 'ignore');
  if (earlyMedia !== 'accept' && earlyMedia !== 'ignore') problems.push(`PBX_EARLY_MEDIA must be "accept" or "ignore" (got "${earlyMedia}")`);
  const dtmfMode = str('PBX_DTMF_MODE', 'rfc4733');
  if (dtmfMode !== 'rfc4733' && dtmfMode !== 'info') problems.push(`PBX_DTMF_MODE must be "rfc4733" or "info" (got "${dtmfMode}")`);
  const refuseRaw = str('TRANSFER_REFUSE_PATTERN', '^\\+?[0-9]{7,}$');
  let transferRefusePattern: RegExp | null = null;
  if (refuseRaw !== 'off') {
    try {
      transferRefusePattern = new RegExp(refuseRaw);
    } catch {
      problems.push(`TRANSFER_REFUSE_PATTERN is not a regular expression (got "${refuseRaw}")`);
    }
  }
  const mediaDir = str('MEDIA_DIR', path.join(os.tmpdir(), 'wa-sip-bridge-media'));
  const holdFile = str('MEDIA_HOLD_FILE', '');

  const trustedSources = str('SIP_TRUSTED_SOURCES', '').split(',').map((x) => x.trim()).filter(Boolean);
  for (const t of trustedSources) if (!isAddressOrCidr(t)) problems.push(`SIP_TRUSTED_SOURCES entry "${t}" is not an IP address or CIDR`);
  const authUser = str('SIP_AUTH_USERNAME', '');
  const authPass = str('SIP_AUTH_PASSWORD', '');
  if (Boolean(authUser) !== Boolean(authPass)) problems.push('SIP_AUTH_USERNAME and SIP_AUTH_PASSWORD must be set together');
  const businessNumber = str('WA_BUSINESS_NUMBER', '');
  if (businessNumber && !/^\+[1-9]\d{6,14}$/.test(businessNumber)) problems.push(`WA_BUSINESS_NUMBER must be E.164, e.g. +14155550100 (got "${businessNumber}")`);
  const autoRequest = str('PERMISSION_AUTO_REQUEST', 'off');
  if (autoRequest !== 'off' && autoRequest !== 'interactive') problems.push(`PERMISSION_AUTO_REQUEST must be "off" or "interactive" (got "${autoRequest}")`);

  const config: Config = {
    databaseUrl,
    httpPort: int('HTTP_PORT', 3000, 0, 65535),
    nodeId: str('NODE_ID', os.hostname()),
    logLevel: str('LOG_LEVEL', 'info'),
    ycloud: {
      apiBaseUrl,
      apiKey: str('YCLOUD_API_KEY'),
      webhookSecret: str('YCLOUD_WEBHOOK_SECRET'),
      webhookToleranceSeconds: int('YCLOUD_WEBHOOK_TOLERANCE_SECONDS', 300, 1, 3600),
      timeoutMs: int('YCLOUD_TIMEOUT_MS', 5000, 100, 60000),
    },
    drachtio: {
      host: str('DRACHTIO_HOST', '127.0.0.1'),
      port: int('DRACHTIO_PORT', 9022, 1, 65535),
      secret: str('DRACHTIO_SECRET'),
    },
    rtpengine: { ng, timeoutMs: int('RTPENGINE_TIMEOUT_MS', 2000, 50, 30000), dtmfLog },
    pbx: {
      targets,
      codecs,
      noAnswerTimeoutMs: int('PBX_NO_ANSWER_TIMEOUT_S', 25, 1, 55) * 1000,
      responseTimeoutMs: int('PBX_RESPONSE_TIMEOUT_MS', 4000, 100, 32000),
      requestTimeoutMs: int('SIP_REQUEST_TIMEOUT_MS', 5000, 100, 32000),
      earlyMedia: earlyMedia === 'accept',
      dtmfMode: dtmfMode === 'info' ? 'info' : 'rfc4733',
      transferRefusePattern,
      minSessionExpiresS: int('SIP_MIN_SE_S', 90, 90, 86400),
      optionsPingMs: int('PBX_OPTIONS_PING_S', 30, 0, 3600) * 1000,
    },
    media: {
      holdFile: holdFile || path.join(mediaDir, 'silence.wav'),
      holdIsSilence: !holdFile,
      dir: mediaDir,
      keepalivePollMs: int('MEDIA_KEEPALIVE_POLL_MS', 1000, 100, 10000),
      keepaliveAfterMs: int('MEDIA_KEEPALIVE_AFTER_MS', 8000, 200, 15000),
    },
    outbound: {
      trustedSources,
      auth: authUser ? { username: authUser, password: authPass, realm: str('SIP_AUTH_REALM', 'wa-sip-bridge') } : null,
      defaultBusinessNumber: businessNumber || null,
      defaultPhoneId: str('WA_PHONE_ID', '') || null,
      ringTimeoutMs: int('OUTBOUND_RING_TIMEOUT_S', 60, 5, 300) * 1000,
      autoPermissionRequest: autoRequest === 'interactive'
        ? { text: str('PERMISSION_REQUEST_TEXT', 'We would like to call you about your request. May we?') }
        : null,
    },
    admin: { token: str('ADMIN_API_TOKEN', '') || null, wabaId: str('WA_WABA_ID', '') || null },
  };
  if (problems.length) throw new ConfigError(problems);
  return config;
}

function isAddressOrCidr(s: string): boolean {
  const [addr, bits, extra] = s.split('/');
  if (extra !== undefined || !addr) return false;
  const family = net.isIP(addr);
  if (!family) return false;
  if (bits === undefined) return true;
  const n = Number(bits);
  return /^\d{1,3}$/.test(bits) && n >= 0 && n <= (family === 4 ? 32 : 128);
}

function isHttpUrl(s: string): boolean {
  try {
    const u = new URL(s);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
}

function parseHostPort(s: string): { host: string; port: number } | undefined {
  const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(s);
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return undefined;
  return { host: m[1]!, port };
}
