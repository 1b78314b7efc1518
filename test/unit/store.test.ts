// One semantic suite run against both shared-store backends (in-process memory and a real
// redis-server started by the test), driven by a controllable clock: rate limits (burst, steady
// rate, several limits at once, escalation), greylisting full cycle, concurrency slots.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { createSharedStore } from '../../src/store/create-store.ts';
import { MemoryBackend } from '../../src/store/memory-store.ts';
import type { Escalation, GreylistParams, RateLimitRequest, SharedStore } from '../../src/store/shared-store.ts';
import { NO_ESCALATION } from '../../src/store/shared-store.ts';
import { startRedis, uniquePrefix, type TestRedis } from '../helpers/redis.ts';

const logger = pino({ level: 'silent' });
const T0 = 1_700_000_000_000;

interface Env {
  store: SharedStore;
  clock: { t: number };
}

let redis: TestRedis | undefined;
before(async () => {
  redis = await startRedis();
});
after(async () => {
  await redis?.stop();
});

const kinds: Array<{ kind: 'memory' | 'redis'; make: () => Promise<Env> }> = [
  {
    kind: 'memory',
    make: async () => {
      const clock = { t: T0 };
      return { clock, store: createSharedStore({ logger, now: () => clock.t }) };
    },
  },
  {
    kind: 'redis',
    make: async () => {
      const clock = { t: T0 };
      const store = createSharedStore({
        redis: redis?.url,
        // fail_closed: a script error must fail the test, not fall back to the in-process store.
        options: { key_prefix: uniquePrefix('store'), fail_mode: 'fail_closed', command_timeout_ms: 2000 },
        logger,
        now: () => clock.t,
      });
      assert.equal(await store.waitReady(5000), true, 'redis ready');
      return { clock, store };
    },
  },
];

const limit = (key: string, count: number, periodMs: number, burst: number, extra: Partial<RateLimitRequest> = {}): RateLimitRequest => ({
  key,
  rate: { count, periodMs },
  burst,
  cost: 1,
  escalation: NO_ESCALATION,
  ...extra,
});

/** Sends one event per entry of `times` (ms after T0) and returns which were allowed. */
async function run(env: Env, reqs: () => RateLimitRequest[], times: number[]): Promise<boolean[]> {
  const out: boolean[] = [];
  for (const at of times) {
    env.clock.t = T0 + at;
    const { results } = await env.store.rateLimit(reqs(), env.clock.t);
    out.push(results.every((r) => r.allowed));
  }
  return out;
}

const count = (xs: boolean[]) => xs.filter(Boolean).length;

for (const { kind, make } of kinds) {
  describe(`shared store semantics: ${kind}`, () => {
    let env: Env;
    before(async () => {
      env = await make();
    });
    after(async () => {
      await env.store.close();
    });

    describe('rate limits (GCRA)', () => {
      // rate 10/1s = one token every 100 ms; burst 5.
      const cases = [
        { desc: 'a burst of 5 at once passes, the 6th is denied', times: Array(8).fill(0) as number[], allowed: 5 },
        {
          desc: 'after the burst, one more every 100 ms (steady rate)',
          times: [...(Array(5).fill(0) as number[]), ...Array.from({ length: 20 }, (_, i) => 100 * (i + 1))],
          allowed: 25,
        },
        {
          desc: 'twice the rate after the burst: half denied',
          times: [...(Array(5).fill(0) as number[]), ...Array.from({ length: 20 }, (_, i) => 50 * (i + 1))],
          allowed: 5 + 10,
        },
        { desc: 'idle time refills at most to the burst', times: [0, 0, 0, 0, 0, 10_000, 10_000, 10_000, 10_000, 10_000, 10_000, 10_000], allowed: 10 },
      ];
      for (const c of cases) {
        test(c.desc, async () => {
          const key = env.store.key('rl', 'gcra', c.desc);
          const got = await run(env, () => [limit(key, 10, 1000, 5)], c.times);
          assert.equal(count(got), c.allowed, JSON.stringify(got));
        });
      }

      test('100/1m burst 20: 20 at once, then 1 every 600 ms; the retry hint is exact', async () => {
        const key = env.store.key('rl', 'minute');
        env.clock.t = T0;
        const first = await run(env, () => [limit(key, 100, 60_000, 20)], Array(25).fill(0) as number[]);
        assert.equal(count(first), 20);
        const { results } = await env.store.rateLimit([limit(key, 100, 60_000, 20)], T0 + 100);
        assert.equal(results[0]?.allowed, false);
        assert.equal(results[0]?.retryAfterMs, 500);
        const later = await env.store.rateLimit([limit(key, 100, 60_000, 20)], T0 + 600);
        assert.equal(later.results[0]?.allowed, true);
      });

      test('several limits in one call: all or nothing (a denied event charges no limit)', async () => {
        const a = env.store.key('rl', 'multi-a');
        const b = env.store.key('rl', 'multi-b');
        const both = () => [limit(a, 1, 3_600_000, 2), limit(b, 1, 3_600_000, 5)];
        const got = await run(env, both, [0, 0, 0, 0]);
        assert.deepEqual(got, [true, true, false, false]);
        env.clock.t = T0;
        const { results } = await env.store.rateLimit(both(), T0);
        assert.deepEqual(
          results.map((r) => r.allowed),
          [false, true],
          'a denies by itself, b would allow',
        );
        // b was charged only twice: three more pass on b alone.
        const bAlone = await run(env, () => [limit(b, 1, 3_600_000, 5)], [0, 0, 0, 0]);
        assert.deepEqual(bAlone, [true, true, true, false]);
      });

      test('an independent (score-only) limit is charged on its own', async () => {
        const g = env.store.key('rl', 'ind-group');
        const s = env.store.key('rl', 'ind-score');
        const reqs = () => [limit(g, 1, 3_600_000, 3), limit(s, 1, 3_600_000, 1, { independent: true })];
        env.clock.t = T0;
        const r1 = (await env.store.rateLimit(reqs(), T0)).results;
        const r2 = (await env.store.rateLimit(reqs(), T0)).results;
        assert.deepEqual(
          [r1.map((r) => r.allowed), r2.map((r) => r.allowed)],
          [
            [true, true],
            [true, false],
          ],
        );
        // The group limit was charged twice despite the score limit denying: one left.
        const g3 = await run(env, () => [limit(g, 1, 3_600_000, 3)], [0, 0]);
        assert.deepEqual(g3, [true, false]);
      });

      test('a cost above the burst is clamped (a big message is not refused forever)', async () => {
        const key = env.store.key('rl', 'cost');
        const big = () => [limit(key, 1, 1000, 3, { cost: 10 })];
        const got = await run(env, big, [0, 0, 2999, 3000]);
        assert.deepEqual(got, [true, false, false, true]);
      });

      test('escalation: blocks double after `after` strikes, then reject; an allowed event resets', async () => {
        const key = env.store.key('rl', 'esc');
        const escalation: Escalation = { after: 2, blockMs: 5000, maxBlockMs: 20_000, rejectAfter: 4, windowMs: 60_000 };
        const req = () => [limit(key, 1, 1000, 1, { escalation })];
        const seen: Array<[boolean, number, number, string]> = [];
        for (const at of [0, 100, 200, 300, 400, 500]) {
          const { results } = await env.store.rateLimit(req(), T0 + at);
          const r = results[0];
          assert.ok(r);
          seen.push([r.allowed, r.retryAfterMs, r.strikes, r.level]);
        }
        assert.deepEqual(seen, [
          [true, 0, 0, 'normal'],
          [false, 900, 1, 'normal'], // plain limit: retry when the bucket has room
          [false, 5000, 2, 'blocked'], // 2nd strike: blocked 5 s
          [false, 10_000, 3, 'blocked'], // doubling
          [false, 20_000, 4, 'reject'], // reached reject_after; block capped at max_block
          [false, 20_000, 5, 'reject'],
        ]);
        // During the block even a conforming rate is denied; after it, allowed and reset.
        const during = await env.store.rateLimit(req(), T0 + 10_000);
        assert.equal(during.results[0]?.allowed, false);
        assert.equal(during.results[0]?.strikes, 6);
        const afterBlock = await env.store.rateLimit(req(), T0 + 10_000 + 20_001);
        assert.deepEqual(afterBlock.results[0], { allowed: true, retryAfterMs: 0, strikes: 0, level: 'normal' });
      });

      test('strikes are forgotten after the window without denials', async () => {
        const key = env.store.key('rl', 'window');
        const escalation: Escalation = { after: 3, blockMs: 1000, maxBlockMs: 1000, rejectAfter: 0, windowMs: 10_000 };
        const req = () => [limit(key, 1, 3_600_000, 1, { escalation })];
        await env.store.rateLimit(req(), T0);
        const a = await env.store.rateLimit(req(), T0 + 1);
        const b = await env.store.rateLimit(req(), T0 + 2);
        assert.deepEqual([a.results[0]?.strikes, b.results[0]?.strikes], [1, 2]);
        const c = await env.store.rateLimit(req(), T0 + 2 + 10_001);
        assert.equal(c.results[0]?.strikes, 1, 'window passed: counting starts over');
        assert.equal(c.results[0]?.level, 'normal');
      });
    });

    describe('greylisting', () => {
      const p: GreylistParams = { delayMs: 300_000, retryWindowMs: 3_600_000, lifetimeMs: 86_400_000, autoAllowAfter: 0 };
      const req = (t: string, n = 'net') => [{ tripletKey: env.store.key('gl', 't', t), networkKey: env.store.key('gl', 'n', n) }];

      test('full cycle: new, early, passed, remembered, forgotten after its lifetime', async () => {
        const steps: Array<[number, string, number]> = [];
        for (const at of [0, 60_000, 300_000, 400_000, 400_000 + 86_400_000, 400_000 + 2 * 86_400_000 + 1]) {
          const [r] = await env.store.greylist(req('cycle'), p, T0 + at);
          assert.ok(r);
          steps.push([at, r.result, r.retryAfterMs]);
        }
        assert.deepEqual(steps, [
          [0, 'new', 300_000],
          [60_000, 'early', 240_000],
          [300_000, 'passed', 0],
          [400_000, 'passed', 0],
          [400_000 + 86_400_000, 'passed', 0], // lifetime counts from the last use
          [400_000 + 2 * 86_400_000 + 1, 'new', 300_000],
        ]);
      });

      test('a retry after the retry window starts over', async () => {
        const [a] = await env.store.greylist(req('late'), p, T0);
        const [b] = await env.store.greylist(req('late'), p, T0 + 300_000 + 3_600_000 + 1);
        const [c] = await env.store.greylist(req('late'), p, T0 + 300_000 + 3_600_000 + 1 + 300_000);
        assert.deepEqual([a?.result, b?.result, c?.result], ['new', 'new', 'passed']);
      });

      test('auto-allow: after N passed triplets the network skips greylisting', async () => {
        const q = { ...p, autoAllowAfter: 2 };
        for (const t of ['aa1', 'aa2']) {
          await env.store.greylist(req(t, 'aanet'), q, T0);
          const [r] = await env.store.greylist(req(t, 'aanet'), q, T0 + 300_000);
          assert.equal(r?.result, 'passed');
        }
        const [third] = await env.store.greylist(req('aa3', 'aanet'), q, T0 + 300_001);
        assert.deepEqual(third, { result: 'allowed', retryAfterMs: 0, networkPassed: 2 });
        const [other] = await env.store.greylist(req('aa3', 'othernet'), q, T0 + 300_001);
        assert.equal(other?.result, 'new');
      });

      test('several triplets in one call (one round trip)', async () => {
        const reqs = ['m1', 'm2', 'm3'].map((t) => req(t)[0]).filter((x) => x !== undefined);
        const first = await env.store.greylist(reqs, p, T0);
        const second = await env.store.greylist(reqs, p, T0 + 300_000);
        assert.deepEqual(
          first.map((r) => r.result),
          ['new', 'new', 'new'],
        );
        assert.deepEqual(
          second.map((r) => r.result),
          ['passed', 'passed', 'passed'],
        );
      });
    });

    describe('concurrency', () => {
      test('acquire up to the limit, release frees a slot', async () => {
        const key = env.store.key('cc', 'basic');
        const a = await env.store.acquireSlot(key, 2, 60_000, T0);
        const b = await env.store.acquireSlot(key, 2, 60_000, T0);
        const c = await env.store.acquireSlot(key, 2, 60_000, T0);
        assert.deepEqual([!!a.lease, !!b.lease, !!c.lease], [true, true, false]);
        assert.deepEqual([a.count, b.count, c.count], [1, 2, 2]);
        assert.ok(a.lease);
        await env.store.releaseSlot(a.lease);
        const d = await env.store.acquireSlot(key, 2, 60_000, T0);
        assert.ok(d.lease);
        if (b.lease) await env.store.releaseSlot(b.lease);
        await env.store.releaseSlot(d.lease);
      });

      test('a slot whose lease ran out (crashed instance) is freed', async () => {
        const key = env.store.key('cc', 'crash');
        const backend = (env.store as unknown as { backend: MemoryBackend }).backend;
        // Taken directly on the backend: nobody refreshes it, like an instance that died.
        const dead = await backend.concurrencyAcquire(key, 'dead-instance:1', 1, 10_000, T0);
        assert.equal(dead.acquired, true);
        const blocked = await env.store.acquireSlot(key, 1, 10_000, T0 + 9_999);
        assert.equal(blocked.lease, undefined);
        const freed = await env.store.acquireSlot(key, 1, 10_000, T0 + 10_001);
        assert.ok(freed.lease);
        await env.store.releaseSlot(freed.lease);
      });

      test('refreshing keeps a live slot past its first lease', async () => {
        const key = env.store.key('cc', 'refresh');
        env.clock.t = T0;
        const a = await env.store.acquireSlot(key, 1, 10_000, T0);
        assert.ok(a.lease);
        env.clock.t = T0 + 8000;
        await (env.store as unknown as { refreshLeases(): Promise<void> }).refreshLeases();
        const b = await env.store.acquireSlot(key, 1, 10_000, T0 + 15_000);
        assert.equal(b.lease, undefined, 'still held: refreshed at +8 s until +18 s');
        const c = await env.store.acquireSlot(key, 1, 10_000, T0 + 18_001);
        assert.ok(c.lease);
        await env.store.releaseSlot(a.lease);
        await env.store.releaseSlot(c.lease);
      });
    });
  });
}

describe('in-process store bounds', () => {
  test('never holds more than maxKeys entries; expired entries go first', async () => {
    const m = new MemoryBackend({ maxKeys: 100 });
    for (let i = 0; i < 1000; i++) await m.rateLimit([limit(`k${i}`, 1, 1000, 1)], T0);
    assert.ok(m.size <= 100, `size ${m.size}`);
    // Recently used keys survive eviction (least recently used go first).
    const results = await m.rateLimit([limit('k999', 1, 1000, 1)], T0);
    assert.equal(results[0]?.allowed, false, 'k999 is still tracked');
  });
});
