import { EventEmitter } from 'node:events';
import Srf from 'drachtio-srf';
import { SipResult } from '../metrics/metrics';
import { SipMetrics, sipResultOf, sipTimer } from '../metrics/sip';
import { BSUID } from '../util/numbers';

export interface PbxInviteOptions {
  target: string;
  /** The caller's address: E.164, or a BSUID when WhatsApp gave no number (both dialable back through the bridge). */
  fromNumber: string;
  fromHost: string;
  /** The From's display name (the WhatsApp profile name); null: none. */
  displayName: string | null;
  sdp: string;
  headers: Record<string, string>;
  /** No SIP response at all within this time: give up (target unreachable). */
  responseTimeoutMs: number;
  /** Answers a 401/407 from the PBX (on the INVITE and on later requests in its dialog). */
  auth: { username: string; password: string } | null;
}

export type PbxFailure =
  | { kind: 'status'; status: number; reason: string; hadProvisional: boolean }
  | { kind: 'no-response' }
  | { kind: 'cancelled' }
  | { kind: 'error'; message: string };

/** How an INVITE toward the PBX failed, as an Error (what PbxLeg.invite rejects with). */
export class PbxLegError extends Error {
  constructor(readonly failure: PbxFailure, readonly minSe: number | null = null) {
    super(describe(failure));
    this.name = 'PbxLegError';
  }
}

function describe(f: PbxFailure): string {
  switch (f.kind) {
    case 'status': return `PBX answered ${f.status} ${f.reason}`;
    case 'no-response': return 'no response from the PBX';
    case 'cancelled': return 'INVITE cancelled';
    case 'error': return f.message;
  }
}

/** The PbxFailure carried by whatever an INVITE attempt rejected with. */
export function failureOf(err: unknown): PbxFailure {
  return err instanceof PbxLegError ? err.failure : { kind: 'error', message: err instanceof Error ? err.message : String(err) };
}

export interface PbxAnswer { sdp: string; agent: string | null; dialog: Srf.Dialog }

/** The largest Session-Expires interval (s) the bridge asks for when a PBX answers 422 (RFC 4028). */
const MAX_SESSION_EXPIRES = 7200;

/**
 * One outgoing INVITE to the PBX. Emits 'sip-call-id' (Call-ID) once the INVITE has gone out (again
 * for a 422 retry, which is a new call), 'progress' (status, sdp|null) for 18x and resolves with the
 * dialog on 200; rejects with a PbxFailure otherwise. 3xx redirects are followed (up to 4 hops), and
 * a 422 (Session Interval Too Small) is retried once with the PBX's Min-SE. Once answered, the
 * dialog belongs to the caller (a PbxSession handles everything in it).
 */
export class PbxLeg extends EventEmitter {
  private req: Srf.SrfRequest | null = null;
  private answered = false;
  private cancelled = false;
  private gotResponse = false;
  private responseTimer: NodeJS.Timeout | null = null;
  private cancelReason: 'cancelled' | 'no-response' | null = null;
  sipCallId: string | null = null;
  /** Starts the bound on the final response after a CANCEL. */
  private abandon: (() => void) | null = null;
  private cancelTimer: NodeJS.Timeout | null = null;
  /** Records the INVITE under way in the SIP metrics (once). */
  private inviteDone: ((result: SipResult) => void) | null = null;

  /** `metrics`: where the INVITE and its CANCEL are counted. */
  constructor(private readonly srf: Srf, private readonly metrics: SipMetrics) {
    super();
  }

  get established(): boolean {
    return this.answered;
  }

  /** Sends the INVITE. Resolves with the answer SDP, the answering party and the dialog on 200. */
  invite(o: PbxInviteOptions): Promise<PbxAnswer> {
    const unsafe = unsafeInviteField(o);
    if (unsafe) return Promise.reject(new PbxLegError({ kind: 'error', message: `refusing to send an INVITE with ${unsafe}` }));
    // A target that never answers at all must not hold the call until SIP timer B (32 s).
    const silent = new Promise<never>((_, reject) => {
      this.responseTimer = setTimeout(() => {
        if (this.gotResponse) return;
        this.inviteDone?.('timeout');
        this.cancelInvite('no-response');
        reject(new PbxLegError({ kind: 'no-response' }));
      }, o.responseTimeoutMs);
    });
    // A PBX that never answers our CANCEL (no 487, no 200) must not hold the call either.
    const abandoned = new Promise<never>((_, reject) => {
      this.abandon = () => {
        this.cancelTimer = setTimeout(() => {
          this.inviteDone?.('timeout');
          reject(this.cancelledError());
        }, o.responseTimeoutMs);
      };
    });
    abandoned.catch(() => undefined);
    const attempt = this.sendWithSessionTimerRetry(o);
    attempt.catch(() => undefined);
    return Promise.race([attempt, silent, abandoned]).finally(() => {
      if (this.cancelTimer) clearTimeout(this.cancelTimer);
    });
  }

  private async sendWithSessionTimerRetry(o: PbxInviteOptions): Promise<PbxAnswer> {
    try {
      return await this.send(o);
    } catch (err) {
      const minSe = err instanceof PbxLegError && err.failure.kind === 'status' && err.failure.status === 422 ? err.minSe : null;
      if (!minSe || this.cancelled) throw err;
      const interval = Math.min(MAX_SESSION_EXPIRES, minSe);
      return this.send({ ...o, headers: { ...o.headers, 'Session-Expires': String(interval), 'Min-SE': String(interval), Supported: 'timer' } });
    }
  }

  private async send(o: PbxInviteOptions): Promise<PbxAnswer> {
    const from = `${o.displayName ? `${quotedDisplayName(o.displayName)} ` : ''}<sip:${o.fromNumber}@${o.fromHost}>`;
    const done = (this.inviteDone = sipTimer(this.metrics, 'INVITE'));
    try {
      const dialog = await this.srf.createUAC(
        o.target,
        { localSdp: o.sdp, headers: { From: from, ...o.headers }, followRedirects: true, ...(o.auth ? { auth: o.auth } : {}) } as Srf.CreateUACOptions,
        {
          cbRequest: ((err: unknown, req: Srf.SrfRequest) => {
            if (err || !req) return;
            this.sent(req);
            // A challenged INVITE is sent again with credentials: a CANCEL must name the new one.
            (req as unknown as NodeJS.EventEmitter).on('authenticate', (again: Srf.SrfRequest) => this.sent(again));
          }) as unknown as (req: Srf.SrfRequest) => void,
          cbProvisional: (res: Srf.SrfResponse) => {
            this.gotResponse = true;
            this.emit('progress', res.status, res.body || null);
          },
        },
      );
      done('2xx');
      this.clearTimer();
      if (this.cancelled) {
        // 200 crossed our CANCEL: end the dialog we did not want.
        dialog.destroy();
        throw new PbxLegError({ kind: 'cancelled' });
      }
      this.answered = true;
      return { sdp: dialog.remote.sdp, agent: agentOf(dialog), dialog };
    } catch (err) {
      this.clearTimer();
      if (err instanceof PbxLegError) throw err;
      const e = err as { status?: number; reason?: string; message?: string; res?: Srf.SrfResponse };
      // drachtio-server answers for a target it cannot reach with a response of its own (no source).
      const fromNetwork = typeof e.status === 'number' && !(e.res && !(e.res as { source_address?: string }).source_address);
      done(fromNetwork ? sipResultOf(e.status) : this.cancelReason === 'no-response' ? 'timeout' : 'error');
      if (this.cancelReason) throw this.cancelledError();
      if (typeof e.status === 'number') {
        const hadProvisional = this.gotResponse;
        this.gotResponse = true;
        const minSe = e.status === 422 ? Number.parseInt(e.res?.get('Min-SE') ?? '', 10) : NaN;
        throw new PbxLegError({ kind: 'status', status: e.status, reason: e.reason ?? '', hadProvisional }, minSe > 0 ? minSe : null);
      }
      throw new PbxLegError({ kind: 'error', message: e.message ?? String(err) });
    }
  }

  private sent(req: Srf.SrfRequest): void {
    this.req = req;
    const before = this.sipCallId;
    this.sipCallId = req.get('Call-ID');
    if (this.sipCallId && this.sipCallId !== before) this.emit('sip-call-id', this.sipCallId);
    if (this.cancelled) this.sendCancel(req);
  }

  /** CANCEL goes out (drachtio-srf reports that it was sent, not its response). */
  private sendCancel(req: Srf.SrfRequest): void {
    const done = sipTimer(this.metrics, 'CANCEL');
    req.cancel((err: unknown) => done(err ? 'error' : 'sent', false));
  }

  /** How an INVITE we cancelled ended, by why we cancelled it. */
  private cancelledError(): PbxLegError {
    return new PbxLegError(this.cancelReason === 'no-response' ? { kind: 'no-response' } : { kind: 'cancelled' });
  }

  /** CANCELs a pending INVITE (caller gave up, no answer, or no response at all). */
  cancelInvite(reason: 'cancelled' | 'no-response' = 'cancelled'): void {
    if (this.answered || this.cancelReason) return;
    this.cancelled = true;
    this.cancelReason = reason;
    if (this.req) this.sendCancel(this.req);
    this.abandon?.();
  }

  private clearTimer(): void {
    if (this.responseTimer) clearTimeout(this.responseTimer);
    this.responseTimer = null;
  }
}

/** The caller in the From header: E.164 digits, with or without the plus, or a BSUID (CC.alnum, CC.ENT.digits). */
const E164_USER = /^\+?[1-9]\d{5,15}$/;
const isFromUser = (v: string): boolean => E164_USER.test(v) || BSUID.test(v);

/** A display name as a SIP quoted-string: controls dropped, `"` and `\` escaped, at most 64 characters. */
export function quotedDisplayName(name: string): string {
  const clean = [...name.replace(/[\x00-\x1f\x7f]/g, ' ').trim()].slice(0, 64).join('');
  return `"${clean.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}
/** A host name or IPv4 address (what hostOf() takes from a configured PBX target). */
const FROM_HOST = /^[A-Za-z0-9._-]{1,253}$|^\[[0-9A-Fa-f:.]+\]$/;
/** A header name (RFC 3261 token) and a value without CR, LF or other control characters. */
const HEADER_NAME = /^[A-Za-z0-9!%'*+.^_`|~-]+$/;
const HEADER_VALUE = /^[^\x00-\x08\x0a-\x1f\x7f]*$/;

/**
 * What in an INVITE built from outside input (the webhook's numbers and ids) would break or inject
 * SIP: a From that is no plain number, a header with CR/LF or control characters; null when all is safe.
 */
/** Whether a value can go into a SIP header as it is (no CR, LF or other controls; at most 1024 characters). */
export function safeHeaderValue(v: string): boolean {
  return HEADER_VALUE.test(v) && v.length <= 1024;
}

export function unsafeInviteField(o: Pick<PbxInviteOptions, 'fromNumber' | 'fromHost' | 'headers'>): string | null {
  if (!isFromUser(o.fromNumber)) return `a caller that is neither an E.164 number nor a BSUID (${JSON.stringify(o.fromNumber.slice(0, 40))})`;
  if (!FROM_HOST.test(o.fromHost)) return `a From host that is not a host name (${JSON.stringify(o.fromHost.slice(0, 60))})`;
  for (const [name, value] of Object.entries(o.headers)) {
    if (!HEADER_NAME.test(name) || !HEADER_VALUE.test(value) || value.length > 1024) return `an unsafe ${JSON.stringify(name.slice(0, 40))} header`;
  }
  return null;
}

/** Who answered: the user part of the 200 OK's Contact (desk phones put their extension there). */
export function agentOf(dialog: Srf.Dialog): string | null {
  const m = /sips?:([^@;>]+)@/.exec(dialog.remote.uri ?? '');
  return m?.[1] ?? null;
}
