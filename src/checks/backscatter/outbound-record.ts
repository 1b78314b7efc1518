// The record of Message-IDs that left the site through the outbound listener, so a returning
// bounce can be matched to mail we really sent: in Redis (one Lua script per operation) when
// the shared store is Redis, else in a bounded in-process table. Expiry follows the caller's clock.
import { createHash } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { PolicyStore } from '../../store/create-store.ts';
import { RedisBackend } from '../../store/redis-store.ts';
import { callScript } from '../../store/scripts.ts';
import type { SharedStore } from '../../store/shared-store.ts';

/** Longest Message-ID we remember (RFC 5322 has no limit; a line is at most 998 octets). */
const MAX_ID = 998;

export type SeenResult = 'seen' | 'unseen' | 'unavailable';

export interface OutboundRecord {
  readonly kind: 'memory' | 'redis';
  /** Remembers `messageId` (without angle brackets) for `ttlMs` from `now`. */
  record(messageId: string, now: number): Promise<void>;
  /** Whether `messageId` was recorded and has not expired; `unavailable` when Redis cannot answer. */
  seen(messageId: string, now: number): Promise<SeenResult>;
}

/** Message-IDs compare case-insensitively here: some MTAs change the case when quoting. */
function normalise(id: string): string | undefined {
  let s = id.trim();
  if (s.startsWith('<') && s.endsWith('>')) s = s.slice(1, -1).trim();
  if (s.length === 0 || s.length > MAX_ID) return undefined;
  return s.toLowerCase();
}

const digest = (id: string) => createHash('sha256').update(id).digest('base64url').slice(0, 32);

/** The bounded in-process table: the oldest entries go first once it holds `maxEntries`. */
export class MemoryOutboundRecord implements OutboundRecord {
  readonly kind = 'memory' as const;
  readonly #ttlMs: number;
  readonly #max: number;
  /** Insertion order = age order (re-inserted on record). */
  readonly #map = new Map<string, number>();

  constructor(ttlMs: number, maxEntries: number) {
    this.#ttlMs = ttlMs;
    this.#max = Math.max(16, maxEntries);
  }

  get size(): number {
    return this.#map.size;
  }

  async record(messageId: string, now: number): Promise<void> {
    const id = normalise(messageId);
    if (!id) return;
    const key = digest(id);
    this.#map.delete(key);
    this.#map.set(key, now + this.#ttlMs);
    while (this.#map.size > this.#max) {
      const oldest = this.#map.keys().next();
      if (oldest.done) break;
      this.#map.delete(oldest.value);
    }
  }

  async seen(messageId: string, now: number): Promise<SeenResult> {
    const id = normalise(messageId);
    if (!id) return 'unseen';
    const key = digest(id);
    const exp = this.#map.get(key);
    if (exp === undefined) return 'unseen';
    if (exp < now) {
      this.#map.delete(key);
      return 'unseen';
    }
    return 'seen';
  }
}

/** Redis: the scripts outbound-record-1.lua and outbound-seen-1.lua, under the store's prefix. */
export class RedisOutboundRecord implements OutboundRecord {
  readonly kind = 'redis' as const;
  readonly #client: Redis | Cluster;
  readonly #key: (id: string) => string;
  readonly #ttlMs: number;
  readonly #timeoutMs: number;
  /** Also kept locally: a Redis outage then still matches what this instance sent. */
  readonly #local: MemoryOutboundRecord;

  constructor(client: Redis | Cluster, keyOf: (...parts: string[]) => string, ttlMs: number, maxLocal: number, timeoutMs = 1000) {
    this.#client = client;
    this.#key = (id) => keyOf('ob', digest(id));
    this.#ttlMs = ttlMs;
    this.#timeoutMs = timeoutMs;
    this.#local = new MemoryOutboundRecord(ttlMs, maxLocal);
  }

  async #call(name: 'outboundRecord' | 'outboundSeen', key: string, args: Array<string | number>): Promise<unknown> {
    if (this.#client.status !== 'ready') throw new Error(`redis not connected (${this.#client.status})`);
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        callScript(this.#client, name, [key], args),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error('redis command timed out')), this.#timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  async record(messageId: string, now: number): Promise<void> {
    const id = normalise(messageId);
    if (!id) return;
    await this.#local.record(id, now);
    // A failed shared write is not fatal: the local copy still matches bounces to this instance.
    await this.#call('outboundRecord', this.#key(id), [Math.floor(now), this.#ttlMs]).catch(() => undefined);
  }

  async seen(messageId: string, now: number): Promise<SeenResult> {
    const id = normalise(messageId);
    if (!id) return 'unseen';
    if ((await this.#local.seen(id, now)) === 'seen') return 'seen';
    try {
      return Number(await this.#call('outboundSeen', this.#key(id), [Math.floor(now)])) === 1 ? 'seen' : 'unseen';
    } catch {
      return 'unavailable';
    }
  }
}

/** Redis when the shared store is Redis, else the in-process table. */
export function createOutboundRecord(store: SharedStore | undefined, ttlMs: number, maxEntries: number): OutboundRecord {
  if (store instanceof PolicyStore && store.backend instanceof RedisBackend) {
    return new RedisOutboundRecord(store.backend.client, (...p) => store.key(...p), ttlMs, maxEntries);
  }
  return new MemoryOutboundRecord(ttlMs, maxEntries);
}
