// Redis backend of the shared store (ioredis; standalone URL, Sentinel or Cluster). Each operation
// is one Lua script from ./lua/; several triplets or lease refreshes go in one pipeline. A call
// never waits longer than the command timeout: no offline queue, a circuit that stays open for a
// moment after a timeout, reconnects with capped exponential backoff in the background.
import { createRequire } from 'node:module';
import type { Redis as RedisClient, Cluster as ClusterClient, RedisOptions, ClusterOptions } from 'ioredis';

// ioredis (~20 MiB resident once loaded) is only required when a `redis` is configured: the
// embedded default (in-process store) never loads it. See bench/HISTORY.md, memory.
type IoRedis = { Redis: typeof RedisClient; Cluster: typeof ClusterClient };
let ioredis: IoRedis | undefined;
function io(): IoRedis {
  ioredis ??= createRequire(import.meta.url)('ioredis') as IoRedis;
  return ioredis;
}
import type { Logger } from 'pino';
import { metrics } from '../metrics/registry.ts';
import { callScript, defineScripts } from './scripts.ts';
import { isCluster, isSentinel, parseHostPort, describeRedis, type RedisConnectionConfig, type RedisOptionsConfig } from './redis-config.ts';
import {
  StoreUnavailableError,
  type ConcurrencyResult,
  type GreylistOutcome,
  type GreylistParams,
  type GreylistRequest,
  type GreylistResult,
  type RateLimitRequest,
  type RateLimitResult,
  type StoreBackend,
} from './shared-store.ts';
import { emissionMicros } from './memory-store.ts';

export interface RedisBackendOptions {
  connection: RedisConnectionConfig;
  options: RedisOptionsConfig;
  logger: Logger;
}

const GREYLIST_CODES: Record<number, GreylistOutcome> = { 1: 'new', 2: 'early', 3: 'passed', 4: 'allowed' };
const LEVELS = ['normal', 'blocked', 'reject'] as const;

export class RedisBackend implements StoreBackend {
  readonly kind = 'redis' as const;
  readonly client: RedisClient | ClusterClient;
  readonly #timeoutMs: number;
  readonly #log: Logger;
  /** Real time (not the injected clock) until which calls fail fast after a timeout. */
  #circuitOpenUntil = 0;
  #up = false;
  #lastErrorLog = 0;
  #lastError = '';
  #closed = false;

  constructor(o: RedisBackendOptions) {
    this.#timeoutMs = o.options.command_timeout_ms;
    this.#log = o.logger.child({ component: 'redis' });
    this.client = createClient(o.connection, o.options);
    defineScripts(this.client);
    metrics.redisUp.set(0);
    this.client.on('ready', () => {
      this.#up = true;
      metrics.redisUp.set(1);
      this.#log.info({ redis: describeRedis(o.connection) }, 'redis ready');
    });
    const down = (why: string) => () => {
      if (this.#up) this.#log.warn({ redis: describeRedis(o.connection), state: why }, 'redis connection lost');
      this.#up = false;
      metrics.redisUp.set(0);
    };
    this.client.on('close', down('close'));
    this.client.on('end', down('end'));
    this.client.on('reconnecting', down('reconnecting'));
    // Without an 'error' listener ioredis' errors would be unhandled and kill the process.
    this.client.on('error', (err: Error) => {
      this.#lastError = err.message;
      const t = Date.now();
      if (t - this.#lastErrorLog > 30_000) {
        this.#lastErrorLog = t;
        this.#log.warn({ err: err.message, redis: describeRedis(o.connection) }, 'redis error (repeats are logged every 30s)');
      }
    });
  }

  /** Resolves when connected and ready, or rejects after `timeoutMs`; never needed for correctness. */
  async waitReady(timeoutMs: number): Promise<void> {
    if (this.client.status === 'ready') return;
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => {
        this.client.off('ready', onReady);
        reject(new Error(`redis not ready after ${timeoutMs} ms (${this.#lastError || this.client.status})`));
      }, timeoutMs);
      const onReady = () => {
        clearTimeout(t);
        resolve();
      };
      this.client.once('ready', onReady);
    });
  }

  /** Runs one Redis call under the outage rules; every failure becomes StoreUnavailableError. */
  async #run<T>(op: string, call: () => Promise<unknown>, parse: (reply: unknown) => T): Promise<T> {
    if (this.#closed || this.client.status !== 'ready') {
      metrics.redisErrors.inc({ reason: 'down' });
      throw new StoreUnavailableError('down', `redis not connected (${this.client.status})`);
    }
    if (Date.now() < this.#circuitOpenUntil) {
      metrics.redisErrors.inc({ reason: 'down' });
      throw new StoreUnavailableError('down', 'redis circuit open after a timeout');
    }
    const start = performance.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      // ioredis' commandTimeout also applies; this deadline is the guarantee (it covers pipelines
      // and Cluster redirections alike).
      const reply = await Promise.race([
        call(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error('Command timed out')), this.#timeoutMs + 5);
        }),
      ]);
      metrics.redisCommandDuration.observe({ op }, (performance.now() - start) / 1000);
      return parse(reply);
    } catch (err) {
      const message = (err as Error).message ?? String(err);
      const timedOut = /timed out/i.test(message);
      metrics.redisErrors.inc({ reason: timedOut ? 'timeout' : 'error' });
      if (timedOut) this.#circuitOpenUntil = Date.now() + Math.max(1000, 4 * this.#timeoutMs);
      // A reply error from a script is a bug, not an outage: say so loudly (the fail mode still
      // decides what the message gets).
      else if (/^(ERR|WRONGTYPE)/.test(message)) this.#log.error({ op, err: message }, 'redis script error');
      this.#lastError = message;
      throw new StoreUnavailableError(timedOut ? 'timeout' : 'error', `redis ${op}: ${message}`, { cause: err });
    } finally {
      clearTimeout(timer);
    }
  }

  rateLimit(requests: readonly RateLimitRequest[], now: number): Promise<RateLimitResult[]> {
    if (requests.length === 0) return Promise.resolve([]);
    const keys = requests.map((r) => r.key);
    const args: Array<string | number> = [Math.floor(now)];
    for (const r of requests) {
      const e = r.escalation;
      args.push(
        emissionMicros(r.rate),
        Math.max(1, Math.floor(r.burst)),
        Math.max(0, Math.floor(r.cost)),
        e.after,
        e.blockMs,
        e.maxBlockMs,
        e.rejectAfter,
        e.windowMs,
        r.independent === true ? 1 : 0,
      );
    }
    return this.#run(
      'rate_limit',
      () => callScript(this.client, 'rateLimit', keys, args),
      (reply) => {
        const a = numbers(reply, 4 * requests.length);
        return requests.map((_, i) => ({
          allowed: a[4 * i] === 1,
          retryAfterMs: a[4 * i + 1] ?? 0,
          strikes: a[4 * i + 2] ?? 0,
          level: LEVELS[a[4 * i + 3] ?? 0] ?? 'normal',
        }));
      },
    );
  }

  greylist(requests: readonly GreylistRequest[], p: GreylistParams, now: number): Promise<GreylistResult[]> {
    if (requests.length === 0) return Promise.resolve([]);
    const args = [Math.floor(now), p.delayMs, p.retryWindowMs, p.lifetimeMs, p.autoAllowAfter];
    const parse = (reply: unknown): GreylistResult => {
      const [code, retry, passed] = numbers(reply, 3);
      const result = GREYLIST_CODES[code ?? 0];
      if (!result) throw new Error(`greylist script returned code ${String(code)}`);
      return { result, retryAfterMs: retry ?? 0, networkPassed: passed ?? 0 };
    };
    const first = requests[0];
    if (requests.length === 1 && first) {
      return this.#run(
        'greylist',
        () => callScript(this.client, 'greylist', [first.tripletKey, first.networkKey], args),
        (reply) => [parse(reply)],
      );
    }
    return this.#run(
      'greylist',
      () => {
        const pipe = this.client.pipeline();
        for (const r of requests) callScript(pipe, 'greylist', [r.tripletKey, r.networkKey], args);
        return pipe.exec();
      },
      (replies) => pipelineReplies(replies, requests.length).map(parse),
    );
  }

  concurrencyAcquire(key: string, id: string, limit: number, leaseMs: number, now: number): Promise<ConcurrencyResult> {
    return this.#run(
      'concurrency_acquire',
      () => callScript(this.client, 'concurrencyAcquire', [key], [Math.floor(now), id, limit, leaseMs]),
      (reply) => {
        const [ok, count] = numbers(reply, 2);
        return { acquired: ok === 1, count: count ?? 0 };
      },
    );
  }

  concurrencyRefresh(slots: ReadonlyArray<{ key: string; id: string }>, leaseMs: number, now: number): Promise<void> {
    if (slots.length === 0) return Promise.resolve();
    return this.#run(
      'concurrency_refresh',
      () => {
        const pipe = this.client.pipeline();
        for (const s of slots) callScript(pipe, 'concurrencyRefresh', [s.key], [Math.floor(now), s.id, leaseMs]);
        return pipe.exec();
      },
      (replies) => {
        pipelineReplies(replies, slots.length);
      },
    );
  }

  concurrencyRelease(key: string, id: string, now: number): Promise<void> {
    return this.#run(
      'concurrency_release',
      () => callScript(this.client, 'concurrencyRelease', [key], [Math.floor(now), id]),
      () => undefined,
    );
  }

  async probe(): Promise<{ up: boolean; detail?: string }> {
    try {
      await this.#run(
        'ping',
        () => this.client.ping(),
        (r) => r,
      );
      return { up: true };
    } catch (err) {
      return { up: false, detail: (err as Error).message };
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    metrics.redisUp.set(0);
    const quit = this.client.quit().catch(() => undefined);
    const t = new Promise((r) => setTimeout(r, 1000).unref());
    await Promise.race([quit, t]);
    this.client.disconnect();
  }
}

function numbers(reply: unknown, n: number): number[] {
  if (!Array.isArray(reply) || reply.length < n) throw new Error(`unexpected script reply ${JSON.stringify(reply)}`);
  return reply.map((v) => Number(v));
}

function pipelineReplies(replies: unknown, n: number): unknown[] {
  if (!Array.isArray(replies) || replies.length !== n) throw new Error('pipeline aborted');
  return replies.map((entry) => {
    const [err, value] = entry as [Error | null, unknown];
    if (err) throw err;
    return value;
  });
}

/** Reconnect delay: 50 ms doubling, capped, plus up to 100 ms jitter so instances spread out. */
function backoff(maxMs: number): (times: number) => number {
  return (times) => Math.min(50 * 2 ** Math.min(times - 1, 20), maxMs) + Math.floor(Math.random() * 100);
}

function createClient(c: RedisConnectionConfig, o: RedisOptionsConfig): RedisClient | ClusterClient {
  const common: RedisOptions = {
    commandTimeout: o.command_timeout_ms,
    connectTimeout: o.connect_timeout_ms,
    // Fail fast instead of queueing while disconnected: the fail mode decides, nobody waits.
    enableOfflineQueue: false,
    // A script in flight when the connection drops is not resent: it may have run already, and
    // resending would count the event twice.
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    // Off: ioredis' auto-pipelining defers every write to the next tick, which doubled the p50
    // of a round trip on loopback (bench/ratelimit.ts). Each stage sends one script anyway.
    enableAutoPipelining: false,
    connectionName: 'mailgate',
    retryStrategy: backoff(o.reconnect_max_delay_ms),
  };
  if (typeof c === 'string') {
    if (c.startsWith('unix://')) return new (io().Redis)({ ...common, path: c.slice('unix://'.length) });
    return new (io().Redis)(c, common);
  }
  const tls = c.tls ? {} : undefined;
  const auth: RedisOptions = {};
  if (c.username) auth.username = c.username;
  if (c.password) auth.password = c.password;
  if (tls) auth.tls = tls;
  if (isSentinel(c)) {
    const opts: RedisOptions = {
      ...common,
      ...auth,
      sentinels: c.sentinels.map(parseHostPort),
      name: c.name,
      db: c.db,
      enableTLSForSentinelMode: c.tls,
      sentinelRetryStrategy: backoff(o.reconnect_max_delay_ms),
    };
    if (c.sentinel_username) opts.sentinelUsername = c.sentinel_username;
    if (c.sentinel_password) opts.sentinelPassword = c.sentinel_password;
    return new (io().Redis)(opts);
  }
  if (!isCluster(c)) throw new Error('unreachable');
  const { retryStrategy: _r, enableOfflineQueue: _q, ...nodeOptions } = common;
  const clusterOptions: ClusterOptions = {
    redisOptions: { ...nodeOptions, ...auth },
    enableOfflineQueue: false,
    enableAutoPipelining: false,
    clusterRetryStrategy: backoff(o.reconnect_max_delay_ms),
    slotsRefreshTimeout: o.connect_timeout_ms,
  };
  return new (io().Cluster)(c.cluster.map(parseHostPort), clusterOptions);
}
