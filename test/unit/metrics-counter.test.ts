// src/metrics/counter.ts against prom-client's own Counter: the same increments give the same
// /metrics text, the same getMetricsAsJSON(), the same cluster aggregation and the same reset —
// so swapping it in changed what Prometheus sees in no way.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AggregatorRegistry, Counter as PromCounter, Registry } from 'prom-client';
import { Counter } from '../../src/metrics/counter.ts';

function pair(labelNames: readonly ('action' | 'front')[]) {
  const ours = new Registry();
  const theirs = new Registry();
  const cfg = { name: 'c_total', help: 'help "text"\\ here', labelNames };
  return { ours, theirs, a: new Counter({ ...cfg, registers: [ours] }), b: new PromCounter({ ...cfg, registers: [theirs] }) };
}

const labelSet = fc.record(
  { action: fc.constantFrom('accept', 'reject', 'we"ird\\\nname', ''), front: fc.constantFrom('smtp', 'milter', 7) },
  { requiredKeys: [] },
);
const amount = fc.oneof(fc.constant(undefined), fc.nat(1000), fc.double({ min: 0, max: 1e6, noNaN: true }));
const op = fc.oneof(
  fc.record({ t: fc.constant('inc' as const), labels: labelSet, v: amount }),
  fc.record({ t: fc.constant('bare' as const), v: amount }),
  fc.record({ t: fc.constant('reset' as const) }),
);

for (const labelNames of [['action', 'front'], []] as const) {
  test(`the same increments give the same exposition text and JSON as prom-client (${labelNames.length} label names)`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 60 }), async (ops) => {
        const { ours, theirs, a, b } = pair(labelNames);
        for (const o of ops) {
          if (o.t === 'reset') {
            a.reset();
            b.reset();
          } else if (o.t === 'bare' || labelNames.length === 0) {
            a.inc(o.v);
            b.inc(o.v);
          } else {
            a.inc(o.labels, o.v);
            b.inc(o.labels, o.v);
          }
        }
        assert.equal(await ours.metrics(), await theirs.metrics());
        assert.deepEqual(await ours.getMetricsAsJSON(), await theirs.getMetricsAsJSON());
      }),
      { numRuns: 300 },
    );
  });
}

test("workers > 1: the primary sums our counter across workers as it sums prom-client's", async () => {
  const one = pair(['action', 'front']);
  const two = pair(['action', 'front']);
  for (const [c, n] of [
    [one.a, 2],
    [one.b, 2],
    [two.a, 5],
    [two.b, 5],
  ] as const) {
    c.inc({ action: 'accept', front: 'smtp' }, n);
    c.inc({ action: 'reject' });
  }
  const ours = AggregatorRegistry.aggregate([await one.ours.getMetricsAsJSON(), await two.ours.getMetricsAsJSON()]);
  const theirs = AggregatorRegistry.aggregate([await one.theirs.getMetricsAsJSON(), await two.theirs.getMetricsAsJSON()]);
  assert.equal(await ours.metrics(), await theirs.metrics());
  assert.match(await ours.metrics(), /c_total\{action="accept",front="smtp"\} 7/);
});

test('bad increments are refused as prom-client refuses them', () => {
  const { a, b } = pair(['action', 'front']);
  for (const c of [a, b]) {
    assert.throws(() => c.inc({ action: 'x' }, -1), /not possible to decrease/);
    assert.throws(() => c.inc({ action: 'x' }, Number.POSITIVE_INFINITY), /not a valid number/);
    assert.throws(() => c.inc({ nope: 'x' } as never), /Added label "nope" is not included/);
  }
});
