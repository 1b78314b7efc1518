// In-process store: the embedded default for a single instance (no `redis` in config) and the
// fallback during a Redis outage in fail_open mode. It mirrors the Lua scripts in ./lua/ line for
// line so both backends share one semantic test suite; entries expire by the caller's clock and the
// table is bounded (least recently used entries go first once it is full).
import type { ConcurrencyResult, GreylistParams, GreylistRequest, GreylistResult, RateLimitRequest, RateLimitResult, StoreBackend } from './shared-store.ts';

interface Bucket {
  kind: 'bucket';
  /** Theoretical arrival time, microseconds; 0 = full. */
  tat: number;
  strikes: number;
  last: number;
  block: number;
}
interface Triplet {
  kind: 'triplet';
  first: number;
  pass: number;
  last: number;
}
interface Network {
  kind: 'network';
  passed: number;
  last: number;
}
interface Slots {
  kind: 'slots';
  /** Slot id → lease expiry (ms). */
  holders: Map<string, number>;
}
type Entry = Bucket | Triplet | Network | Slots;

export interface MemoryStoreOptions {
  /** Most keys held; the least recently used go first beyond it. */
  maxKeys?: number;
}

export class MemoryBackend implements StoreBackend {
  readonly kind = 'memory' as const;
  readonly #maxKeys: number;
  /** Insertion order = recency order (entries are re-inserted on use). */
  readonly #map = new Map<string, { entry: Entry; expiresAt: number }>();

  constructor(options: MemoryStoreOptions = {}) {
    this.#maxKeys = Math.max(16, options.maxKeys ?? 100_000);
  }

  get size(): number {
    return this.#map.size;
  }

  #get<K extends Entry['kind']>(key: string, kind: K, now: number): Extract<Entry, { kind: K }> | undefined {
    const slot = this.#map.get(key);
    if (!slot) return undefined;
    // Alive up to and including its expiry instant, like the scripts' `now - last <= lifetime`.
    if (slot.expiresAt < now || slot.entry.kind !== kind) {
      this.#map.delete(key);
      return undefined;
    }
    return slot.entry as Extract<Entry, { kind: K }>;
  }

  #set(key: string, entry: Entry, expiresAt: number, now: number): void {
    this.#map.delete(key);
    this.#map.set(key, { entry, expiresAt });
    if (this.#map.size > this.#maxKeys) this.#evict(now);
  }

  #del(key: string): void {
    this.#map.delete(key);
  }

  /** Drops expired entries; if still over the bound, the least recently used ones. */
  #evict(now: number): void {
    for (const [k, v] of this.#map) if (v.expiresAt < now) this.#map.delete(k);
    const target = Math.floor(this.#maxKeys * 0.9);
    for (const k of this.#map.keys()) {
      if (this.#map.size <= target) break;
      this.#map.delete(k);
    }
  }

  /** Mirrors lua/rate-limit-n.lua. */
  async rateLimit(requests: readonly RateLimitRequest[], now: number): Promise<RateLimitResult[]> {
    const nowUs = now * 1000;
    const st = requests.map((r) => {
      const T = emissionMicros(r.rate);
      const burst = Math.max(1, Math.floor(r.burst));
      const cost = Math.min(Math.max(0, Math.floor(r.cost)), burst);
      const b = this.#get(r.key, 'bucket', now);
      let tat = b && b.tat > 0 ? b.tat : nowUs;
      if (tat < nowUs) tat = nowUs;
      let strikes = b?.strikes ?? 0;
      const last = b?.last ?? 0;
      let block = b?.block ?? 0;
      if (strikes > 0 && now - last > r.escalation.windowMs) {
        strikes = 0;
        block = 0;
      }
      const newTat = tat + cost * T;
      const over = newTat - nowUs - burst * T;
      const ok = over <= 0 && block <= now;
      let retry = over > 0 ? Math.ceil(over / 1000) : 0;
      if (block - now > retry) retry = block - now;
      return { r, T, tat, newTat, strikes, block, ok, retry };
    });
    const allOk = st.every((s) => s.ok || s.r.independent === true);
    return st.map((s) => {
      let level: RateLimitResult['level'] = 'normal';
      const e = s.r.escalation;
      if (s.ok && (allOk || s.r.independent === true)) {
        s.strikes = 0;
        const ttl = Math.ceil((s.newTat - nowUs) / 1000) + 1000;
        this.#set(s.r.key, { kind: 'bucket', tat: s.newTat, strikes: 0, last: 0, block: 0 }, now + ttl, now);
      } else if (!s.ok) {
        s.strikes += 1;
        if (e.after > 0 && s.strikes >= e.after) {
          const penalty = Math.min(e.blockMs * 2 ** (s.strikes - e.after), e.maxBlockMs);
          if (now + penalty > s.block) s.block = now + penalty;
          if (s.block - now > s.retry) s.retry = s.block - now;
          level = 'blocked';
        }
        if (e.rejectAfter > 0 && s.strikes >= e.rejectAfter) level = 'reject';
        const untilFull = Math.ceil((s.tat - nowUs) / 1000);
        const ttl = Math.max(e.windowMs, untilFull, s.block - now) + 1000;
        // A bucket denied before it was ever charged keeps tat "full" (0), like the absent field.
        const prev = this.#get(s.r.key, 'bucket', now);
        this.#set(s.r.key, { kind: 'bucket', tat: prev?.tat ?? 0, strikes: s.strikes, last: now, block: s.block }, now + ttl, now);
      }
      return { allowed: s.ok, retryAfterMs: s.retry, strikes: s.strikes, level };
    });
  }

  /** Mirrors lua/greylist-2.lua. */
  async greylist(requests: readonly GreylistRequest[], p: GreylistParams, now: number): Promise<GreylistResult[]> {
    return requests.map((r) => this.#greylistOne(r, p, now));
  }

  #greylistOne(r: GreylistRequest, p: GreylistParams, now: number): GreylistResult {
    let netPassed = 0;
    const net = this.#get(r.networkKey, 'network', now);
    if (net && now - net.last <= p.lifetimeMs) netPassed = net.passed;
    if (p.autoAllowAfter > 0 && netPassed >= p.autoAllowAfter && net) {
      this.#set(r.networkKey, { ...net, last: now }, now + p.lifetimeMs, now);
      return { result: 'allowed', retryAfterMs: 0, networkPassed: netPassed };
    }
    const t = this.#get(r.tripletKey, 'triplet', now);
    if (t) {
      if (t.pass > 0) {
        if (now - t.last <= p.lifetimeMs) {
          this.#set(r.tripletKey, { ...t, last: now }, now + p.lifetimeMs, now);
          return { result: 'passed', retryAfterMs: 0, networkPassed: netPassed };
        }
      } else if (now - t.first < p.delayMs) {
        return { result: 'early', retryAfterMs: t.first + p.delayMs - now, networkPassed: netPassed };
      } else if (now - t.first <= p.delayMs + p.retryWindowMs) {
        this.#set(r.tripletKey, { kind: 'triplet', first: t.first, pass: now, last: now }, now + p.lifetimeMs, now);
        netPassed += 1;
        this.#set(r.networkKey, { kind: 'network', passed: netPassed, last: now }, now + p.lifetimeMs, now);
        return { result: 'passed', retryAfterMs: 0, networkPassed: netPassed };
      }
    }
    this.#set(r.tripletKey, { kind: 'triplet', first: now, pass: 0, last: now }, now + p.delayMs + p.retryWindowMs, now);
    return { result: 'new', retryAfterMs: p.delayMs, networkPassed: netPassed };
  }

  #slots(key: string, now: number): Slots | undefined {
    const s = this.#get(key, 'slots', now);
    if (!s) return undefined;
    for (const [id, exp] of s.holders) if (exp <= now) s.holders.delete(id);
    return s;
  }

  /** Mirrors lua/concurrency-acquire-1.lua. */
  async concurrencyAcquire(key: string, id: string, limit: number, leaseMs: number, now: number): Promise<ConcurrencyResult> {
    const s = this.#slots(key, now) ?? { kind: 'slots' as const, holders: new Map<string, number>() };
    const count = s.holders.size;
    if (s.holders.has(id)) {
      s.holders.set(id, now + leaseMs);
      this.#set(key, s, now + leaseMs, now);
      return { acquired: true, count };
    }
    if (count >= limit) return { acquired: false, count };
    s.holders.set(id, now + leaseMs);
    this.#set(key, s, now + leaseMs, now);
    return { acquired: true, count: count + 1 };
  }

  /** Mirrors lua/concurrency-refresh-1.lua. */
  async concurrencyRefresh(slots: ReadonlyArray<{ key: string; id: string }>, leaseMs: number, now: number): Promise<void> {
    for (const { key, id } of slots) {
      const s = this.#slots(key, now) ?? { kind: 'slots' as const, holders: new Map<string, number>() };
      s.holders.set(id, now + leaseMs);
      const cur = this.#map.get(key);
      const expiresAt = Math.max(cur && cur.entry === s ? cur.expiresAt : 0, now + leaseMs);
      this.#set(key, s, expiresAt, now);
    }
  }

  /** Mirrors lua/concurrency-release-1.lua. */
  async concurrencyRelease(key: string, id: string, now: number): Promise<void> {
    const s = this.#slots(key, now);
    if (!s) return;
    s.holders.delete(id);
    if (s.holders.size === 0) this.#del(key);
  }

  async probe(): Promise<{ up: boolean; detail?: string }> {
    return { up: true };
  }

  async close(): Promise<void> {
    this.#map.clear();
  }
}

/** Microseconds between two events at `rate`, at least 1 (integer, so Lua and JS agree exactly). */
export function emissionMicros(rate: { count: number; periodMs: number }): number {
  return Math.max(1, Math.round((rate.periodMs * 1000) / Math.max(1, rate.count)));
}
