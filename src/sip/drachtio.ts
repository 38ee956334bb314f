import Srf from 'drachtio-srf';
import { Logger } from '../log';
import { Metrics } from '../metrics/metrics';
import { LostDialogProbe } from './lost-dialog';
import { srfCanSend, srfStop } from './srf-connection';

export interface DrachtioOptions { host: string; port: number; secret: string }

/** The longest wait between two attempts to reach drachtio-server again. */
const RECONNECT_MAX_DELAY_MS = 2000;

/** Connects drachtio-srf to drachtio-server and tracks whether SIP is usable right now. */
export class SipCore {
  readonly srf = new Srf();
  /** Asks about and ends the PBX dialogs drachtio-server has lost (this bridge's, on this Srf). */
  readonly lostDialogs: LostDialogProbe;
  private connected = false;
  /** Where drachtio-server takes SIP (from its hello: "udp/10.0.0.5:5060,tcp/..."); empty until connected. */
  private listening: Array<{ address: string; port: number }> = [];

  /** `metrics`: the connection's state and losses. */
  constructor(private readonly opts: DrachtioOptions, private readonly log: Logger, private readonly metrics: Metrics) {
    this.lostDialogs = new LostDialogProbe(this.srf, () => this.ready, log);
    metrics.trackDrachtio(() => this.ready);
    this.srf.on('connect', (err: Error | null, hostPort: string) => {
      if (err) {
        // drachtio-srf reports a refused secret here and nowhere else.
        this.log.error({ err, drachtio: `${opts.host}:${opts.port}` },
          /authenticate/i.test(err.message)
            ? 'drachtio-server refused the connection: DRACHTIO_SECRET does not match its secret'
            : 'could not connect to drachtio-server');
        return;
      }
      this.connected = true;
      this.listening = sipEndpoints(hostPort);
      this.log.info({ hostPort }, 'connected to drachtio-server');
    });
    // drachtio-srf says 'close' when the connection drops (it never emits 'disconnect'), then retries.
    (this.srf as unknown as NodeJS.EventEmitter).on('close', () => {
      if (this.connected) {
        this.log.warn('lost drachtio-server; refusing new calls until it is back');
        this.metrics.drachtioDisconnected();
      }
      this.connected = false;
    });
    this.srf.on('error', (err: Error) => {
      if (this.connected) this.metrics.drachtioDisconnected();
      this.connected = false;
      this.log.warn({ err }, 'drachtio-server connection error (srf retries by itself)');
    });
  }

  /**
   * Whether SIP is usable now: drachtio-server said hello and drachtio-srf has an open, authenticated
   * connection to send on (its events alone can say 'connect' after the connection has closed again).
   */
  get ready(): boolean {
    return this.connected && srfCanSend(this.srf);
  }

  /** drachtio-server's SIP sockets as it last said (the bridge's own SIP ports: no transfer may target them). */
  get sipEndpoints(): Array<{ address: string; port: number }> {
    return this.listening;
  }

  /** Starts connecting (srf retries with backoff); resolves once connected or after `waitMs`. */
  start(waitMs = 5000): Promise<boolean> {
    // srf's retry delay grows by 1.7 each attempt with no ceiling by default: after a few minutes of
    // drachtio-server being away the bridge would wait minutes more once it is back.
    const reconnect = { retryMaxDelay: RECONNECT_MAX_DELAY_MS };
    this.srf.connect({ host: this.opts.host, port: this.opts.port, secret: this.opts.secret, reconnect } as Parameters<Srf['connect']>[0]);
    if (this.ready) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(this.ready), waitMs);
      this.srf.once('connect', () => {
        clearTimeout(t);
        resolve(this.ready);
      });
    });
  }

  /** Disconnects and stops reconnecting, whether drachtio-server is there or not. */
  stop(): void {
    this.connected = false;
    srfStop(this.srf);
  }
}

/** The addresses and ports in drachtio-server's hello ("udp/127.0.0.1:5060,tcp/[::1]:5060"). */
export function sipEndpoints(hostPort: unknown): Array<{ address: string; port: number }> {
  if (typeof hostPort !== 'string') return [];
  return [...hostPort.matchAll(/(?:^|[,/])\[?([0-9A-Fa-f:.]+?)\]?:(\d{1,5})(?=$|[,;])/g)].map((m) => ({ address: m[1]!.toLowerCase(), port: Number(m[2]) }));
}
