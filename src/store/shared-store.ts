// The shared-state contract behind rate limits, concurrency limits and greylisting. Two
// implementations (Redis, in-process memory) have identical semantics: every expiry is decided from
// the `now` the caller passes (so tests drive a clock), key TTLs only collect garbage.

/** A rate: `count` events per `periodMs`, written `100/1m` in rules files. */
export interface Rate {
  count: number;
  periodMs: number;
}

/**
 * Escalation of a limit a client keeps hitting (stampede control). After `after` denied attempts
 * in a row the key is blocked for `blockMs` (at least the plain retry delay), doubling with each
 * further denied attempt up to `maxBlockMs`; from `rejectAfter` denied attempts on, the result says
 * `reject` (the policy turns it into 5xx). Strikes are forgotten after `windowMs` without a denial,
 * or at the first allowed attempt. `after: 0` disables blocking; `rejectAfter: 0` disables reject.
 */
export interface Escalation {
  after: number;
  blockMs: number;
  maxBlockMs: number;
  rejectAfter: number;
  windowMs: number;
}

export const NO_ESCALATION: Escalation = { after: 0, blockMs: 0, maxBlockMs: 0, rejectAfter: 0, windowMs: 3_600_000 };

/** One limit to check and charge: a full key (already namespaced by the caller's limit name). */
export interface RateLimitRequest {
  key: string;
  rate: Rate;
  /** Bucket size: this many events may arrive at once; at least 1. */
  burst: number;
  /** Events this request counts as (e.g. number of recipients); clamped to `burst`. */
  cost: number;
  escalation: Escalation;
  /**
   * Charged whenever it allows by itself, whatever the others say (limits that only score).
   * The others form a group charged all or none: a denied event costs no limit anything.
   */
  independent?: boolean;
}

export interface RateLimitResult {
  /** This limit by itself allows the event (the group may still be denied by another). */
  allowed: boolean;
  /** When denied: milliseconds until a retry can succeed (0 when allowed). */
  retryAfterMs: number;
  /** Denied attempts in a row on this key, including this one. */
  strikes: number;
  /** `blocked`: escalation is in force; `reject`: strikes reached `rejectAfter`. */
  level: 'normal' | 'blocked' | 'reject';
}

/** Classic greylisting timings (Postgrey's defaults are 5m / 2d / 35d / 5). */
export interface GreylistParams {
  /** A retry earlier than this after the first attempt is deferred again. */
  delayMs: number;
  /** After the delay, a retry within this window passes the triplet; later it starts over. */
  retryWindowMs: number;
  /** A passed triplet (and an auto-allowed network) is remembered this long after last use. */
  lifetimeMs: number;
  /** Passed triplets from one network after which the whole network skips greylisting; 0 = off. */
  autoAllowAfter: number;
}

export interface GreylistRequest {
  /** Key of the (network, sender, recipient) triplet. */
  tripletKey: string;
  /** Key of the client network, for auto-allow. */
  networkKey: string;
}

export type GreylistOutcome = 'new' | 'early' | 'passed' | 'allowed';

export interface GreylistResult {
  result: GreylistOutcome;
  /** For `new` and `early`: milliseconds until a retry can pass. */
  retryAfterMs: number;
  /** Triplets of this network that have passed (within the lifetime). */
  networkPassed: number;
}

export interface ConcurrencyResult {
  acquired: boolean;
  /** Slots in use on this key after the call (including this one when acquired). */
  count: number;
}

/** Where an operation was served: the shared store, or the in-process fallback during an outage. */
export type Served = 'shared' | 'local';

export interface Readiness {
  /** False only when the store is unusable and `fail_mode` is `fail_closed`. */
  ok: boolean;
  backend: 'memory' | 'redis';
  /** `up`, or `down` with the reason in `detail`. */
  state: 'up' | 'down';
  failMode: FailMode;
  detail?: string;
}

export type FailMode = 'fail_open' | 'fail_closed';

/** Thrown by a store when the shared backend cannot answer (down, timed out, circuit open). */
export class StoreUnavailableError extends Error {
  readonly reason: 'down' | 'timeout' | 'error';
  constructor(reason: 'down' | 'timeout' | 'error', message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreUnavailableError';
    this.reason = reason;
  }
}

/**
 * The backend-level store: one implementation per backend. Each method is one atomic operation
 * (one Lua script on Redis); methods taking arrays do the whole array in one round trip.
 */
export interface StoreBackend {
  readonly kind: 'memory' | 'redis';
  /** Checks all limits; charges the group only if every group limit allows (all or nothing). */
  rateLimit(requests: readonly RateLimitRequest[], now: number): Promise<RateLimitResult[]>;
  /** Records each triplet's attempt; one round trip for all of them. */
  greylist(requests: readonly GreylistRequest[], params: GreylistParams, now: number): Promise<GreylistResult[]>;
  /** Takes a slot on `key` for `id` unless `limit` slots are held; slots expire after `leaseMs`. */
  concurrencyAcquire(key: string, id: string, limit: number, leaseMs: number, now: number): Promise<ConcurrencyResult>;
  /** Extends the leases of live slots (one round trip for all). */
  concurrencyRefresh(slots: ReadonlyArray<{ key: string; id: string }>, leaseMs: number, now: number): Promise<void>;
  concurrencyRelease(key: string, id: string, now: number): Promise<void>;
  /** Health probe; resolves, never rejects. */
  probe(): Promise<{ up: boolean; detail?: string }>;
  close(): Promise<void>;
}

/** A held concurrency slot: release it when the connection closes. */
export interface ConcurrencyLease {
  readonly key: string;
  readonly id: string;
  readonly served: Served;
}

/**
 * What checks use: a backend plus the outage policy. Errors reach the caller only as
 * StoreUnavailableError, and only where the policy (fail_closed, or greylisting) says so.
 */
export interface SharedStore {
  readonly kind: 'memory' | 'redis';
  readonly failMode: FailMode;
  rateLimit(requests: readonly RateLimitRequest[], now: number): Promise<{ results: RateLimitResult[]; served: Served }>;
  /** Never falls back to local state (see docs/ratelimit.md): throws StoreUnavailableError. */
  greylist(requests: readonly GreylistRequest[], params: GreylistParams, now: number): Promise<GreylistResult[]>;
  acquireSlot(key: string, limit: number, leaseMs: number, now: number): Promise<{ lease?: ConcurrencyLease; count: number; served: Served }>;
  releaseSlot(lease: ConcurrencyLease): Promise<void>;
  /** Namespaces a key: `<prefix><parts joined by ':'>` (the prefix carries the Cluster hash tag). */
  key(...parts: string[]): string;
  /** For /readyz. Resolves within the command timeout, never rejects. */
  readiness(): Promise<Readiness>;
  /** Waits until the shared backend is connected; false after `timeoutMs` (never rejects). */
  waitReady(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}
