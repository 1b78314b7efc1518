// The `redis` and `redis_options` keys of mailgate.yaml: where the shared store lives (a URL, a
// Sentinel group or a Cluster) and how mailgate behaves when it cannot reach it. See docs/ratelimit.md.
import { z } from 'zod';

const hostPort = z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s/]+):\d{1,5}$/, 'expected "host:port" (IPv6 as "[addr]:port")');

const url = z.string().regex(/^(rediss?:\/\/\S+|unix:\/\/\/\S+)$/, 'expected a redis://, rediss:// or unix:///path URL');

const auth = {
  username: z.string().min(1).optional(),
  password: z.string().min(1).optional(),
  /** TLS to the Redis servers (for a URL, write rediss:// instead). */
  tls: z.boolean().default(false),
};

/** `redis: { sentinels: [...], name: mymaster }`: the master of a Sentinel-monitored group. */
export const redisSentinelSchema = z.strictObject({
  sentinels: z.array(hostPort).min(1),
  /** The master group name as configured in sentinel.conf (`sentinel monitor <name> ...`). */
  name: z.string().min(1),
  sentinel_username: z.string().min(1).optional(),
  sentinel_password: z.string().min(1).optional(),
  db: z.number().int().min(0).default(0),
  ...auth,
});

/** `redis: { cluster: [...] }`: seed nodes of a Redis Cluster (the rest is discovered). */
export const redisClusterSchema = z.strictObject({
  cluster: z.array(hostPort).min(1),
  ...auth,
});

/** The `redis` key: a URL, a Sentinel group or a Cluster. */
export const redisConnectionSchema = z.union([url, redisSentinelSchema, redisClusterSchema]);

export const FAIL_MODES = ['fail_open', 'fail_closed'] as const;

/** The `redis_options` key. */
export const redisOptionsSchema = z.strictObject({
  /** A Redis call not answered within this time counts as failed (the fail mode decides). */
  command_timeout_ms: z.number().int().min(10).max(60_000).default(250),
  /** Connecting (TCP + handshake) gives up after this long; reconnects keep going. */
  connect_timeout_ms: z.number().int().min(100).max(60_000).default(2000),
  /** Reconnect backoff: 50 ms doubling up to this, plus jitter. */
  reconnect_max_delay_ms: z.number().int().min(100).max(60_000).default(5000),
  /**
   * Every key mailgate writes starts with this. With a Cluster, a hash tag is added when the
   * prefix has none (`mailgate:` → `{mailgate}:`) so one event's keys share a slot.
   */
  key_prefix: z.string().min(1).max(100).default('mailgate:'),
  /**
   * When Redis is unreachable: `fail_open` keeps limits working per instance on the in-process
   * store and skips greylisting; `fail_closed` tempfails what needs the store.
   */
  fail_mode: z.enum(FAIL_MODES).default('fail_open'),
  /** Bound of the in-process store (without Redis, and as the fail_open fallback). */
  local_max_keys: z.number().int().min(100).max(10_000_000).default(100_000),
});

export const redisOptionsDefault = redisOptionsSchema.parse({});

export type RedisConnectionConfig = z.output<typeof redisConnectionSchema>;
export type RedisSentinelConfig = z.output<typeof redisSentinelSchema>;
export type RedisClusterConfig = z.output<typeof redisClusterSchema>;
export type RedisOptionsConfig = z.output<typeof redisOptionsSchema>;

export function isSentinel(c: RedisConnectionConfig): c is RedisSentinelConfig {
  return typeof c === 'object' && 'sentinels' in c;
}

export function isCluster(c: RedisConnectionConfig): c is RedisClusterConfig {
  return typeof c === 'object' && 'cluster' in c;
}

/** The key prefix actually used: with a Cluster, made to carry a hash tag. */
export function effectivePrefix(conn: RedisConnectionConfig | undefined, prefix: string): string {
  if (conn === undefined || !isCluster(conn) || /\{[^}]+\}/.test(prefix)) return prefix;
  const m = /^(.*?)([:._-]*)$/.exec(prefix);
  const body = m?.[1] || 'mailgate';
  return `{${body}}${m?.[2] || ':'}`;
}

/** "host:port" → { host, port }, with IPv6 brackets removed. */
export function parseHostPort(s: string): { host: string; port: number } {
  const i = s.lastIndexOf(':');
  const host = s.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(s.slice(i + 1)) };
}

/** For logs: the target without credentials. */
export function describeRedis(c: RedisConnectionConfig): string {
  if (typeof c === 'string') return c.replace(/\/\/[^@/]*@/, '//***@');
  if (isSentinel(c)) return `sentinel ${c.name} via ${c.sentinels.join(',')}`;
  return `cluster via ${c.cluster.join(',')}`;
}
