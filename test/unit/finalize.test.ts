// The finalize step (edits applied once, then signers over the final block) and the header
// parsing/rewriting under it: what the backend receives must be exactly the original bytes plus
// our edits — a signature or seal over anything else breaks, and a mangled header is a lie.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { finalizeHeader, mergeEdits, type FinalizeInput } from '../../src/pipeline/finalize.ts';
import { emptyEdits, type Edits, type Signer } from '../../src/pipeline/check.ts';
import { foldHeader, parseHeaderBlock, rewriteHeaderBlock } from '../../src/message/headers.ts';

const b = (s: string) => Buffer.from(s, 'latin1');

function edits(over: Partial<Edits> = {}): Edits {
  return { ...emptyEdits(), ...over };
}

/** Finalizes with and without the original bytes (which are reused when nothing changed): both must agree. */
async function fin(header: string, e: Partial<Edits> = {}, trace: FinalizeInput['trace'] = [], terminated = true) {
  // Signers are called (and counted) once per run: those cases take the reusing path alone.
  if (e.signers?.length)
    return finalizeHeader({ fields: parseHeaderBlock(b(header)), headerTerminated: terminated, edits: edits(e), trace, original: b(header) });
  const rebuilt = await finalizeHeader({ fields: parseHeaderBlock(b(header)), headerTerminated: terminated, edits: edits(e), trace });
  const reused = await finalizeHeader({ fields: parseHeaderBlock(b(header)), headerTerminated: terminated, edits: edits(e), trace, original: b(header) });
  assert.deepEqual(reused, rebuilt);
  return reused;
}

test('finalize: reusing the original header bytes gives the rebuilt block, on random header blocks', async () => {
  let seed = 16;
  const r = () => {
    seed = (seed * 1664525 + 1013904223) >>> 0;
    return seed / 2 ** 32;
  };
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
  const lines = [
    'Subject: hi',
    'From: a@example.test',
    'X-Spam: yes',
    ' folded',
    '\tfolded too',
    'no colon here',
    'Subject : spaced',
    'Subject:tight',
    'X-Latin: caf\xe9',
    '',
  ];
  let reusedCount = 0;
  for (let i = 0; i < 3000; i++) {
    const n = Math.floor(r() * 8);
    let header = '';
    for (let j = 0; j < n; j++) header += `${pick(lines)}\r\n`;
    const terminated = r() < 0.8;
    if (terminated) header += '\r\n';
    else if (r() < 0.5) header += pick(lines); // a last line without CRLF
    const e = pick<Partial<Edits>>([{}, {}, { removeHeaders: [(name) => name.toLowerCase() === 'x-spam'] }, { tagSubject: '[SPAM]' }]);
    const trace = r() < 0.5 ? [{ name: 'Received', value: 'from x by y; now' }] : [];
    const fields = parseHeaderBlock(b(header));
    const rebuilt = await finalizeHeader({ fields, headerTerminated: terminated, edits: edits(e), trace });
    const reused = await finalizeHeader({ fields, headerTerminated: terminated, edits: edits(e), trace, original: b(header) });
    assert.deepEqual(reused, rebuilt, JSON.stringify(header));
    if (reused.block.subarray(reused.block.length - b(header).length).equals(b(header))) reusedCount++;
  }
  assert.ok(reusedCount > 1000);
});

// --- removal ----------------------------------------------------------------------------------

const removalCases = [
  {
    desc: 'a predicate on the name removes every field of that name, indexed per name',
    input: 'X-Spam: 1\r\nSubject: s\r\nx-spam: 2\r\nTo: t\r\n\r\n',
    remove: [(n: string) => n.toLowerCase() === 'x-spam'],
    expected: {
      block: 'Subject: s\r\nTo: t\r\n\r\n',
      removed: [
        { name: 'X-Spam', index: 1 },
        { name: 'x-spam', index: 2 },
      ],
    },
  },
  {
    desc: 'a predicate on the value removes only the matching occurrence; the index counts the kept ones too',
    input: 'Received: a\r\nX-Status: ok\r\nReceived: b\r\nX-Status: forged\r\n\r\n',
    remove: [(n: string, v: string) => n === 'X-Status' && v === 'forged'],
    expected: { block: 'Received: a\r\nX-Status: ok\r\nReceived: b\r\n\r\n', removed: [{ name: 'X-Status', index: 2 }] },
  },
  {
    desc: 'several predicates: any one removes',
    input: 'A: 1\r\nB: 2\r\nC: 3\r\n\r\n',
    remove: [(n: string) => n === 'A', (n: string) => n === 'C'],
    expected: {
      block: 'B: 2\r\n\r\n',
      removed: [
        { name: 'A', index: 1 },
        { name: 'C', index: 1 },
      ],
    },
  },
  {
    desc: 'a folded field is removed with all its continuation lines',
    input: 'A: 1\r\nX-Long: a\r\n b\r\n\tc\r\nB: 2\r\n\r\n',
    remove: [(n: string) => n === 'X-Long'],
    expected: { block: 'A: 1\r\nB: 2\r\n\r\n', removed: [{ name: 'X-Long', index: 1 }] },
  },
  {
    desc: 'a nameless (broken) line is kept even by a predicate that matches everything',
    input: 'A: 1\r\nthis line has no colon\r\nB: 2\r\n\r\n',
    remove: [() => true],
    expected: {
      block: 'this line has no colon\r\n\r\n',
      removed: [
        { name: 'A', index: 1 },
        { name: 'B', index: 1 },
      ],
    },
  },
  {
    desc: 'no predicate: the block is byte for byte the original',
    input: 'A: 1\r\nB:\tlatin1 \xe9\xff\r\n  folded\r\n\r\n',
    remove: [],
    expected: { block: 'A: 1\r\nB:\tlatin1 \xe9\xff\r\n  folded\r\n\r\n', removed: [] },
  },
];

for (const c of removalCases) {
  test(`remove: ${c.desc}`, async () => {
    const out = await fin(c.input, { removeHeaders: c.remove });
    assert.equal(out.block.toString('latin1'), c.expected.block);
    assert.deepEqual(out.removed, c.expected.removed);
    assert.deepEqual(out.added, []);
  });
}

// --- added fields and trace -------------------------------------------------------------------

test('added fields go on top in order, trace fields above them', async () => {
  const out = await fin(
    'Subject: s\r\n\r\n',
    {
      addHeaders: [
        { name: 'Authentication-Results', value: 'mx; spf=pass' },
        { name: 'X-Mailgate-Status', value: 'score=1' },
      ],
    },
    [{ name: 'Received', value: 'from a by b; date' }],
  );
  assert.equal(out.block.toString(), 'Received: from a by b; date\r\nAuthentication-Results: mx; spf=pass\r\nX-Mailgate-Status: score=1\r\nSubject: s\r\n\r\n');
  assert.deepEqual(out.added, [
    { name: 'Received', value: 'from a by b; date' },
    { name: 'Authentication-Results', value: 'mx; spf=pass' },
    { name: 'X-Mailgate-Status', value: 'score=1' },
  ]);
});

test('a long added value is folded (no line over 78) and unfolds back to the value', async () => {
  const value = Array.from({ length: 20 }, (_, i) => `word${i};`).join(' ');
  const out = await fin('Subject: s\r\n\r\n', { addHeaders: [{ name: 'X-Long', value }] });
  const text = out.block.toString();
  const ours = text.slice(0, text.indexOf('Subject:'));
  for (const l of ours.split('\r\n')) assert.ok(l.length <= 78, `line too long: ${l}`);
  const parsed = parseHeaderBlock(Buffer.from(ours));
  assert.equal(parsed.length, 1);
  assert.equal(parsed[0]?.value.replace(/\t/g, ' '), value);
});

test('added UTF-8 values are written as UTF-8, original fields stay latin1-exact', async () => {
  const out = await fin('X-Old: \xe9\r\n\r\n', { addHeaders: [{ name: 'X-New', value: 'caf\u00e9' }] });
  assert.deepEqual(out.block, Buffer.concat([Buffer.from('X-New: caf\u00e9\r\n', 'utf8'), b('X-Old: \xe9\r\n\r\n')]));
});

test('a header block without the empty line gets none added', async () => {
  const out = await fin('Subject: s\r\nTo: t\r\n', { addHeaders: [{ name: 'X', value: '1' }] }, [], false);
  assert.equal(out.block.toString(), 'X: 1\r\nSubject: s\r\nTo: t\r\n');
});

test('an empty header block with the empty line: only ours and the empty line', async () => {
  const out = await fin('\r\n', { addHeaders: [{ name: 'X', value: '1' }] }, [{ name: 'Received', value: 'r' }]);
  assert.equal(out.block.toString(), 'Received: r\r\nX: 1\r\n\r\n');
});

// --- subject tag ------------------------------------------------------------------------------

const subjectCases = [
  { desc: 'plain subject', input: 'Subject: hello\r\n\r\n', tag: '[SPAM]', expected: { block: 'Subject: [SPAM] hello\r\n\r\n', subject: '[SPAM] hello' } },
  {
    desc: 'only the first Subject field is tagged',
    input: 'Subject: one\r\nTo: t\r\nSubject: two\r\n\r\n',
    tag: '[SPAM]',
    expected: { block: 'Subject: [SPAM] one\r\nTo: t\r\nSubject: two\r\n\r\n', subject: '[SPAM] one' },
  },
  {
    desc: 'already tagged: not tagged twice',
    input: 'Subject: [SPAM] hello\r\n\r\n',
    tag: '[SPAM]',
    expected: { block: 'Subject: [SPAM] hello\r\n\r\n', subject: undefined },
  },
  {
    desc: 'folding and encoded words kept byte-exact',
    input: 'Subject: =?UTF-8?B?w6lsw6h2ZQ==?=\r\n =?ISO-8859-1?Q?caf=E9?=\r\n\r\n',
    tag: '[SPAM]',
    expected: {
      block: 'Subject: [SPAM] =?UTF-8?B?w6lsw6h2ZQ==?=\r\n =?ISO-8859-1?Q?caf=E9?=\r\n\r\n',
      subject: '[SPAM] =?UTF-8?B?w6lsw6h2ZQ==?= =?ISO-8859-1?Q?caf=E9?=',
    },
  },
  {
    desc: 'tab after the colon and raw 8-bit bytes kept',
    input: 'Subject:\tr\xe9sum\xe9\r\n\r\n',
    tag: '[SPAM]',
    expected: { block: 'Subject: [SPAM]\tr\xe9sum\xe9\r\n\r\n', subject: '[SPAM] r\ufffdsum\ufffd' as string | undefined },
  },
  {
    desc: 'lower-case field name matched, name kept as written',
    input: 'subject: hi\r\n\r\n',
    tag: '[SPAM]',
    expected: { block: 'subject: [SPAM] hi\r\n\r\n', subject: '[SPAM] hi' },
  },
  {
    desc: 'no space after the colon: the tag is still a separate word',
    input: 'Subject:hi\r\n\r\n',
    tag: '[SPAM]',
    expected: { block: 'Subject: [SPAM] hi\r\n\r\n', subject: '[SPAM] hi' },
  },
  {
    desc: 'whitespace before the colon (obsolete syntax, RFC 5322 4.5.8): tagged, not mangled',
    input: 'Subject : hi\r\n\r\n',
    tag: '[SPAM]',
    expected: { block: 'Subject: [SPAM] hi\r\n\r\n', subject: '[SPAM] hi' },
  },
  { desc: 'no Subject field: nothing added', input: 'To: t\r\n\r\n', tag: '[SPAM]', expected: { block: 'To: t\r\n\r\n', subject: undefined } },
  { desc: 'no tag: Subject untouched', input: 'Subject: hi\r\n\r\n', tag: undefined, expected: { block: 'Subject: hi\r\n\r\n', subject: undefined } },
];

for (const c of subjectCases) {
  test(`subject: ${c.desc}`, async () => {
    const out = await fin(c.input, c.tag !== undefined ? { tagSubject: c.tag } : {});
    assert.equal(out.block.toString('latin1'), c.expected.block);
    assert.equal(out.subject, c.expected.subject);
  });
}

test('subject: a removed first Subject is not tagged, nor is the next one', async () => {
  const out = await fin('Subject: forged\r\nSubject: real\r\n\r\n', { tagSubject: '[SPAM]', removeHeaders: [(_n, v) => v === 'forged'] });
  assert.equal(out.block.toString(), 'Subject: real\r\n\r\n');
  assert.deepEqual(out.removed, [{ name: 'Subject', index: 1 }]);
});

// --- signers ----------------------------------------------------------------------------------

function recordingSigner(name: string, order: number, seen: Array<{ name: string; block: string }>): Signer {
  return {
    name,
    order,
    sign: async (block) => {
      seen.push({ name, block: block.toString('latin1') });
      return [{ name: `X-${name}`, value: `signed ${block.length}` }];
    },
  };
}

test('signers run after every edit, in `order`, each over the block the previous produced', async () => {
  const seen: Array<{ name: string; block: string }> = [];
  // Given in the wrong order on purpose: DKIM (20) must run after ARC (10).
  const out = await fin(
    'X-Forged: 1\r\nSubject: hi\r\n\r\n',
    {
      removeHeaders: [(n) => n === 'X-Forged'],
      addHeaders: [{ name: 'Authentication-Results', value: 'mx; dkim=pass' }],
      tagSubject: '[SPAM]',
      signers: [recordingSigner('DKIM', 20, seen), recordingSigner('ARC', 10, seen)],
    },
    [{ name: 'Received', value: 'r' }],
  );
  const edited = 'Received: r\r\nAuthentication-Results: mx; dkim=pass\r\nSubject: [SPAM] hi\r\n\r\n';
  assert.deepEqual(
    seen.map((s) => s.name),
    ['ARC', 'DKIM'],
  );
  assert.equal(seen[0]?.block, edited, 'the first signer sees the fully edited block (tag included, forged field gone)');
  assert.equal(seen[1]?.block, `X-ARC: signed ${edited.length}\r\n${edited}`, 'the next signer sees the previous signer’s fields');
  const arc = `X-ARC: signed ${edited.length}\r\n`;
  assert.equal(out.block.toString(), `X-DKIM: signed ${arc.length + edited.length}\r\n${arc}${edited}`);
  assert.deepEqual(
    out.added.map((h) => h.name),
    ['X-DKIM', 'X-ARC', 'Received', 'Authentication-Results'],
  );
});

test('a signer that returns nothing changes nothing', async () => {
  const seen: Array<{ name: string; block: string }> = [];
  const quiet: Signer = { name: 'quiet', order: 5, sign: async (blk) => (seen.push({ name: 'quiet', block: blk.toString() }), []) };
  const out = await fin('Subject: hi\r\n\r\n', { signers: [quiet] });
  assert.equal(out.block.toString(), 'Subject: hi\r\n\r\n');
  assert.equal(seen.length, 1);
  assert.deepEqual(out.added, []);
});

// --- mergeEdits -------------------------------------------------------------------------------

test('mergeEdits: lists append, the first subject tag wins, later rewrites win', () => {
  const r1 = () => false;
  const r2 = () => true;
  const s1: Signer = { name: 'a', order: 1, sign: async () => [] };
  const s2: Signer = { name: 'b', order: 2, sign: async () => [] };
  const into = emptyEdits();
  mergeEdits(into, {
    addHeaders: [{ name: 'A', value: '1' }],
    removeHeaders: [r1],
    tagSubject: '[first]',
    rcptRewrites: new Map([
      ['x@a', 'y@a'],
      ['p@a', 'q@a'],
    ]),
    senderRewrite: 's1@a',
    signers: [s1],
  });
  mergeEdits(into, {
    addHeaders: [{ name: 'B', value: '2' }],
    removeHeaders: [r2],
    tagSubject: '[second]',
    rcptRewrites: new Map([['x@a', 'z@a']]),
    senderRewrite: 's2@a',
    signers: [s2],
  });
  mergeEdits(into, {});
  assert.deepEqual(into.addHeaders, [
    { name: 'A', value: '1' },
    { name: 'B', value: '2' },
  ]);
  assert.deepEqual(into.removeHeaders, [r1, r2]);
  assert.equal(into.tagSubject, '[first]');
  assert.deepEqual(
    [...into.rcptRewrites],
    [
      ['x@a', 'z@a'],
      ['p@a', 'q@a'],
    ],
  );
  assert.equal(into.senderRewrite, 's2@a');
  assert.deepEqual(into.signers, [s1, s2]);
});

test('mergeEdits: merging does not alias the source lists', () => {
  const from = { addHeaders: [{ name: 'A', value: '1' }] };
  const into = emptyEdits();
  mergeEdits(into, from);
  into.addHeaders.push({ name: 'B', value: '2' });
  assert.equal(from.addHeaders.length, 1);
});

// --- headers.ts -------------------------------------------------------------------------------

const parseCases = [
  {
    desc: 'simple fields',
    input: 'From: a@b\r\nTo: c@d\r\n\r\n',
    expected: [
      ['From', 'a@b'],
      ['To', 'c@d'],
    ],
  },
  { desc: 'folded value unfolded, raw keeps the folding', input: 'Subject: a\r\n b\r\n\tc\r\n\r\n', expected: [['Subject', 'a b\tc']] },
  {
    desc: 'no empty line',
    input: 'A: 1\r\nB: 2\r\n',
    expected: [
      ['A', '1'],
      ['B', '2'],
    ],
  },
  {
    desc: 'last line without CRLF',
    input: 'A: 1\r\nB: 2',
    expected: [
      ['A', '1'],
      ['B', '2'],
    ],
  },
  { desc: 'stops at the empty line (body not parsed)', input: 'A: 1\r\n\r\nB: 2\r\n', expected: [['A', '1']] },
  {
    desc: 'empty value',
    input: 'A:\r\nB: \r\n\r\n',
    expected: [
      ['A', ''],
      ['B', ''],
    ],
  },
  { desc: 'colon in the value', input: 'X: a: b: c\r\n\r\n', expected: [['X', 'a: b: c']] },
  {
    desc: 'nameless line kept with its text as value',
    input: 'A: 1\r\ngarbage\r\n\r\n',
    expected: [
      ['A', '1'],
      ['', 'garbage'],
    ],
  },
  { desc: 'line starting with a colon is nameless', input: ': x\r\n\r\n', expected: [['', ': x']] },
  { desc: 'UTF-8 value decoded', input: 'Subject: caf\xc3\xa9\r\n\r\n', expected: [['Subject', 'caf\u00e9']] },
];

for (const c of parseCases) {
  test(`parseHeaderBlock: ${c.desc}`, () => {
    const block = b(c.input);
    const fields = parseHeaderBlock(block);
    assert.deepEqual(
      fields.map((f) => [f.name, f.value]),
      c.expected,
    );
    // raw fields concatenated are the block up to the empty line, byte for byte.
    const end = c.input.indexOf('\r\n\r\n');
    const head = end < 0 ? c.input : c.input.slice(0, end + 2);
    assert.deepEqual(Buffer.from(fields.map((f) => f.raw).join(''), 'latin1'), b(head));
  });
}

test('parseHeaderBlock: raw latin1 / invalid UTF-8 bytes survive a rewrite unchanged', () => {
  const input = Buffer.from([...b('X-Bin: '), 0xe9, 0xff, 0x80, 0x00, 0x7f, ...b('\r\n \xfe\r\nTo: t\r\n\r\n')]);
  const fields = parseHeaderBlock(input);
  assert.equal(fields.length, 2);
  assert.deepEqual(rewriteHeaderBlock(fields, true, [], []), input);
});

test('foldHeader: short values on one line', () => {
  assert.equal(foldHeader('X-A', 'one two'), 'X-A: one two\r\n');
});

test('foldHeader: long values folded at spaces with a tab, no line over 78, words kept', () => {
  const value = Array.from({ length: 30 }, (_, i) => `w${i}x`).join(' ');
  const out = foldHeader('X-Words', value);
  const lines = out.slice(0, -2).split('\r\n');
  assert.ok(lines.length > 1);
  for (const l of lines) assert.ok(l.length <= 78, l);
  for (const l of lines.slice(1)) assert.ok(l.startsWith('\t'));
  assert.equal(parseHeaderBlock(Buffer.from(out))[0]?.value.replace(/\t/g, ' '), value);
});

test('foldHeader: a single over-long word is not split', () => {
  const w = 'x'.repeat(100);
  assert.equal(foldHeader('X', w), `X: ${w}\r\n`);
});

const rewriteCases = [
  { desc: 'nothing to do: identical bytes', input: 'A: 1\r\n b\r\nB: 2\r\n\r\n', had: true, prepend: [], remove: [], expected: 'A: 1\r\n b\r\nB: 2\r\n\r\n' },
  {
    desc: 'prepend in order',
    input: 'A: 1\r\n\r\n',
    had: true,
    prepend: [
      { name: 'R', value: '1' },
      { name: 'S', value: '2' },
    ],
    remove: [],
    expected: 'R: 1\r\nS: 2\r\nA: 1\r\n\r\n',
  },
  {
    desc: 'remove by name',
    input: 'A: 1\r\nX-Mailgate-Status: forged\r\nB: 2\r\n\r\n',
    had: true,
    prepend: [],
    remove: [(n: string) => n.toLowerCase() === 'x-mailgate-status'],
    expected: 'A: 1\r\nB: 2\r\n\r\n',
  },
  { desc: 'without the empty line', input: 'A: 1\r\n', had: false, prepend: [{ name: 'R', value: 'r' }], remove: [], expected: 'R: r\r\nA: 1\r\n' },
  { desc: 'nameless line never removed', input: 'junk\r\nA: 1\r\n\r\n', had: true, prepend: [], remove: [() => true], expected: 'junk\r\n\r\n' },
];

for (const c of rewriteCases) {
  test(`rewriteHeaderBlock: ${c.desc}`, () => {
    const out = rewriteHeaderBlock(parseHeaderBlock(b(c.input)), c.had, c.prepend, c.remove);
    assert.equal(out.toString('latin1'), c.expected);
  });
}
