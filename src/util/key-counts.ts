/**
 * A count per key (a client address, a token's digest) of things in progress: a key has an entry only
 * while its count is above zero, so the map never holds more keys than there are things counted.
 */
export class KeyCounts {
  private readonly counts = new Map<string, number>();

  get(key: string): number {
    return this.counts.get(key) ?? 0;
  }

  add(key: string): void {
    this.counts.set(key, this.get(key) + 1);
  }

  /** One fewer for `key` (never below zero: the key is forgotten at zero). */
  remove(key: string): void {
    const left = this.get(key) - 1;
    if (left > 0) this.counts.set(key, left);
    else this.counts.delete(key);
  }

  /** Keys with a count above zero. */
  get size(): number {
    return this.counts.size;
  }
}
