// A minimal transaction-core rig for the tracing tests: a Runtime with a next hop that accepts
// everything, a small rules set, and one message driven through ConnectionCore.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pino from 'pino';
import { configSchema } from '../../src/config/schema.ts';
import { knownFacts } from '../../src/checks/catalogue.ts';
import type { Check } from '../../src/pipeline/check.ts';
import type { Backend, BackendReply } from '../../src/pipeline/delivery.ts';
import type { FactSpec } from '../../src/pipeline/facts.ts';
import type { Runtime } from '../../src/pipeline/runtime.ts';
import { ConnectionCore, type DataResult } from '../../src/pipeline/transaction.ts';
import { Spool } from '../../src/message/spool.ts';
import { loadRules } from '../../src/rules/loader.ts';
import type { Tracer } from '../../src/trace/tracer.ts';
import { makeRulesDir } from './rules-dir.ts';

const ok = (text: string): BackendReply => ({ code: 250, enhanced: '2.0.0', lines: [text] });

export const acceptAll: Backend = {
  description: 'accept-all',
  link: () => ({
    mail: async () => ok('sender ok'),
    rcpt: async () => ok('rcpt ok'),
    data: async (parts) => {
      for (const p of parts) if (!Buffer.isBuffer(p)) for await (const _ of p as Readable);
      return ok('queued as BACK1');
    },
    abort: async () => {},
    release: () => {},
  }),
  probe: async () => ({ ok: true, detail: 'accept-all' }),
  close: () => undefined,
};

const facts: FactSpec[] = [{ name: 'test.word', stage: 'data', type: 'string', description: 'first word of the Subject' }];

/** data: the Subject's first word; "boom" throws (a check failure, tempfail). */
export const wordCheck: Check = {
  name: 'word',
  stages: ['data'],
  facts,
  effects: 'none',
  onFailure: 'tempfail',
  run: (i, out) => {
    const subject = i.message?.headers.find((h) => h.name.toLowerCase() === 'subject')?.value ?? '';
    const word = subject.trim().split(' ')[0] ?? '';
    if (word === 'boom') throw new Error('the word check blew up');
    out.facts.set('test.word', word);
  },
};

/** mail: does nothing (a check span at a stage inside the message). */
export const mailCheck: Check = { name: 'mail-noop', stages: ['mail'], facts: [], effects: 'none', run: () => {} };

export function traceRuntime(tracer: Tracer | undefined): Runtime {
  const policy = loadRules(
    makeRulesDir({
      '00-actions.yaml': 'actions: { reject: 100, quarantine: 50, tag: { score: 5, tag_subject: "[SPAM]" } }\nsettings: { status_header: false }\n',
      '10-rules.yaml': 'rules:\n  - { name: SPAMMY, description: d, when: { test.word: spammy }, score: 7 }\n',
    }),
    knownFacts(facts),
  ).policy;
  const rt: Runtime = {
    config: configSchema.parse({
      hostname: 'mx.test',
      domains: ['example.test'],
      backend: { maildir: join(tmpdir(), 'mailgate-unused') },
      admin: false,
      capture: false,
    }),
    logger: pino({ level: 'silent' }),
    domains: new Set(['example.test']),
    checks: [mailCheck, wordCheck],
    policy,
    backend: acceptAll,
    quarantine: undefined,
    spoolDir: mkdtempSync(join(tmpdir(), 'mailgate-trace-spool-')),
    stripHeaders: [],
    draining: false,
  };
  if (tracer) rt.tracer = tracer;
  return rt;
}

/** One connection, one message with this Subject to two recipients; returns the DATA result. */
export async function oneMessage(rt: Runtime, subject: string): Promise<DataResult> {
  const c = new ConnectionCore(rt, { id: 'c1', ip: '192.0.2.10', port: 40000, localPort: 25, proxied: false });
  await c.connect();
  await c.heloStage('client.example.org', true);
  await c.mail('a@example.org', {});
  await c.rcpt('alice@example.test');
  await c.rcpt('bob@example.test');
  const s = new Spool({ maxBytes: 1_000_000, maxHeaderBytes: 100_000, maxLineBytes: 10_000, memoryBytes: 1_000_000, tmpDir: rt.spoolDir }, true);
  await pipeline(Readable.from([Buffer.from(`Subject: ${subject}\r\nFrom: a@example.org\r\n\r\nbody\r\n`)]), s);
  const d = await c.data(s);
  s.release();
  await c.disconnect();
  return d;
}
