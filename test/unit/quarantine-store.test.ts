// One suite, both index backends: node:sqlite and a private PostgreSQL. Durable put, index-only
// listing and filtering (100,000 rows), delete/purge/expiry, quota outcomes, single release
// claims, single-use tokens, reconciliation and fault injection between write steps.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { QuarantineStore, openIndex } from '../../src/delivery/quarantine/store.ts';
import { quarantineSchema, type QuarantineConfig } from '../../src/config/quarantine-schema.ts';
import type { IndexRow, QuarantineMeta } from '../../src/delivery/quarantine/entry.ts';
import { QuarantineFullError } from '../../src/delivery/quarantine/quota-error.ts';
import type { WriteStep } from '../../src/delivery/quarantine/file-layout.ts';
import { postgresAvailable, startPostgres, type TestPostgres } from '../helpers/postgres.ts';

let pg: TestPostgres | undefined;
let schemaSeq = 0;

function meta(id: string, over: Partial<QuarantineMeta> = {}): QuarantineMeta {
  return {
    id,
    received: '2026-11-20T10:00:00.000Z',
    client: { ip: '192.0.2.1', helo: 'client.example.net' },
    from: 'spammer@bad.example',
    rcpts: ['alice@example.test'],
    size: 100,
    reason: 'score 9 (BAYES_99)',
    score: 9,
    rules: ['BAYES_99'],
    ...over,
  };
}

const backends = [
  { name: 'sqlite', available: () => ({ ok: true as const }) },
  { name: 'postgres', available: postgresAvailable },
];

before(async () => {
  if (postgresAvailable().ok) pg = await startPostgres();
});
after(() => pg?.stop());

for (const b of backends) {
  const avail = b.available();
  describe(`quarantine store (${b.name} index)`, { skip: avail.ok ? false : avail.why }, () => {
    const dirs: string[] = [];
    const stores: QuarantineStore[] = [];
    after(async () => {
      for (const s of stores) await s.close();
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    });
    function cfg(over: Record<string, unknown> = {}): QuarantineConfig {
      const dir = mkdtempSync(join(tmpdir(), `mg-qstore-${b.name}-`));
      dirs.push(dir);
      const index =
        b.name === 'postgres' ? { backend: 'postgres', url: (pg as TestPostgres).url, schema: `t${process.pid}_${++schemaSeq}` } : { backend: 'sqlite' };
      return quarantineSchema.parse({ dir, index, ...over });
    }
    function store(c: QuarantineConfig = cfg(), extra: Partial<ConstructorParameters<typeof QuarantineStore>[0] & object> = {}): QuarantineStore {
      const s = new QuarantineStore({ config: c, ...(extra as object) });
      stores.push(s);
      return s;
    }

    test('put is durable and complete: bytes identical, metadata and index row agree', async () => {
      const s = store();
      const body = Buffer.from('Received: by mx\r\nSubject: hi\r\n\r\nbody\r\n');
      await s.put(meta('AAA1', { size: body.length }), [body.subarray(0, 10), Readable.from([body.subarray(10)])]);
      const e = await s.get('AAA1');
      assert.ok(e);
      assert.equal(e.meta.bytes, body.length);
      assert.deepEqual(await s.bytes(e.row), body);
      assert.equal(e.row.size, body.length);
      assert.ok(existsSync(join(s.dir, '2026-11-20', 'AAA1.eml')) && existsSync(join(s.dir, '2026-11-20', 'AAA1.json')));
      assert.deepEqual(
        (await s.list()).rows.map((r) => r.id),
        ['AAA1'],
      );
      assert.equal(await s.get('../etc'), undefined, 'ids never reach a path');
    });

    test('filters (table): recipient, domain, sender, rule, reason, dates, score, status', async () => {
      const s = store();
      const ix = await s.index();
      const rows: IndexRow[] = [
        {
          id: 'F1',
          received: '2026-11-01T00:00:00.000Z',
          from: 'a@x.example',
          rcpts: ['Alice@Example.test'],
          rules: ['R1'],
          size: 1,
          score: 3,
          reason: 'rule R1',
          subject: 'x',
          clientIp: '192.0.2.1',
          helo: 'h',
        },
        {
          id: 'F2',
          received: '2026-11-02T00:00:00.000Z',
          from: 'b@y.example',
          rcpts: ['bob@example.test', 'carol@other.test'],
          rules: ['R1', 'R2'],
          size: 1,
          score: 8,
          reason: 'score 8',
          subject: 'x',
          clientIp: '192.0.2.1',
          helo: 'h',
        },
        {
          id: 'F3',
          received: '2026-11-03T00:00:00.000Z',
          from: 'A@X.example',
          rcpts: ['carol@other.test'],
          rules: ['R3'],
          size: 1,
          score: 15,
          reason: 'virus 100%_match',
          subject: 'x',
          clientIp: '192.0.2.1',
          helo: 'h',
        },
      ];
      await ix.insert(rows);
      const cases: Array<{ desc: string; filter: Parameters<QuarantineStore['list']>[0]; expected: string[] }> = [
        { desc: 'all, newest first', filter: {}, expected: ['F3', 'F2', 'F1'] },
        { desc: 'recipient, case-insensitive', filter: { rcpt: 'alice@EXAMPLE.test' }, expected: ['F1'] },
        { desc: 'recipient domain', filter: { rcpt: '@other.test' }, expected: ['F3', 'F2'] },
        { desc: 'sender', filter: { from: 'a@x.example' }, expected: ['F3', 'F1'] },
        { desc: 'sender domain', filter: { from: '@y.example' }, expected: ['F2'] },
        { desc: 'rule', filter: { rule: 'R1' }, expected: ['F2', 'F1'] },
        { desc: 'reason substring', filter: { reason: 'SCORE' }, expected: ['F2'] },
        { desc: 'reason with LIKE metacharacters is literal', filter: { reason: '100%_' }, expected: ['F3'] },
        { desc: 'reason % alone matches only a literal %', filter: { reason: '%' }, expected: ['F3'] },
        { desc: 'since (inclusive)', filter: { since: '2026-11-02T00:00:00.000Z' }, expected: ['F3', 'F2'] },
        { desc: 'until (exclusive)', filter: { until: '2026-11-02T00:00:00.000Z' }, expected: ['F1'] },
        { desc: 'score range', filter: { minScore: 5, maxScore: 10 }, expected: ['F2'] },
        { desc: 'combined', filter: { rcpt: '@other.test', rule: 'R3' }, expected: ['F3'] },
        { desc: 'paging', filter: { limit: 1, offset: 1 }, expected: ['F2'] },
        { desc: 'released only: none yet', filter: { status: 'released' }, expected: [] },
      ];
      for (const c of cases) {
        const r = await s.list(c.filter);
        assert.deepEqual(
          r.rows.map((x) => x.id),
          c.expected,
          c.desc,
        );
        if (c.desc !== 'paging') assert.equal(r.total, c.expected.length, `${c.desc}: total`);
      }
      assert.equal((await s.list({ limit: 1, offset: 1 })).total, 3, 'total ignores paging');
    });

    test('100,000 entries: listed and filtered from the index alone (no files exist)', async () => {
      const s = store();
      const ix = await s.index();
      const rows: IndexRow[] = [];
      const t0 = Date.parse('2026-10-01T00:00:00Z');
      for (let i = 0; i < 100_000; i++) {
        rows.push({
          id: `B${i.toString(36).padStart(6, '0')}`,
          received: new Date(t0 + i * 1000).toISOString(),
          from: `s${i % 500}@sender${i % 50}.example`,
          rcpts: [`u${i % 1000}@example.test`],
          rules: [`RULE_${i % 20}`],
          size: 1000,
          score: i % 30,
          reason: `score ${i % 30}`,
          subject: 'x',
          clientIp: '192.0.2.9',
          helo: 'bulk',
        });
      }
      const tIns = Date.now();
      await ix.insert(rows);
      const insertMs = Date.now() - tIns;
      const t1 = Date.now();
      const all = await s.list({ limit: 50 });
      assert.equal(all.total, 100_000);
      assert.equal(all.rows[0]?.id, rows[99_999]?.id);
      const byRcpt = await s.list({ rcpt: 'u7@example.test' });
      assert.equal(byRcpt.total, 100);
      const combo = await s.list({ rule: 'RULE_3', minScore: 20, since: new Date(t0 + 50_000_000).toISOString() });
      const expected = rows.filter((r) => r.rules[0] === 'RULE_3' && r.score >= 20 && r.received >= new Date(t0 + 50_000_000).toISOString()).length;
      assert.equal(combo.total, expected);
      assert.equal((await s.list({ from: '@sender7.example', limit: 10 })).total, 2000);
      const listMs = Date.now() - t1;
      assert.ok(listMs < 5000, `four filtered listings of 100k rows took ${listMs} ms`);
      assert.deepEqual(await ix.totals(), { messages: 100_000, bytes: 100_000_000 });
      // Not a file in sight: the listing cannot have read any.
      assert.equal(existsSync(join(s.dir, '2026-10-01')), false);
      process.stdout.write(`# ${b.name}: bulk insert 100k ${insertMs} ms, 4 filtered listings ${listMs} ms\n`);
    });

    test('delete, purge and retention expiry remove index rows and files', async () => {
      const now = Date.parse('2026-11-30T00:00:00Z');
      const s = store(cfg({ retention: '5d' }), { now: () => now });
      await s.put(meta('OLD1', { received: '2026-11-20T00:00:00.000Z' }), [Buffer.from('x\r\n')]);
      await s.put(meta('NEW1', { received: '2026-11-29T00:00:00.000Z' }), [Buffer.from('y\r\n')]);
      await s.put(meta('NEW2', { received: '2026-11-29T01:00:00.000Z' }), [Buffer.from('z\r\n')]);
      assert.equal(await s.expire(), 1);
      assert.equal(existsSync(join(s.dir, '2026-11-20', 'OLD1.eml')), false);
      assert.deepEqual(await s.delete(['NEW1', 'NOPE']), ['NEW1']);
      assert.equal(existsSync(join(s.dir, '2026-11-29', 'NEW1.json')), false);
      assert.equal(await s.purge(3_600_000), 1);
      assert.equal((await s.list({ status: 'all' })).total, 0);
    });

    test('expiry runs at start and then periodically (expiry_interval)', async () => {
      const s = store(cfg({ retention: '1h', expiry_interval: '100ms' }));
      const old = () => new Date(Date.now() - 2 * 3_600_000).toISOString();
      await s.put(meta('E1', { received: old() }), [Buffer.from('1\r\n')]);
      await s.put(meta('E2', { received: new Date().toISOString() }), [Buffer.from('2\r\n')]);
      await s.start();
      assert.deepEqual(
        (await s.list({ status: 'all' })).rows.map((r) => r.id),
        ['E2'],
        'expired at start',
      );
      await s.put(meta('E3', { received: old() }), [Buffer.from('3\r\n')]);
      const deadline = Date.now() + 5000;
      while ((await s.get('E3')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.equal(await s.get('E3'), undefined, 'expired by the timer');
      assert.ok(await s.get('E2'));
    });

    test('quota: tempfail by default (452 4.3.1, nothing written), reject, or evict the oldest', async () => {
      const cases = [
        { outcome: 'tempfail', code: 452, kept: ['Q2', 'Q1'] },
        { outcome: 'reject', code: 552, kept: ['Q2', 'Q1'] },
        { outcome: 'evict_oldest', code: undefined, kept: ['Q3', 'Q2'] },
      ] as const;
      for (const c of cases) {
        const s = store(cfg({ quota: { max_messages: 2, outcome: c.outcome } }));
        await s.put(meta('Q1', { received: '2026-11-20T00:00:00.000Z' }), [Buffer.from('1\r\n')]);
        await s.put(meta('Q2', { received: '2026-11-20T00:00:01.000Z' }), [Buffer.from('2\r\n')]);
        const p = s.put(meta('Q3', { received: '2026-11-20T00:00:02.000Z' }), [Buffer.from('3\r\n')]);
        if (c.code) {
          await assert.rejects(p, (e: unknown) => e instanceof QuarantineFullError && e.reply.code === c.code);
          assert.equal(existsSync(join(s.dir, '2026-11-20', 'Q3.eml')), false, `${c.outcome}: nothing written`);
        } else await p;
        assert.deepEqual(
          (await s.list()).rows.map((r) => r.id),
          c.kept,
          c.outcome,
        );
      }
      const bytes = store(cfg({ quota: { max_bytes: '1KB' } }));
      await bytes.put(meta('S1', { size: 600 }), [Buffer.alloc(600, 65)]);
      await assert.rejects(bytes.put(meta('S2', { size: 600 }), [Buffer.alloc(600, 66)]), QuarantineFullError);
    });

    test('release claim: exactly one of many concurrent claims wins; then "already"', async () => {
      const c = cfg();
      const a = store(c);
      await a.put(meta('R1'), [Buffer.from('x\r\n')]);
      // A second store on the same index stands for a second gateway instance.
      const other = store(c);
      const claims = await Promise.all([a.claimRelease('R1'), other.claimRelease('R1'), a.claimRelease('R1'), other.claimRelease('R1')]);
      assert.deepEqual(claims.filter((x) => x === 'claimed').length, 1, claims.join());
      assert.ok(claims.every((x) => x === 'claimed' || x === 'busy'));
      await a.finishRelease('R1', { by: 'alice', reply: '250 2.0.0 Ok' });
      assert.equal(await other.claimRelease('R1'), 'already');
      assert.equal(await a.claimRelease('NOPE'), 'missing');
      const row = (await other.get('R1'))?.row;
      assert.equal(row?.releasedBy, 'alice');
      assert.deepEqual(
        (await a.list({ status: 'released' })).rows.map((r) => r.id),
        ['R1'],
      );
      assert.equal((await a.list()).total, 0, 'held listing no longer shows it');
      // A failed release gives the claim back.
      await a.put(meta('R2'), [Buffer.from('x\r\n')]);
      assert.equal(await a.claimRelease('R2'), 'claimed');
      await a.finishRelease('R2', undefined);
      assert.equal(await other.claimRelease('R2'), 'claimed');
    });

    test('tokens are single use', async () => {
      const ix = await store().index();
      const exp = new Date(Date.now() + 60_000).toISOString();
      assert.equal(await ix.useToken('n1', exp), true);
      assert.equal(await ix.useToken('n1', exp), false);
      assert.equal(await ix.useToken('n2', exp), true);
    });

    test('reconcile: complete unindexed entries are added, rows without files dropped, partial files never listed', async () => {
      const c = cfg();
      const s = store(c);
      await s.put(meta('K1'), [Buffer.from('keep\r\n')]);
      await s.put(meta('K2'), [Buffer.from('gone\r\n')]);
      const day = join(s.dir, '2026-11-20');
      // A complete entry written by "another process" whose index insert never happened.
      writeFileSync(join(day, 'K3.eml'), 'abc\r\n');
      writeFileSync(join(day, 'K3.json'), JSON.stringify({ ...meta('K3'), bytes: 5 }));
      // Crash leftovers: a temp file, an .eml without .json, a .json whose .eml is truncated.
      writeFileSync(join(day, '.K4.eml.tmp'), 'partial');
      writeFileSync(join(day, 'K5.eml'), 'no json');
      writeFileSync(join(day, 'K6.eml'), 'shor');
      writeFileSync(join(day, 'K6.json'), JSON.stringify({ ...meta('K6'), bytes: 999 }));
      const old = new Date(Date.now() - 3_600_000);
      for (const f of ['.K4.eml.tmp', 'K5.eml']) utimesSync(join(day, f), old, old);
      rmSync(join(day, 'K2.json'));
      const r = await s.reconcile();
      assert.deepEqual(r, { added: 1, removed: 1, cleaned: 2 });
      assert.deepEqual((await s.list()).rows.map((x) => x.id).sort(), ['K1', 'K3']);
      assert.equal(existsSync(join(day, 'K5.eml')), false);
      mkdirSync(join(s.dir, 'not-a-day'), { recursive: true });
      assert.deepEqual(await s.reconcile(), { added: 0, removed: 0, cleaned: 0 });
      // A missing (unmounted) directory never empties the index.
      rmSync(day, { recursive: true });
      assert.deepEqual(await s.reconcile(), { added: 0, removed: 0, cleaned: 0 });
      assert.equal((await s.list()).total, 2);
    });

    test('fault between any two write steps: never a half entry listed; after reconcile, complete or absent', async () => {
      const steps: WriteStep[] = ['eml-written', 'json-written', 'indexed'];
      for (const step of steps) {
        const c = cfg();
        const s = store(c, {
          fault: (at: WriteStep) => {
            if (at === step) throw new Error(`crash at ${at}`);
          },
        });
        const body = Buffer.alloc(256 * 1024, 120);
        await assert.rejects(s.put(meta('C1', { size: body.length }), [body]), /crash at/);
        const listed = (await s.list()).rows;
        if (step === 'indexed')
          assert.deepEqual(
            listed.map((x) => x.id),
            ['C1'],
          );
        else assert.deepEqual(listed, [], `${step}: not listed`);
        const fresh = store(c);
        await fresh.reconcile();
        const after = (await fresh.list()).rows.map((x) => x.id);
        if (step === 'eml-written') assert.deepEqual(after, [], 'no .json: no entry');
        else {
          assert.deepEqual(after, ['C1'], `${step}: complete entry recovered`);
          const e = await fresh.get('C1');
          assert.ok(e);
          assert.deepEqual(readFileSync(join(c.dir, '2026-11-20', 'C1.eml')), body);
        }
      }
    });

    test('openIndex picks the configured backend', async () => {
      const ix = await openIndex(cfg());
      assert.match(ix.description, b.name === 'sqlite' ? /^sqlite:/ : /^postgres:/);
      await ix.close();
    });
  });
}
