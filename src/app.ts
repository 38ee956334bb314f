import { EventEmitter } from 'node:events';
import http from 'node:http';
import { AddressInfo } from 'node:net';
import { Config } from './config';
import { performance } from 'node:perf_hooks';
import Srf from 'drachtio-srf';
import { CallDispatcher } from './calls/dispatcher';
import { OutboundCall } from './calls/outbound-call';
import { PermissionStore } from './calls/permissions';
import { OutboundGate } from './sip/outbound-invites';
import { Marks } from './calls/marks';
import { connectDatabase } from './cdr/db';
import { CdrStore } from './cdr/store';
import { createHttpApp, listen } from './http/server';
import { webhookRoutes } from './http/webhooks';
import { adminRoutes } from './http/admin';
import { Logger } from './log';
import { RtpEngine } from './media/rtpengine';
import { YCloudClient } from './providers/ycloud/client';
import { SipCore } from './sip/drachtio';
import { answerOptions, PbxTargetMonitor } from './sip/options';
import { writeSilenceWav } from './media/wav';
import { DtmfLogListener } from './media/dtmf-log';

/** The whole bridge, wired from a Config; start() and stop() make it usable in-process by tests. */
export class Bridge {
  readonly marks = new Marks();
  /** 'processed' (eventId) after each webhook event has been acted on. */
  readonly webhookEvents = new EventEmitter();
  readonly cdr: CdrStore;
  readonly sip: SipCore;
  readonly rtp: RtpEngine;
  readonly ycloud: YCloudClient;
  readonly calls: CallDispatcher;
  readonly permissions: PermissionStore;
  private readonly gate: OutboundGate;
  readonly targets: PbxTargetMonitor;
  private server: http.Server | null = null;
  private readonly dtmfLog: DtmfLogListener | null;

  constructor(readonly config: Config, private readonly log: Logger) {
    this.cdr = new CdrStore(connectDatabase(config.databaseUrl));
    this.sip = new SipCore(config.drachtio, log);
    this.rtp = new RtpEngine(config.rtpengine.ng, config.rtpengine.timeoutMs);
    this.ycloud = new YCloudClient({ baseUrl: config.ycloud.apiBaseUrl, apiKey: config.ycloud.apiKey, timeoutMs: config.ycloud.timeoutMs });
    this.permissions = new PermissionStore(this.cdr.sequelize, this.ycloud, log);
    this.targets = new PbxTargetMonitor(this.sip.srf, config.pbx.targets, {
      intervalMs: config.pbx.optionsPingMs, timeoutMs: config.pbx.responseTimeoutMs, canPing: () => this.sip.ready,
    }, log);
    this.calls = new CallDispatcher(
      {
        config, ycloud: this.ycloud, rtp: this.rtp, srf: this.sip.srf, cdr: this.cdr, log, marks: this.marks,
        canDial: () => this.sip.ready, targets: () => this.targets.ordered(),
      },
      this.cdr,
      this.permissions,
      log,
    );
    this.gate = new OutboundGate(config.outbound, log);
    this.sip.srf.invite((req, res) => this.onInvite(req, res));
    answerOptions(this.sip.srf, () => this.calls.accepts);
    this.dtmfLog = config.rtpengine.dtmfLog ? new DtmfLogListener(log) : null;
    this.dtmfLog?.on('digit', (ev) => this.calls.digit(ev));
  }

  /** An agent dials a WhatsApp user through the PBX. */
  private onInvite(req: Srf.SrfRequest, res: Srf.SrfResponse): void {
    const t = performance.now();
    if (!this.calls.accepts) {
      res.send(503, 'Service Unavailable', {});
      return;
    }
    const admitted = this.gate.admit(req, res);
    if (!admitted) return;
    const call = new OutboundCall(
      {
        config: this.config, ycloud: this.ycloud, rtp: this.rtp, srf: this.sip.srf, cdr: this.cdr, permissions: this.permissions,
        log: this.log, marks: this.marks, bind: (wacid, c) => this.calls.bindOutbound(wacid, c),
      },
      req, res, admitted,
    );
    this.marks.mark(call.id, 'invite_received', t);
    this.calls.trackOutbound(call);
    void call.run();
  }

  get httpPort(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? 0;
  }

  async start(opts: { sipWaitMs?: number } = {}): Promise<void> {
    await this.cdr.sequelize.authenticate();
    if (this.config.media.holdIsSilence) await writeSilenceWav(this.config.media.holdFile);
    const dl = this.config.rtpengine.dtmfLog;
    if (this.dtmfLog && dl) await this.dtmfLog.listen(dl.host, dl.port);
    const sipUp = await this.sip.start(opts.sipWaitMs);
    if (!sipUp) this.log.warn('drachtio-server not reachable yet; calls are refused until it is');
    const app = createHttpApp(
      [webhookRoutes({
        secret: this.config.ycloud.webhookSecret,
        toleranceSeconds: this.config.ycloud.webhookToleranceSeconds,
        cdr: this.cdr,
        log: this.log,
        marks: this.marks,
        process: (e, arrivedAt) => this.calls.handle(e, arrivedAt),
        processed: (id) => this.webhookEvents.emit('processed', id),
      }), adminRoutes({
        token: this.config.admin.token,
        wabaId: this.config.admin.wabaId,
        defaultBusinessNumber: this.config.outbound.defaultBusinessNumber,
        permissions: this.permissions,
        ycloud: this.ycloud,
        log: this.log,
      })],
      { ready: () => ({ ok: this.sip.ready, checks: { sip: this.sip.ready } }) },
      this.log,
    );
    this.server = await listen(app, this.config.httpPort);
    this.log.info({ port: this.httpPort }, 'HTTP listening');
    this.targets.start();
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server?.closeAllConnections();
    await this.targets.stop();
    await this.calls.shutdown();
    this.sip.stop();
    this.rtp.close();
    this.dtmfLog?.close();
    await this.cdr.sequelize.close();
  }
}
