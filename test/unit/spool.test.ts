// The DATA spool: line-ending normalisation (or flagging), every limit, memory vs temp file, the
// header block it exposes and the streams it gives back, byte for byte — including a message
// split at every possible chunk boundary, since the client decides where TCP segments end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Spool, type SpoolLimits } from '../../src/message/spool.ts';

const tmpRoot = mkdtempSync(join(tmpdir(), 'mailgate-spool-test-'));
test.after(() => rmSync(tmpRoot, { recursive: true, force: true }));

function limits(over: Partial<SpoolLimits> = {}): SpoolLimits {
  return { maxBytes: 1_000_000, maxHeaderBytes: 100_000, maxLineBytes: 1000, memoryBytes: 1_000_000, tmpDir: join(tmpRoot, 'default'), ...over };
}

async function spoolOf(chunks: ReadonlyArray<string | Buffer>, normalize = true, lim: Partial<SpoolLimits> = {}): Promise<Spool> {
  const s = new Spool(limits(lim), normalize);
  await pipeline(Readable.from(chunks.map((c) => (typeof c === 'string' ? Buffer.from(c, 'latin1') : c))), s);
  return s;
}

async function readAll(r: NodeJS.ReadableStream): Promise<string> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(Buffer.isBuffer(c) ? c : Buffer.from(c as string));
  return Buffer.concat(parts).toString('latin1');
}

interface Summary {
  stored: string;
  problem: string | undefined;
  bareNewlines: boolean;
  headerEnd: number;
  headerTerminated: boolean;
  header: string;
  body: string;
  names: string[];
}

async function summary(s: Spool): Promise<Summary> {
  return {
    stored: await readAll(s.stream()),
    problem: s.problem,
    bareNewlines: s.bareNewlines,
    headerEnd: s.headerEnd,
    headerTerminated: s.headerTerminated,
    header: s.headerBytes.toString('latin1'),
    body: await readAll(s.bodyStream()),
    names: s.headers.map((h) => h.name),
  };
}

// --- line endings -----------------------------------------------------------------------------

const endingCases = [
  {
    desc: 'CRLF message is stored unchanged',
    input: 'Subject: a\r\n\r\nbody\r\n',
    normalize: true,
    expected: { stored: 'Subject: a\r\n\r\nbody\r\n', bare: false, problem: undefined },
  },
  {
    desc: 'bare LF normalised to CRLF',
    input: 'A: 1\nB: 2\n\nbody\n',
    normalize: true,
    expected: { stored: 'A: 1\r\nB: 2\r\n\r\nbody\r\n', bare: true, problem: undefined },
  },
  {
    desc: 'bare CR normalised to CRLF',
    input: 'A: 1\rB: 2\r\n\r\nx\r\n',
    normalize: true,
    expected: { stored: 'A: 1\r\nB: 2\r\n\r\nx\r\n', bare: true, problem: undefined },
  },
  {
    desc: 'CR CR LF: the first CR was bare',
    input: 'A: 1\r\r\n\r\nx\r\n',
    normalize: true,
    expected: { stored: 'A: 1\r\n\r\n\r\nx\r\n', bare: true, problem: undefined },
  },
  {
    desc: 'a lone CR at the very end becomes CRLF',
    input: 'A: 1\r\n\r\nx\r',
    normalize: true,
    expected: { stored: 'A: 1\r\n\r\nx\r\n', bare: true, problem: undefined },
  },
  {
    desc: 'LF.LF (smuggling attempt) becomes CRLF.CRLF content',
    input: 'A: 1\r\n\r\nx\n.\nMAIL FROM:<e@vil>\r\n',
    normalize: true,
    expected: { stored: 'A: 1\r\n\r\nx\r\n.\r\nMAIL FROM:<e@vil>\r\n', bare: true, problem: undefined },
  },
  {
    desc: 'bare LF flagged when not normalising',
    input: 'A: 1\nB: 2\r\n\r\nbody\r\n',
    normalize: false,
    expected: { stored: '', bare: true, problem: 'bare-newline' },
  },
  {
    desc: 'bare CR flagged when not normalising',
    input: 'A: 1\r\n\r\nx\ry\r\n',
    normalize: false,
    expected: { stored: '', bare: true, problem: 'bare-newline' },
  },
  {
    desc: 'a lone CR at the very end flagged when not normalising',
    input: 'A: 1\r\n\r\nx\r',
    normalize: false,
    expected: { stored: 'A: 1\r\n\r\nx\r', bare: true, problem: 'bare-newline' },
  },
  {
    desc: 'clean CRLF accepted when not normalising',
    input: 'A: 1\r\n\r\nx\r\n',
    normalize: false,
    expected: { stored: 'A: 1\r\n\r\nx\r\n', bare: false, problem: undefined },
  },
];

for (const c of endingCases) {
  test(`line endings: ${c.desc}`, async () => {
    const s = await spoolOf([c.input], c.normalize);
    assert.equal(s.problem, c.expected.problem);
    assert.equal(s.bareNewlines, c.expected.bare);
    assert.equal(s.received, Buffer.byteLength(c.input, 'latin1'), 'every byte received is counted (drained)');
    if (c.expected.problem === undefined) {
      assert.equal(await readAll(s.stream()), c.expected.stored);
      assert.equal(s.size, c.expected.stored.length);
    }
    s.release();
  });
}

// --- limits -----------------------------------------------------------------------------------

const line = (n: number) => 'x'.repeat(n);
const limitCases = [
  { desc: 'exactly maxBytes is fine', input: `A: 1\r\n\r\n${line(90)}\r\n`, lim: { maxBytes: 100 }, expected: undefined },
  { desc: 'one byte over maxBytes is too-big', input: `A: 1\r\n\r\n${line(91)}\r\n`, lim: { maxBytes: 100 }, expected: 'too-big' },
  { desc: 'maxBytes counts bytes after normalisation (LF → CRLF)', input: `A: 1\n\n${line(90)}\n`, lim: { maxBytes: 100 }, expected: undefined },
  { desc: 'normalised growth past maxBytes is too-big', input: `A: 1\n\n${line(89)}\n\n`, lim: { maxBytes: 100 }, expected: 'too-big' },
  {
    desc: 'header block of exactly maxHeaderBytes (empty line included) is fine',
    input: `A: ${line(15)}\r\n\r\nbody\r\n`,
    lim: { maxHeaderBytes: 22 },
    expected: undefined,
  },
  {
    desc: 'header block over maxHeaderBytes is header-too-big',
    input: `A: ${line(16)}\r\n\r\nbody\r\n`,
    lim: { maxHeaderBytes: 22 },
    expected: 'header-too-big',
  },
  {
    desc: 'an unterminated header over maxHeaderBytes is header-too-big',
    input: `A: ${line(100)}\r\nB: ${line(100)}\r\n`,
    lim: { maxHeaderBytes: 150 },
    expected: 'header-too-big',
  },
  { desc: 'a big body does not count towards maxHeaderBytes', input: `A: 1\r\n\r\n${line(500)}\r\n`, lim: { maxHeaderBytes: 50 }, expected: undefined },
  { desc: 'a line of exactly maxLineBytes (without CRLF) is fine', input: `A: 1\r\n\r\n${line(50)}\r\n`, lim: { maxLineBytes: 50 }, expected: undefined },
  { desc: 'a line one byte over maxLineBytes is line-too-long', input: `A: 1\r\n\r\n${line(51)}\r\n`, lim: { maxLineBytes: 50 }, expected: 'line-too-long' },
  { desc: 'an over-long last line without CRLF is line-too-long', input: `A: 1\r\n\r\n${line(200)}`, lim: { maxLineBytes: 50 }, expected: 'line-too-long' },
  { desc: 'an over-long header line is line-too-long', input: `A: ${line(60)}\r\n\r\nx\r\n`, lim: { maxLineBytes: 50 }, expected: 'line-too-long' },
];

for (const c of limitCases) {
  test(`limits: ${c.desc}`, async () => {
    const s = await spoolOf([c.input], true, c.lim);
    assert.equal(s.problem, c.expected);
    assert.equal(s.received, c.input.length, 'the client was drained either way');
    s.release();
  });
}

test('limits: too-big in a temp-file spool drops the file at once and keeps draining', async () => {
  const dir = join(tmpRoot, 'too-big');
  const chunks = ['A: 1\r\n\r\n', ...Array.from({ length: 20 }, () => `${line(98)}\r\n`)];
  const s = new Spool(limits({ maxBytes: 1000, memoryBytes: 100, tmpDir: dir }), true);
  let sawFile = false;
  const src = Readable.from(chunks.map((c) => Buffer.from(c)));
  src.on('data', () => {
    if (existsSync(dir) && readdirSync(dir).length > 0) sawFile = true;
  });
  await pipeline(src, s);
  assert.equal(s.problem, 'too-big');
  assert.ok(sawFile, 'the message went to a temp file before it grew too big');
  assert.deepEqual(readdirSync(dir), [], 'no temp file left behind');
  assert.equal(s.received, chunks.join('').length);
  s.release();
});

// --- memory vs temp file ----------------------------------------------------------------------

const big = `Subject: big\r\nX-A: 1\r\n\r\n${Array.from({ length: 40 }, (_, i) => `line ${i} ${line(40)}\r\n`).join('')}`;
const storageCases = [
  { desc: 'at memoryBytes it stays in memory', memoryBytes: big.length, inMemory: true },
  { desc: 'one byte over memoryBytes it goes to a temp file', memoryBytes: big.length - 1, inMemory: false },
  { desc: 'a tiny memoryBytes: temp file from the first chunks', memoryBytes: 10, inMemory: false },
];

for (const c of storageCases) {
  test(`storage: ${c.desc}`, async () => {
    const dir = join(tmpRoot, `storage-${c.memoryBytes}`);
    // Several chunks, so the switch to a file happens mid-message.
    const chunks = [big.slice(0, 7), big.slice(7, 300), big.slice(300, 1200), big.slice(1200)];
    const s = await spoolOf(chunks, true, { memoryBytes: c.memoryBytes, tmpDir: dir });
    assert.equal(s.problem, undefined);
    assert.equal(s.inMemory, c.inMemory);
    const files = existsSync(dir) ? readdirSync(dir) : [];
    assert.equal(files.length, c.inMemory ? 0 : 1);
    // The same bytes either way, readable any number of times.
    assert.equal(await readAll(s.stream()), big);
    assert.equal(await readAll(s.stream()), big, 'a second stream() is a fresh stream');
    assert.equal(await readAll(s.bodyStream()), big.slice(big.indexOf('\r\n\r\n') + 4));
    assert.equal(await readAll(s.bodyStream()), big.slice(big.indexOf('\r\n\r\n') + 4), 'a second bodyStream() is fresh');
    // memoryChunks: the same bytes as stream() while in memory; nothing once in a temp file.
    const held = s.memoryChunks();
    if (c.inMemory) assert.equal(Buffer.concat(held ?? []).toString('latin1'), big);
    else assert.equal(held, undefined);
    assert.equal(s.headerBytes.toString(), 'Subject: big\r\nX-A: 1\r\n\r\n');
    assert.deepEqual(
      s.headers.map((h) => [h.name, h.value]),
      [
        ['Subject', 'big'],
        ['X-A', '1'],
      ],
    );
    assert.equal(s.size, big.length);
    s.release();
    assert.deepEqual(existsSync(dir) ? readdirSync(dir) : [], [], 'release() deletes the temp file');
    s.release(); // twice is harmless
  });
}

test('storage: temp files are private to mailgate (mode 0600)', async () => {
  const dir = join(tmpRoot, 'mode');
  const s = await spoolOf([big], true, { memoryBytes: 10, tmpDir: dir });
  const [name] = readdirSync(dir);
  assert.ok(name);
  assert.equal(statSync(join(dir, name)).mode & 0o777, 0o600);
  s.release();
});

// --- header block -----------------------------------------------------------------------------

const headerCases = [
  {
    desc: 'header and body',
    input: 'Subject: a\r\nTo: b\r\n\r\nbody\r\n',
    expected: { header: 'Subject: a\r\nTo: b\r\n\r\n', body: 'body\r\n', terminated: true, names: ['Subject', 'To'] },
  },
  {
    desc: 'no body after the empty line',
    input: 'Subject: a\r\n\r\n',
    expected: { header: 'Subject: a\r\n\r\n', body: '', terminated: true, names: ['Subject'] },
  },
  {
    desc: 'no empty line: the whole message is header',
    input: 'Subject: a\r\nTo: b\r\n',
    expected: { header: 'Subject: a\r\nTo: b\r\n', body: '', terminated: false, names: ['Subject', 'To'] },
  },
  { desc: 'empty message', input: '', expected: { header: '', body: '', terminated: false, names: [] } },
  { desc: 'body starting at once (empty first line)', input: '\r\nbody\r\n', expected: { header: '\r\n', body: 'body\r\n', terminated: true, names: [] } },
  {
    desc: 'folded header line',
    input: 'Subject: a\r\n b\r\n\tc\r\n\r\nx\r\n',
    expected: { header: 'Subject: a\r\n b\r\n\tc\r\n\r\n', body: 'x\r\n', terminated: true, names: ['Subject'] },
  },
  {
    desc: 'a second empty line belongs to the body',
    input: 'A: 1\r\n\r\n\r\nx\r\n',
    expected: { header: 'A: 1\r\n\r\n', body: '\r\nx\r\n', terminated: true, names: ['A'] },
  },
  { desc: 'header via bare LF normalised', input: 'A: 1\n\nx\n', expected: { header: 'A: 1\r\n\r\n', body: 'x\r\n', terminated: true, names: ['A'] } },
];

for (const c of headerCases) {
  test(`header block: ${c.desc}`, async () => {
    const s = await spoolOf([c.input]);
    const sum = await summary(s);
    assert.equal(sum.header, c.expected.header);
    assert.equal(sum.body, c.expected.body);
    assert.equal(sum.headerTerminated, c.expected.terminated);
    assert.equal(sum.headerEnd, c.expected.header.length);
    assert.deepEqual(sum.names, c.expected.names);
    s.release();
  });
}

// --- chunk boundaries -------------------------------------------------------------------------

const splitCases = [
  { desc: 'CRLF message', input: 'Subject: hi\r\nX: y\r\n folded\r\n\r\nbody\r\n.line\r\n', normalize: true },
  { desc: 'bare CR and LF everywhere, normalised', input: 'A: 1\rB: 2\n\r\n\rx\r\ry\n\nz\r', normalize: true },
  { desc: 'bare LF, flagged', input: 'A: 1\r\nB: 2\n\r\nx\r\n', normalize: false },
  { desc: 'bare CR, flagged', input: 'A: 1\r\n\r\nx\ry\r\n', normalize: false },
  { desc: 'empty line split between CR and LF, no body', input: 'A: 1\r\n\r\n', normalize: true },
];

for (const c of splitCases) {
  test(`chunk boundaries: ${c.desc} — same result split at every offset and byte by byte`, async () => {
    const whole = await summary(await spoolOf([c.input], c.normalize));
    for (let i = 0; i <= c.input.length; i++) {
      const s = await spoolOf([c.input.slice(0, i), c.input.slice(i)], c.normalize);
      const got = await summary(s);
      s.release();
      if (whole.problem) assert.equal(got.problem, whole.problem, `split at ${i}`);
      else assert.deepEqual(got, whole, `split at ${i}`);
    }
    for (let i = 0; i < c.input.length; i++) {
      for (let j = i + 1; j < c.input.length; j++) {
        const s = await spoolOf([c.input.slice(0, i), c.input.slice(i, j), c.input.slice(j)], c.normalize);
        const got = await summary(s);
        s.release();
        if (whole.problem) assert.equal(got.problem, whole.problem, `split at ${i}, ${j}`);
        else assert.deepEqual(got, whole, `split at ${i}, ${j}`);
      }
    }
    const bytes = await spoolOf([...c.input], c.normalize);
    const got = await summary(bytes);
    bytes.release();
    if (whole.problem) assert.equal(got.problem, whole.problem);
    else assert.deepEqual(got, whole, 'one byte per chunk');
  });
}

test('chunk boundaries: the normalised CRLF message matches its expected bytes', async () => {
  const s = await spoolOf(['A: 1\rB: 2\n\r\n\rx\r\ry\n\nz\r']);
  assert.equal(await readAll(s.stream()), 'A: 1\r\nB: 2\r\n\r\n\r\nx\r\n\r\ny\r\n\r\nz\r\n');
  assert.equal(s.headerBytes.toString(), 'A: 1\r\nB: 2\r\n\r\n');
  s.release();
});

test('chunk boundaries: a line limit is enforced across chunks', async () => {
  const s = await spoolOf(['A: 1\r\n\r\n', line(30), line(30), '\r\n'], true, { maxLineBytes: 50 });
  assert.equal(s.problem, 'line-too-long');
  s.release();
  const ok = await spoolOf(['A: 1\r\n\r\n', line(25), line(25), '\r', '\n', line(50), '\r\n'], true, { maxLineBytes: 50 });
  assert.equal(ok.problem, undefined, 'line length restarts after each CRLF');
  ok.release();
});

// bodyParts() is what the backend client writes: the stored buffers while in memory, one stream
// of the temp file otherwise; either way exactly the bytes of bodyStream().
test('storage: bodyParts gives the body, from memory as buffers and from a temp file as a stream', async () => {
  const input = 'Subject: a\r\nTo: b\r\n\r\nline 1\r\nline 2\r\n';
  for (const cuts of [[input], ['Subject: a\r\nTo', ': b\r\n\r', '\nline 1\r\n', 'line 2\r\n'], [...input]]) {
    for (const memoryBytes of [1_000_000, 10]) {
      const s = await spoolOf(cuts, true, { memoryBytes, tmpDir: join(tmpRoot, 'parts') });
      const parts = s.bodyParts();
      if (memoryBytes > input.length)
        assert.ok(
          parts.every((p) => Buffer.isBuffer(p)),
          'in memory: buffers, no stream',
        );
      else assert.ok(parts.length === 1 && !Buffer.isBuffer(parts[0]), 'temp file: one stream');
      let got = '';
      for (const p of parts) got += Buffer.isBuffer(p) ? p.toString('latin1') : await readAll(p);
      assert.equal(got, 'line 1\r\nline 2\r\n', JSON.stringify(cuts));
      assert.equal(got, await readAll(s.bodyStream()));
      assert.equal(s.headerBytes.toString('latin1'), 'Subject: a\r\nTo: b\r\n\r\n');
      s.release();
    }
  }
});
