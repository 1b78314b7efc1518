// Tracing off costs nothing: the no-op span is one shared object (its children are itself), the
// core never builds span attributes, and the OpenTelemetry SDK is never loaded.
import { registerHooks } from 'node:module';
import { test } from 'node:test';
import assert from 'node:assert/strict';

// Recorded before anything of mailgate is imported: every @opentelemetry/* module resolved from
// here on. (prom-client itself requires @opentelemetry/api, the bare API: not ours, and no SDK.)
const resolved: string[] = [];
registerHooks({
  resolve(specifier, context, next) {
    if (specifier.startsWith('@opentelemetry/')) resolved.push(specifier);
    return next(specifier, context);
  },
});

const { NOOP_SPAN } = await import('../../src/trace/span.ts');
const { NOOP_TRACER } = await import('../../src/trace/tracer.ts');
const { createTracer } = await import('../../src/trace/create-tracer.ts');
const { tracingSchema } = await import('../../src/config/tracing-schema.ts');
const { traceRuntime, oneMessage } = await import('../helpers/trace-core.ts');
const { formatValue } = await import('../../src/cli/config-dump.ts');
const { activeSpan, runWithSpan } = await import('../../src/trace/active-span.ts');

const SDK = ['@opentelemetry/sdk-trace', '@opentelemetry/exporter-trace-otlp-http', '@opentelemetry/resources', '@opentelemetry/semantic-conventions'];

test('the tracing: defaults are off, with the OTLP/HTTP endpoint of a local collector', () => {
  assert.deepEqual(tracingSchema.parse({}), {
    enabled: false,
    endpoint: 'http://127.0.0.1:4318/v1/traces',
    service_name: 'mailgate',
    sample_ratio: 1,
    headers: {},
  });
  const cases = [
    { desc: 'ratio above 1', input: { sample_ratio: 1.5 } },
    { desc: 'not a URL', input: { endpoint: '127.0.0.1:4318' } },
    { desc: 'unknown key', input: { enable: true } },
    { desc: 'empty service name', input: { service_name: '' } },
  ];
  for (const c of cases) assert.equal(tracingSchema.safeParse(c.input).success, false, c.desc);
  // A collector's auth header is a secret: `config dump` never prints it.
  assert.equal(formatValue('tracing.headers.authorization', 'Bearer abc'), '***');
  assert.equal(formatValue('tracing.endpoint', 'http://127.0.0.1:4318/v1/traces'), 'http://127.0.0.1:4318/v1/traces');
});

test('off, the active span is the no-op span and runWithSpan just calls', () => {
  assert.equal(activeSpan(), NOOP_SPAN);
  assert.equal(
    runWithSpan(NOOP_SPAN, () => activeSpan()),
    NOOP_SPAN,
  );
  assert.equal(
    runWithSpan(NOOP_SPAN, () => 42),
    42,
  );
});

test('the no-op span is one frozen object: children, attributes and failures are itself', () => {
  assert.equal(NOOP_SPAN.recording, false);
  assert.equal(NOOP_SPAN.child('a'), NOOP_SPAN);
  assert.equal(NOOP_SPAN.child('a').child('b'), NOOP_SPAN);
  assert.equal(NOOP_SPAN.set('k', 1), NOOP_SPAN);
  assert.equal(NOOP_SPAN.fail('x'), NOOP_SPAN);
  assert.ok(Object.isFrozen(NOOP_SPAN));
  assert.equal(NOOP_TRACER.startSpan('message'), NOOP_SPAN);
  assert.equal(NOOP_TRACER.enabled, false);
});

test('disabled (or absent) config gives the no-op tracer without importing the SDK', async () => {
  assert.equal(await createTracer(undefined), NOOP_TRACER);
  assert.equal(await createTracer(tracingSchema.parse({})), NOOP_TRACER);
  assert.deepEqual(
    resolved.filter((s) => SDK.some((p) => s.startsWith(p))),
    [],
  );
});

test('a whole transaction with tracing off: every span is NOOP_SPAN and no attribute is built', async () => {
  // Spy on the no-op span's class (the instance is frozen, its prototype is not): count what the
  // core asks of it. Attributes must never be set: the `recording` guards skip that work.
  const proto = Object.getPrototypeOf(NOOP_SPAN) as Record<string, (...a: unknown[]) => unknown>;
  const calls: Record<string, number> = { child: 0, set: 0, fail: 0, end: 0 };
  const others: unknown[] = [];
  const saved = { ...Object.fromEntries(Object.keys(calls).map((k) => [k, proto[k]])) } as Record<string, (...a: unknown[]) => unknown>;
  for (const k of Object.keys(calls)) {
    proto[k] = function (this: unknown, ...a: unknown[]) {
      calls[k] = (calls[k] ?? 0) + 1;
      const r = saved[k]?.apply(this, a);
      if (r !== undefined && r !== NOOP_SPAN) others.push(r);
      return r;
    };
  }
  let starts = 0;
  const countingOff = { enabled: false, startSpan: (n: string) => (starts++, NOOP_TRACER.startSpan(n)), shutdown: NOOP_TRACER.shutdown };
  try {
    for (const tracer of [undefined, NOOP_TRACER, countingOff]) {
      const d = await oneMessage(traceRuntime(tracer), 'spammy offer');
      assert.equal(d.reply.code, 250);
      assert.equal(d.action, 'accept');
      assert.equal(d.verdict?.score, 7);
    }
  } finally {
    Object.assign(proto, saved);
  }
  assert.deepEqual(others, [], 'no span other than NOOP_SPAN was made');
  assert.equal(calls.set, 0, 'no attribute was set');
  assert.equal(calls.fail, 0);
  assert.ok((calls.child ?? 0) > 0 && (calls.end ?? 0) > 0, 'the hooks ran (on the shared span)');
  // connect + helo roots and one message root per transaction, all the shared span
  assert.equal(starts, 3);
  assert.deepEqual(
    resolved.filter((s) => SDK.some((p) => s.startsWith(p))),
    [],
  );
});
