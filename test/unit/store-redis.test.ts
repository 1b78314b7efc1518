// Redis-only behaviour against real redis-server processes: several clients sharing one Redis
// enforce one limit together; Redis killed, hung (SIGSTOP) and restarted mid-test → fail_open
// falls back to the in-process store, fail_closed refuses, nothing hangs, and both recover.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { registry } from '../../src/metrics/registry.ts';
import { createSharedStore } from '../../src/store/create-store.ts';
import { NO_ESCALATION, StoreUnavailableError, type RateLimitRequest, type SharedStore } from '../../src/store/shared-store.ts';
import { startRedis, uniquePrefix, type TestRedis } from '../helpers/redis.ts';

const logger = pino({ level: 'silent' });
const T0 = 1_700_000_000_000;

const limit = (key: string, burst: number): RateLimitRequest => ({
  key,
  rate: { count: 1, periodMs: 3_600_000 },
  burst,
  cost: 1,
  escalation: NO_ESCALATION,
});

/** Rejects if `p` takes longer than `ms`: the "never hang" assertion. */
async function within<T>(ms: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`hung: no answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

async function metricValue(name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => (x.labels as Record<string, unknown>)[k] === val));
  return Number(v?.value ?? 0);
}

async function waitFor(what: string, ms: number, cond: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

function makeStore(url: string, prefix: string, extra: Record<string, unknown> = {}): SharedStore {
  return createSharedStore({
    redis: url,
    // A generous timeout: a loaded CI machine must not turn a slow answer into a fallback.
    options: { key_prefix: prefix, command_timeout_ms: 1000, reconnect_max_delay_ms: 200, ...extra },
    logger,
    now: () => T0,
  });
}

describe('two mailgate instances sharing one Redis', () => {
  let redis: TestRedis;
  let a: SharedStore;
  let b: SharedStore;
  before(async () => {
    redis = await startRedis();
    const prefix = uniquePrefix('shared');
    a = makeStore(redis.url, prefix);
    b = makeStore(redis.url, prefix);
    assert.ok(await a.waitReady(5000));
    assert.ok(await b.waitReady(5000));
  });
  after(async () => {
    await a.close();
    await b.close();
    await redis.stop();
  });

  test('alternating instances: one limit of 10 in total', async () => {
    const key = a.key('rl', 'alt');
    let allowed = 0;
    for (let i = 0; i < 30; i++) {
      const s = i % 2 === 0 ? a : b;
      const { results, served } = await s.rateLimit([limit(key, 10)], T0);
      assert.equal(served, 'shared');
      if (results[0]?.allowed) allowed++;
    }
    assert.equal(allowed, 10);
  });

  test('200 concurrent events from both instances: exactly the burst passes (atomic scripts)', async () => {
    const key = a.key('rl', 'race');
    const calls = Array.from({ length: 200 }, (_, i) => (i % 2 ? a : b).rateLimit([limit(key, 37)], T0));
    const res = await Promise.all(calls);
    assert.equal(res.filter((r) => r.results[0]?.allowed).length, 37);
  });

  test('concurrency slots are shared across instances', async () => {
    const key = a.key('cc', 'shared');
    const s1 = await a.acquireSlot(key, 2, 60_000, T0);
    const s2 = await b.acquireSlot(key, 2, 60_000, T0);
    const s3 = await a.acquireSlot(key, 2, 60_000, T0);
    assert.deepEqual([!!s1.lease, !!s2.lease, !!s3.lease], [true, true, false]);
    if (s2.lease) await b.releaseSlot(s2.lease);
    const s4 = await a.acquireSlot(key, 2, 60_000, T0);
    assert.ok(s4.lease);
    for (const l of [s1.lease, s4.lease]) if (l) await a.releaseSlot(l);
  });
});

describe('Redis outage', { skip: process.env.REDIS_URL ? 'REDIS_URL server cannot be killed' : false }, () => {
  let redis: TestRedis;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis.stop();
  });

  test('fail_open: killed → in-process fallback, greylist skipped, ready; restarted → shared again', async () => {
    const store = makeStore(redis.url, uniquePrefix('open'));
    try {
      assert.ok(await store.waitReady(5000));
      const key = store.key('rl', 'open');
      const r1 = await store.rateLimit([limit(key, 3)], T0);
      assert.equal(r1.served, 'shared');
      assert.equal(await metricValue('mailgate_redis_up'), 1);
      const errorsBefore = await metricValue('mailgate_redis_errors_total', { reason: 'down' });

      await redis.kill();
      await waitFor('redis_up 0', 2000, async () => (await metricValue('mailgate_redis_up')) === 0);
      for (let i = 0; i < 5; i++) {
        const t = performance.now();
        const r = await within(1000, store.rateLimit([limit(key, 3)], T0));
        assert.equal(r.served, 'local');
        assert.ok(performance.now() - t < 100, 'fails over at once while disconnected');
        // The in-process store enforces the same limit on its own (3, from scratch).
        assert.equal(r.results[0]?.allowed, i < 3, `event ${i}`);
      }
      await assert.rejects(
        within(
          1000,
          store.greylist(
            [{ tripletKey: store.key('gl', 't', 'x'), networkKey: store.key('gl', 'n', 'x') }],
            { delayMs: 1, retryWindowMs: 1, lifetimeMs: 1, autoAllowAfter: 0 },
            T0,
          ),
        ),
        StoreUnavailableError,
      );
      const slot = await within(1000, store.acquireSlot(store.key('cc', 'open'), 1, 60_000, T0));
      assert.equal(slot.served, 'local');
      assert.ok(slot.lease);
      await store.releaseSlot(slot.lease);
      const ready = await within(1000, store.readiness());
      assert.deepEqual([ready.ok, ready.state, ready.failMode], [true, 'down', 'fail_open']);
      assert.ok((await metricValue('mailgate_redis_errors_total', { reason: 'down' })) > errorsBefore);
      assert.ok((await metricValue('mailgate_store_fallback_total', { op: 'rate_limit' })) >= 5);

      await redis.restart();
      await waitFor('shared again', 10_000, async () => (await store.rateLimit([limit(store.key('rl', 'probe'), 100)], T0)).served === 'shared');
      // Scripts are loaded again after the restart (EVALSHA → NOSCRIPT → EVAL) and state is fresh.
      const r2 = await store.rateLimit([limit(store.key('rl', 'after'), 1)], T0);
      assert.deepEqual([r2.served, r2.results[0]?.allowed], ['shared', true]);
      assert.equal((await store.readiness()).state, 'up');
      assert.equal(await metricValue('mailgate_redis_up'), 1);
    } finally {
      await store.close();
    }
  });

  test('fail_closed: killed → StoreUnavailableError at once and not ready; restarted → recovers', async () => {
    const store = makeStore(redis.url, uniquePrefix('closed'), { fail_mode: 'fail_closed' });
    try {
      assert.ok(await store.waitReady(5000));
      const key = store.key('rl', 'closed');
      assert.equal((await store.rateLimit([limit(key, 3)], T0)).served, 'shared');
      await redis.kill();
      await waitFor('disconnect seen', 2000, async () => (await store.readiness()).state === 'down');
      await assert.rejects(within(1000, store.rateLimit([limit(key, 3)], T0)), StoreUnavailableError);
      await assert.rejects(within(1000, store.acquireSlot(store.key('cc', 'c'), 1, 60_000, T0)), StoreUnavailableError);
      const ready = await store.readiness();
      assert.deepEqual([ready.ok, ready.state], [false, 'down']);
      await redis.restart();
      await waitFor('recovered', 10_000, async () => (await store.readiness()).ok);
      assert.equal((await store.rateLimit([limit(key, 3)], T0)).served, 'shared');
    } finally {
      await store.close();
    }
  });

  test('hung server (SIGSTOP): bounded by the command timeout, then the circuit fails fast; recovers', async () => {
    const store = makeStore(redis.url, uniquePrefix('hang'), { command_timeout_ms: 200 });
    try {
      assert.ok(await store.waitReady(5000));
      const key = store.key('rl', 'hang');
      assert.equal((await store.rateLimit([limit(key, 5)], T0)).served, 'shared');
      const timeoutsBefore = await metricValue('mailgate_redis_errors_total', { reason: 'timeout' });
      redis.pause();
      const t1 = performance.now();
      const r1 = await within(1000, store.rateLimit([limit(key, 5)], T0));
      const d1 = performance.now() - t1;
      assert.equal(r1.served, 'local');
      assert.ok(d1 >= 150 && d1 < 600, `first call waits about the command timeout (took ${d1.toFixed(0)} ms)`);
      assert.ok((await metricValue('mailgate_redis_errors_total', { reason: 'timeout' })) > timeoutsBefore);
      const t2 = performance.now();
      const r2 = await within(1000, store.rateLimit([limit(key, 5)], T0));
      assert.equal(r2.served, 'local');
      assert.ok(performance.now() - t2 < 50, 'circuit open: no second wait');
      redis.resume();
      await waitFor('shared again', 10_000, async () => (await store.rateLimit([limit(store.key('rl', 'p2'), 100)], T0)).served === 'shared');
    } finally {
      redis.resume();
      await store.close();
    }
  });

  test('Redis down at start: the store works (fail_open) and connects when Redis appears', async () => {
    await redis.kill();
    const store = makeStore(redis.url, uniquePrefix('late'));
    try {
      assert.equal(await store.waitReady(300), false);
      const r = await within(1000, store.rateLimit([limit(store.key('rl', 'late'), 2)], T0));
      assert.equal(r.served, 'local');
      await redis.restart();
      await waitFor('connected', 10_000, async () => (await store.rateLimit([limit(store.key('rl', 'late2'), 100)], T0)).served === 'shared');
    } finally {
      await store.close();
    }
  });
});
