// The OpenTelemetry-backed tracer (tracing.enabled): sample_ratio 0 gives the no-op span for the
// whole trace, spans end once, a child of an ended span is the no-op span, and shutdown exports
// what is buffered as OTLP JSON to the endpoint.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tracingSchema } from '../../src/config/tracing-schema.ts';
import { createTracer } from '../../src/trace/create-tracer.ts';
import { NOOP_SPAN } from '../../src/trace/span.ts';

async function receiver(): Promise<{ url: string; names: string[]; close(): Promise<void> }> {
  const names: string[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { resourceSpans?: Array<{ scopeSpans?: Array<{ spans?: Array<{ name: string }> }> }> };
      for (const rs of body.resourceSpans ?? []) for (const ss of rs.scopeSpans ?? []) for (const s of ss.spans ?? []) names.push(s.name);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`, names, close: () => new Promise((r) => server.close(() => r())) };
}

test('sample_ratio 0: every trace is the no-op span', async () => {
  const t = await createTracer(tracingSchema.parse({ enabled: true, sample_ratio: 0, endpoint: 'http://127.0.0.1:9/v1/traces' }));
  assert.equal(t.enabled, true);
  for (let i = 0; i < 50; i++) assert.equal(t.startSpan('message'), NOOP_SPAN);
  await t.shutdown();
});

test('recorded spans end once, children of ended spans are no-ops, shutdown exports them', async () => {
  const rx = await receiver();
  const t = await createTracer(tracingSchema.parse({ enabled: true, endpoint: rx.url }));
  try {
    const root = t.startSpan('message');
    assert.equal(root.recording, true);
    const c = root.child('data').set('mailgate.stage', 'data').set('skipped', undefined);
    c.fail('x').end();
    c.end();
    root.end();
    root.end();
    assert.equal(root.child('late'), NOOP_SPAN);
    await t.shutdown();
  } finally {
    await rx.close();
  }
  assert.deepEqual(rx.names.sort(), ['data', 'message']);
});
