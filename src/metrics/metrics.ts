import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Every label value below is one of a fixed set: a value from outside it is counted as "other", so a
 * misbehaving peer can never grow the number of series.
 */
export const CALL_DIRECTIONS = ['inbound', 'outbound'] as const;
export type CallDirection = (typeof CALL_DIRECTIONS)[number];

/** As in the CDR's `outcome` column. */
export const CALL_OUTCOMES = ['answered', 'busy', 'no_answer', 'rejected', 'unreachable', 'caller_hangup', 'failed'] as const;
export type CallOutcome = (typeof CALL_OUTCOMES)[number];

/** Set-up steps timed from the call marks (see SetupSteps). */
export const SETUP_STEPS = ['inbound_preaccept', 'inbound_pbx_ringing', 'inbound_accept', 'outbound_connect', 'outbound_answer'] as const;
export type SetupStep = (typeof SETUP_STEPS)[number];

export const YCLOUD_ENDPOINTS = ['preAccept', 'accept', 'reject', 'terminate', 'connect', 'send_message', 'settings_get', 'settings_update', 'media'] as const;
export type YCloudEndpoint = (typeof YCLOUD_ENDPOINTS)[number];
export type YCloudResult = 'ok' | 'http_4xx' | 'http_5xx' | 'timeout' | 'network_error';

export const META_ENDPOINTS = [
  'pre_accept', 'accept', 'reject', 'terminate', 'connect', 'send_message', 'permission_state', 'media', 'settings_get', 'settings_update',
] as const;
export type MetaEndpoint = (typeof META_ENDPOINTS)[number];

export const RTPENGINE_COMMANDS = [
  'offer', 'answer', 'query', 'delete', 'blockMedia', 'unblockMedia', 'playMedia', 'stopMedia', 'blockDTMF', 'playDTMF',
  'startRecording', 'stopRecording', 'ping',
] as const;
/** rtpengine.ts passes its own command type here: a command added there without being listed here does not compile. */
export type RtpengineCommand = (typeof RTPENGINE_COMMANDS)[number];
export type RtpengineResult = 'ok' | 'error' | 'timeout';

/** Requests the bridge sends: `reINVITE` is an INVITE inside an established dialog. */
export const SIP_METHODS = ['INVITE', 'reINVITE', 'UPDATE', 'BYE', 'CANCEL', 'INFO', 'NOTIFY', 'OPTIONS'] as const;
export type SipMethod = (typeof SIP_METHODS)[number];
/**
 * The final response's class, or: `timeout` (none within the bridge's bound), `error` (could not be
 * sent, or drachtio-server answered for an unreachable target), `answered` (a BYE was answered:
 * drachtio-srf does not tell with what), `sent` (a CANCEL went out: drachtio-srf reports no response).
 */
export type SipResult = '2xx' | '3xx' | '4xx' | '5xx' | '6xx' | 'timeout' | 'error' | 'answered' | 'sent';

/** What became of an INVITE from an agent's phone at the door (before the permission check). */
export type InviteResult =
  | 'accepted' | 'refused_draining' | 'refused_untrusted' | 'challenged' | 'refused_auth'
  | 'refused_not_a_number' | 'refused_incomplete_number' | 'refused_no_business_number'
  /** Over the INVITE rate limits (per source or overall), or the calls-in-progress cap: 503. */
  | 'refused_rate_limited' | 'refused_capacity'
  /** A header the bridge would act on that is not what it must be: 400. */
  | 'refused_malformed';

/** Which PBX SDP had no codec the bridge can use: an agent's offer, or the PBX's answer to the bridge's INVITE. */
export type CodecRefusal = 'agent_offer' | 'pbx_answer';

/** What became of an INVITE on Meta's SIP listener (a WhatsApp user's call to a number in SIP mode). */
export type MetaSipInviteResult =
  | 'accepted' | 'challenged' | 'refused_source' | 'refused_number' | 'refused_credentials' | 'refused_sdp' | 'refused_duplicate';

/**
 * The `type` label's values: YCloud's event types, then Meta's delivery types (one per call event,
 * status and message of an envelope: `calls.<event>`, `statuses.<call|message>`, `messages.<type>`,
 * the account fields). Any other type is counted as "other", so the label set stays bounded.
 */
export const WEBHOOK_TYPES = [
  'whatsapp.call.connect', 'whatsapp.call.status.updated', 'whatsapp.call.terminate', 'whatsapp.inbound_message.received',
  'whatsapp.call.recording.updated', 'whatsapp.call.transcription.updated',
  'calls.connect', 'calls.terminate', 'calls.call_recording_available', 'calls.call_transcription_available',
  'statuses.call', 'statuses.message', 'messages.interactive', 'messages.voicemail', 'account_update', 'account_settings_update',
] as const;
/**
 * processed: acted on; ignored: stored, a type the bridge does not act on; duplicate: redelivery;
 * bad_signature / stale: 401; malformed: 400/413; store_failed: 503 (YCloud retries); error: acting on it failed;
 * overloaded: 429/503 beyond the concurrent body-read limits; timeout: 408, the body did not arrive in time.
 */
export type WebhookResult = 'processed' | 'ignored' | 'duplicate' | 'bad_signature' | 'stale' | 'malformed' | 'store_failed' | 'error' | 'overloaded' | 'timeout';

export type PermissionSource = 'api' | 'auto';
export type PermissionResult = 'sent' | 'failed' | 'rate_limited';
export type QualityLeg = 'whatsapp' | 'pbx';

const SETUP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const HTTP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const NG_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
/** An INVITE's final response may come after a minute of ringing. */
const SIP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const MOS_BUCKETS = Array.from({ length: 17 }, (_, i) => 1 + i * 0.25);

function oneOf<T extends string>(allowed: readonly T[], value: string): T | 'other' {
  return (allowed as readonly string[]).includes(value) ? (value as T) : 'other';
}

/**
 * The bridge's Prometheus metrics, on a registry of its own (several bridges may run in one process).
 * Every method swallows its own failures: instrumentation never throws into call handling.
 */
export class Metrics {
  readonly registry = new Registry();
  private inProgress: (() => Record<CallDirection, number>) | null = null;
  private drachtioUp: (() => boolean) | null = null;

  private readonly callsTotal: Counter<'direction' | 'outcome'>;
  private readonly setup: Histogram<'step'>;
  private readonly ycloudTotal: Counter<'endpoint' | 'result'>;
  private readonly accountNotices: Counter<'provider' | 'severity' | 'event'>;
  private readonly ycloudSeconds: Histogram<'endpoint'>;
  private readonly metaTotal: Counter<'endpoint' | 'result'>;
  private readonly metaSeconds: Histogram<'endpoint'>;
  private readonly ngTotal: Counter<'command' | 'result'>;
  private readonly ngSeconds: Histogram<'command'>;
  private readonly sipTotal: Counter<'method' | 'result'>;
  private readonly sipSeconds: Histogram<'method'>;
  private readonly invites: Counter<'result'>;
  private readonly metaSipInvites: Counter<'result'>;
  private readonly drachtioDrops: Counter;
  private readonly codecRefusals: Counter<'sdp'>;
  private readonly webhooks: Counter<'type' | 'result'>;
  private readonly permissionRequests: Counter<'source' | 'result'>;
  private readonly permissionReplies: Counter<'response'>;
  private readonly mos: Histogram<'leg'>;
  private readonly cdrDropped: Counter;
  private readonly refusedMoves: Counter<'machine'>;
  private readonly recoveredCalls: Counter<'node'>;

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
    const self = this;
    new Gauge({
      name: 'wasb_calls_in_progress', help: 'Calls in progress (set up, bridged or being torn down), by direction.',
      labelNames: ['direction'] as const, registers,
      collect() {
        const n = self.inProgress?.();
        for (const d of CALL_DIRECTIONS) this.set({ direction: d }, n?.[d] ?? 0);
      },
    });
    this.callsTotal = new Counter({
      name: 'wasb_calls_total', help: 'Calls ended, by direction and outcome (the CDR\'s outcome).',
      labelNames: ['direction', 'outcome'] as const, registers,
    });
    for (const direction of CALL_DIRECTIONS) for (const outcome of CALL_OUTCOMES) this.callsTotal.inc({ direction, outcome }, 0);
    this.setup = new Histogram({
      name: 'wasb_call_setup_seconds',
      help: 'Call set-up latency per step: inbound_preaccept (connect webhook to preAccept sent), inbound_pbx_ringing (webhook to PBX ringing), '
        + 'inbound_accept (PBX 200 to accept sent), outbound_connect (agent INVITE to calls/connect sent), outbound_answer (ACCEPTED webhook to 200 OK sent).',
      labelNames: ['step'] as const, buckets: SETUP_BUCKETS, registers,
    });
    this.ycloudTotal = new Counter({
      name: 'wasb_ycloud_requests_total', help: 'Requests to the YCloud API, by endpoint and result (ok, http_4xx, http_5xx, timeout, network_error).',
      labelNames: ['endpoint', 'result'] as const, registers,
    });
    this.ycloudSeconds = new Histogram({
      name: 'wasb_ycloud_request_seconds', help: 'YCloud API round trip (until the response body is read or the request fails), by endpoint.',
      labelNames: ['endpoint'] as const, buckets: HTTP_BUCKETS, registers,
    });
    this.metaTotal = new Counter({
      name: 'wasb_meta_requests_total', help: 'Requests to Meta\'s Graph API (or a provider passing it through), by endpoint and result (ok, http_4xx, http_5xx, timeout, network_error).',
      labelNames: ['endpoint', 'result'] as const, registers,
    });
    this.metaSeconds = new Histogram({
      name: 'wasb_meta_request_seconds', help: 'Graph API round trip (until the response body is read or the request fails), by endpoint.',
      labelNames: ['endpoint'] as const, buckets: HTTP_BUCKETS, registers,
    });
    this.ngTotal = new Counter({
      name: 'wasb_rtpengine_commands_total', help: 'rtpengine ng commands, by command and result (ok, error: refused or failed, timeout).',
      labelNames: ['command', 'result'] as const, registers,
    });
    this.ngSeconds = new Histogram({
      name: 'wasb_rtpengine_command_seconds', help: 'rtpengine ng command round trip, by command.',
      labelNames: ['command'] as const, buckets: NG_BUCKETS, registers,
    });
    this.sipTotal = new Counter({
      name: 'wasb_sip_requests_total',
      help: 'SIP requests the bridge sends, by method and result (final response class 2xx..6xx, timeout, error; '
        + 'BYE: answered, CANCEL: sent, as drachtio-srf reports no more).',
      labelNames: ['method', 'result'] as const, registers,
    });
    this.sipSeconds = new Histogram({
      name: 'wasb_sip_request_seconds', help: 'Time from sending a SIP request to its final response (INVITE: including ringing), by method.',
      labelNames: ['method'] as const, buckets: SIP_BUCKETS, registers,
    });
    this.invites = new Counter({
      name: 'wasb_sip_invites_received_total', help: 'INVITEs from agents\' phones (outbound calls) at the door, by result.',
      labelNames: ['result'] as const, registers,
    });
    this.metaSipInvites = new Counter({
      name: 'wasb_meta_sip_invites_total', help: 'INVITEs on Meta\'s SIP listener (users\' calls to numbers in SIP mode), by result: refused ones never reach media.',
      labelNames: ['result'] as const, registers,
    });
    new Gauge({
      name: 'wasb_drachtio_connected', help: '1 while the bridge is connected to drachtio-server, else 0.', registers,
      collect() {
        this.set(self.drachtioUp?.() ? 1 : 0);
      },
    });
    this.codecRefusals = new Counter({
      name: 'wasb_codec_refusals_total',
      help: 'PBX SDP with no codec the bridge can use, by sdp: agent_offer (an agent\'s INVITE, refused with 488 before WhatsApp is called), pbx_answer (the PBX\'s answer to the bridge, the call ended).',
      labelNames: ['sdp'] as const, registers,
    });
    this.drachtioDrops = new Counter({
      name: 'wasb_drachtio_disconnects_total', help: 'Times the connection to drachtio-server was lost.', registers,
    });
    this.cdrDropped = new Counter({
      name: 'wasb_cdr_writes_dropped_total', help: 'CDR writes lost: refused by Postgres, dropped from a full queue, or given up and not taken by the spill file (CDR_SPILL_DIR).', registers,
    });
    this.refusedMoves = new Counter({
      name: 'wasb_call_state_refused_total',
      help: 'State changes a call asked for that its tables do not allow (machine: call, whatsapp_leg, pbx_leg): a defect to report, the call goes on.',
      labelNames: ['machine'] as const, registers,
    });
    this.recoveredCalls = new Counter({
      name: 'wasb_calls_recovered_total', help: 'Calls ended after their node died (node: self after a restart, peer for another node).',
      labelNames: ['node'] as const, registers,
    });
    this.webhooks = new Counter({
      name: 'wasb_webhook_events_total',
      help: 'YCloud webhook requests, by event type (known types; other; unknown when the body was not read or not trusted) '
        + 'and result (processed, ignored, duplicate, bad_signature, stale, malformed, store_failed, error, overloaded, timeout).',
      labelNames: ['type', 'result'] as const, registers,
    });
    this.accountNotices = new Counter({
      name: 'wasb_account_notices_total',
      help: 'Notices about a provider account or number (Meta account_update, account_settings_update), by provider account, '
        + 'severity (restriction: calling restricted or the call button hidden; warning: quality or pickup-rate violations; info: settings changed) and event.',
      labelNames: ['provider', 'severity', 'event'] as const, registers,
    });
    this.permissionRequests = new Counter({
      name: 'wasb_permission_requests_total', help: 'Call-permission requests sent to customers, by source (api, auto) and result (sent, failed, rate_limited).',
      labelNames: ['source', 'result'] as const, registers,
    });
    this.permissionReplies = new Counter({
      name: 'wasb_permission_replies_total', help: 'Call-permission replies received from customers, by response (accept, reject, other).',
      labelNames: ['response'] as const, registers,
    });
    this.mos = new Histogram({
      name: 'wasb_call_mos', help: 'Estimated MOS (1..5) of each ended call, by leg (whatsapp, pbx).',
      labelNames: ['leg'] as const, buckets: MOS_BUCKETS, registers,
    });
  }

  /** Where wasb_calls_in_progress comes from (read at each scrape). */
  trackCallsInProgress(source: () => Record<CallDirection, number>): void {
    this.inProgress = source;
  }

  /** Where wasb_drachtio_connected comes from (read at each scrape). */
  trackDrachtio(connected: () => boolean): void {
    this.drachtioUp = connected;
  }

  callEnded(direction: CallDirection, outcome: CallOutcome): void {
    safe(() => this.callsTotal.inc({ direction: oneOf(CALL_DIRECTIONS, direction), outcome: oneOf(CALL_OUTCOMES, outcome) }));
  }

  setupStep(step: SetupStep, seconds: number): void {
    safe(() => {
      if (Number.isFinite(seconds) && seconds >= 0) this.setup.observe({ step: oneOf(SETUP_STEPS, step) }, seconds);
    });
  }

  ycloudRequest(endpoint: YCloudEndpoint, result: YCloudResult, seconds: number): void {
    safe(() => {
      const e = oneOf(YCLOUD_ENDPOINTS, endpoint);
      this.ycloudTotal.inc({ endpoint: e, result });
      this.ycloudSeconds.observe({ endpoint: e }, seconds);
    });
  }

  metaRequest(endpoint: MetaEndpoint, result: YCloudResult, seconds: number): void {
    safe(() => {
      const e = oneOf(META_ENDPOINTS, endpoint);
      this.metaTotal.inc({ endpoint: e, result });
      this.metaSeconds.observe({ endpoint: e }, seconds);
    });
  }

  rtpengineCommand(command: RtpengineCommand, result: RtpengineResult, seconds: number): void {
    safe(() => {
      const c = oneOf(RTPENGINE_COMMANDS, command);
      this.ngTotal.inc({ command: c, result });
      this.ngSeconds.observe({ command: c }, seconds);
    });
  }

  /** `seconds` null: no response time is known (CANCEL). */
  sipRequest(method: SipMethod, result: SipResult, seconds: number | null): void {
    safe(() => {
      const m = oneOf(SIP_METHODS, method);
      this.sipTotal.inc({ method: m, result });
      if (seconds !== null) this.sipSeconds.observe({ method: m }, seconds);
    });
  }

  inviteReceived(result: InviteResult): void {
    safe(() => this.invites.inc({ result }));
  }

  metaSipInvite(result: MetaSipInviteResult): void {
    safe(() => this.metaSipInvites.inc({ result }));
  }

  /** A PBX's SDP offered or answered no codec the bridge can use (see media/usable-codecs). */
  codecRefused(sdp: CodecRefusal): void {
    safe(() => this.codecRefusals.inc({ sdp }));
  }

  drachtioDisconnected(): void {
    safe(() => this.drachtioDrops.inc());
  }

  cdrWritesDropped(n: number): void {
    safe(() => this.cdrDropped.inc(n));
  }

  /** A call, or one of its legs, was asked for a state change its table does not allow. */
  stateRefused(machine: 'call' | 'whatsapp_leg' | 'pbx_leg'): void {
    safe(() => this.refusedMoves.inc({ machine }));
  }

  callsRecovered(node: 'self' | 'peer', n: number): void {
    safe(() => this.recoveredCalls.inc({ node }, n));
  }

  /** `type` is the event's type as sent; anything outside the known set is counted as "other". */
  webhookEvent(type: string, result: WebhookResult): void {
    safe(() => this.webhooks.inc({ type: type === 'unknown' ? 'unknown' : oneOf(WEBHOOK_TYPES, type), result }));
  }

  permissionRequest(source: PermissionSource, result: PermissionResult): void {
    safe(() => this.permissionRequests.inc({ source, result }));
  }

  /** A provider's notice about an account or number (the event name is bounded: it is a label). */
  accountNotice(provider: string, severity: 'restriction' | 'warning' | 'info', event: string): void {
    safe(() => this.accountNotices.inc({ provider: provider.slice(0, 32), severity, event: /^[A-Za-z_]{1,40}$/.test(event) ? event : 'other' }));
  }

  permissionReply(response: string): void {
    safe(() => this.permissionReplies.inc({ response: oneOf(['accept', 'reject'] as const, response) }));
  }

  /**
   * One ended call's estimated MOS for one leg. Called from the call teardown once the quality
   * figures exist (one observation per leg and call); values outside 1..5 are clamped, NaN ignored.
   */
  observeQuality(leg: QualityLeg, mos: number): void {
    safe(() => {
      if (!Number.isFinite(mos)) return;
      this.mos.observe({ leg: oneOf(['whatsapp', 'pbx'] as const, leg) }, Math.min(5, Math.max(1, mos)));
    });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The Prometheus text exposition of every metric. */
  text(): Promise<string> {
    return this.registry.metrics();
  }
}

function safe(fn: () => void): void {
  try {
    fn();
  } catch {
    // a metric must never break what it measures
  }
}
