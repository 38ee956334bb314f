import { KeyCounts } from '../util/key-counts';

/**
 * How many reporting requests run at once, per bearer token and in all. A request beyond either limit
 * is refused at once (429 + Retry-After), never queued: a reporting tool that opens many requests in
 * parallel only gets its own refusals, and the reporting pool's queue stays short.
 */

export interface AdmissionLimits {
  /** Requests in progress at once, all tokens together. */
  total: number;
  /** Requests in progress at once for one token. */
  perToken: number;
}

/** Admitted: call release() once, when the request (or its export stream) has ended. */
export interface Admitted { ok: true; release: () => void }
/** Refused: which limit was reached. */
export interface Refused { ok: false; limit: 'per_token' | 'total'; inUse: number; max: number }

export class ReportAdmission {
  private total = 0;
  private readonly perKey = new KeyCounts();
  /** Refusals since start, by limit (for the log and tests). */
  readonly refused = { per_token: 0, total: 0 };

  constructor(readonly limits: AdmissionLimits) {}

  /** Requests in progress: in all, or for one key. */
  inUse(key?: string): number {
    return key === undefined ? this.total : this.perKey.get(key);
  }

  /** Takes a place for `key` (a token's digest) when both limits allow it. */
  admit(key: string): Admitted | Refused {
    const mine = this.perKey.get(key);
    if (mine >= this.limits.perToken) {
      this.refused.per_token++;
      return { ok: false, limit: 'per_token', inUse: mine, max: this.limits.perToken };
    }
    if (this.total >= this.limits.total) {
      this.refused.total++;
      return { ok: false, limit: 'total', inUse: this.total, max: this.limits.total };
    }
    this.total++;
    this.perKey.add(key);
    let released = false;
    return {
      ok: true,
      release: () => {
        if (released) return;
        released = true;
        this.total--;
        this.perKey.remove(key);
      },
    };
  }
}
