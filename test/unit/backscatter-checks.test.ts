// The BATV check (rcpt) and the bounce-heuristics check (data) driven directly: facts, the
// envelope edit that strips a valid tag, and the outbound Message-ID record (memory and Redis).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import pino from 'pino';
import { backscatterSchema, type BackscatterConfig } from '../../src/config/backscatter-schema.ts';
import { createBatvCheck, keyringOf } from '../../src/checks/backscatter/batv-check.ts';
import { createBackscatterChecks } from '../../src/checks/backscatter/create-backscatter.ts';
import { MemoryOutboundRecord, RedisOutboundRecord } from '../../src/checks/backscatter/outbound-record.ts';
import { batvSign } from '../../src/checks/backscatter/batv.ts';
import { detachedConnection, emptyEdits, type CheckOutput, type MessageView } from '../../src/pipeline/check.ts';
import { FactSet } from '../../src/pipeline/facts.ts';
import { createSharedStore } from '../../src/store/create-store.ts';
import { startRedis, uniquePrefix } from '../helpers/redis.ts';

const now = Date.UTC(2026, 11, 1, 12);
const KEYS = [{ id: 1, secret: 'unit-test-secret-0123456789' }];
const cfgOf = (o: Record<string, unknown>): BackscatterConfig => backscatterSchema.parse({ batv: { keys: KEYS }, ...o });
const ring = keyringOf(cfgOf({}))!;
const tagged = batvSign('alice@example.test', ring, now);

function out(): CheckOutput {
  return { facts: new FactSet(), edits: emptyEdits() };
}

function rcptFacts(from: string, tx = 1): FactSet {
  return new FactSet([
    ['mail.from', from],
    ['mail.null_sender', from === ''],
    ['mail.transaction', tx],
  ]);
}

const batvCases: Array<{ desc: string; cfg: Record<string, unknown>; from: string; rcpt: string; result: string; reject: boolean; rewrite?: string }> = [
  {
    desc: 'strict, valid tag: passes, tag stripped',
    cfg: { mode: 'strict' },
    from: '',
    rcpt: tagged,
    result: 'valid',
    reject: false,
    rewrite: 'alice@example.test',
  },
  { desc: 'strict, untagged bounce: refused', cfg: { mode: 'strict' }, from: '', rcpt: 'alice@example.test', result: 'missing', reject: true },
  {
    desc: 'strict, forged tag: refused',
    cfg: { mode: 'strict' },
    from: '',
    rcpt: tagged.replace(/^(prvs=\d{4})./, '$1z').replace('z', tagged[9] === '0' ? '1' : '0'),
    result: 'invalid',
    reject: true,
  },
  {
    desc: 'strict, ordinary mail untagged: not judged',
    cfg: { mode: 'strict' },
    from: 'bob@remote.test',
    rcpt: 'alice@example.test',
    result: 'none',
    reject: false,
  },
  { desc: 'tag-only, untagged bounce: scored, not refused', cfg: { mode: 'tag-only' }, from: '', rcpt: 'alice@example.test', result: 'missing', reject: false },
  {
    desc: 'per-domain strict overrides mode off',
    cfg: { mode: 'off', domains: { 'example.test': 'strict' } },
    from: '',
    rcpt: 'alice@example.test',
    result: 'missing',
    reject: true,
  },
  {
    desc: 'per-domain keys are case-insensitive, trailing dot ignored',
    cfg: { mode: 'off', domains: { 'EXAMPLE.test.': 'strict' } },
    from: '',
    rcpt: 'alice@example.test',
    result: 'missing',
    reject: true,
  },
  {
    desc: 'per-domain off overrides strict',
    cfg: { mode: 'strict', domains: { 'example.test': 'off' } },
    from: '',
    rcpt: 'alice@example.test',
    result: 'none',
    reject: false,
  },
  { desc: 'off, valid tag: still stripped', cfg: { mode: 'off' }, from: '', rcpt: tagged, result: 'valid', reject: false, rewrite: 'alice@example.test' },
  {
    desc: 'reply to a tagged return path (non-null sender): stripped',
    cfg: { mode: 'strict' },
    from: 'bob@remote.test',
    rcpt: tagged,
    result: 'valid',
    reject: false,
    rewrite: 'alice@example.test',
  },
];

for (const c of batvCases) {
  test(`batv check: ${c.desc}`, async () => {
    const cfg = cfgOf(c.cfg);
    const check = createBatvCheck({ config: () => cfg, now: () => now });
    const o = out();
    await check.run({ stage: 'rcpt', connection: detachedConnection(), facts: rcptFacts(c.from), recipient: c.rcpt, signal: new AbortController().signal }, o);
    assert.equal(o.facts.get('batv.result'), c.result);
    assert.equal(o.facts.get('batv.reject'), c.reject);
    if (c.reject) assert.match(String(o.facts.get('batv.text')), /backscatter/);
    assert.equal(o.edits.rcptRewrites.get(c.rcpt), c.rewrite);
    if (!c.rewrite) assert.equal(o.edits.rcptRewrites.size, 0);
  });
}

function view(raw: string): MessageView {
  const buf = Buffer.from(raw.replace(/\r?\n/g, '\r\n'), 'latin1');
  const end = buf.indexOf('\r\n\r\n');
  const headerBytes = buf.subarray(0, end + 4);
  const headers = headerBytes
    .toString('latin1')
    .split('\r\n')
    .filter((l) => l.includes(':') && !/^\s/.test(l))
    .map((l) => ({ name: l.slice(0, l.indexOf(':')), value: l.slice(l.indexOf(':') + 1).trim() }));
  return { size: buf.length, headerBytes, headers, stream: () => Readable.from([buf]), bodyStream: () => Readable.from([buf.subarray(end + 4)]) };
}

const bounce = (mid: string, dkim = '') => `From: MAILER-DAEMON@remote.test
To: alice@example.test
Subject: Undelivered Mail Returned to Sender
Content-Type: multipart/report; report-type=delivery-status; boundary=b

--b
Content-Type: text/plain

This is the mail system at host remote.test.

--b
Content-Type: text/rfc822-headers

${dkim}From: alice@example.test
Message-ID: <${mid}>
Subject: hi

--b--
`;

interface DataCase {
  desc: string;
  cfg?: Record<string, unknown>;
  from?: string;
  rcpts?: string[];
  raw: string;
  recorded?: string[];
  batv?: string[];
  expect: Record<string, unknown>;
}

const dataCases: DataCase[] = [
  {
    desc: 'ordinary mail',
    from: 'bob@remote.test',
    raw: 'From: bob@remote.test\nSubject: x\n\nhello\n',
    expect: { 'backscatter.kind': 'none', 'backscatter.reason': 'not-dsn' },
  },
  {
    desc: 'bounce for a recorded outbound message: genuine',
    raw: bounce('sent-1@mail.example.test'),
    recorded: ['sent-1@mail.example.test'],
    expect: { 'backscatter.genuine': true, 'backscatter.foreign_msgid': false, 'backscatter.reason': 'recorded-outbound' },
  },
  {
    desc: 'bounce for a foreign Message-ID never sent',
    raw: bounce('spam-1@botnet.test'),
    expect: { 'backscatter.genuine': false, 'backscatter.foreign_msgid': true, 'backscatter.reason': 'foreign-msgid', 'backscatter.kind': 'postfix' },
  },
  {
    desc: 'bounce whose Message-ID is from our domain: not foreign',
    raw: bounce('x@example.test'),
    expect: { 'backscatter.foreign_msgid': false, 'backscatter.reason': 'no-evidence' },
  },
  {
    desc: 'null sender to two recipients',
    rcpts: ['alice@example.test', 'bob@example.test'],
    raw: bounce('x@example.test'),
    expect: { 'backscatter.multi_rcpt': true, 'backscatter.reason': 'multi-rcpt' },
  },
  {
    desc: 'unsigned original while outbound is signed',
    cfg: { outbound_signed: true },
    raw: bounce('x@example.test'),
    expect: { 'backscatter.unsigned_original': true, 'backscatter.reason': 'unsigned-original' },
  },
  {
    desc: 'original with our DKIM signature: genuine',
    cfg: { outbound_signed: true },
    raw: bounce('z@elsewhere.test', 'DKIM-Signature: v=1; d=example.test; s=s1; b=x\n'),
    expect: { 'backscatter.genuine': true, 'backscatter.unsigned_original': false, 'backscatter.reason': 'our-dkim' },
  },
  {
    desc: 'all recipients had valid BATV tags: genuine',
    raw: bounce('spam-2@botnet.test'),
    batv: ['valid'],
    expect: { 'backscatter.genuine': true, 'backscatter.foreign_msgid': false, 'backscatter.reason': 'batv-valid' },
  },
  {
    desc: 'BATV missing decides first',
    raw: bounce('spam-3@botnet.test'),
    batv: ['missing'],
    expect: { 'backscatter.foreign_msgid': true, 'backscatter.reason': 'batv-missing' },
  },
];

for (const c of dataCases) {
  test(`backscatter check: ${c.desc}`, async () => {
    const cfg = cfgOf(c.cfg ?? {});
    const record = new MemoryOutboundRecord(86_400_000, 100);
    for (const r of c.recorded ?? []) await record.record(r, now);
    const { checks } = createBackscatterChecks({ config: () => cfg, domains: () => new Set(['example.test']), now: () => now, record });
    const conn = detachedConnection();
    if (c.batv) conn.notes.set('backscatter:batv', { tx: 1, results: c.batv });
    const rcpts = c.rcpts ?? ['alice@example.test'];
    const facts = rcptFacts(c.from ?? '');
    facts.set('rcpt.addresses', rcpts);
    facts.set('rcpt.count', rcpts.length);
    const o = out();
    await checks[1].run({ stage: 'data', connection: conn, facts, message: view(c.raw), signal: new AbortController().signal }, o);
    for (const [k, v] of Object.entries(c.expect)) assert.equal(o.facts.get(k), v, k);
  });
}

test('backscatter check: bounce rate per recipient (untagged and tagged forms count together)', async () => {
  const cfg = cfgOf({ bounce_rate: '3/1h' });
  const { checks } = createBackscatterChecks({ config: () => cfg, domains: () => new Set(['example.test']), now: () => now });
  const seen: unknown[] = [];
  for (let i = 0; i < 5; i++) {
    const facts = rcptFacts('');
    facts.set('rcpt.addresses', [i % 2 ? tagged : 'alice@example.test']);
    const o = out();
    await checks[1].run(
      { stage: 'data', connection: detachedConnection(), facts, message: view(bounce(`x${i}@example.test`)), signal: new AbortController().signal },
      o,
    );
    seen.push(o.facts.get('backscatter.bounce_rate_exceeded'));
  }
  assert.deepEqual(seen, [false, false, false, true, true]);
});

test('memory record: expiry by the caller clock, bounded, case-insensitive', async () => {
  const r = new MemoryOutboundRecord(1000, 16);
  await r.record('<A@Example.test>', now);
  assert.equal(await r.seen('a@example.test', now + 1000), 'seen');
  assert.equal(await r.seen('a@example.test', now + 1001), 'unseen');
  for (let i = 0; i < 40; i++) await r.record(`m${i}@x`, now);
  assert.equal(r.size, 16);
  assert.equal(await r.seen('m0@x', now), 'unseen', 'the oldest went first');
  assert.equal(await r.seen('m39@x', now), 'seen');
});

let redis: Awaited<ReturnType<typeof startRedis>> | undefined;
after(async () => {
  await redis?.stop();
});

test('redis record: outbound-record-1.lua / outbound-seen-1.lua, shared between instances, expiry by the caller clock', async () => {
  redis = await startRedis();
  const logger = pino({ level: 'silent' });
  const mk = () => createSharedStore({ redis: redis!.url, options: { key_prefix: uniquePrefix('ob') }, logger, now: () => now });
  const prefix = uniquePrefix('ob');
  const s1 = createSharedStore({ redis: redis.url, options: { key_prefix: prefix }, logger, now: () => now });
  const s2 = createSharedStore({ redis: redis.url, options: { key_prefix: prefix }, logger, now: () => now });
  assert.ok(await s1.waitReady(5000));
  assert.ok(await s2.waitReady(5000));
  const { createOutboundRecord } = await import('../../src/checks/backscatter/outbound-record.ts');
  const a = createOutboundRecord(s1, 60_000, 100);
  const b = createOutboundRecord(s2, 60_000, 100);
  assert.ok(a instanceof RedisOutboundRecord);
  await a.record('<shared-1@example.test>', now);
  assert.equal(await b.seen('shared-1@example.test', now + 59_000), 'seen', 'the other instance sees it through Redis');
  assert.equal(await b.seen('shared-1@example.test', now + 61_000), 'unseen');
  assert.equal(await b.seen('never@example.test', now), 'unseen');
  const other = mk();
  await other.waitReady(5000);
  assert.equal(await createOutboundRecord(other, 60_000, 100).seen('shared-1@example.test', now), 'unseen', 'key prefix separates');
  await Promise.all([s1.close(), s2.close(), other.close()]);
  assert.equal(await b.seen('shared-2@example.test', now), 'unavailable', 'closed connection is reported, not guessed');
});
