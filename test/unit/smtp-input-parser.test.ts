// The SMTP front's input parser (src/fronts/smtp/input-parser.ts): command lines, the end of DATA
// and dot-unstuffing, checked against a plain reference over the whole input, for every chunk
// split (exhaustively for the table, randomly with fast-check for generated input).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { InputParser } from '../../src/fronts/smtp/input-parser.ts';

type Out = string[];

/** Feeds `chunks`; a line "DATA" switches to data mode (as the engine does after its 354). */
function run(chunks: Buffer[], maxLine = 1000): Out {
  const p = new InputParser(maxLine);
  const out: Out = [];
  let data: Buffer[] = [];
  const drain = () => {
    for (let it = p.next(); it; it = p.next()) {
      if (it.kind === 'line') {
        out.push(`line:${it.line}`);
        if (it.line === 'DATA') p.startData();
      } else if (it.kind === 'data') data.push(it.chunk);
      else if (it.kind === 'end') {
        out.push(`data:${Buffer.concat(data).toString('latin1')}`);
        data = [];
      } else out.push('too-long');
    }
  };
  for (const c of chunks) {
    p.push(c);
    drain();
  }
  if (data.length > 0) out.push(`partial:${Buffer.concat(data).toString('latin1')}`);
  return out;
}

/** The same input cut at one position. */
function split2(buf: Buffer, at: number): Buffer[] {
  return [buf.subarray(0, at), buf.subarray(at)];
}

/** Reference for one DATA phase: content up to the first CRLF.CRLF (the start counts as after CRLF), ".." → ".". */
function referenceData(afterData: string): { content: string; rest: string } | undefined {
  const pre = `\r\n${afterData}`;
  const i = pre.indexOf('\r\n.\r\n');
  if (i < 0) return undefined;
  const raw = i === 0 ? '' : pre.slice(2, i + 2);
  const content = raw
    .split('\r\n')
    .map((l) => (l.startsWith('..') ? l.slice(1) : l))
    .join('\r\n');
  return { content, rest: pre.slice(i + 5) };
}

const cases: Array<{ desc: string; input: string; expected: Out }> = [
  { desc: 'CRLF and bare LF end command lines', input: 'NOOP\r\nRSET\nQUIT\r\n', expected: ['line:NOOP', 'line:RSET', 'line:QUIT'] },
  { desc: 'a lone CR ends nothing', input: 'NOOP\rRSET\r\r\n', expected: ['line:NOOP\rRSET\r'] },
  { desc: 'empty line', input: '\r\n', expected: ['line:'] },
  {
    desc: 'DATA: content to CRLF.CRLF, then commands again',
    input: 'DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n',
    expected: ['line:DATA', 'data:Subject: x\r\n\r\nbody\r\n', 'line:QUIT'],
  },
  { desc: 'DATA: an empty message', input: 'DATA\r\n.\r\nNOOP\r\n', expected: ['line:DATA', 'data:', 'line:NOOP'] },
  { desc: 'DATA: two dots lose one, at the start too', input: 'DATA\r\n..a\r\n..\r\nb\r\n.\r\n', expected: ['line:DATA', 'data:.a\r\n.\r\nb\r\n'] },
  { desc: 'DATA: a single leading dot before text is kept', input: 'DATA\r\n.a\r\n.\r\n', expected: ['line:DATA', 'data:.a\r\n'] },
  {
    desc: 'DATA: bare LF before the dot does not end it (smuggling)',
    input: 'DATA\r\nx\n.\r\nMAIL FROM:<a@b>\r\n.\r\n',
    expected: ['line:DATA', 'data:x\n.\r\nMAIL FROM:<a@b>\r\n'],
  },
  {
    desc: 'DATA: bare LF after the dot does not end it (smuggling)',
    input: 'DATA\r\nx\r\n.\nRSET\r\n.\r\n',
    expected: ['line:DATA', 'data:x\r\n.\nRSET\r\n'],
  },
  { desc: 'DATA: CR.CR is content', input: 'DATA\r\nx\r.\ry\r\n.\r\n', expected: ['line:DATA', 'data:x\r.\ry\r\n'] },
  { desc: 'DATA: a dot line ended by CR CR LF is content', input: 'DATA\r\nx\r\n.\r\r\n.\r\n', expected: ['line:DATA', 'data:x\r\n.\r\r\n'] },
];

for (const c of cases) {
  test(`input parser: ${c.desc} (every split in two)`, () => {
    const buf = Buffer.from(c.input, 'latin1');
    assert.deepEqual(run([buf]), c.expected);
    for (let at = 0; at <= buf.length; at++) assert.deepEqual(run(split2(buf, at)), c.expected, `split at ${at}`);
    // One byte at a time.
    assert.deepEqual(run([...buf].map((b) => Buffer.from([b]))), c.expected);
  });
}

test('input parser: a command line over the limit, complete or not, is "too-long"', () => {
  assert.deepEqual(run([Buffer.from(`NOOP ${'a'.repeat(20)}\r\n`)], 10), ['too-long']);
  assert.deepEqual(run([Buffer.from(`NOOP ${'a'.repeat(20)}`)], 10), ['too-long']);
  assert.deepEqual(run([Buffer.from(`${'a'.repeat(10)}\r\n`)], 10), [`line:${'a'.repeat(10)}`]);
  // Message lines are the spool's business, not the command limit's.
  assert.deepEqual(run([Buffer.from(`DATA\r\n${'a'.repeat(50)}\r\n.\r\n`)], 10), ['line:DATA', `data:${'a'.repeat(50)}\r\n`]);
});

test('input parser: nothing past the end of DATA is parsed until asked (the consumer decides the mode)', () => {
  const p = new InputParser(1000);
  p.push(Buffer.from('DATA\r\nhi\r\n.\r\nSTARTTLS\r\nMAIL FROM:<x@y>\r\n'));
  assert.deepEqual(p.next(), { kind: 'line', line: 'DATA' });
  p.startData();
  assert.equal(p.next()?.kind, 'data');
  assert.deepEqual(p.next(), { kind: 'end' });
  assert.deepEqual(p.next(), { kind: 'line', line: 'STARTTLS' });
  p.discard();
  assert.equal(p.next(), undefined);
  assert.equal(p.buffered, 0);
});

test('input parser: partialLine and hasLine say what the watchdog and the greeting need', () => {
  const p = new InputParser(1000);
  assert.equal(p.partialLine, false);
  p.push(Buffer.from('NO'));
  assert.equal(p.partialLine, true);
  assert.equal(p.hasLine(), false);
  p.push(Buffer.from('OP\r\n'));
  assert.equal(p.hasLine(), true);
  assert.deepEqual(p.next(), { kind: 'line', line: 'NOOP' });
  assert.equal(p.partialLine, false);
});

test('input parser: invalid UTF-8 in a command becomes U+FFFD (the core refuses it as an address)', () => {
  assert.deepEqual(run([Buffer.from([0x4d, 0xff, 0x0d, 0x0a])]), ['line:M\uFFFD']);
});

const piece = fc.constantFrom('a', 'b', '.', '..', '\r', '\n', '\r\n', '\r\n.', '\r\n..', '\r\n.\r', '.\n', '\0', 'ü');

test('input parser property: random DATA content in random chunks = the reference, and the commands after it', () => {
  fc.assert(
    fc.property(fc.array(piece, { maxLength: 40 }), fc.array(fc.integer({ min: 1, max: 12 }), { maxLength: 30 }), (pieces, cuts) => {
      const body = pieces.join('');
      const input = Buffer.from(`DATA\r\n${body}\r\n.\r\nNOOP\r\n`, 'latin1');
      const ref = referenceData(`${body}\r\n.\r\nNOOP\r\n`);
      assert.ok(ref);
      const expected = ['line:DATA', `data:${Buffer.from(ref.content, 'latin1').toString('latin1')}`, ...run([Buffer.from(ref.rest, 'latin1')])];
      const chunks: Buffer[] = [];
      let at = 0;
      for (const n of cuts) {
        if (at >= input.length) break;
        chunks.push(input.subarray(at, at + n));
        at += n;
      }
      if (at < input.length) chunks.push(input.subarray(at));
      assert.deepEqual(run(chunks), expected);
    }),
    { numRuns: 2000 },
  );
});
