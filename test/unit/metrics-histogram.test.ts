// src/metrics/histogram.ts against prom-client's own Histogram: the same observations give the
// same /metrics text, the same getMetricsAsJSON(), the same cluster aggregation and the same
// reset — so swapping it in changed what Prometheus sees in no way.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AggregatorRegistry, Histogram as PromHistogram, Registry } from 'prom-client';
import { Histogram } from '../../src/metrics/histogram.ts';

const buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

function pair() {
  const ours = new Registry();
  const theirs = new Registry();
  const cfg = { name: 'h_seconds', help: 'help "text"\\ here', labelNames: ['check', 'kind'] as const, buckets };
  return {
    ours,
    theirs,
    a: new Histogram({ ...cfg, registers: [ours] }),
    b: new PromHistogram({ ...cfg, registers: [theirs] }),
  };
}

const labelSet = fc.record({ check: fc.constantFrom('spf', 'dkim', 'we"ird\\\nname', ''), kind: fc.constantFrom('a', 'b') }, { requiredKeys: [] });
const value = fc.oneof(fc.double({ min: 0, max: 40, noNaN: true }), fc.constantFrom(...buckets));
const op = fc.oneof(
  fc.record({ t: fc.constant('observe' as const), labels: labelSet, v: value }),
  fc.record({ t: fc.constant('child' as const), labels: labelSet, v: value }),
  fc.record({ t: fc.constant('bare' as const), v: value }),
  fc.record({ t: fc.constant('reset' as const) }),
);

test('the same observations give the same exposition text and JSON as prom-client', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(op, { maxLength: 60 }), async (ops) => {
      const { ours, theirs, a, b } = pair();
      for (const o of ops) {
        if (o.t === 'observe') {
          a.observe(o.labels, o.v);
          b.observe(o.labels, o.v);
        } else if (o.t === 'child') {
          a.labels(o.labels).observe(o.v);
          b.labels(o.labels).observe(o.v);
        } else if (o.t === 'bare') {
          a.observe(o.v);
          b.observe(o.v);
        } else {
          a.reset();
          b.reset();
        }
      }
      assert.equal(await ours.metrics(), await theirs.metrics());
      assert.deepEqual(await ours.getMetricsAsJSON(), await theirs.getMetricsAsJSON());
    }),
    { numRuns: 300 },
  );
});

test("workers > 1: the primary sums our histogram across workers as it sums prom-client's", async () => {
  const one = pair();
  const two = pair();
  for (const [h, v] of [
    [one.a, 0.003],
    [one.b, 0.003],
    [two.a, 0.7],
    [two.b, 0.7],
  ] as const) {
    h.observe({ check: 'spf' }, v);
    h.labels({ check: 'dkim' }).observe(v * 2);
  }
  const ours = AggregatorRegistry.aggregate([await one.ours.getMetricsAsJSON(), await two.ours.getMetricsAsJSON()]);
  const theirs = AggregatorRegistry.aggregate([await one.theirs.getMetricsAsJSON(), await two.theirs.getMetricsAsJSON()]);
  assert.equal(await ours.metrics(), await theirs.metrics());
  assert.match(await ours.metrics(), /h_seconds_count\{check="spf"\} 2/);
});

test('a child kept across a reset counts again and is listed again; bad input is refused as prom-client refuses it', async () => {
  const { ours, a } = pair();
  const child = a.labels({ check: 'spf' });
  child.observe(0.002);
  a.reset();
  assert.doesNotMatch(await ours.metrics(), /check="spf"/);
  child.observe(0.02);
  const text = await ours.metrics();
  assert.match(text, /h_seconds_bucket\{le="0.01",check="spf"\} 0/);
  assert.match(text, /h_seconds_bucket\{le="0.025",check="spf"\} 1/);
  assert.match(text, /h_seconds_count\{check="spf"\} 1/);
  assert.throws(() => a.observe({ nope: 'x' } as never, 1), /Added label "nope" is not included/);
  assert.throws(() => child.observe(Number.NaN), /not a valid number/);
  assert.throws(() => new Histogram({ name: 'x', help: 'x', buckets: [1, 0.5], registers: [] }), /ascending/);
});
