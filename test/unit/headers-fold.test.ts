// foldHeader builds each line once from a slice of the value; the reference here is the
// word-by-word fold it replaced: the same output for generated names and values (single and
// repeated spaces, tabs, semicolons, over-long words, leading and trailing spaces).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { foldHeader, parseHeaderBlock } from '../../src/message/headers.ts';

function reference(name: string, value: string): string {
  const words = value.split(/(?<=;) +| +/);
  let line = `${name}:`;
  const lines: string[] = [];
  for (const w of words) {
    if (line.length + 1 + w.length > 78 && line.trim().length > name.length + 1) {
      lines.push(line);
      line = `\t${w}`;
    } else {
      line += ` ${w}`;
    }
  }
  lines.push(line);
  return lines.join('\r\n') + '\r\n';
}

const cases = [
  { desc: 'empty value', name: 'X-A', value: '' },
  { desc: 'one word', name: 'X-A', value: 'one' },
  { desc: 'leading and trailing space', name: 'X-A', value: ' a b ' },
  { desc: 'long name', name: 'X-'.padEnd(90, 'n'), value: 'a b c' },
  {
    desc: 'Authentication-Results',
    name: 'Authentication-Results',
    value: `mx.example.test; spf=pass smtp.mailfrom=sender@example.test; dkim=pass header.i=@example.test header.s=bench header.a=rsa-sha256 header.b=${'x'.repeat(8)}; dmarc=pass header.from=example.test`,
  },
  { desc: 'a word over 78', name: 'X', value: `a ${'w'.repeat(100)} b` },
  { desc: 'double spaces (the word fold)', name: 'X', value: `a  b${' c'.repeat(60)}` },
];
for (const c of cases) test(`foldHeader: ${c.desc}`, () => assert.equal(foldHeader(c.name, c.value), reference(c.name, c.value)));

test('foldHeader: the same as the word-by-word fold on generated values', () => {
  const token = fc.constantFrom('a', 'word', 'longer-token;', ' ', ' ', ' ', '  ', '\t', ';', 'x'.repeat(40), 'y'.repeat(80), '=');
  fc.assert(
    fc.property(fc.constantFrom('X', 'Received', 'Authentication-Results', ' X ', 'N'.repeat(80)), fc.array(token, { maxLength: 80 }), (name, ts) => {
      const value = ts.join('');
      assert.equal(foldHeader(name, value), reference(name, value));
    }),
    { numRuns: 5000 },
  );
});

test('foldHeader: every line-length boundary (words of 1 to 20 characters)', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 1, max: 20 }), { minLength: 1, maxLength: 60 }), (lengths) => {
      const value = lengths.map((n, i) => String.fromCharCode(97 + (i % 26)).repeat(n)).join(' ');
      assert.equal(foldHeader('Received', value), reference('Received', value));
    }),
    { numRuns: 3000 },
  );
});

test('parseHeaderBlock: ASCII and UTF-8 values read the same as before', () => {
  const block = Buffer.from('Subject: caf\u00e9 \u2603\r\nX-A: plain\r\n folded\r\n\r\n', 'utf8');
  const fields = parseHeaderBlock(block);
  assert.deepEqual(
    fields.map((f) => [f.name, f.value]),
    [
      ['Subject', 'caf\u00e9 \u2603'],
      ['X-A', 'plain folded'],
    ],
  );
});
