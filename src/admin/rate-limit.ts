// Per-client request limits for the admin listener (API, console, digest links): a fixed window
// per key, bounded in size so a flood of source addresses cannot grow it without limit.

export class WindowLimiter {
  readonly count: number;
  readonly periodMs: number;
  readonly #now: () => number;
  #hits = new Map<string, { start: number; n: number }>();
  static readonly MAX_KEYS = 10_000;

  constructor(rate: { count: number; periodMs: number }, now: () => number = Date.now) {
    this.count = rate.count;
    this.periodMs = rate.periodMs;
    this.#now = now;
  }

  /** Counts one hit; returns 0 if allowed, else the seconds until the window resets. */
  hit(key: string): number {
    const now = this.#now();
    let e = this.#hits.get(key);
    if (!e || now - e.start >= this.periodMs) {
      if (!e && this.#hits.size >= WindowLimiter.MAX_KEYS) this.#sweep(now);
      e = { start: now, n: 0 };
      this.#hits.set(key, e);
    }
    e.n++;
    return e.n > this.count ? Math.max(1, Math.ceil((e.start + this.periodMs - now) / 1000)) : 0;
  }

  /** Whether `key` is over the limit now, without counting. */
  blocked(key: string): number {
    const e = this.#hits.get(key);
    const now = this.#now();
    if (!e || now - e.start >= this.periodMs || e.n < this.count) return 0;
    return Math.max(1, Math.ceil((e.start + this.periodMs - now) / 1000));
  }

  #sweep(now: number): void {
    for (const [k, e] of this.#hits) if (now - e.start >= this.periodMs) this.#hits.delete(k);
    // Still full of live windows: drop the oldest half rather than grow.
    if (this.#hits.size >= WindowLimiter.MAX_KEYS) {
      let i = 0;
      for (const k of this.#hits.keys()) if (i++ < WindowLimiter.MAX_KEYS / 2) this.#hits.delete(k);
    }
  }
}
