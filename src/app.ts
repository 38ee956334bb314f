import { EventEmitter } from 'node:events';
import http from 'node:http';
import { AddressInfo } from 'node:net';
import { Config } from './config';
import { CallDispatcher } from './calls/dispatcher';
import { Marks } from './calls/marks';
import { connectDatabase } from './cdr/db';
import { CdrStore } from './cdr/store';
import { createHttpApp, listen } from './http/server';
import { webhookRoutes } from './http/webhooks';
import { Logger } from './log';
import { RtpEngine } from './media/rtpengine';
import { YCloudClient } from './providers/ycloud/client';
import { SipCore } from './sip/drachtio';

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
  private server: http.Server | null = null;

  constructor(readonly config: Config, private readonly log: Logger) {
    this.cdr = new CdrStore(connectDatabase(config.databaseUrl), log);
    this.sip = new SipCore(config.drachtio, log);
    this.rtp = new RtpEngine(config.rtpengine.ng, config.rtpengine.timeoutMs);
    this.ycloud = new YCloudClient({ baseUrl: config.ycloud.apiBaseUrl, apiKey: config.ycloud.apiKey, timeoutMs: config.ycloud.timeoutMs });
    this.calls = new CallDispatcher(
      { config, ycloud: this.ycloud, rtp: this.rtp, srf: this.sip.srf, cdr: this.cdr, log, marks: this.marks, canDial: () => this.sip.ready },
      this.cdr,
      log,
    );
  }

  get httpPort(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? 0;
  }

  async start(opts: { sipWaitMs?: number } = {}): Promise<void> {
    await this.cdr.sequelize.authenticate();
    const sipUp = await this.sip.start(opts.sipWaitMs);
    if (!sipUp) this.log.warn('drachtio-server not reachable yet; calls are refused until it is');
    const app = createHttpApp(
      [webhookRoutes({
        secret: this.config.ycloud.webhookSecret,
        toleranceSeconds: this.config.ycloud.webhookToleranceSeconds,
        cdr: this.cdr,
        log: this.log,
        marks: this.marks,
        process: (e) => this.calls.handle(e),
        processed: (id) => this.webhookEvents.emit('processed', id),
      })],
      { ready: () => ({ ok: this.sip.ready, checks: { sip: this.sip.ready } }) },
      this.log,
    );
    this.server = await listen(app, this.config.httpPort);
    this.log.info({ port: this.httpPort }, 'HTTP listening');
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server?.closeAllConnections();
    await this.calls.shutdown();
    this.sip.stop();
    this.rtp.close();
    await this.cdr.sequelize.close();
  }
}
