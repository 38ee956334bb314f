import { TypedEmitter } from '../util/typed-emitter';

/** A session timer as a Session-Expires header gives it (RFC 4028): the interval and who refreshes. */
export interface SessionTimer { intervalS: number; refresher: 'uac' | 'uas' | null }

/** Parses `Session-Expires: 90;refresher=uac`; null when there is none (or it is not a number). */
export function parseSessionExpires(value: string | undefined | null): SessionTimer | null {
  const m = /^\s*(\d{1,9})\s*(?:;(.*))?$/.exec(value ?? '');
  if (!m) return null;
  const intervalS = Number(m[1]);
  if (!(intervalS > 0)) return null;
  const refresher = /(?:^|;)\s*refresher\s*=\s*(uac|uas)\b/i.exec(m[2] ?? '')?.[1]?.toLowerCase();
  return { intervalS, refresher: refresher === 'uac' || refresher === 'uas' ? refresher : null };
}

/** Whether a request or response allows UPDATE (its Allow header), so a refresh can go without SDP. */
export function allowsUpdate(allow: string | undefined | null): boolean {
  return /(?:^|[\s,])UPDATE(?:$|[\s,])/i.test(allow ?? '');
}

/** Why a refresh failed, when it ends the session (RFC 4028 s10: 408, 481, or no answer at all). */
export interface RefreshFailure { status: number | null; message: string }

/** A refresh the session sends: resolves when it was answered 2xx, rejects with the failure otherwise. */
export type SendRefresh = () => Promise<void>;

/** Thrown by a SendRefresh for a final response other than 2xx. */
export class RefreshRefused extends Error {
  constructor(readonly status: number, reason: string) {
    super(`session refresh refused: ${status} ${reason}`);
    this.name = 'RefreshRefused';
  }
}

export interface SessionRefresherEvents {
  /** A refresh was answered 2xx. */
  refreshed: [n: number];
  /** A refresh was refused in a way that leaves the session up (e.g. 491): tried again sooner. */
  retry: [failure: RefreshFailure];
  /** The session is over (408, 481, no answer): the call must end. */
  failed: [failure: RefreshFailure];
}

/**
 * The bridge as the refresher of a session (RFC 4028): sends a refresh at half the interval, again
 * after each 2xx; a 408, a 481 or no answer ends the session ('failed'); another refusal is tried
 * once more after a quarter of the interval (the session has not expired yet), and a second ends it.
 * `stop` ends it for good.
 */
export class SessionRefresher extends TypedEmitter<SessionRefresherEvents> {
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private count = 0;
  /** A refusal already sent this refresh back once since the last 2xx: the next one ends the session. */
  private retried = false;

  constructor(readonly intervalS: number, private readonly send: SendRefresh) {
    super();
  }

  start(): void {
    this.schedule((this.intervalS * 1000) / 2);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.refresh(), ms);
    this.timer.unref?.();
  }

  private async refresh(): Promise<void> {
    this.timer = null;
    if (this.stopped) return;
    try {
      await this.send();
      if (this.stopped) return;
      this.retried = false;
      this.emit('refreshed', ++this.count);
      this.schedule((this.intervalS * 1000) / 2);
    } catch (err) {
      if (this.stopped) return;
      const status = err instanceof RefreshRefused ? err.status : numericStatus(err);
      const failure: RefreshFailure = { status, message: (err as Error).message };
      if (status === null || status === 408 || status === 481 || this.retried) {
        this.stopped = true;
        this.emit('failed', failure);
        return;
      }
      this.retried = true;
      this.emit('retry', failure);
      this.schedule((this.intervalS * 1000) / 4);
    }
  }
}

/** The status drachtio-srf puts on the error of a refused request (a re-INVITE's `status`), if any. */
function numericStatus(err: unknown): number | null {
  const s = (err as { status?: unknown } | null)?.status;
  return typeof s === 'number' ? s : null;
}
