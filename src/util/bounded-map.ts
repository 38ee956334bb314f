/**
 * A Map that forgets its oldest entries beyond `max` (insertion order): for state keyed by outside
 * input (event ids, wacids), which must never grow without bound.
 */
export class BoundedMap<K, V> extends Map<K, V> {
  constructor(private readonly max: number) {
    super();
  }

  override set(key: K, value: V): this {
    if (!this.has(key)) {
      while (this.size >= this.max) this.delete(this.keys().next().value as K);
    }
    return super.set(key, value);
  }
}
