import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { CODEC_POLICIES, CodecPolicy } from '../media/profiles';

/** Everything the bridge reads from its environment, validated once at start-up. */
export interface Config {
  databaseUrl: string;
  httpPort: number;
  /** The address the HTTP side listens on (127.0.0.1 behind a reverse proxy on the same host). */
  httpHost: string | undefined;
  /**
   * TRUST_PROXY: how many reverse proxies in front of the bridge append to X-Forwarded-For (0: none, the
   * client is the socket's peer). The client address logged, kept with quarantined webhooks and used for
   * the per-client webhook limit is the entry that many hops from the right.
   */
  trustProxy: number;
  /** HTTP_MAX_CONNECTIONS: open HTTP connections at most; more are closed as they arrive. */
  httpMaxConnections: number;
  /** HTTP_MAX_CONNECTIONS_PER_CLIENT: open HTTP connections from one address (the socket's peer) at most. */
  httpMaxConnectionsPerClient: number;
  nodeId: string;
  logLevel: string;
  /** LOG_PHONE_NUMBERS: masked (default: +6281****5133 in every log line) or full (debugging only). */
  logPhoneNumbers: 'masked' | 'full';
  ycloud: {
    apiBaseUrl: string;
    apiKey: string;
    webhookSecret: string;
    /** Accepted age (and clock skew) of a webhook signature's timestamp. */
    webhookToleranceSeconds: number;
    timeoutMs: number;
    /** Bounds on reading webhook bodies (src/http/ingress-guard.ts). */
    webhookLimits: {
      /** WEBHOOK_READ_TIMEOUT_MS: the whole body must arrive within this (else 408). */
      readTimeoutMs: number;
      /** WEBHOOK_MAX_CONCURRENT_READS: bodies read at once from senders not verified (beyond: the worst read makes way, 503). */
      maxConcurrentReads: number;
      /** WEBHOOK_MAX_READS_PER_CLIENT: of those, at once from one address (beyond: its worst read makes way). */
      maxReadsPerClient: number;
      /** WEBHOOK_VERIFIED_READS: reads kept for addresses that recently sent a correctly signed webhook. */
      verifiedReads: number;
      /** WEBHOOK_MIN_BYTES_PER_S: after a body's first second, slower on average is cut (408); 0: no minimum. */
      minBytesPerS: number;
    };
  };
  drachtio: { host: string; port: number; secret: string };
  rtpengine: {
    ng: Array<{ host: string; port: number }>;
    timeoutMs: number;
    /**
     * rtpengine's logical interfaces (its --interface=NAME/LOCAL[!ADVERTISED]): the one facing WhatsApp
     * advertises the public address, the one facing the PBX its private one. Every offer and answer
     * names them in `direction`.
     */
    interfaces: { whatsapp: string; pbx: string };
    /** How often each rtpengine is pinged; one that does not answer gets no new calls. */
    pingMs: number;
    /** Where the bridge receives rtpengine's DTMF log (rtpengine's --dtmf-log-dest); null: digits unseen. */
    dtmfLog: { host: string; port: number } | null;
  };
  /** Where peers reach this bridge's media from outside (rtpengine's advertised WhatsApp-side address). */
  publicIp: string;
  pbx: {
    /** SIP URIs tried in order; the next one only when the previous was unreachable. */
    targets: string[];
    /** Credentials for a PBX that challenges the bridge's requests (401/407); null: none. */
    auth: { username: string; password: string } | null;
    /** Media on the PBX leg: plain RTP, or SRTP keyed in the SDP (RFC 4568 SDES). */
    srtp: 'off' | 'sdes';
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
    /**
     * TRANSFER_TARGET_PATTERN, anchored to the whole target URI: REFER targets allowed besides the
     * configured PBX (PBX_TARGET's hosts, SIP_TRUSTED_SOURCES); null: only those.
     */
    transferTargetPattern: RegExp | null;
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
    /** MEDIA_CODEC_POLICY: what the bridge offers WhatsApp on agents' calls, opus only or G.711 ahead of opus (see media/profiles.ts). */
    codecPolicy: CodecPolicy;
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
    /**
     * INVITE flood limits (token buckets: a steady rate per second and a burst), per source address and
     * for the whole bridge, and the calls in progress beyond which new INVITEs get 503 + Retry-After.
     */
    limits: {
      perSource: { ratePerS: number; burst: number };
      global: { ratePerS: number; burst: number };
      maxCallsInProgress: number;
    };
  };
  admin: {
    /** Full access to /api (operator): ADMIN_API_TOKEN; null disables the admin routes. */
    token: string | null;
    wabaId: string | null;
    /** Read-only tokens for reporting tools (REPORTING_API_TOKENS, comma-separated): GET on calls and reports. */
    reportingTokens: string[];
  };
  /** Prometheus scraping at /metrics: open (null) or guarded by a bearer token (METRICS_TOKEN). */
  metrics: { token: string | null };
  /** A call whose worst leg's estimated MOS is below this counts as poor quality (CALL_QUALITY_MOS_THRESHOLD). */
  quality: { mosThreshold: number };
  recording: {
    /** RECORDING=off|all: record every bridged call through rtpengine. */
    enabled: boolean;
    /**
     * proc: rtpengine's kernel interface read by rtpengine-recording (needs the kernel module);
     * pcap: rtpengine writes pcap files that the bridge turns into WAV (userspace-only hosts).
     */
    method: 'proc' | 'pcap';
    /** rtpengine's --recording-dir (the recording daemon's --spool-dir). */
    spoolDir: string;
    /** Where the finished audio files are (the recording daemon's --output-dir). */
    outputDir: string;
    /** Recordings older than this many days are deleted; 0 keeps them. */
    retentionDays: number;
    /** Played to the WhatsApp caller after the call is answered and before the agent is heard; null: none. */
    announcementFile: string | null;
  };
  shutdown: {
    /** After SIGTERM, how long calls in progress may go on before the bridge ends them. */
    drainMs: number;
    /** Retry-After (s) on the 503 that refuses new calls while draining. */
    retryAfterS: number;
  };
  /** Several nodes sharing Postgres: heartbeats, and when a silent node's calls are taken over. */
  cluster: {
    heartbeatMs: number;
    deadAfterMs: number;
  };
  database: {
    /** Bound on each Postgres round trip (connection acquire and statement). */
    timeoutMs: number;
    /** How long start-up keeps retrying an unreachable Postgres before giving up. */
    startupWaitMs: number;
    /** How long a call's CDR writes are retried while Postgres is unreachable before they are given up. */
    cdrRetryMs: number;
    /** Where CDR writes given up (or still queued at shutdown) are kept for the next start to replay (CDR_SPILL_DIR). */
    cdrSpillDir: string;
  };
  /**
   * How many days rows are kept before the retention sweep deletes them (0: kept for ever); see
   * docs/data-retention.md. Processed webhook events (WEBHOOK_EVENTS_RETENTION_DAYS), quarantined bodies
   * (QUARANTINE_RETENTION_DAYS), ended calls with their timelines (CDR_RETENTION_DAYS, default 0), call
   * permission replies no longer in force and permission requests (PERMISSIONS_RETENTION_DAYS).
   */
  retention: { webhookEventsDays: number; quarantineDays: number; cdrDays: number; permissionsDays: number };
  /**
   * The reporting API (/api/calls..., /api/reports/...): its own Postgres pool, apart from the calls',
   * and how many requests it serves at once (beyond: 429 + Retry-After).
   */
  reporting: {
    /** REPORTING_DB_POOL_MAX: connections of the reporting pool. */
    poolMax: number;
    /** REPORTING_STATEMENT_TIMEOUT_MS: Postgres ends any one reporting statement after this long. */
    statementTimeoutMs: number;
    /** REPORTING_MAX_CONCURRENT: reporting requests (an export until it ends) served at once, all tokens. */
    maxConcurrent: number;
    /** REPORTING_MAX_CONCURRENT_PER_TOKEN: the same, per bearer token. */
    maxConcurrentPerToken: number;
    /** REPORTING_EXPORT_STALL_MS: a CSV export whose client has read nothing for this long is ended. */
    exportStallMs: number;
  };
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
  const logPhoneNumbers = str('LOG_PHONE_NUMBERS', 'masked');
  if (logPhoneNumbers !== 'masked' && logPhoneNumbers !== 'full') problems.push(`LOG_PHONE_NUMBERS must be "masked" or "full" (got "${logPhoneNumbers}")`);
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

  const codecPolicy = str('MEDIA_CODEC_POLICY', 'transcode');
  if (!CODEC_POLICIES.some((p) => p === codecPolicy)) problems.push(`MEDIA_CODEC_POLICY must be one of ${CODEC_POLICIES.join(', ')} (got "${codecPolicy}")`);
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
  const targetPatternRaw = str('TRANSFER_TARGET_PATTERN', '');
  let transferTargetPattern: RegExp | null = null;
  if (targetPatternRaw) {
    try {
      transferTargetPattern = new RegExp(`^(?:${targetPatternRaw})$`, 'i');
    } catch {
      problems.push(`TRANSFER_TARGET_PATTERN is not a regular expression (got "${targetPatternRaw}")`);
    }
  }
  const mediaDir = str('MEDIA_DIR', path.join(os.tmpdir(), 'wa-sip-bridge-media'));
  const holdFile = str('MEDIA_HOLD_FILE', '');

  const trustedSources = str('SIP_TRUSTED_SOURCES', '').split(',').map((x) => x.trim()).filter(Boolean);
  for (const t of trustedSources) {
    if (!isAddressOrCidr(t)) problems.push(`SIP_TRUSTED_SOURCES entry "${t}" is not an IP address or CIDR`);
    else if (tooBroad(t)) {
      problems.push(`SIP_TRUSTED_SOURCES entry "${t}" trusts too much of the Internet (shortest prefix: /${MIN_TRUSTED_PREFIX.v4} for IPv4, `
        + `/${MIN_TRUSTED_PREFIX.v6} for IPv6): list the PBX's own addresses, and require SIP_AUTH_USERNAME/SIP_AUTH_PASSWORD`);
    }
  }
  const authUser = str('SIP_AUTH_USERNAME', '');
  const authPass = str('SIP_AUTH_PASSWORD', '');
  if (Boolean(authUser) !== Boolean(authPass)) problems.push('SIP_AUTH_USERNAME and SIP_AUTH_PASSWORD must be set together');
  const businessNumber = str('WA_BUSINESS_NUMBER', '');
  if (businessNumber && !/^\+[1-9]\d{6,14}$/.test(businessNumber)) problems.push(`WA_BUSINESS_NUMBER must be E.164, e.g. +14155550100 (got "${businessNumber}")`);
  const autoRequest = str('PERMISSION_AUTO_REQUEST', 'off');
  if (autoRequest !== 'off' && autoRequest !== 'interactive') problems.push(`PERMISSION_AUTO_REQUEST must be "off" or "interactive" (got "${autoRequest}")`);

  const httpHost = str('HTTP_HOST', '');
  if (httpHost && !net.isIP(httpHost) && httpHost !== 'localhost') problems.push(`HTTP_HOST must be an IP address to listen on, e.g. 127.0.0.1 (got "${httpHost}")`);
  const trustProxyRaw = str('TRUST_PROXY', 'false');
  const trustProxy = trustProxyRaw === 'false' ? 0 : trustProxyRaw === 'true' ? 1 : /^([1-9])$/.test(trustProxyRaw) ? Number(trustProxyRaw) : -1;
  if (trustProxy < 0) problems.push(`TRUST_PROXY must be "false", "true" (one proxy) or the number of proxies 1-9 (got "${trustProxyRaw}")`);
  const publicIp = str('PUBLIC_IP');
  const allowPrivate = str('ALLOW_PRIVATE_PUBLIC_IP', 'false');
  if (allowPrivate !== 'true' && allowPrivate !== 'false') problems.push(`ALLOW_PRIVATE_PUBLIC_IP must be "true" or "false" (got "${allowPrivate}")`);
  if (publicIp && !net.isIP(publicIp)) {
    problems.push(`PUBLIC_IP must be an IP address, the one WhatsApp reaches this host's media on (got "${publicIp}")`);
  } else if (publicIp && isNonPublicAddress(publicIp) && allowPrivate !== 'true') {
    problems.push(`PUBLIC_IP is ${publicIp}, which WhatsApp cannot reach: set it to this host's public address `
      + '(behind 1:1 NAT, the elastic/external IP), or set ALLOW_PRIVATE_PUBLIC_IP=true in a lab');
  }
  const pbxAuthUser = str('PBX_AUTH_USERNAME', '');
  const pbxAuthPass = str('PBX_AUTH_PASSWORD', '');
  if (Boolean(pbxAuthUser) !== Boolean(pbxAuthPass)) problems.push('PBX_AUTH_USERNAME and PBX_AUTH_PASSWORD must be set together');
  const srtp = str('PBX_SRTP', 'off');
  if (srtp !== 'off' && srtp !== 'sdes') problems.push(`PBX_SRTP must be "off" or "sdes" (got "${srtp}")`);
  const waIface = str('RTPENGINE_WA_INTERFACE', 'wa');
  const pbxIface = str('RTPENGINE_PBX_INTERFACE', 'pbx');
  for (const [k, v] of [['RTPENGINE_WA_INTERFACE', waIface], ['RTPENGINE_PBX_INTERFACE', pbxIface]] as const) {
    if (!/^[A-Za-z0-9_.-]+$/.test(v)) problems.push(`${k} must be an rtpengine interface name (letters, digits, _ . -), got "${v}"`);
  }

  const adminToken = str('ADMIN_API_TOKEN', '');
  const reportingTokens = str('REPORTING_API_TOKENS', '').split(',').map((t) => t.trim()).filter(Boolean);
  for (const t of [adminToken, ...reportingTokens].filter(Boolean)) {
    if (t.length < 16) problems.push('ADMIN_API_TOKEN and each REPORTING_API_TOKENS entry must be at least 16 characters');
  }
  if (adminToken && reportingTokens.includes(adminToken)) problems.push('REPORTING_API_TOKENS must not contain ADMIN_API_TOKEN');
  const reporting = {
    poolMax: int('REPORTING_DB_POOL_MAX', 3, 1, 100),
    statementTimeoutMs: int('REPORTING_STATEMENT_TIMEOUT_MS', 15000, 100, 3600000),
    maxConcurrent: int('REPORTING_MAX_CONCURRENT', 6, 1, 10000),
    maxConcurrentPerToken: int('REPORTING_MAX_CONCURRENT_PER_TOKEN', 3, 1, 10000),
    exportStallMs: int('REPORTING_EXPORT_STALL_MS', 30000, 100, 3600000),
  };
  if (reporting.maxConcurrentPerToken > reporting.maxConcurrent) problems.push('REPORTING_MAX_CONCURRENT_PER_TOKEN must not exceed REPORTING_MAX_CONCURRENT');
  const mosRaw = str('CALL_QUALITY_MOS_THRESHOLD', '3.5');
  const mosThreshold = Number(mosRaw);
  if (!(mosThreshold >= 1 && mosThreshold <= 5)) problems.push(`CALL_QUALITY_MOS_THRESHOLD must be a number between 1 and 5 (got "${mosRaw}")`);
  const recording = str('RECORDING', 'off');
  if (recording !== 'off' && recording !== 'all') problems.push(`RECORDING must be "off" or "all" (got "${recording}")`);
  const recordingMethod = str('RECORDING_METHOD', 'pcap');
  if (recordingMethod !== 'proc' && recordingMethod !== 'pcap') problems.push(`RECORDING_METHOD must be "proc" or "pcap" (got "${recordingMethod}")`);

  const config: Config = {
    databaseUrl,
    httpPort: int('HTTP_PORT', 3000, 0, 65535),
    httpHost: httpHost || undefined,
    trustProxy: Math.max(0, trustProxy),
    httpMaxConnections: int('HTTP_MAX_CONNECTIONS', 1000, 10, 100000),
    httpMaxConnectionsPerClient: int('HTTP_MAX_CONNECTIONS_PER_CLIENT', 100, 1, 100000),
    nodeId: str('NODE_ID', os.hostname()),
    logLevel: str('LOG_LEVEL', 'info'),
    logPhoneNumbers: logPhoneNumbers === 'full' ? 'full' : 'masked',
    ycloud: {
      apiBaseUrl,
      apiKey: str('YCLOUD_API_KEY'),
      webhookSecret: str('YCLOUD_WEBHOOK_SECRET'),
      webhookToleranceSeconds: int('YCLOUD_WEBHOOK_TOLERANCE_SECONDS', 300, 1, 3600),
      timeoutMs: int('YCLOUD_TIMEOUT_MS', 5000, 100, 60000),
      webhookLimits: {
        readTimeoutMs: int('WEBHOOK_READ_TIMEOUT_MS', 10000, 100, 60000),
        maxConcurrentReads: int('WEBHOOK_MAX_CONCURRENT_READS', 32, 1, 10000),
        maxReadsPerClient: int('WEBHOOK_MAX_READS_PER_CLIENT', 8, 1, 10000),
        verifiedReads: int('WEBHOOK_VERIFIED_READS', 8, 0, 10000),
        minBytesPerS: int('WEBHOOK_MIN_BYTES_PER_S', 4096, 0, 10_000_000),
      },
    },
    drachtio: {
      host: str('DRACHTIO_HOST', '127.0.0.1'),
      port: int('DRACHTIO_PORT', 9022, 1, 65535),
      secret: str('DRACHTIO_SECRET'),
    },
    rtpengine: {
      ng,
      timeoutMs: int('RTPENGINE_TIMEOUT_MS', 2000, 50, 30000),
      dtmfLog,
      interfaces: { whatsapp: waIface, pbx: pbxIface },
      pingMs: int('RTPENGINE_PING_S', 5, 1, 300) * 1000,
    },
    publicIp,
    pbx: {
      targets,
      auth: pbxAuthUser ? { username: pbxAuthUser, password: pbxAuthPass } : null,
      srtp: srtp === 'sdes' ? 'sdes' : 'off',
      codecs,
      noAnswerTimeoutMs: int('PBX_NO_ANSWER_TIMEOUT_S', 25, 1, 55) * 1000,
      responseTimeoutMs: int('PBX_RESPONSE_TIMEOUT_MS', 4000, 100, 32000),
      requestTimeoutMs: int('SIP_REQUEST_TIMEOUT_MS', 5000, 100, 32000),
      earlyMedia: earlyMedia === 'accept',
      dtmfMode: dtmfMode === 'info' ? 'info' : 'rfc4733',
      transferRefusePattern,
      transferTargetPattern,
      minSessionExpiresS: int('SIP_MIN_SE_S', 90, 90, 86400),
      optionsPingMs: int('PBX_OPTIONS_PING_S', 30, 0, 3600) * 1000,
    },
    media: {
      holdFile: holdFile || path.join(mediaDir, 'silence.wav'),
      holdIsSilence: !holdFile,
      dir: mediaDir,
      keepalivePollMs: int('MEDIA_KEEPALIVE_POLL_MS', 1000, 100, 10000),
      keepaliveAfterMs: int('MEDIA_KEEPALIVE_AFTER_MS', 8000, 200, 15000),
      codecPolicy: CODEC_POLICIES.find((p) => p === codecPolicy) ?? 'transcode',
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
      limits: {
        perSource: { ratePerS: int('SIP_INVITE_RATE_PER_SOURCE', 50, 1, 10000), burst: int('SIP_INVITE_BURST_PER_SOURCE', 100, 1, 100000) },
        global: { ratePerS: int('SIP_INVITE_RATE', 100, 1, 100000), burst: int('SIP_INVITE_BURST', 200, 1, 1000000) },
        maxCallsInProgress: int('MAX_CALLS_IN_PROGRESS', 500, 1, 100000),
      },
    },
    admin: { token: adminToken || null, wabaId: str('WA_WABA_ID', '') || null, reportingTokens },
    metrics: { token: str('METRICS_TOKEN', '') || null },
    quality: { mosThreshold },
    recording: {
      enabled: recording === 'all',
      method: recordingMethod === 'proc' ? 'proc' : 'pcap',
      spoolDir: str('RECORDING_SPOOL_DIR', '/var/spool/rtpengine'),
      outputDir: str('RECORDING_DIR', '/var/lib/rtpengine-recording'),
      retentionDays: int('RECORDING_RETENTION_DAYS', 90, 0, 36500),
      announcementFile: str('RECORDING_ANNOUNCEMENT_FILE', '') || null,
    },
    shutdown: {
      drainMs: int('SHUTDOWN_DRAIN_S', 30, 0, 3600) * 1000,
      retryAfterS: int('SHUTDOWN_RETRY_AFTER_S', 30, 1, 3600),
    },
    cluster: {
      heartbeatMs: int('CLUSTER_HEARTBEAT_MS', 2000, 100, 60000),
      deadAfterMs: int('CLUSTER_NODE_TIMEOUT_MS', 15000, 500, 600000),
    },
    database: {
      timeoutMs: int('DATABASE_TIMEOUT_MS', 5000, 100, 60000),
      startupWaitMs: int('DATABASE_STARTUP_WAIT_S', 60, 0, 3600) * 1000,
      cdrRetryMs: int('CDR_RETRY_S', 120, 1, 3600) * 1000,
      cdrSpillDir: str('CDR_SPILL_DIR', path.join(os.tmpdir(), 'wa-sip-bridge-cdr-spill')),
    },
    retention: {
      webhookEventsDays: int('WEBHOOK_EVENTS_RETENTION_DAYS', 30, 0, 36500),
      quarantineDays: int('QUARANTINE_RETENTION_DAYS', 30, 0, 36500),
      cdrDays: int('CDR_RETENTION_DAYS', 0, 0, 36500),
      permissionsDays: int('PERMISSIONS_RETENTION_DAYS', 90, 0, 36500),
    },
    reporting,
  };
  if (problems.length) throw new ConfigError(problems);
  return config;
}

/** The shortest prefix SIP_TRUSTED_SOURCES may name: a /7 or ::/0 is "anyone", not a PBX. */
const MIN_TRUSTED_PREFIX = { v4: 8, v6: 32 };

/** A CIDR (already checked by isAddressOrCidr) whose prefix is shorter than MIN_TRUSTED_PREFIX. */
function tooBroad(s: string): boolean {
  const [addr, bits] = s.split('/');
  if (bits === undefined) return false;
  if (net.isIP(addr!) === 4) return Number(bits) < MIN_TRUSTED_PREFIX.v4;
  // ::ffff:0:0/96 is all of IPv4, written as IPv6.
  const v4mapped = /^::ffff:/i.test(addr!);
  return Number(bits) < (v4mapped ? 96 + MIN_TRUSTED_PREFIX.v4 : MIN_TRUSTED_PREFIX.v6);
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

/**
 * Loopback, private (RFC 1918, RFC 4193), carrier-grade NAT, link-local and unspecified addresses:
 * none of them is reachable from WhatsApp's media servers.
 */
export function isNonPublicAddress(ip: string): boolean {
  if (net.isIPv4(ip)) {
    const [a, b] = ip.split('.').map(Number) as [number, number];
    return a === 0 || a === 10 || a === 127 || (a === 169 && b === 254) || (a === 172 && b >= 16 && b <= 31)
      || (a === 192 && b === 168) || (a === 100 && b >= 64 && b <= 127);
  }
  const v6 = ip.toLowerCase();
  if (v6 === '::' || v6 === '::1') return true;
  if (v6.startsWith('::ffff:')) return isNonPublicAddress(v6.slice(7));
  return /^f[cd]/.test(v6) || /^fe[89ab]/.test(v6);
}

function isHttpUrl(s: string): boolean {
  try {
    const u = new URL(s);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
}

/** `host:port` (IPv6 in brackets) as RTPENGINE_NG lists it; undefined when it is not one. */
export function parseHostPort(s: string): { host: string; port: number } | undefined {
  const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(s);
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return undefined;
  return { host: m[1]!, port };
}
