// The spans the transaction core makes, seen through an in-memory tracer: one root per message
// with the decision record, stage spans under it, a span per check and per rules evaluation,
// finalize and backend; connect/helo are roots of their own; a failing check marks its span.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AttrValue, Span } from '../../src/trace/span.ts';
import type { Tracer } from '../../src/trace/tracer.ts';
import { oneMessage, traceRuntime } from '../helpers/trace-core.ts';

interface Recorded {
  name: string;
  parent: Recorded | undefined;
  attrs: Record<string, AttrValue>;
  error: string | undefined;
  ended: number;
}

function memoryTracer(): Tracer & { spans: Recorded[] } {
  const spans: Recorded[] = [];
  const make = (name: string, parent: Recorded | undefined): Span => {
    const r: Recorded = { name, parent, attrs: {}, error: undefined, ended: 0 };
    spans.push(r);
    const span: Span = {
      recording: true,
      child: (n) => make(n, r),
      set: (k, v) => {
        if (v !== undefined) r.attrs[k] = v;
        return span;
      },
      fail: (m) => {
        r.error = m;
        return span;
      },
      end: () => {
        r.ended++;
      },
    };
    return span;
  };
  return { enabled: true, spans, startSpan: (n) => make(n, undefined), shutdown: async () => {} };
}

const path = (r: Recorded): string => (r.parent ? `${path(r.parent)}/${r.name}` : r.name);

test('one accepted message: the span tree and the decision record', async () => {
  const t = memoryTracer();
  const d = await oneMessage(traceRuntime(t), 'spammy offer');
  assert.equal(d.reply.code, 250);
  assert.deepEqual(t.spans.map(path), [
    'connect',
    'connect/rules',
    'helo',
    'helo/rules',
    'message',
    'message/mail',
    'message/mail/mail-noop',
    'message/mail/rules',
    'message/rcpt',
    'message/rcpt/rules',
    'message/rcpt',
    'message/rcpt/rules',
    'message/data',
    'message/data/word',
    'message/data/rules',
    'message/finalize',
    'message/backend',
  ]);
  for (const s of t.spans) assert.equal(s.ended, 1, `${path(s)} ended once`);
  const msg = t.spans.find((s) => s.name === 'message');
  assert.deepEqual(msg?.attrs, {
    'mailgate.cid': 'c1',
    'client.address': '192.0.2.10',
    'client.port': 40000,
    'mailgate.front': 'smtp',
    'mailgate.qid': d.qid as string,
    'mailgate.helo': 'client.example.org',
    'mailgate.from': 'a@example.org',
    'mailgate.rcpt_count': 2,
    'mailgate.size': msg?.attrs['mailgate.size'] as number,
    'mailgate.action': 'accept',
    'mailgate.score': 7,
    'mailgate.rules': ['SPAMMY'],
    'mailgate.reply_code': 250,
    'mailgate.reply': d.reply.toString(),
    'mailgate.reason': 'SPAMMY',
  });
  assert.ok((msg?.attrs['mailgate.size'] as number) > 0);
  assert.equal(t.spans.find((s) => s.name === 'backend')?.attrs['mailgate.reply_code'], 250);
  assert.deepEqual(t.spans.find((s) => path(s) === 'message/data/rules')?.attrs['mailgate.rules'], ['SPAMMY']);
  assert.equal(t.spans.filter((s) => s.name === 'rcpt')[1]?.attrs['mailgate.rcpt'], 'bob@example.test');
  assert.equal(t.spans.find((s) => s.name === 'connect')?.attrs['client.address'], '192.0.2.10');
});

test('a failing check: its span and the data stage span carry the failure; the message is a tempfail', async () => {
  const t = memoryTracer();
  const d = await oneMessage(traceRuntime(t), 'boom');
  assert.equal(d.reply.code, 451);
  const check = t.spans.find((s) => s.name === 'word');
  assert.equal(check?.error, 'the word check blew up');
  assert.equal(check?.attrs['mailgate.check_outcome'], 'tempfail');
  const data = t.spans.find((s) => s.name === 'data');
  assert.match(data?.error ?? '', /check word failed/);
  assert.equal(data?.attrs['mailgate.reply_code'], 451);
  const msg = t.spans.find((s) => s.name === 'message');
  assert.equal(msg?.attrs['mailgate.action'], 'tempfail');
  assert.equal(msg?.attrs['mailgate.reply_code'], 451);
  assert.equal(
    t.spans.some((s) => s.name === 'backend' || s.name === 'finalize'),
    false,
  );
  for (const s of t.spans) assert.equal(s.ended, 1, `${path(s)} ended once`);
});
