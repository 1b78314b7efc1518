// Builds the SharedStore from config and applies the outage policy in one place. fail_open: rate and
// concurrency limits fall back to the in-process store (per-instance limits beat none during an
// outage); greylisting is skipped (a local triplet table would re-defer mail that already passed).
// fail_closed: StoreUnavailableError reaches the checks, which record it for the policy (4xx).
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { metrics } from '../metrics/registry.ts';
import { MemoryBackend } from './memory-store.ts';
import { RedisBackend } from './redis-store.ts';
import { effectivePrefix, redisOptionsDefault, type RedisConnectionConfig, type RedisOptionsConfig } from './redis-config.ts';
import {
  StoreUnavailableError,
  type ConcurrencyLease,
  type FailMode,
  type GreylistParams,
  type GreylistRequest,
  type GreylistResult,
  type RateLimitRequest,
  type RateLimitResult,
  type Readiness,
  type Served,
  type SharedStore,
  type StoreBackend,
} from './shared-store.ts';

export interface CreateStoreOptions {
  /** The `redis` config key; absent = in-process store only. */
  redis?: RedisConnectionConfig | undefined;
  /** The `redis_options` config key. */
  options?: Partial<RedisOptionsConfig> | undefined;
  logger: Logger;
  /** The injected clock (Deps.now), used for lease refreshes. */
  now: () => number;
  /** Stop refreshing a concurrency slot after this long even if never released (default 6h). */
  maxLeaseHoldMs?: number;
}

export function createSharedStore(o: CreateStoreOptions): SharedStore {
  const options: RedisOptionsConfig = { ...redisOptionsDefault, ...o.options };
  const local = new MemoryBackend({ maxKeys: options.local_max_keys });
  const prefix = effectivePrefix(o.redis, options.key_prefix);
  if (o.redis === undefined) return new PolicyStore(local, undefined, options.fail_mode, prefix, o);
  const redis = new RedisBackend({ connection: o.redis, options, logger: o.logger });
  return new PolicyStore(redis, local, options.fail_mode, prefix, o);
}

interface HeldLease {
  lease: ConcurrencyLease;
  leaseMs: number;
  acquiredAt: number;
}

export class PolicyStore implements SharedStore {
  readonly kind: 'memory' | 'redis';
  readonly failMode: FailMode;
  readonly backend: StoreBackend;
  readonly #fallback: MemoryBackend | undefined;
  readonly #prefix: string;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #maxHoldMs: number;
  readonly #instance = randomBytes(6).toString('hex');
  #seq = 0;
  readonly #leases = new Map<string, HeldLease>();
  #timer: NodeJS.Timeout | undefined;
  #timerEveryMs = 0;
  #closed = false;

  constructor(backend: StoreBackend, fallback: MemoryBackend | undefined, failMode: FailMode, prefix: string, o: CreateStoreOptions) {
    this.backend = backend;
    this.kind = backend.kind;
    this.#fallback = fallback;
    this.failMode = failMode;
    this.#prefix = prefix;
    this.#log = o.logger.child({ component: 'store' });
    this.#now = o.now;
    this.#maxHoldMs = o.maxLeaseHoldMs ?? 6 * 3_600_000;
  }

  key(...parts: string[]): string {
    return this.#prefix + parts.join(':');
  }

  /** The fallback to use for `err`, or a rethrow when the policy says fail_closed. */
  #fallbackFor(err: unknown, op: string): MemoryBackend {
    if (!(err instanceof StoreUnavailableError)) throw err;
    if (this.failMode === 'fail_closed' || !this.#fallback) throw err;
    metrics.storeFallback.inc({ op });
    return this.#fallback;
  }

  async rateLimit(requests: readonly RateLimitRequest[], now: number): Promise<{ results: RateLimitResult[]; served: Served }> {
    try {
      return { results: await this.backend.rateLimit(requests, now), served: 'shared' };
    } catch (err) {
      const local = this.#fallbackFor(err, 'rate_limit');
      return { results: await local.rateLimit(requests, now), served: 'local' };
    }
  }

  greylist(requests: readonly GreylistRequest[], params: GreylistParams, now: number): Promise<GreylistResult[]> {
    return this.backend.greylist(requests, params, now);
  }

  async acquireSlot(key: string, limit: number, leaseMs: number, now: number): Promise<{ lease?: ConcurrencyLease; count: number; served: Served }> {
    const id = `${this.#instance}:${(++this.#seq).toString(36)}`;
    let served: Served = 'shared';
    let r;
    try {
      r = await this.backend.concurrencyAcquire(key, id, limit, leaseMs, now);
    } catch (err) {
      const local = this.#fallbackFor(err, 'concurrency');
      served = 'local';
      r = await local.concurrencyAcquire(key, id, limit, leaseMs, now);
    }
    if (!r.acquired) return { count: r.count, served };
    const lease: ConcurrencyLease = { key, id, served };
    this.#leases.set(id, { lease, leaseMs, acquiredAt: now });
    this.#scheduleRefresh(leaseMs);
    return { lease, count: r.count, served };
  }

  async releaseSlot(lease: ConcurrencyLease): Promise<void> {
    if (!this.#leases.delete(lease.id)) return;
    const store = lease.served === 'local' ? this.#fallback : this.backend;
    try {
      await store?.concurrencyRelease(lease.key, lease.id, this.#now());
    } catch (err) {
      // The slot's lease runs out on its own; nothing else to do.
      this.#log.debug({ err: (err as Error).message, key: lease.key }, 'concurrency release failed; lease will expire');
    }
    if (this.#leases.size === 0) this.#stopRefresh();
  }

  /** Held slots (for tests and the admin page). */
  get heldSlots(): number {
    return this.#leases.size;
  }

  #scheduleRefresh(leaseMs: number): void {
    const every = Math.max(250, Math.floor(leaseMs / 3));
    if (this.#timer && this.#timerEveryMs <= every) return;
    this.#stopRefresh();
    this.#timerEveryMs = every;
    this.#timer = setInterval(() => void this.refreshLeases(), every);
    this.#timer.unref();
  }

  #stopRefresh(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#timerEveryMs = 0;
  }

  /** Extends every held lease: one pipelined round trip per store and lease length. */
  async refreshLeases(): Promise<void> {
    const now = this.#now();
    const groups = new Map<string, { store: StoreBackend; leaseMs: number; slots: Array<{ key: string; id: string }> }>();
    for (const [id, h] of this.#leases) {
      if (now - h.acquiredAt > this.#maxHoldMs) {
        // Never released (a bug upstream): stop keeping it alive so the slot frees itself.
        this.#leases.delete(id);
        this.#log.warn({ key: h.lease.key }, 'concurrency slot held too long; letting its lease expire');
        continue;
      }
      const store = h.lease.served === 'local' ? this.#fallback : this.backend;
      if (!store) continue;
      const g = `${h.lease.served}:${h.leaseMs}`;
      let group = groups.get(g);
      if (!group) groups.set(g, (group = { store, leaseMs: h.leaseMs, slots: [] }));
      group.slots.push({ key: h.lease.key, id: h.lease.id });
    }
    await Promise.all(
      [...groups.values()].map((g) =>
        g.store.concurrencyRefresh(g.slots, g.leaseMs, now).catch((err: unknown) => {
          this.#log.debug({ err: (err as Error).message }, 'concurrency lease refresh failed');
        }),
      ),
    );
  }

  async waitReady(timeoutMs: number): Promise<boolean> {
    if (!(this.backend instanceof RedisBackend)) return true;
    try {
      await this.backend.waitReady(timeoutMs);
      return true;
    } catch {
      return false;
    }
  }

  async readiness(): Promise<Readiness> {
    const p = await this.backend.probe();
    const r: Readiness = {
      ok: p.up || this.failMode === 'fail_open',
      backend: this.kind,
      state: p.up ? 'up' : 'down',
      failMode: this.failMode,
    };
    if (p.detail) r.detail = p.detail;
    return r;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopRefresh();
    await Promise.all([...this.#leases.values()].map((h) => this.releaseSlot(h.lease)));
    await this.backend.close();
    await this.#fallback?.close();
  }
}
