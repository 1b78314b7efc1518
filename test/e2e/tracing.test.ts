// OpenTelemetry tracing end to end: a gateway with `tracing:` on exports to an OTLP/HTTP receiver
// this test runs (node:http, JSON encoding); one message goes through SMTP to the private Postfix,
// and its spans arrive with their names, parent/child links and the decision record. With tracing
// off the receiver gets nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import { startGateway, testConfig, requireBackend, closedPort } from '../helpers/gateway.ts';
import { token, waitDelivered } from '../helpers/maildir.ts';
import { sendMessage } from '../helpers/smtp-client.ts';

interface OtlpValue {
  stringValue?: string;
  intValue?: number | string;
  doubleValue?: number;
  boolValue?: boolean;
  arrayValue?: { values?: OtlpValue[] };
}
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  attributes?: Array<{ key: string; value: OtlpValue }>;
  status?: { code?: number; message?: string };
}
interface Received {
  contentType: string | undefined;
  auth: string | undefined;
  service: string | undefined;
  spans: OtlpSpan[];
}

/** An OTLP/HTTP traces receiver on a free loopback port: keeps every POSTed JSON body. */
async function otlpReceiver(): Promise<{ url: string; posts: Received[]; close(): Promise<void> }> {
  const posts: Received[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'POST' && req.url === '/v1/traces') {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
          resourceSpans?: Array<{ resource?: { attributes?: Array<{ key: string; value: OtlpValue }> }; scopeSpans?: Array<{ spans?: OtlpSpan[] }> }>;
        };
        for (const rs of body.resourceSpans ?? []) {
          posts.push({
            contentType: req.headers['content-type'],
            auth: req.headers.authorization,
            service: rs.resource?.attributes?.find((a) => a.key === 'service.name')?.value.stringValue,
            spans: (rs.scopeSpans ?? []).flatMap((s) => s.spans ?? []),
          });
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${port}/v1/traces`, posts, close: () => new Promise((r) => server.close(() => r())) };
}

function attr(s: OtlpSpan | undefined, key: string): unknown {
  const v = s?.attributes?.find((a) => a.key === key)?.value;
  if (!v) return undefined;
  if (v.arrayValue) return (v.arrayValue.values ?? []).map((x) => x.stringValue);
  if (v.intValue !== undefined) return Number(v.intValue);
  return v.stringValue ?? v.doubleValue ?? v.boolValue;
}

const STAGES = new Set(['connect', 'helo', 'mail', 'rcpt', 'data']);

test('tracing on: one message through Postfix arrives as a span tree with the decision record', async () => {
  await requireBackend();
  const rx = await otlpReceiver();
  const gw = await startGateway(
    testConfig({ tracing: { enabled: true, endpoint: rx.url, service_name: 'mailgate-e2e', headers: { authorization: 'Bearer collector-token' } } }),
  );
  const tok = token('trace');
  let sent: Awaited<ReturnType<typeof sendMessage>>;
  try {
    sent = await sendMessage(gw.port, {
      from: 'sender@client.example.net',
      to: ['alice@example.test', 'bob@example.test'],
      data: `Subject: ${tok}\r\nFrom: sender@client.example.net\r\n\r\nbody ${tok}\r\n`,
    });
    assert.equal(sent.end?.code, 250, sent.end?.text);
    assert.equal((await waitDelivered(tok, 2)).length, 2);
  } finally {
    // stop() flushes the batch: every span of the message is exported before it returns
    await gw.stop(1000);
    await rx.close();
  }
  assert.ok(rx.posts.length > 0, 'the receiver got an export');
  for (const p of rx.posts) {
    assert.match(p.contentType ?? '', /^application\/json/);
    assert.equal(p.auth, 'Bearer collector-token');
    assert.equal(p.service, 'mailgate-e2e');
  }
  const spans = rx.posts.flatMap((p) => p.spans);
  const byId = new Map(spans.map((s) => [s.spanId, s]));
  const parentOf = (s: OtlpSpan) => (s.parentSpanId ? byId.get(s.parentSpanId) : undefined);

  // The root: one message span, with the decision record.
  const roots = spans.filter((s) => s.name === 'message');
  assert.equal(roots.length, 1);
  const msg = roots[0] as OtlpSpan;
  assert.ok(!msg.parentSpanId, 'the message span is a root');
  const qid = attr(msg, 'mailgate.qid');
  assert.equal(typeof qid, 'string');
  assert.match(sent.end?.text ?? '', /queued/);
  assert.equal(attr(msg, 'client.address'), '127.0.0.1');
  assert.equal(attr(msg, 'mailgate.helo'), 'client.example.net');
  assert.equal(attr(msg, 'mailgate.from'), 'sender@client.example.net');
  assert.equal(attr(msg, 'mailgate.rcpt_count'), 2);
  assert.ok((attr(msg, 'mailgate.size') as number) > 0);
  assert.equal(attr(msg, 'mailgate.action'), 'accept');
  assert.equal(typeof attr(msg, 'mailgate.score'), 'number');
  assert.ok(Array.isArray(attr(msg, 'mailgate.rules')));
  assert.equal(attr(msg, 'mailgate.reply_code'), 250);

  // Stages under the message; connect and helo are roots of their own (they come before MAIL).
  const inMessage = spans.filter((s) => s.traceId === msg.traceId);
  const children = (p: OtlpSpan) => inMessage.filter((s) => s.parentSpanId === p.spanId).map((s) => s.name);
  assert.deepEqual(children(msg).sort(), ['backend', 'data', 'finalize', 'mail', 'rcpt', 'rcpt']);
  for (const name of ['connect', 'helo']) {
    const s = spans.find((x) => x.name === name);
    assert.ok(s && !s.parentSpanId, `${name} is a root span`);
  }
  // Every stage span has a rules child; every other span below a stage is a check run.
  for (const stage of spans.filter((s) => STAGES.has(s.name))) {
    const kids = spans.filter((s) => s.parentSpanId === stage.spanId);
    assert.equal(kids.filter((k) => k.name === 'rules').length, 1, `${stage.name} has one rules span`);
  }
  const checkRuns = spans.filter((s) => s.name !== 'rules' && s.name !== 'dns' && parentOf(s) && STAGES.has(parentOf(s)?.name ?? ''));
  const checkNames = new Set(checkRuns.map((s) => s.name));
  for (const c of ['spf', 'dkim-arc-dmarc']) assert.ok(checkNames.has(c), `a ${c} check span (got ${[...checkNames].join(', ')})`);
  // DNS lookups are spans under the check that made them (the loopback DNS answers NXDOMAIN).
  const spf = checkRuns.find((s) => s.name === 'spf') as OtlpSpan;
  const lookups = spans.filter((s) => s.name === 'dns' && s.parentSpanId === spf.spanId);
  assert.ok(lookups.length > 0, 'the SPF check has dns spans');
  assert.ok(
    lookups.some((l) => attr(l, 'dns.question.name') === 'client.example.net' && attr(l, 'dns.question.type') === 'TXT'),
    JSON.stringify(lookups.map((l) => l.attributes)),
  );
  assert.ok(lookups.every((l) => typeof attr(l, 'dns.error') === 'string'));
  const backend = inMessage.find((s) => s.name === 'backend');
  assert.equal(attr(backend, 'mailgate.reply_code'), 250);
  assert.equal(
    attr(
      inMessage.find((s) => s.name === 'data'),
      'mailgate.stage',
    ),
    'data',
  );
});

test('tracing off: the receiver gets nothing', async () => {
  await requireBackend();
  const rx = await otlpReceiver();
  const gw = await startGateway(testConfig({ tracing: { enabled: false, endpoint: rx.url } }));
  const tok = token('notrace');
  try {
    const sent = await sendMessage(gw.port, {
      from: 'sender@client.example.net',
      to: ['alice@example.test'],
      data: `Subject: ${tok}\r\nFrom: sender@client.example.net\r\n\r\nbody ${tok}\r\n`,
    });
    assert.equal(sent.end?.code, 250, sent.end?.text);
    assert.equal((await waitDelivered(tok)).length, 1, `not delivered: ${sent.end?.text}`);
  } finally {
    await gw.stop(1000);
    await new Promise((r) => setTimeout(r, 300));
    await rx.close();
  }
  assert.equal(rx.posts.length, 0);
  assert.equal(gw.runtime.tracer?.enabled, false);
});

test('collector down: mail flows, stop() returns, and the failed export is a warning', async () => {
  await requireBackend();
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  const port = await closedPort();
  const gw = await startGateway(testConfig({ tracing: { enabled: true, endpoint: `http://127.0.0.1:${port}/v1/traces` } }), {
    logger: pino({ level: 'warn' }, stream),
  });
  const tok = token('down');
  try {
    const sent = await sendMessage(gw.port, {
      from: 'sender@client.example.net',
      to: ['alice@example.test'],
      data: `Subject: ${tok}\r\nFrom: sender@client.example.net\r\n\r\nbody ${tok}\r\n`,
    });
    assert.equal(sent.end?.code, 250, sent.end?.text);
    assert.equal((await waitDelivered(tok)).length, 1);
  } finally {
    const t0 = Date.now();
    await gw.stop(1000);
    assert.ok(Date.now() - t0 < 15_000, 'stop() is not held up by the dead collector');
  }
  assert.ok(
    lines.some((l) => l.includes('tracing export failed')),
    `a warning was logged (got ${lines.length} lines)`,
  );
});
