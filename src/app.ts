import http from 'node:http';
import { AddressInfo } from 'node:net';
import { Config } from './config';
import Router from '@koa/router';
import { AgentCalls } from './calls/agent-calls';
import { CallDeps } from './calls/call-deps';
import { PermissionStore } from './calls/permissions';
import { CallRegistry } from './calls/registry';
import { CallRouter } from './calls/router';
import { OutboundGate, outboundGuardWarning } from './sip/outbound-invites';
import { InviteRateLimiter } from './sip/invite-limits';
import { Marks } from './metrics/marks';
import { BridgeObserver } from './observer';
import { connectReportingDatabase } from './cdr/db';
import { Database } from './cdr/database';
import { databaseSetupProblem, DatabaseSetupError, maskedDatabaseUrl, schemaBehindMessage } from './cdr/db-problems';
import { CdrSpill } from './cdr/cdr-spill';
import { CdrStore } from './cdr/store';
import { createHttpApp, listen, ReadinessReport, routeTable } from './http/server';
import { webhookRoutes } from './http/webhooks';
import { IngressGuard } from './http/ingress-guard';
import { RefusalLog } from './refusal-log';
import { WebhookQuarantine } from './cdr/quarantine';
import { RetentionSweeper } from './cdr/retention';
import { adminRoutes } from './http/admin';
import { adminBearer, apiAuth } from './http/auth';
import { callsApiRoutes } from './http/calls-api';
import { ReportStore } from './reports/store';
import { ReportAdmission } from './reports/admission';
import { ActiveExports } from './reports/export-stream';
import { Logger } from './log';
import { Recorder } from './recording/recorder';
import { RtpEngine } from './media/rtpengine';
import { loadNumbers, Numbers } from './numbers';
import { MediaFetcher } from './recording/media-fetcher';
import { Periodic } from './util/periodic';
import { SipCore } from './sip/drachtio';
import { MetaSipBorder, MetaSipProvider } from './providers/meta-sip';
import { SipPolicy, sipPolicyFor } from './sip/sip-policy';
import { answerOptions, PbxTargetMonitor } from './sip/options';
import { writeSilenceWav } from './media/wav';
import { DtmfLogListener } from './media/dtmf-log';
import { MediaPlan } from './media/profiles';
import { withTimeout } from './sip/dialog-requests';
import { metricsRoutes } from './http/metrics-route';
import { Metrics } from './metrics/metrics';
import { SetupSteps } from './metrics/setup-steps';
import { EventPipeline } from './events/pipeline';
import { ClusterBus, ClusterMessage } from './cluster/bus';
import { NodeRegistry } from './cluster/nodes';
import { OrphanRecovery } from './cluster/recovery';
import { Sequelize } from 'sequelize';

/** What a caller adds to the bridge: the sandbox mounts its phone page and the simulator's controls. */
export interface BridgeExtras {
  /** Routers served after the bridge's own (the sandbox's /sandbox), made when the HTTP side starts. */
  routes?: (bridge: Bridge) => Router[];
}

/** The whole bridge, wired from a Config; start() and stop() make it usable in-process by tests. */
export class Bridge {
  readonly marks = new Marks();
  /** Prometheus metrics (GET /metrics), on a registry of this bridge's own. */
  readonly metrics = new Metrics();
  /** Turns the marks into wasb_call_setup_seconds. */
  private readonly setupSteps: SetupSteps;
  /** What happens in the bridge, for watchers (the sandbox, tests): calls ended, events processed, recordings made. */
  readonly observer = new BridgeObserver();
  /** The calls' Postgres pool, as the data-access objects each component gets (see src/cdr/database.ts). */
  readonly db: Database;
  readonly cdr: CdrStore;
  /** CDR writes that could not reach Postgres, kept in CDR_SPILL_DIR and replayed at the next start. */
  readonly cdrSpill: CdrSpill;
  /**
   * The reporting API's own Postgres pool (REPORTING_DB_POOL_MAX): reports and CSV exports never take
   * a connection from the pool calls, webhooks, CDR writes and heartbeats use.
   */
  readonly reportingDb: Sequelize;
  /** Reporting requests at once, per token and in all (REPORTING_MAX_CONCURRENT*). */
  readonly reportAdmission: ReportAdmission;
  /** The CSV exports in progress. */
  readonly reportExports = new ActiveExports();
  readonly sip: SipCore;
  readonly rtp: RtpEngine;
  /**
   * The business numbers and their provider accounts (YCloud, Meta): each number's provider adapter,
   * webhook source and PBX route. From NUMBERS_FILE (reloaded on SIGHUP) or the environment's one number.
   */
  readonly numbers: Numbers;
  /** Meta's native SIP: Meta's INVITEs in, and the SIP-mode numbers' calls out. */
  readonly metaSip: MetaSipBorder;
  /** The calls in progress on this node. */
  readonly calls: CallRegistry;
  /** Call events to their calls (a WhatsApp user's call starts there). */
  private readonly router: CallRouter;
  /** Agents' INVITEs to their calls (an agent's call starts there). */
  private readonly agentCalls: AgentCalls;
  /** Webhook events from their durable write to their call, at least once (replayed after a crash). */
  readonly events: EventPipeline;
  /** Messages between nodes (Postgres LISTEN/NOTIFY). */
  readonly bus: ClusterBus;
  /** This node's heartbeat, and the detection of dead nodes whose calls it then ends. */
  readonly nodes: NodeRegistry;
  readonly recovery: OrphanRecovery;
  readonly permissions: PermissionStore;
  /** Who may act in calls' PBX dialogs, and where transfers may go. */
  private readonly sipPolicy: SipPolicy;
  readonly targets: PbxTargetMonitor;
  readonly plan: MediaPlan;
  /** RECORDING=all: turns each call's rtpengine recording into its audio file; null otherwise. */
  readonly recorder: Recorder | null;
  /** RECORDING=all: brings in the recordings, transcripts and voicemails the provider makes of calls; null otherwise. */
  readonly mediaFetcher: MediaFetcher | null;
  /** Deletes provider-made call media past RECORDING_RETENTION_DAYS, hourly. */
  private readonly mediaSweep: Periodic | null;
  private server: http.Server | null = null;
  /** What the HTTP side serves once started ("METHOD /path"), e.g. to check it against the OpenAPI document. */
  httpRoutes: string[] = [];
  /** The webhook endpoint's door: signature header, size, time and concurrency limits on body reads. */
  readonly webhookIngress: IngressGuard;
  /** Signed webhook events refused as never valid, kept as sent. */
  readonly webhookQuarantine: WebhookQuarantine;
  /** Deletes rows past their retention (WEBHOOK_EVENTS_RETENTION_DAYS, CDR_RETENTION_DAYS ...). */
  readonly retention: RetentionSweeper;
  private readonly dtmfLog: DtmfLogListener | null;
  /** SIGTERM seen: not ready, new calls refused, calls in progress allowed to finish. */
  private draining = false;
  private stopping: Promise<void> | null = null;

  constructor(readonly config: Config, private readonly log: Logger, private readonly extras: BridgeExtras = {}) {
    this.cdrSpill = new CdrSpill({
      dir: config.database.cdrSpillDir, nodeId: config.nodeId, attemptTimeoutMs: 3 * config.database.timeoutMs + 1000, onLost: (n) => this.metrics.cdrWritesDropped(n),
    }, log);
    this.db = Database.connect(config.databaseUrl, config.database.timeoutMs, { spill: this.cdrSpill });
    this.cdr = this.db.cdr;
    this.reportingDb = connectReportingDatabase(config.databaseUrl, config.reporting, config.reporting.statementTimeoutMs);
    this.reportAdmission = new ReportAdmission({ total: config.reporting.maxConcurrent, perToken: config.reporting.maxConcurrentPerToken });
    this.sip = new SipCore(config.drachtio, log, this.metrics);
    this.rtp = new RtpEngine(config.rtpengine.ng, config.rtpengine.timeoutMs, log, this.metrics);
    this.plan = new MediaPlan({ interfaces: config.rtpengine.interfaces, pbxCodecs: config.pbx.codecs, pbxSrtp: config.pbx.srtp, codecPolicy: config.media.codecPolicy });
    this.recorder = config.recording.enabled ? new Recorder(config.recording, this.rtp, this.cdr, log) : null;
    this.recorder?.on('finished', (callId: string, file: string) => this.observer.tell('recording-finished', callId, file));
    // Meta's SIP border: its numbers' call actions are SIP, their other requests their Meta account's.
    this.metaSip = new MetaSipBorder(this.sip.srf, { ...config.metaSip, timeoutMs: config.pbx.responseTimeoutMs }, () => this.numbers, log, this.metrics);
    this.numbers = loadNumbers(config, this.metrics, log, process.env, {
      sipProvider: (graph, mode, line, account) => new MetaSipProvider(this.metaSip, graph, { sip: mode, line, account }),
    });
    this.permissions = new PermissionStore(this.db.permissions, log, this.metrics);
    this.targets = new PbxTargetMonitor(this.sip.srf, this.numbers.pbxTargets(), {
      intervalMs: config.pbx.optionsPingMs, timeoutMs: config.pbx.responseTimeoutMs, canPing: () => this.sip.ready,
    }, log, this.metrics);
    // SIP refusals (untrusted INVITEs, outsiders' requests in calls) are logged at most 20 per 10 s.
    const sipRefusals = new RefusalLog(log);
    this.sipPolicy = sipPolicyFor(config, this.sip, () => this.httpPort, sipRefusals);
    const callDeps: CallDeps = {
      config, numbers: this.numbers, rtp: this.rtp, plan: this.plan, srf: this.sip.srf, cdr: this.cdr, log, marks: this.marks, metrics: this.metrics,
      recorder: this.recorder, sipPolicy: this.sipPolicy, permissions: this.permissions, canDial: () => this.sip.ready, orderTargets: (t) => this.targets.orderOf(t),
    };
    this.calls = new CallRegistry();
    this.calls.on('call-ended', (key, id) => this.observer.tell('call-ended', key, id));
    this.mediaFetcher = config.recording.enabled ? new MediaFetcher({ records: this.db.media, dir: config.recording.outputDir, log }) : null;
    const fetcher = this.mediaFetcher;
    this.mediaSweep = fetcher && config.recording.retentionDays > 0
      ? new Periodic(async () => { await fetcher.sweep(config.recording.retentionDays); }, 60 * 60 * 1000) : null;
    this.router = new CallRouter({
      calls: this.calls, callDeps, cdr: this.cdr, permissions: this.permissions, metrics: this.metrics, log,
      media: fetcher && {
        fetch: async (m, from) => {
          await fetcher.handle(m, { provider: from.account, fetch: (media) => from.provider.fetchMedia(from.line, media) });
        },
      },
      notices: this.db.notices,
    });
    this.agentCalls = new AgentCalls({
      config, calls: this.calls, callDeps,
      gate: new OutboundGate(config.outbound, log, this.metrics, sipRefusals, () => {
        const n = this.numbers.agentDefault();
        return n ? { number: n.line.number, phoneId: n.line.phoneId } : null;
      }),
      rate: new InviteRateLimiter(config.outbound.limits), metrics: this.metrics, log,
    });
    this.events = new EventPipeline({
      webhookEvents: this.db.webhookEvents, nodeId: config.nodeId, log, handle: (e, ctx) => this.router.handle(e, ctx), decode: (account, payload) => this.numbers.source(account)?.decodeStored(payload) ?? null,
    });
    this.events.on('processed', (id, type, ok, actedOn) => {
      if (actedOn) this.metrics.webhookEvent(type, ok ? 'processed' : 'error');
      this.observer.tell('event-processed', id, type, ok);
    });
    this.bus = new ClusterBus(config.databaseUrl, config.nodeId,
      (channel, payload) => this.db.notify(channel, payload),
      config.database.timeoutMs, log);
    this.bus.on('message', (m) => this.onClusterMessage(m));
    const tell = (m: ClusterMessage) => void this.bus.send(m).catch((err: unknown) => log.warn({ err }, 'could not notify the other nodes'));
    this.router.on('unplaced', (eventId, wacid) => tell({ kind: 'event', from: config.nodeId, eventId, wacid }));
    this.router.on('claimed', (wacid) => tell({ kind: 'claimed', from: config.nodeId, wacid }));
    this.recovery = new OrphanRecovery({
      cdr: this.cdr, provider: (account) => this.numbers.account(account ?? this.numbers.defaultAccount()), rtp: this.rtp, srf: this.sip.srf, canSip: () => this.sip.ready, nodeId: config.nodeId,
      sipTimeoutMs: config.pbx.requestTimeoutMs, log,
    });
    this.nodes = new NodeRegistry(this.db.nodes, { nodeId: config.nodeId, ...config.cluster }, log, (dead) => this.takeOver(dead).then(() => undefined));
    this.webhookIngress = new IngressGuard(config.ycloud.webhookLimits);
    this.webhookIngress.on('reading', (n: number) => this.observer.tell('webhook-reads', n));
    this.webhookQuarantine = this.db.quarantine;
    this.retention = new RetentionSweeper(this.db.retention, config.retention, log);
    this.metrics.trackCallsInProgress(() => this.calls.activeByDirection);
    this.setupSteps = new SetupSteps(this.marks, this.metrics);
    this.calls.on('call-ended', (key) => this.setupSteps.drop(key));
    this.metaSip.attach((event, ctx) => this.router.handle(event, ctx));
    this.sip.srf.invite((req, res) => (this.metaSip.isMetaInvite(req) ? this.metaSip.onInvite(req, res) : this.agentCalls.onInvite(req, res)));
    answerOptions(this.sip.srf, () => this.calls.accepts);
    this.dtmfLog = config.rtpengine.dtmfLog ? new DtmfLogListener(log) : null;
    this.dtmfLog?.on('digit', (ev) => this.calls.digit(ev));
  }

  /** Another node's message: process an event whose call is here, or send on what waits here for its call. */
  private onClusterMessage(m: ClusterMessage): void {
    const fail = (err: unknown) => this.log.error({ err, from: m.from }, 'cluster message not handled');
    if (m.kind === 'claimed') return this.router.releaseEarly(m.wacid);
    void this.events.processStored(m.eventId, (e) => this.router.owns(e)).catch(fail);
  }

  /**
   * Ends the calls a node left open and processes (or closes) the events it stored but never
   * processed: this node's own after a restart, or a dead node's once this one has claimed it.
   */
  async takeOver(nodeId: string): Promise<{ calls: number; events: number; replayed: Promise<void> }> {
    const self = nodeId === this.config.nodeId;
    const reason = self ? 'the bridge stopped while the call was in progress (recovered at restart)' : `bridge node ${nodeId} stopped while the call was in progress`;
    const calls = await this.recovery.recoverNode(nodeId, reason);
    if (calls) this.metrics.callsRecovered(self ? 'self' : 'peer', calls);
    const { events, done } = await this.events.replay(nodeId);
    if (calls || events) this.log.warn({ node: nodeId, calls, events }, self ? 'recovered from an unclean stop' : 'took over a dead node');
    return { calls, events, replayed: done };
  }

  /**
   * SIGHUP: reads NUMBERS_FILE again. A file that fails its checks changes nothing (every problem is
   * logged and returned); calls in progress keep the route they started with.
   */
  reloadNumbers(): { ok: true; numbers: number } | { ok: false; problems: string[] } {
    const r = this.numbers.reload();
    if (r.ok) this.targets.setTargets(this.numbers.pbxTargets());
    return r;
  }

  get httpPort(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? 0;
  }

  async start(opts: { sipWaitMs?: number } = {}): Promise<void> {
    await this.waitForDatabase();
    await this.ensureSchema();
    // CDR writes a previous run could not make, before its open calls are recovered (they may end them).
    await this.cdrSpill.replay(this.cdr).catch((err: unknown) => this.log.error({ err, file: this.cdrSpill.file }, 'CDR spill file not replayed: kept for the next start'));
    await this.rtp.startPinging(this.config.rtpengine.pingMs);
    for (const [at, alive] of Object.entries(this.rtp.health())) if (!alive) this.log.error({ rtpengine: at }, 'rtpengine does not answer ng pings: no calls go to it until it does');
    if (this.config.media.holdIsSilence) await writeSilenceWav(this.config.media.holdFile);
    await this.recorder?.start();
    void this.mediaSweep?.start();
    const dl = this.config.rtpengine.dtmfLog;
    if (this.dtmfLog && dl) await this.dtmfLog.listen(dl.host, dl.port);
    const guard = outboundGuardWarning(this.config.outbound);
    if (guard) this.log.warn({ trustedSources: this.config.outbound.trustedSources }, guard);
    const sipUp = await this.sip.start(opts.sipWaitMs);
    if (!sipUp) this.log.warn('drachtio-server not reachable yet; calls are refused until it is');
    await this.bus.start();
    await this.nodes.start();
    // What a previous run of this node left behind: its open calls ended, its stored events replayed.
    void (await this.takeOver(this.config.nodeId)).replayed.then(() => this.observer.tell('replay-done'));
    this.retention.start();
    const app = createHttpApp(
      [metricsRoutes({ metrics: this.metrics, token: this.config.metrics.token, log: this.log }), webhookRoutes({
        source: (account) => this.numbers.source(account),
        log: this.log,
        marks: this.marks,
        ingest: (e) => this.events.ingest(e),
        metrics: this.metrics,
        ingress: this.webhookIngress,
        quarantine: this.webhookQuarantine,
      }), apiAuth({
        adminToken: this.config.admin.token,
        reportingTokens: this.config.admin.reportingTokens,
        log: this.log,
      }), adminRoutes({
        permissions: this.permissions,
        numbers: this.numbers,
        pbxHealth: () => this.targets.status(),
        notices: () => this.db.notices.latestPerNumber(),
        log: this.log,
      }), callsApiRoutes({
        reports: new ReportStore(this.reportingDb, this.config.reporting.statementTimeoutMs),
        live: this.calls,
        mosThreshold: this.config.quality.mosThreshold,
        recordingDir: this.config.recording.outputDir,
        admission: this.reportAdmission,
        exportStallMs: this.config.reporting.exportStallMs,
        exports: this.reportExports,
        log: this.log,
      }), ...(this.extras.routes?.(this) ?? [])],
      { ready: () => this.readiness() },
      this.log,
      { trustProxy: this.config.trustProxy, mayReadDetails: adminBearer(this.config.admin.token) },
    );
    this.httpRoutes = routeTable(app);
    this.log.debug({ routes: this.httpRoutes }, 'HTTP routes');
    this.server = await listen(app, this.config.httpPort, this.config.httpHost, {
      maxConnections: this.config.httpMaxConnections, maxConnectionsPerClient: this.config.httpMaxConnectionsPerClient, log: this.log,
    });
    this.log.info({ host: this.config.httpHost ?? '*', port: this.httpPort }, 'HTTP listening');
    this.targets.start();
  }

  /**
   * Whether this bridge can take a call now: Postgres answers, drachtio-server is connected, an
   * rtpengine answers pings, and it is not draining. Each check is named in the answer (true/false);
   * the details (each rtpengine's address, Postgres's error) are for the admin token only (/readyz).
   */
  async readiness(): Promise<ReadinessReport> {
    const postgresError = await withTimeout(this.db.ping(), this.config.database.timeoutMs, 'Postgres did not answer')
      .then(() => null, (err: unknown) => (err as Error).message);
    const postgres = postgresError === null;
    const rtpengines = this.rtp.health();
    const rtpengine = Object.values(rtpengines).some(Boolean);
    const sip = this.sip.ready;
    const ok = postgres && sip && rtpengine && !this.draining;
    return { ok, checks: { postgres, sip, rtpengine, draining: this.draining, cluster: this.bus.listening }, details: { rtpengine: rtpengines, postgres: postgresError } };
  }

  /**
   * Start-up waits (bounded) for a Postgres that is not up yet, e.g. starting beside the bridge. What
   * waiting cannot fix (credentials refused, no such database) stops start-up at once, named as such.
   */
  private async waitForDatabase(): Promise<void> {
    const deadline = Date.now() + this.config.database.startupWaitMs;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.db.authenticate();
        return;
      } catch (err) {
        const problem = databaseSetupProblem(err, this.config.databaseUrl);
        if (problem) throw new DatabaseSetupError(problem);
        if (Date.now() >= deadline) throw new Error(`Postgres unreachable at ${maskedDatabaseUrl(this.config.databaseUrl)} (DATABASE_URL) after ${this.config.database.startupWaitMs / 1000} s (DATABASE_STARTUP_WAIT_S): ${(err as Error).message}`);
        this.log.warn({ err, attempt }, 'Postgres not reachable yet; retrying');
        await new Promise((r) => setTimeout(r, Math.min(2000, 250 * attempt)));
      }
    }
  }

  /**
   * The schema this build needs: applied now under the migration lock with MIGRATE_ON_START (a second
   * node starting at the same time waits, then finds it done), else checked, and a schema behind stops
   * start-up with what to run.
   */
  private async ensureSchema(): Promise<void> {
    if (this.config.database.migrateOnStart) {
      const applied = await this.db.migrate();
      if (applied.length) this.log.info({ applied }, 'migrations applied (MIGRATE_ON_START)');
      return;
    }
    const pending = await this.db.pendingMigrations();
    if (pending.length) throw new DatabaseSetupError(schemaBehindMessage(pending, this.config.databaseUrl));
  }

  /**
   * SIGTERM: readiness goes false and new calls are refused (webhooks are still stored), then calls in
   * progress get up to `drainMs` (default SHUTDOWN_DRAIN_S) to end by themselves.
   */
  async drain(drainMs = this.config.shutdown.drainMs): Promise<void> {
    this.draining = true;
    this.calls.stopAccepting();
    const active = this.calls.active;
    if (active === 0 || drainMs <= 0) return;
    this.log.info({ active, drainMs }, 'draining: waiting for calls in progress to end');
    const idle = await withTimeout(this.calls.whenIdle(), drainMs, 'drain limit').then(() => true, () => false);
    if (!idle) this.log.warn({ active: this.calls.active }, 'drain limit reached: ending the calls still up');
  }

  /**
   * Ends what is left and closes every connection. Each step is bounded, so the bridge stops even when
   * YCloud, drachtio-server, rtpengine and Postgres are all gone.
   */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  /**
   * The bound on each step of stop(). A call's teardown runs its legs in parallel, each bounded by its
   * own timeout, then writes the CDR.
   */
  private get stopBounds() {
    const { rtpengine, pbx, database } = this.config;
    return {
      pings: pbx.responseTimeoutMs + 500,
      calls: Math.max(this.numbers.maxTimeoutMs(), rtpengine.timeoutMs, pbx.requestTimeoutMs) + database.timeoutMs + 1000,
      http: 2000,
      recording: database.timeoutMs,
      // The retention sweep's statement in flight.
      retention: database.timeoutMs,
      // A heartbeat round in flight (two statements), then the clean-stop mark.
      cluster: 3 * database.timeoutMs,
      rtpengine: rtpengine.timeoutMs + 500,
      // Appending the CDR writes still queued to the spill file.
      spill: 2000,
      postgres: database.timeoutMs,
    };
  }

  /** The most stop() can take: the sum of its steps' bounds. */
  get stopBoundMs(): number {
    return Object.values(this.stopBounds).reduce((a, b) => a + b, 0);
  }

  private async shutdown(): Promise<void> {
    this.draining = true;
    const bound = this.stopBounds;
    const step = async (what: string, p: Promise<unknown>, ms: number) => {
      await withTimeout(p, ms, `${what} did not finish within ${ms} ms`).catch((err: unknown) => this.log.warn({ err }, 'shutdown step cut short'));
    };
    await step('OPTIONS pings', this.targets.stop(), bound.pings);
    await step('ending calls', this.calls.shutdown(), bound.calls);
    const server = this.server;
    if (server) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await step('HTTP server', closed, bound.http);
    }
    this.sip.stop();
    await step('cluster', Promise.all([this.nodes.stop(true), this.bus.stop(), this.events.flushMarks()]), bound.cluster);
    await step('recording retention', Promise.all([this.recorder?.stop(), this.mediaSweep?.stop()]), bound.recording);
    await step('data retention', this.retention.stop(), bound.retention);
    await step('rtpengine', this.rtp.close(), bound.rtpengine);
    this.dtmfLog?.close();
    this.cdrSpill.spillPending('the bridge stopped before Postgres took them');
    await step('CDR spill', this.cdrSpill.flushed(), bound.spill);
    await step('Postgres', Promise.all([this.db.close(), this.reportingDb.close()]), bound.postgres);
    this.log.info('stopped');
  }
}
