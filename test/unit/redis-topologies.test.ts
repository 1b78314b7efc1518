// The `redis` config forms the docs show, validated (table-driven) and run for real: a URL, a
// master found through a Sentinel, and a three-node Redis Cluster where one event's limits (keys
// that would fall in different slots) still run in one atomic script thanks to the hash tag.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { parseConfig } from '../../src/config/load.ts';
import { createSharedStore } from '../../src/store/create-store.ts';
import { describeRedis, effectivePrefix, redisConnectionSchema, redisOptionsSchema } from '../../src/store/redis-config.ts';
import { NO_ESCALATION, type RateLimitRequest, type SharedStore } from '../../src/store/shared-store.ts';
import { startRedisCluster, startRedisSentinel, uniquePrefix, type TestCluster, type TestSentinel } from '../helpers/redis.ts';

const logger = pino({ level: 'silent' });
const T0 = 1_700_000_000_000;
const limit = (key: string, burst: number): RateLimitRequest => ({ key, rate: { count: 1, periodMs: 3_600_000 }, burst, cost: 1, escalation: NO_ESCALATION });

describe('redis config', () => {
  const cases: Array<{ desc: string; input: unknown; ok: boolean }> = [
    { desc: 'redis:// URL', input: 'redis://127.0.0.1:6379', ok: true },
    { desc: 'URL with password and db', input: 'redis://:secret@redis.internal:6379/2', ok: true },
    { desc: 'rediss:// URL', input: 'rediss://user:pw@redis.example.com:6380', ok: true },
    { desc: 'unix socket', input: 'unix:///run/redis/redis.sock', ok: true },
    { desc: 'bare host is not a URL', input: '127.0.0.1:6379', ok: false },
    { desc: 'http URL', input: 'http://127.0.0.1:6379', ok: false },
    { desc: 'sentinel', input: { sentinels: ['10.0.0.1:26379', '[2001:db8::1]:26379'], name: 'mymaster', password: 'x', sentinel_password: 'y' }, ok: true },
    { desc: 'sentinel without name', input: { sentinels: ['10.0.0.1:26379'] }, ok: false },
    { desc: 'sentinel without port', input: { sentinels: ['10.0.0.1'], name: 'm' }, ok: false },
    { desc: 'cluster', input: { cluster: ['10.0.0.1:6379', '10.0.0.2:6379'], tls: true }, ok: true },
    { desc: 'cluster with an unknown key', input: { cluster: ['10.0.0.1:6379'], nodes: 3 }, ok: false },
    { desc: 'empty cluster', input: { cluster: [] }, ok: false },
  ];
  for (const c of cases) {
    test(c.desc, () => {
      assert.equal(redisConnectionSchema.safeParse(c.input).success, c.ok);
    });
  }

  test('redis_options defaults, and a typo is an error', () => {
    assert.deepEqual(redisOptionsSchema.parse({}), {
      command_timeout_ms: 250,
      connect_timeout_ms: 2000,
      reconnect_max_delay_ms: 5000,
      key_prefix: 'mailgate:',
      fail_mode: 'fail_open',
      local_max_keys: 100_000,
    });
    assert.equal(redisOptionsSchema.safeParse({ fail_mode: 'fail_shut' }).success, false);
    assert.equal(redisOptionsSchema.safeParse({ timeout: 5 }).success, false);
  });

  test('in mailgate.yaml, with MAILGATE_REDIS_URL overriding', () => {
    const yaml = `hostname: mx.example.test
domains: [example.test]
backend: { host: 127.0.0.1 }
redis:
  sentinels: ["10.0.0.1:26379"]
  name: mymaster
redis_options: { fail_mode: fail_closed, key_prefix: "mx1:" }
`;
    const { config } = parseConfig('mailgate.yaml', yaml, {});
    assert.deepEqual(config.redis, { sentinels: ['10.0.0.1:26379'], name: 'mymaster', db: 0, tls: false });
    assert.equal(config.redis_options.fail_mode, 'fail_closed');
    assert.equal(parseConfig('mailgate.yaml', yaml, { MAILGATE_REDIS_URL: 'redis://10.9.9.9:6379' }).config.redis, 'redis://10.9.9.9:6379');
    assert.throws(() => parseConfig('mailgate.yaml', yaml.replace('name: mymaster', 'nam: mymaster'), {}), /mailgate\.yaml:\d+: redis/);
  });

  test('Cluster key prefixes get a hash tag; logs never show passwords', () => {
    const cluster = { cluster: ['10.0.0.1:6379'], tls: false };
    assert.equal(effectivePrefix(cluster, 'mailgate:'), '{mailgate}:');
    assert.equal(effectivePrefix(cluster, 'mx1'), '{mx1}:');
    assert.equal(effectivePrefix(cluster, '{mg}:x:'), '{mg}:x:');
    assert.equal(effectivePrefix('redis://h:1', 'mailgate:'), 'mailgate:');
    assert.equal(describeRedis('redis://user:secret@h:6379/0'), 'redis://***@h:6379/0');
  });
});

async function exercise(store: SharedStore): Promise<void> {
  assert.ok(await store.waitReady(10_000), 'ready');
  // Keys of different kinds in one call: on a Cluster they would be in different slots without
  // the hash tag, and the multi-key script would fail with CROSSSLOT.
  const keys = ['rl:a:198.51.100.1', 'rl:b:example.net', 'rl:c:bob@example.test'].map((k) => store.key(k));
  const first = await store.rateLimit(
    keys.map((k) => limit(k, 1)),
    T0,
  );
  assert.equal(first.served, 'shared');
  assert.deepEqual(
    first.results.map((r) => r.allowed),
    [true, true, true],
  );
  const second = await store.rateLimit(
    keys.map((k) => limit(k, 1)),
    T0,
  );
  assert.deepEqual(
    second.results.map((r) => r.allowed),
    [false, false, false],
  );
  const gl = await store.greylist(
    ['t1', 't2', 't3'].map((t) => ({ tripletKey: store.key('gl', 't', t), networkKey: store.key('gl', 'n', 'net') })),
    { delayMs: 1000, retryWindowMs: 10_000, lifetimeMs: 100_000, autoAllowAfter: 0 },
    T0,
  );
  assert.deepEqual(
    gl.map((r) => r.result),
    ['new', 'new', 'new'],
  );
  const slot = await store.acquireSlot(store.key('cc', 'x'), 1, 60_000, T0);
  assert.equal(slot.served, 'shared');
  assert.ok(slot.lease);
  await store.releaseSlot(slot.lease);
  assert.equal((await store.readiness()).state, 'up');
}

describe('Redis Cluster', { skip: process.env.REDIS_URL ? 'uses its own redis-server processes' : false }, () => {
  let cluster: TestCluster;
  before(async () => {
    cluster = await startRedisCluster();
  });
  after(async () => {
    await cluster?.stop();
  });

  test('limits, greylisting and concurrency work; one event is one script in one slot', async () => {
    const store = createSharedStore({
      redis: { cluster: cluster.nodes, tls: false },
      options: { key_prefix: uniquePrefix('cluster'), fail_mode: 'fail_closed', command_timeout_ms: 2000 },
      logger,
      now: () => T0,
    });
    try {
      assert.match(store.key('x'), /^\{mgtest:cluster:[0-9a-f]+\}:x$/);
      await exercise(store);
    } finally {
      await store.close();
    }
  });
});

describe('Redis Sentinel', { skip: process.env.REDIS_URL ? 'uses its own redis-server processes' : false }, () => {
  let sentinel: TestSentinel;
  before(async () => {
    sentinel = await startRedisSentinel();
  });
  after(async () => {
    await sentinel?.stop();
  });

  test('the master is found through the Sentinel', async () => {
    const store = createSharedStore({
      redis: { sentinels: [sentinel.sentinel], name: sentinel.name, db: 0, tls: false },
      options: { key_prefix: uniquePrefix('sentinel'), fail_mode: 'fail_closed', command_timeout_ms: 2000 },
      logger,
      now: () => T0,
    });
    try {
      await exercise(store);
    } finally {
      await store.close();
    }
  });
});
