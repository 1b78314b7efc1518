// A bounded in-process DNS cache: least-recently-used eviction, every entry expires with the TTL
// of its answer (RFC 1035 3.2.1), negative answers with the SOA-derived TTL of RFC 2308 section 5.

export type CacheValue =
  | { readonly kind: 'answer'; readonly records: readonly unknown[] }
  | { readonly kind: 'negative'; readonly code: 'ENOTFOUND' | 'ENODATA' };
export type CacheEntry = CacheValue & { readonly expires: number };

export class DnsCache {
  readonly #entries = new Map<string, CacheEntry>();
  readonly #max: number;
  readonly #now: () => number;

  constructor(maxEntries: number, now: () => number = Date.now) {
    this.#max = Math.max(0, maxEntries);
    this.#now = now;
  }

  get size(): number {
    return this.#entries.size;
  }

  get(key: string): CacheEntry | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (entry.expires <= this.#now()) {
      this.#entries.delete(key);
      return undefined;
    }
    // Re-insert so Map order is recency order and the first key is the least recently used.
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    return entry;
  }

  /** Stores an entry for `ttlSeconds`; a TTL of 0 means "do not cache" (RFC 1035 3.2.1). */
  set(key: string, entry: CacheValue, ttlSeconds: number): void {
    if (this.#max === 0 || !(ttlSeconds > 0)) return;
    const full: CacheEntry = { ...entry, expires: this.#now() + ttlSeconds * 1000 };
    this.#entries.delete(key);
    this.#entries.set(key, full);
    while (this.#entries.size > this.#max) {
      const oldest = this.#entries.keys().next();
      if (oldest.done) break;
      this.#entries.delete(oldest.value);
    }
  }

  clear(): void {
    this.#entries.clear();
  }
}
