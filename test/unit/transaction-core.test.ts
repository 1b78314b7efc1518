// The transaction core (ConnectionCore) driven directly, as every front drives it: envelope edits
// reach the backend, per-recipient refusals, backend replies and failures at RCPT, RSET, the
// disconnect step, quarantine that cannot store (never 250), and the Received + subject tag the backend gets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pino from 'pino';
import { configSchema, type Config } from '../../src/config/schema.ts';
import type { Check, ConnectionContext } from '../../src/pipeline/check.ts';
import type { FactSpec } from '../../src/pipeline/facts.ts';
import { BackendError, type Backend, type BackendReply, type ClientIdentity, type QuarantineRecord, type QuarantineSink } from '../../src/pipeline/delivery.ts';
import { SmtpError, replies } from '../../src/pipeline/reply.ts';
import type { Runtime } from '../../src/pipeline/runtime.ts';
import { ConnectionCore } from '../../src/pipeline/transaction.ts';
import { Spool } from '../../src/message/spool.ts';
import { loadRules } from '../../src/rules/loader.ts';
import { knownFacts } from '../../src/checks/catalogue.ts';
import { makeRulesDir } from '../helpers/rules-dir.ts';

const ok = (text = 'Ok', enhanced = '2.0.0'): BackendReply => ({ code: 250, enhanced, lines: [text] });

type Scripted = BackendReply | Error;

/** A next hop that records what it is asked and answers from a script. */
class RecordingBackend implements Backend {
  readonly description = 'recording';
  events: string[] = [];
  clients: ClientIdentity[] = [];
  delivered: Buffer[] = [];
  mailReply: (from: string) => Scripted = () => ok('Ok', '2.1.0');
  rcptReply: (to: string) => Scripted = () => ok('Ok', '2.1.5');
  dataReply: () => Scripted = () => ok('Ok: queued as BACK1');

  link(client: ClientIdentity) {
    this.clients.push(client);
    const answer = async (r: Scripted) => {
      if (r instanceof Error) throw r;
      return r;
    };
    return {
      mail: async (from: string, params: Record<string, string | true>) => {
        this.events.push(`mail:${from}${Object.keys(params).length ? ' ' + JSON.stringify(params) : ''}`);
        return answer(this.mailReply(from));
      },
      rcpt: async (to: string) => {
        this.events.push(`rcpt:${to}`);
        return answer(this.rcptReply(to));
      },
      data: async (parts: ReadonlyArray<Buffer | Readable>) => {
        this.events.push('data');
        const bufs: Buffer[] = [];
        for (const p of parts) {
          if (Buffer.isBuffer(p)) bufs.push(p);
          else for await (const c of p) bufs.push(c as Buffer);
        }
        this.delivered.push(Buffer.concat(bufs));
        return answer(this.dataReply());
      },
      abort: async () => {
        this.events.push('abort');
      },
      release: () => {
        this.events.push('release');
      },
    };
  }
  probe = async () => ({ ok: true, detail: 'recording' });
  close = () => undefined;
}

class RecordingQuarantine implements QuarantineSink {
  stored: Array<{ meta: QuarantineRecord; bytes: Buffer }> = [];
  fail: Error | undefined;
  async put(meta: QuarantineRecord, message: ReadonlyArray<Buffer | Readable>): Promise<void> {
    const bufs: Buffer[] = [];
    for (const p of message) {
      if (Buffer.isBuffer(p)) bufs.push(p);
      else for await (const c of p) bufs.push(c as Buffer);
    }
    if (this.fail) throw this.fail;
    this.stored.push({ meta, bytes: Buffer.concat(bufs) });
  }
}

const spoolDir = mkdtempSync(join(tmpdir(), 'mailgate-core-spool-'));
test.after(() => rmSync(spoolDir, { recursive: true, force: true }));

const testFacts: FactSpec[] = [{ name: 'test.verdict', stage: 'data', type: 'string', description: 'what the test check says' }];

const RULES = {
  '00-actions.yaml': 'actions: { reject: 100, quarantine: 50, tag: { score: 5, tag_subject: "[TAG]" } }\nsettings: { status_header: false }\n',
  '10-rules.yaml': [
    'rules:',
    '  - { name: BAD_RCPT, description: d, when: { rcpt.address: bad@example.test }, action: reject }',
    '  - { name: HOLD, description: d, when: { test.verdict: hold }, action: quarantine }',
    '  - { name: TAG_ME, description: d, when: { test.verdict: tag }, score: 6 }',
    '',
  ].join('\n'),
};

function config(): Config {
  return configSchema.parse({
    hostname: 'mx.test',
    domains: ['example.test'],
    backend: { maildir: join(tmpdir(), 'mailgate-unused') },
    admin: false,
    capture: false,
  });
}

/** A check at data that sets test.verdict from the Subject ("hold", "tag", anything else). */
const verdictCheck: Check = {
  name: 'verdict',
  stages: ['data'],
  facts: testFacts,
  effects: 'none',
  run: (i, out) => {
    const subject = i.message?.headers.find((h) => h.name.toLowerCase() === 'subject')?.value ?? '';
    out.facts.set('test.verdict', subject.split(' ')[0] ?? '');
  },
};

function runtime(checks: Check[], backend: Backend, quarantine?: QuarantineSink): Runtime {
  const policy = loadRules(makeRulesDir(RULES), knownFacts(testFacts)).policy;
  return {
    config: config(),
    logger: pino({ level: 'silent' }),
    domains: new Set(['example.test']),
    checks: [verdictCheck, ...checks],
    policy,
    backend,
    quarantine,
    spoolDir,
    stripHeaders: [],
    draining: false,
  };
}

function core(rt: Runtime): ConnectionCore {
  return new ConnectionCore(rt, { id: 'c1', ip: '192.0.2.10', port: 40000, localPort: 25, proxied: false });
}

async function spoolOf(text: string, rt: Runtime): Promise<Spool> {
  const s = new Spool({ maxBytes: 1_000_000, maxHeaderBytes: 100_000, maxLineBytes: 10_000, memoryBytes: 1_000_000, tmpDir: rt.spoolDir }, true);
  await pipeline(Readable.from([Buffer.from(text, 'latin1')]), s);
  return s;
}

async function greet(c: ConnectionCore): Promise<void> {
  assert.equal(await c.connect(), undefined);
  assert.equal(await c.heloStage('client.example.org', true), undefined);
}

const MSG = 'Subject: hello there\r\nFrom: a@example.org\r\n\r\nbody line\r\n.dot line\r\n';

// --- envelope edits ---------------------------------------------------------------------------

test('a RCPT rewrite edit is what the backend sees and what is delivered to', async () => {
  const backend = new RecordingBackend();
  const rewrite: Check = {
    name: 'rewrite',
    stages: ['rcpt'],
    facts: [],
    run: (i, out) => {
      if (i.recipient?.startsWith('prvs=')) out.edits.rcptRewrites.set(i.recipient, i.recipient.replace(/^prvs=[^=]+=/, ''));
    },
  };
  const rt = runtime([rewrite], backend);
  const c = core(rt);
  await greet(c);
  assert.equal((await c.mail('a@example.org', {})).code, 250);
  assert.equal((await c.rcpt('prvs=0123abcd=alice@example.test')).code, 250);
  assert.equal((await c.rcpt('bob@example.test')).code, 250);
  const spool = await spoolOf(MSG, rt);
  const d = await c.data(spool);
  spool.release();
  assert.equal(d.reply.code, 250);
  assert.deepEqual(
    backend.events.filter((e) => e.startsWith('rcpt:')),
    ['rcpt:alice@example.test', 'rcpt:bob@example.test'],
  );
  assert.deepEqual(d.envelope, { from: 'a@example.org', rcpts: ['alice@example.test', 'bob@example.test'] });
  await c.disconnect();
});

test('a sender rewrite edit is the MAIL FROM the backend sees', async () => {
  const backend = new RecordingBackend();
  const sign: Check = {
    name: 'sign',
    stages: ['mail'],
    facts: [],
    run: (i, out) => {
      out.edits.senderRewrite = `prvs=1=${String(i.facts.get('mail.from'))}`;
    },
  };
  const rt = runtime([sign], backend);
  const c = core(rt);
  await greet(c);
  assert.equal((await c.mail('a@example.org', { SIZE: '100' })).code, 250);
  assert.equal(backend.events[0], 'mail:prvs=1=a@example.org {"SIZE":"100"}');
  assert.equal(backend.clients[0]?.ip, '192.0.2.10');
  assert.equal(backend.clients[0]?.helo, 'client.example.org');
  await c.rcpt('bob@example.test');
  const spool = await spoolOf(MSG, rt);
  const d = await c.data(spool);
  spool.release();
  assert.equal(d.envelope?.from, 'prvs=1=a@example.org');
  await c.disconnect();
});

// --- lifecycle --------------------------------------------------------------------------------

test('a check’s disconnect step runs once on disconnect(), with the connection’s notes', async () => {
  const backend = new RecordingBackend();
  const calls: ConnectionContext[] = [];
  const slot: Check = {
    name: 'slot',
    stages: ['connect'],
    facts: [],
    run: (i) => {
      i.connection.notes.set('slot', 'held');
    },
    disconnect: (conn) => {
      calls.push(conn);
    },
  };
  const failing: Check = {
    name: 'failing',
    stages: [],
    facts: [],
    run: () => undefined,
    disconnect: () => {
      throw new Error('oops');
    },
  };
  const rt = runtime([failing, slot], backend);
  const c = core(rt);
  await greet(c);
  await c.mail('a@example.org', {});
  await c.disconnect();
  await c.disconnect();
  assert.equal(calls.length, 1, 'once, even though disconnect() was called twice and another check’s step threw');
  assert.equal(calls[0]?.notes.get('slot'), 'held');
  assert.equal(calls[0]?.id, 'c1');
  assert.ok(backend.events.includes('release'), 'the backend link is released');
});

test('a check in flight sees its signal aborted when the client goes (the controller is made only when a check asks)', async () => {
  const backend = new RecordingBackend();
  const signals: AbortSignal[] = [];
  const watcher: Check = {
    name: 'watcher',
    stages: ['mail'],
    facts: [],
    timeoutMs: 5000,
    onFailure: 'tempfail',
    run: (i) =>
      new Promise<void>((resolve) => {
        signals.push(i.signal);
        i.signal.addEventListener('abort', () => resolve(), { once: true });
      }),
  };
  const c = core(runtime([watcher], backend));
  await greet(c);
  const mail = c.mail('a@example.org', {});
  await new Promise((r) => setImmediate(r));
  assert.equal(signals.length, 1);
  assert.equal(signals[0]?.aborted, false);
  await c.disconnect();
  assert.equal(signals[0]?.aborted, true, 'aborted at disconnect');
  assert.equal((signals[0]?.reason as Error | undefined)?.message, 'client closed the connection');
  await mail;
});

test('reset() aborts the backend transaction; the next RCPT needs a new MAIL', async () => {
  const backend = new RecordingBackend();
  const rt = runtime([], backend);
  const c = core(rt);
  await greet(c);
  await c.mail('a@example.org', {});
  await c.rcpt('bob@example.test');
  backend.events = [];
  await c.reset();
  assert.deepEqual(backend.events, ['abort']);
  const r = await c.rcpt('carol@example.test');
  assert.equal(r.code, 503);
  assert.deepEqual(backend.events, ['abort'], 'nothing sent to the backend after the reset');
  await c.disconnect();
});

// --- recipients -------------------------------------------------------------------------------

test('a rule’s reject at rcpt refuses only that recipient; the message goes to the others', async () => {
  const backend = new RecordingBackend();
  const rt = runtime([], backend);
  const c = core(rt);
  await greet(c);
  await c.mail('a@example.org', {});
  const good = await c.rcpt('good@example.test');
  const bad = await c.rcpt('bad@example.test');
  const other = await c.rcpt('other@example.test');
  assert.equal(good.code, 250);
  assert.equal(bad.code, 550);
  assert.equal(bad.enhanced, '5.7.1');
  assert.equal(other.code, 250);
  assert.deepEqual(
    backend.events.filter((e) => e.startsWith('rcpt:')),
    ['rcpt:good@example.test', 'rcpt:other@example.test'],
    'the refused recipient never reaches the backend',
  );
  const spool = await spoolOf(MSG, rt);
  const d = await c.data(spool);
  spool.release();
  assert.equal(d.action, 'accept');
  assert.deepEqual(d.envelope?.rcpts, ['good@example.test', 'other@example.test']);
  await c.disconnect();
});

const backendRcptCases = [
  {
    desc: 'a 4xx',
    input: { code: 450, enhanced: '4.2.0', lines: ['<x@example.test>: Recipient address rejected: mailbox busy'] },
    expected: { code: 450, enhanced: '4.2.0', text: '<x@example.test>: Recipient address rejected: mailbox busy' },
  },
  {
    desc: 'a 5xx multi-line',
    input: { code: 550, enhanced: '5.1.1', lines: ['first', 'second'] },
    expected: { code: 550, enhanced: '5.1.1', text: 'first\nsecond' },
  },
  { desc: 'a 4xx without an enhanced code', input: { code: 451, enhanced: '', lines: ['later'] }, expected: { code: 451, enhanced: '4.0.0', text: 'later' } },
];

for (const cse of backendRcptCases) {
  test(`backend ${cse.desc} at RCPT is the client’s reply, and the recipient is not accepted`, async () => {
    const backend = new RecordingBackend();
    backend.rcptReply = (to) => (to.startsWith('x@') ? cse.input : ok());
    const rt = runtime([], backend);
    const c = core(rt);
    await greet(c);
    await c.mail('a@example.org', {});
    const r = await c.rcpt('x@example.test');
    assert.deepEqual({ code: r.code, enhanced: r.enhanced, text: r.text }, cse.expected);
    assert.equal((await c.rcpt('y@example.test')).code, 250, 'the transaction goes on');
    const spool = await spoolOf(MSG, rt);
    const d = await c.data(spool);
    spool.release();
    assert.deepEqual(d.envelope?.rcpts, ['y@example.test']);
    await c.disconnect();
  });
}

const failureCases = [
  { desc: 'a timeout', input: new BackendError('timeout', 'backend did not answer within 30000 ms'), expected: { code: 451, enhanced: '4.4.2' } },
  { desc: 'a closed connection', input: new BackendError('closed', 'backend closed the connection'), expected: { code: 451, enhanced: '4.4.1' } },
];

for (const cse of failureCases) {
  test(`backend failure at RCPT (${cse.desc}) → 4xx, then the next RCPT and DATA get 4xx too (no TypeError)`, async () => {
    const backend = new RecordingBackend();
    backend.rcptReply = () => cse.input;
    const rt = runtime([], backend);
    const c = core(rt);
    await greet(c);
    await c.mail('a@example.org', {});
    const r = await c.rcpt('bob@example.test');
    assert.equal(r.code, cse.expected.code);
    assert.equal(r.enhanced, cse.expected.enhanced);
    assert.ok(backend.events.includes('release'), 'the broken link is dropped');
    const next = await c.rcpt('carol@example.test');
    assert.deepEqual([next.code, next.enhanced], [451, '4.4.1']);
    const spool = await spoolOf(MSG, rt);
    const d = await c.data(spool);
    spool.release();
    assert.equal(d.reply.code, 451, 'DATA after the failure is a temporary failure too');
    // A new transaction gets a new link.
    backend.rcptReply = () => ok();
    assert.equal((await c.mail('a@example.org', {})).code, 250);
    assert.equal((await c.rcpt('carol@example.test')).code, 250);
    assert.equal(backend.clients.length, 2);
    await c.disconnect();
  });
}

test('backend connect failure at MAIL → 451 4.4.1, no transaction', async () => {
  const backend = new RecordingBackend();
  backend.mailReply = () => new BackendError('connect', 'cannot connect');
  const rt = runtime([], backend);
  const c = core(rt);
  await greet(c);
  const r = await c.mail('a@example.org', {});
  assert.equal(r.code, 451);
  assert.equal(r.enhanced, '4.4.1');
  assert.equal((await c.rcpt('bob@example.test')).code, 503);
  await c.disconnect();
});

// --- data: quarantine, trace, subject tag -----------------------------------------------------

async function oneMessage(rt: Runtime, message: string, rcpts = ['bob@example.test']) {
  const c = core(rt);
  await greet(c);
  assert.equal((await c.mail('a@example.org', {})).code, 250);
  for (const r of rcpts) assert.equal((await c.rcpt(r)).code, 250);
  const spool = await spoolOf(message, rt);
  try {
    return await c.data(spool);
  } finally {
    spool.release();
    await c.disconnect();
  }
}

test('quarantine into a full store → 452 4.3.1, never 250, nothing delivered', async () => {
  const backend = new RecordingBackend();
  const q = new RecordingQuarantine();
  q.fail = new SmtpError(replies.quarantineFull());
  const d = await oneMessage(runtime([], backend, q), 'Subject: hold me\r\n\r\nbody\r\n');
  assert.equal(d.reply.code, 452);
  assert.equal(d.reply.enhanced, '4.3.1');
  assert.equal(d.action, 'tempfail');
  assert.ok(!backend.events.includes('data'), 'not delivered instead');
  assert.ok(backend.events.includes('abort'), 'the backend transaction is dropped');
});

test('quarantine into a failing store → 4xx, never 250', async () => {
  const backend = new RecordingBackend();
  const q = new RecordingQuarantine();
  q.fail = new Error('EIO');
  const d = await oneMessage(runtime([], backend, q), 'Subject: hold me\r\n\r\nbody\r\n');
  assert.equal(d.reply.code, 451);
  assert.equal(d.action, 'tempfail');
});

test('quarantine that stores → 250 with the queue id, the store gets the finalized message', async () => {
  const backend = new RecordingBackend();
  const q = new RecordingQuarantine();
  const d = await oneMessage(runtime([], backend, q), 'Subject: hold me\r\n\r\nbody\r\n');
  assert.equal(d.reply.code, 250);
  assert.equal(d.action, 'quarantine');
  assert.equal(q.stored.length, 1);
  const stored = q.stored[0];
  assert.ok(stored);
  assert.deepEqual(stored.meta.rcpts, ['bob@example.test']);
  assert.deepEqual(stored.meta.rules, ['HOLD']);
  assert.ok(d.reply.text.includes(stored.meta.id));
  const text = stored.bytes.toString();
  assert.match(text, /^Received: from client\.example\.org \(\[192\.0\.2\.10\]\) by mx\.test \(mailgate\)/);
  assert.ok(text.endsWith('Subject: hold me\r\n\r\nbody\r\n'));
  assert.ok(!backend.events.includes('data'));
});

test('what the backend gets: our Received on top, the Subject tagged, the rest byte for byte', async () => {
  const backend = new RecordingBackend();
  const msg = Buffer.from('Subject: tag\r\n =?UTF-8?Q?caf=C3=A9?=\r\nX-Raw: caf\u00e9\r\n\r\nbody\r\n.dot\r\n', 'utf8');
  const d = await oneMessage(runtime([], backend), msg.toString('latin1'), ['bob@example.test']);
  assert.equal(d.reply.code, 250);
  assert.equal(d.reply.text, 'Ok: queued as BACK1', 'the backend’s own reply');
  assert.equal(backend.delivered.length, 1);
  const got = backend.delivered[0] ?? Buffer.alloc(0);
  const at = got.indexOf('Subject:');
  const trace = got
    .subarray(0, at)
    .toString()
    .replace(/\r\n[ \t]+/g, ' ');
  assert.match(
    trace,
    /^Received: from client\.example\.org \(\[192\.0\.2\.10\]\) by mx\.test \(mailgate\) with ESMTP id [0-9A-Z]+ for <bob@example\.test>; .+\r\n$/,
  );
  assert.equal(trace.split('\r\n').length, 2, 'one trace field, nothing else above the Subject');
  const expected = Buffer.concat([Buffer.from('Subject: [TAG] tag'), msg.subarray('Subject: tag'.length)]);
  assert.deepEqual(got.subarray(at), expected, 'folding, encoded words, 8-bit bytes and the body as received');
  assert.equal(d.final?.subject?.startsWith('[TAG] tag'), true);
});

test('an untagged, unheld message reaches the backend with only the trace field added', async () => {
  const backend = new RecordingBackend();
  const d = await oneMessage(runtime([], backend), MSG);
  assert.equal(d.action, 'accept');
  const got = backend.delivered[0]?.toString() ?? '';
  assert.equal(got.slice(got.indexOf('Subject:')), MSG);
  assert.equal(d.final?.added.map((h) => h.name).join(','), 'Received');
});

test('a backend 5xx at end of data is the client’s reply (reject)', async () => {
  const backend = new RecordingBackend();
  backend.dataReply = () => ({ code: 554, enhanced: '5.7.1', lines: ['content refused'] });
  const d = await oneMessage(runtime([], backend), MSG);
  assert.equal(d.reply.code, 554);
  assert.equal(d.reply.text, 'content refused');
  assert.equal(d.action, 'reject');
});

test('data(): the reply is handed to onReply once it is decided, before the capture and the log line', async () => {
  const backend = new RecordingBackend();
  const order: string[] = [];
  const rt: Runtime = { ...runtime([], backend), capture: () => order.push('capture') };
  const c = core(rt);
  await greet(c);
  await c.mail('a@example.org', {});
  await c.rcpt('bob@example.test');
  const spool = await spoolOf(MSG, rt);
  const replies: string[] = [];
  const d = await c.data(spool, undefined, undefined, (r) => {
    replies.push(r.toString());
    order.push('reply');
  });
  spool.release();
  await c.disconnect();
  assert.deepEqual(order, ['reply', 'capture']);
  assert.deepEqual(replies, [d.reply.toString()], 'once, the reply data() returns');
  assert.equal(d.reply.code, 250);
});
