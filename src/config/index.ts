import path from 'node:path';
import { AnySetting, readSetting } from './setting';
import { CROSS_CHECKS, SETTINGS, SettingName, SettingValues } from './settings';

export { isNonPublicAddress, parseHostPort } from './addresses';

/**
 * Everything the bridge reads from its environment, validated once at start-up: the settings declared in
 * settings.ts (each one's type, default, checks and description), arranged as the components use them.
 */
export type Config = ReturnType<typeof configFrom>;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration: ${problems.join('; ')}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

/** Reads and checks every setting, collecting all problems so an operator fixes them in one go. */
export function loadConfig(env: Env = process.env): Config {
  const problems: string[] = [];
  const read: Partial<Record<SettingName, unknown>> = {};
  const failed = new Set<SettingName>();
  for (const name of Object.keys(SETTINGS) as SettingName[]) {
    const r = readSetting(name, SETTINGS[name] as AnySetting, env[name]);
    if (r.ok) read[name] = r.value;
    else {
      failed.add(name);
      problems.push(...r.problems);
    }
  }
  // Each setting was read (or failed): a check across settings sees only those it names, all read.
  const values = read as SettingValues;
  for (const check of CROSS_CHECKS) {
    if (check.names.some((n) => failed.has(n))) continue;
    const problem = check.problem(values);
    if (problem) problems.push(problem);
  }
  if (problems.length) throw new ConfigError(problems);
  return configFrom(values);
}

/** The Config the components use, made of the settings' values. Its return type is `Config`. */
function configFrom(v: SettingValues) {
  return {
    databaseUrl: v.DATABASE_URL,
    httpPort: v.HTTP_PORT,
    /** The address the HTTP side listens on; undefined: all addresses. */
    httpHost: v.HTTP_HOST ?? undefined,
    /**
     * How many reverse proxies in front of the bridge append to X-Forwarded-For (0: none, the client is
     * the socket's peer). The client address logged, kept with quarantined webhooks and used for the
     * per-client webhook limit is the entry that many hops from the right.
     */
    trustProxy: v.TRUST_PROXY,
    /** The public https:// base of the webhook URLs (PUBLIC_WEBHOOK_URL): read only by the doctor (src/doctor); null: unset. */
    publicWebhookUrl: v.PUBLIC_WEBHOOK_URL,
    httpMaxConnections: v.HTTP_MAX_CONNECTIONS,
    httpMaxConnectionsPerClient: v.HTTP_MAX_CONNECTIONS_PER_CLIENT,
    nodeId: v.NODE_ID,
    logLevel: v.LOG_LEVEL as string,
    logPhoneNumbers: v.LOG_PHONE_NUMBERS,
    /**
     * Where the business numbers come from: NUMBERS_FILE (several, each on its provider account), or, when
     * it is null, the environment's one number on WA_PROVIDER's account (src/numbers).
     */
    numbers: { file: v.NUMBERS_FILE, provider: v.WA_PROVIDER },
    /** YCloud: the environment number's account (its key and secret set when WA_PROVIDER=ycloud), and the defaults of the file's. */
    ycloud: {
      apiBaseUrl: v.YCLOUD_API_BASE_URL,
      apiKey: v.YCLOUD_API_KEY,
      webhookSecret: v.YCLOUD_WEBHOOK_SECRET,
      webhookToleranceSeconds: v.YCLOUD_WEBHOOK_TOLERANCE_SECONDS,
      timeoutMs: v.YCLOUD_TIMEOUT_MS,
      /** Bounds on reading webhook bodies (src/http/ingress-guard.ts). */
      webhookLimits: {
        readTimeoutMs: v.WEBHOOK_READ_TIMEOUT_MS,
        maxConcurrentReads: v.WEBHOOK_MAX_CONCURRENT_READS,
        maxReadsPerClient: v.WEBHOOK_MAX_READS_PER_CLIENT,
        verifiedReads: v.WEBHOOK_VERIFIED_READS,
        minBytesPerS: v.WEBHOOK_MIN_BYTES_PER_S,
      },
    },
    /** Meta's Cloud API: the environment number's account (its secrets set when WA_PROVIDER=meta), and the defaults of the file's. */
    meta: {
      apiBaseUrl: v.META_API_BASE_URL,
      accessToken: v.META_ACCESS_TOKEN,
      appSecret: v.META_APP_SECRET,
      verifyToken: v.META_VERIFY_TOKEN,
      /** `Authorization` carries `Bearer <token>`; any other header the token as is. */
      authHeader: v.META_AUTH_HEADER,
      timeoutMs: v.META_TIMEOUT_MS,
      /**
       * The environment number's Meta SIP mode (META_SIP_*): on when hostname is set (then WA_PROVIDER=meta, and
       * the password and WA_BUSINESS_NUMBER are set: loadConfig checks). With NUMBERS_FILE, each number's sip: section instead.
       */
      sip: {
        hostname: v.META_SIP_HOSTNAME,
        port: v.META_SIP_PORT,
        /** null: the business number without "+". */
        username: v.META_SIP_USERNAME,
        password: v.META_SIP_PASSWORD,
        srtp: v.META_SIP_SRTP,
        g711: v.META_SIP_G711,
        webhooks: v.META_SIP_WEBHOOKS,
      },
      /** The files drachtio-server's TLS contact uses for Meta's native SIP: read only by the preflight (src/cli/preflight.ts). */
      sipTls: { certFile: v.META_SIP_TLS_CERT_FILE, keyFile: v.META_SIP_TLS_KEY_FILE },
    },
    /** Meta's native SIP, for every number in SIP mode: where the bridge meets Meta. */
    metaSip: {
      /** Meta's SIP domain: the Request-URI host of INVITEs to Meta, and the realm of Meta's challenges ("wa.meta.vc"). */
      domain: v.META_SIP_DOMAIN,
      /** A SIP URI INVITEs to Meta are sent to instead of the domain's DNS (a simulator); null: DNS. */
      proxy: v.META_SIP_PROXY,
      /** drachtio-server's TLS port that is Meta's listener: INVITEs over TLS on it are Meta's. */
      listenPort: v.META_SIP_LISTEN_PORT,
      /** Addresses/CIDRs Meta's INVITEs may come from; empty: any that passes the number's digest challenge. */
      trustedSources: v.META_SIP_TRUSTED_SOURCES,
    },
    drachtio: { host: v.DRACHTIO_HOST, port: v.DRACHTIO_PORT, secret: v.DRACHTIO_SECRET },
    rtpengine: {
      ng: v.RTPENGINE_NG,
      timeoutMs: v.RTPENGINE_TIMEOUT_MS,
      /** Where the bridge receives rtpengine's DTMF log; null: digits unseen. */
      dtmfLog: v.RTPENGINE_DTMF_LOG,
      /**
       * rtpengine's logical interfaces (its --interface=NAME/LOCAL[!ADVERTISED]): the one facing WhatsApp
       * advertises the public address, the one facing the PBX its private one. Every offer and answer
       * names them in `direction`.
       */
      interfaces: { whatsapp: v.RTPENGINE_WA_INTERFACE, pbx: v.RTPENGINE_PBX_INTERFACE },
      pingMs: v.RTPENGINE_PING_S * 1000,
    },
    /** Where peers reach this bridge's media from outside (rtpengine's advertised WhatsApp-side address). */
    publicIp: v.PUBLIC_IP,
    pbx: {
      /** SIP URIs tried in order; the next one only when the previous was unreachable (empty with NUMBERS_FILE). */
      targets: v.PBX_TARGET,
      /** Credentials for a PBX that challenges the bridge's requests (401/407); null: none. */
      auth: v.PBX_AUTH_USERNAME !== null && v.PBX_AUTH_PASSWORD !== null ? { username: v.PBX_AUTH_USERNAME, password: v.PBX_AUTH_PASSWORD } : null,
      srtp: v.PBX_SRTP,
      codecs: v.PBX_CODECS,
      noAnswerTimeoutMs: v.PBX_NO_ANSWER_TIMEOUT_S * 1000,
      responseTimeoutMs: v.PBX_RESPONSE_TIMEOUT_MS,
      /** Bound on requests the bridge sends inside a dialog (BYE, NOTIFY, INFO). */
      requestTimeoutMs: v.SIP_REQUEST_TIMEOUT_MS,
      /** Accept the WhatsApp call on a 183 with SDP, so the caller hears the PBX's announcements. */
      earlyMedia: v.PBX_EARLY_MEDIA === 'accept',
      dtmfMode: v.PBX_DTMF_MODE,
      /** REFER targets whose user part matches are refused (no PSTN legs on WhatsApp calls); null: none. */
      transferRefusePattern: v.TRANSFER_REFUSE_PATTERN,
      /**
       * Anchored to the whole target URI: REFER targets allowed besides the configured PBX
       * (PBX_TARGET's hosts, SIP_TRUSTED_SOURCES); null: only those.
       */
      transferTargetPattern: v.TRANSFER_TARGET_PATTERN,
      minSessionExpiresS: v.SIP_MIN_SE_S,
      /** How often each PBX target is pinged with OPTIONS; 0: never. */
      optionsPingMs: v.PBX_OPTIONS_PING_S * 1000,
    },
    media: {
      /** Played to the WhatsApp user while the PBX sends nothing (a path rtpengine can read). */
      holdFile: v.MEDIA_HOLD_FILE ?? path.join(v.MEDIA_DIR, 'silence.wav'),
      /** True when holdFile is the bridge's generated silence (no MEDIA_HOLD_FILE given). */
      holdIsSilence: v.MEDIA_HOLD_FILE === null,
      /** Where the bridge writes its generated silence file (must be readable by rtpengine). */
      dir: v.MEDIA_DIR,
      keepalivePollMs: v.MEDIA_KEEPALIVE_POLL_MS,
      keepaliveAfterMs: v.MEDIA_KEEPALIVE_AFTER_MS,
      /** What the bridge offers WhatsApp on agents' calls (see codec-policy.ts). */
      codecPolicy: v.MEDIA_CODEC_POLICY,
    },
    /** Agent -> WhatsApp calls (INVITEs from the PBX). */
    outbound: {
      /** Source addresses/CIDRs allowed to place WhatsApp calls; empty means none (toll-fraud safe default). */
      trustedSources: v.SIP_TRUSTED_SOURCES,
      /** SIP digest credentials required on top of the address check; null: none. */
      auth: v.SIP_AUTH_USERNAME !== null && v.SIP_AUTH_PASSWORD !== null
        ? { username: v.SIP_AUTH_USERNAME, password: v.SIP_AUTH_PASSWORD, realm: v.SIP_AUTH_REALM }
        : null,
      /** Business number used when the INVITE names none (X-WhatsApp-Business-Number header). */
      defaultBusinessNumber: v.WA_BUSINESS_NUMBER,
      /** Phone number id of the default business number (needed to terminate before any webhook). */
      defaultPhoneId: v.WA_PHONE_ID,
      ringTimeoutMs: v.OUTBOUND_RING_TIMEOUT_S * 1000,
      /** Send a call-permission request automatically when an agent dials someone without permission; null: never. */
      autoPermissionRequest: v.PERMISSION_AUTO_REQUEST === 'interactive' ? { text: v.PERMISSION_REQUEST_TEXT } : null,
      /**
       * INVITE flood limits (token buckets: a steady rate per second and a burst), per source address and
       * for the whole bridge, and the calls in progress beyond which new INVITEs get 503 + Retry-After.
       */
      limits: {
        perSource: { ratePerS: v.SIP_INVITE_RATE_PER_SOURCE, burst: v.SIP_INVITE_BURST_PER_SOURCE },
        global: { ratePerS: v.SIP_INVITE_RATE, burst: v.SIP_INVITE_BURST },
        maxCallsInProgress: v.MAX_CALLS_IN_PROGRESS,
      },
    },
    admin: {
      /** Full access to /api (operator); null disables the admin routes. */
      token: v.ADMIN_API_TOKEN,
      wabaId: v.WA_WABA_ID,
      /** Read-only tokens for reporting tools: GET on calls and reports. */
      reportingTokens: v.REPORTING_API_TOKENS,
    },
    /** Prometheus scraping at /metrics: open (null) or guarded by a bearer token. */
    metrics: { token: v.METRICS_TOKEN },
    /** A call whose worst leg's estimated MOS is below this counts as poor quality. */
    quality: { mosThreshold: v.CALL_QUALITY_MOS_THRESHOLD },
    recording: {
      /** Record every bridged call through rtpengine. */
      enabled: v.RECORDING === 'all',
      /**
       * proc: rtpengine's kernel interface read by rtpengine-recording (needs the kernel module);
       * pcap: rtpengine writes pcap files that the bridge turns into WAV (userspace-only hosts).
       */
      method: v.RECORDING_METHOD,
      spoolDir: v.RECORDING_SPOOL_DIR,
      outputDir: v.RECORDING_DIR,
      /** Recordings older than this many days are deleted; 0 keeps them. */
      retentionDays: v.RECORDING_RETENTION_DAYS,
      /** Played to the WhatsApp caller after the call is answered and before the agent is heard; null: none. */
      announcementFile: v.RECORDING_ANNOUNCEMENT_FILE,
    },
    shutdown: {
      /** After SIGTERM, how long calls in progress may go on before the bridge ends them. */
      drainMs: v.SHUTDOWN_DRAIN_S * 1000,
      retryAfterS: v.SHUTDOWN_RETRY_AFTER_S,
    },
    /** Several nodes sharing Postgres: heartbeats, and when a silent node's calls are taken over. */
    cluster: {
      heartbeatMs: v.CLUSTER_HEARTBEAT_MS,
      deadAfterMs: v.CLUSTER_NODE_TIMEOUT_MS,
    },
    database: {
      /** Bound on each Postgres round trip (connection acquire and statement). */
      timeoutMs: v.DATABASE_TIMEOUT_MS,
      startupWaitMs: v.DATABASE_STARTUP_WAIT_S * 1000,
      /** MIGRATE_ON_START: start-up applies pending migrations (under the migration lock) instead of stopping at a schema behind. */
      migrateOnStart: v.MIGRATE_ON_START,
      cdrRetryMs: v.CDR_RETRY_S * 1000,
      cdrSpillDir: v.CDR_SPILL_DIR,
    },
    /** How many days rows are kept before the retention sweep deletes them (0: kept for ever); see docs/data-retention.md. */
    retention: {
      webhookEventsDays: v.WEBHOOK_EVENTS_RETENTION_DAYS,
      quarantineDays: v.QUARANTINE_RETENTION_DAYS,
      cdrDays: v.CDR_RETENTION_DAYS,
      permissionsDays: v.PERMISSIONS_RETENTION_DAYS,
    },
    /**
     * The reporting API (/api/calls..., /api/reports/...): its own Postgres pool, apart from the calls',
     * and how many requests it serves at once (beyond: 429 + Retry-After).
     */
    reporting: {
      poolMax: v.REPORTING_DB_POOL_MAX,
      statementTimeoutMs: v.REPORTING_STATEMENT_TIMEOUT_MS,
      maxConcurrent: v.REPORTING_MAX_CONCURRENT,
      maxConcurrentPerToken: v.REPORTING_MAX_CONCURRENT_PER_TOKEN,
      exportStallMs: v.REPORTING_EXPORT_STALL_MS,
    },
  };
}
