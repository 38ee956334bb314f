import { EventEmitter } from 'node:events';
import Srf from 'drachtio-srf';

export interface PbxInviteOptions {
  target: string;
  fromNumber: string;
  fromHost: string;
  sdp: string;
  headers: Record<string, string>;
  /** No SIP response at all within this time: give up (target unreachable). */
  responseTimeoutMs: number;
}

export type PbxFailure =
  | { kind: 'status'; status: number; reason: string; hadProvisional: boolean }
  | { kind: 'no-response' }
  | { kind: 'cancelled' }
  | { kind: 'error'; message: string };

/**
 * One outgoing INVITE to the PBX and the dialog it may become. Emits 'progress' (status, sdp?) for
 * 18x, resolves `answered` with the dialog on 200, rejects with a PbxFailure otherwise; 'bye' fires
 * when the PBX hangs up an established call.
 */
export class PbxLeg extends EventEmitter {
  private req: Srf.SrfRequest | null = null;
  private dialog: Srf.Dialog | null = null;
  private cancelled = false;
  private gotResponse = false;
  private responseTimer: NodeJS.Timeout | null = null;
  sipCallId: string | null = null;

  constructor(private readonly srf: Srf) {
    super();
  }

  get established(): boolean {
    return this.dialog !== null;
  }

  /** Sends the INVITE. Resolves with the answer SDP and the answering party once the PBX says 200. */
  invite(o: PbxInviteOptions): Promise<{ sdp: string; agent: string | null }> {
    // A target that never answers at all must not hold the call until SIP timer B (32 s).
    const silent = new Promise<never>((_, reject) => {
      this.responseTimer = setTimeout(() => {
        if (this.gotResponse) return;
        this.cancelInvite('no-response');
        reject({ kind: 'no-response' } satisfies PbxFailure);
      }, o.responseTimeoutMs);
    });
    const attempt = this.send(o);
    attempt.catch(() => undefined);
    return Promise.race([attempt, silent]);
  }

  private async send(o: PbxInviteOptions): Promise<{ sdp: string; agent: string | null }> {
    const from = `<sip:${o.fromNumber}@${o.fromHost}>`;
    try {
      const dialog = await this.srf.createUAC(
        o.target,
        { localSdp: o.sdp, headers: { From: from, ...o.headers } },
        {
          cbRequest: ((err: unknown, req: Srf.SrfRequest) => {
            if (err || !req) return;
            this.req = req;
            this.sipCallId = req.get('Call-ID');
            if (this.cancelled) req.cancel(() => undefined);
          }) as unknown as (req: Srf.SrfRequest) => void,
          cbProvisional: (res: Srf.SrfResponse) => {
            this.gotResponse = true;
            this.emit('progress', res.status, res.body || null);
          },
        },
      );
      this.clearTimer();
      if (this.cancelled) {
        // 200 crossed our CANCEL: end the dialog we did not want.
        dialog.destroy();
        throw this.failure('cancelled');
      }
      this.dialog = dialog;
      dialog.on('destroy', () => {
        this.dialog = null;
        this.emit('bye');
      });
      return { sdp: dialog.remote.sdp, agent: agentOf(dialog) };
    } catch (err) {
      this.clearTimer();
      if (isPbxFailure(err)) throw err;
      const e = err as { status?: number; reason?: string; message?: string };
      if (this.cancelReason) throw this.failure(this.cancelReason);
      if (typeof e.status === 'number') {
        throw { kind: 'status', status: e.status, reason: e.reason ?? '', hadProvisional: this.gotResponse } satisfies PbxFailure;
      }
      throw { kind: 'error', message: e.message ?? String(err) } satisfies PbxFailure;
    }
  }

  private cancelReason: 'cancelled' | 'no-response' | null = null;

  /** CANCELs a pending INVITE (caller gave up, no answer, or no response at all). */
  cancelInvite(reason: 'cancelled' | 'no-response' = 'cancelled'): void {
    if (this.dialog || this.cancelReason) return;
    this.cancelled = true;
    this.cancelReason = reason;
    this.req?.cancel(() => undefined);
  }

  /** Sends BYE on an established call. */
  hangup(): Promise<void> {
    const d = this.dialog;
    if (!d) return Promise.resolve();
    this.dialog = null;
    d.removeAllListeners('destroy');
    return new Promise((resolve) => d.destroy(undefined, () => resolve()));
  }

  private failure(kind: 'cancelled' | 'no-response'): PbxFailure {
    return kind === 'cancelled' ? { kind: 'cancelled' } : { kind: 'no-response' };
  }

  private clearTimer(): void {
    if (this.responseTimer) clearTimeout(this.responseTimer);
    this.responseTimer = null;
  }
}

function isPbxFailure(x: unknown): x is PbxFailure {
  return typeof x === 'object' && x !== null && 'kind' in x;
}

/** Who answered: the user part of the 200 OK's Contact (desk phones put their extension there). */
function agentOf(dialog: Srf.Dialog): string | null {
  const m = /sips?:([^@;>]+)@/.exec(dialog.remote.uri ?? '');
  return m?.[1] ?? null;
}
