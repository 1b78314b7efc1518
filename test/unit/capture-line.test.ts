// The capture line (src/rules/capture.ts) is written fact by fact; it must be, byte for byte, what
// JSON.stringify gave for the entry object it used to build — `rules diff` and every capture
// already on disk read that format. The oracle below is the old construction, kept as the test's
// reference (like test/unit/headers-fold.test.ts keeps the old fold).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { Capture, countLines, type CaptureEntry } from '../../src/rules/capture.ts';
import { FactSet, type FactValue } from '../../src/pipeline/facts.ts';
import type { Verdict } from '../../src/pipeline/verdict.ts';
import { globToRegExp } from '../../src/message/text-patterns.ts';

const MAX = 40;

function cutOld(v: FactValue): FactValue {
  if (typeof v === 'string') return v.length > MAX ? v.slice(0, MAX) : v;
  if (!Array.isArray(v)) return v;
  return (v as readonly unknown[]).slice(0, 500).map((x) => {
    if (typeof x === 'string') return x.length > MAX ? x.slice(0, MAX) : x;
    if (x && typeof x === 'object') {
      const r: Record<string, unknown> = {};
      for (const [k, y] of Object.entries(x)) r[k] = typeof y === 'string' && y.length > MAX ? y.slice(0, MAX) : y;
      return r;
    }
    return x;
  }) as FactValue;
}

function oracle(facts: FactSet, verdict: Verdict, action: string, time: string, exclude: readonly { test(s: string): boolean }[], id?: string): string {
  const out: Record<string, FactValue> = {};
  for (const [k, v] of facts.entries()) if (!exclude.some((re) => re.test(k))) out[k] = cutOld(v);
  const entry: CaptureEntry = {
    v: 1,
    time,
    action,
    verdict: { action: verdict.action, score: verdict.score, rules: verdict.fired.map((f) => f.rule) },
    facts: out,
  };
  if (id !== undefined) entry.id = id;
  if (verdict.decided) entry.verdict.decided = verdict.decided.rule;
  if (verdict.stage) entry.verdict.stage = verdict.stage;
  return JSON.stringify(entry);
}

const text = fc.oneof(
  fc.string({ maxLength: 60 }),
  fc.string({ unit: 'binary', maxLength: 60 }),
  fc.constantFrom('"', '\\', '\n\u0000\u2028', '\ud800', 'é€😀'),
);
const scalar = fc.oneof(text, fc.double(), fc.integer(), fc.constantFrom(0, -0, 1e21, Number.NaN, Number.POSITIVE_INFINITY), fc.boolean(), fc.constant(null));
const record = fc.dictionary(fc.constantFrom('result', 'domain', 'name', 'value', 'x y'), scalar, { maxKeys: 4 });
const value: fc.Arbitrary<FactValue> = fc.oneof(
  scalar,
  fc.array(text, { maxLength: 6 }),
  fc.array(record, { maxLength: 4 }) as fc.Arbitrary<FactValue>,
  fc.array(fc.constant('x'), { minLength: 501, maxLength: 502 }),
);
const name = fc.oneof(
  fc.constantFrom('client.ip', 'spf.result', 'message.body_text', 'message.subject', 'dkim.signatures', 'x"y', 'ratelimit.mail.exceeded'),
  fc.string({ minLength: 1, maxLength: 12 }).filter((s) => s !== '__proto__' && !/^\d+$/.test(s)),
);
// (Fact names are dotted lowercase identifiers: never `__proto__`, never an integer, which an
// object would have put first.)

test('a capture line is exactly JSON.stringify of the entry the gateway used to build', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mailgate-capture-line-'));
  try {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(name, value), { maxLength: 25 }),
        fc.record({
          action: fc.constantFrom('accept', 'reject', 'quarantine', 'continue'),
          score: fc.double({ noNaN: true, noDefaultInfinity: true }),
          rules: fc.array(fc.constantFrom('A', 'B"c', 'DMARC_PASS'), { maxLength: 3 }),
          decided: fc.option(fc.constantFrom('A', 'B'), { nil: undefined }),
          stage: fc.option(fc.constantFrom('connect', 'data'), { nil: undefined }),
        }),
        fc.option(fc.string({ maxLength: 10 }), { nil: undefined }),
        async (pairs, vv, id) => {
          const file = join(dir, `c-${Math.random().toString(36).slice(2)}.jsonl`);
          const exclude = ['message.body_text', 'message.sub*'];
          const cap = new Capture({ file, maxValueChars: MAX, exclude });
          const facts = new FactSet(pairs);
          const verdict = {
            action: vv.action,
            score: vv.score,
            fired: vv.rules.map((rule) => ({ rule, score: 1, stage: 'data' })),
            addHeaders: [],
            ...(vv.decided ? { decided: { rule: vv.decided } } : {}),
            ...(vv.stage ? { stage: vv.stage } : {}),
          } as unknown as Verdict;
          cap.record(facts, verdict, vv.action, id);
          await cap.close();
          const line = readFileSync(file, 'utf8');
          assert.ok(line.endsWith('\n'));
          const time = (JSON.parse(line) as CaptureEntry).time;
          assert.equal(line, `${oracle(facts, verdict, vv.action, time, exclude.map(globToRegExp), id)}\n`);
        },
      ),
      { numRuns: 400 },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('countLines counts the non-empty lines an existing capture holds, across its 64 KiB reads', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mailgate-capture-count-'));
  try {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.constant(''),
            fc.constant('\r'),
            fc.integer({ min: 1, max: 70_000 }).map((n) => 'x'.repeat(n)),
          ),
          { maxLength: 12 },
        ),
        fc.boolean(),
        (lines, lastLf) => {
          const file = join(dir, 'c.jsonl');
          const text = lines.join('\n') + (lastLf ? '\n' : '');
          writeFileSync(file, text);
          assert.equal(countLines(file), text.split('\n').filter(Boolean).length);
        },
      ),
      { numRuns: 150 },
    );
    // An LF that is the last byte of a read, or the first byte of the next one.
    for (const n of [65535, 65536, 65537, 131072]) {
      const file = join(dir, `edge-${n}.jsonl`);
      writeFileSync(file, `${'x'.repeat(n)}\n\nabc\n`);
      assert.equal(countLines(file), 2, `a line of ${n} bytes`);
    }
    assert.equal(countLines(join(dir, 'missing.jsonl')), 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
