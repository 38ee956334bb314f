/** A token bucket: `ratePerS` tokens a second, holding at most `burst`. */
export interface RateLimit { ratePerS: number; burst: number }

interface Bucket { tokens: number; at: number }

/** What take() decided: go ahead, or wait `retryAfterS` because of the source's or the overall limit. */
export type RateVerdict = { ok: true } | { ok: false; limit: 'source' | 'global'; retryAfterS: number };

/**
 * INVITE rate limits per source address and overall (token buckets), so a flood from one address (or
 * from many) is answered cheaply while calls in progress and other sources carry on. The per-source
 * state is bounded: at most `maxSources` buckets, the least recently used forgotten first (a forgotten
 * source starts again with a full bucket; the overall limit still holds).
 */
export class InviteRateLimiter {
  private readonly sources = new Map<string, Bucket>();
  private readonly overall: Bucket;

  constructor(
    private readonly limits: { perSource: RateLimit; global: RateLimit; maxSources?: number },
    private readonly now: () => number = Date.now,
  ) {
    this.overall = { tokens: limits.global.burst, at: now() };
  }

  /** Takes one token from the source's bucket and the overall bucket, or neither. */
  take(source: string): RateVerdict {
    const now = this.now();
    const own = this.bucketOf(source, now);
    refill(own, this.limits.perSource, now);
    if (own.tokens < 1) return { ok: false, limit: 'source', retryAfterS: waitS(own, this.limits.perSource) };
    refill(this.overall, this.limits.global, now);
    if (this.overall.tokens < 1) return { ok: false, limit: 'global', retryAfterS: waitS(this.overall, this.limits.global) };
    own.tokens -= 1;
    this.overall.tokens -= 1;
    return { ok: true };
  }

  /** How many sources have a bucket now (bounded by maxSources). */
  get tracked(): number {
    return this.sources.size;
  }

  private bucketOf(source: string, now: number): Bucket {
    let b = this.sources.get(source);
    if (b) {
      // Most recently used last: the first entry is the one to forget.
      this.sources.delete(source);
    } else {
      b = { tokens: this.limits.perSource.burst, at: now };
      const max = this.limits.maxSources ?? 10_000;
      while (this.sources.size >= max) this.sources.delete(this.sources.keys().next().value as string);
    }
    this.sources.set(source, b);
    return b;
  }
}

function refill(b: Bucket, limit: RateLimit, now: number): void {
  b.tokens = Math.min(limit.burst, b.tokens + ((now - b.at) / 1000) * limit.ratePerS);
  b.at = now;
}

/** Whole seconds until the bucket holds a token again (at least 1: Retry-After counts seconds). */
function waitS(b: Bucket, limit: RateLimit): number {
  return Math.max(1, Math.ceil((1 - b.tokens) / limit.ratePerS));
}
