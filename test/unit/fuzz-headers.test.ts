// Fuzzing the header parser and editor (src/message/headers.ts) and the message-data parsers
// built on it (From addresses, HTML text): random header blocks never throw, fields round-trip
// byte for byte, and an edited block can never make the original text continue a field we add.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseHeaderBlock, rewriteHeaderBlock, foldHeader } from '../../src/message/headers.ts';
import { extractAddresses, MAX_ADDRESSES } from '../../src/pipeline/message-facts.ts';
import { htmlToText } from '../../src/message/html-text.ts';
import { buildTransactionStrip } from '../../src/message/strip-headers.ts';
import { runFuzz } from '../helpers/fuzz.ts';

const token = fc.oneof(
  fc.constantFrom(
    'From',
    'Subject',
    'Authentication-Results',
    'X-Spam-Flag',
    'X-Mailgate-Status',
    ':',
    ': ',
    ' ',
    '\t',
    '\r\n',
    '\r\n ',
    '\r\n\t',
    '\n',
    '\r',
    '\0',
    'mx.example.test;',
    'dkim=pass',
    '"',
    '(',
    ')',
    '<',
    '>',
    '@',
    ',',
    '=?utf-8?q?x?=',
  ),
  fc.string({ maxLength: 6 }),
  fc.string({ unit: 'binary', maxLength: 4 }),
);
const block = fc.tuple(fc.array(token, { maxLength: 30 }), fc.boolean()).map(([parts, end]) => parts.join('') + (end ? '\r\n\r\n' : ''));
const strip = buildTransactionStrip({ authservIds: ['mx.example.test'] });

test('fuzz: header parse → rewrite never throws, round-trips, and never continues our fields', (t) => {
  const runs = runFuzz(
    'header parser/editor',
    fc.property(block, fc.boolean(), (text, withRemoval) => {
      const buf = Buffer.from(text, 'latin1');
      const bytes = buf.toString('latin1');
      const fields = parseHeaderBlock(buf);
      // Round trip: the raw fields are the block up to the empty line (or the whole block).
      const joined = fields.map((f) => f.raw).join('');
      assert.ok(bytes.startsWith(joined), 'raw fields are not a prefix of the block');
      const prepend = [
        { name: 'Received', value: 'from x by mx.example.test; Mon, 1 Jan 2026 00:00:00 +0000' },
        { name: 'Authentication-Results', value: 'mx.example.test; spf=none' },
      ];
      const out = rewriteHeaderBlock(fields, true, prepend, withRemoval ? [strip] : []).toString('latin1');
      const ours = prepend.map((h) => foldHeader(h.name, h.value)).join('');
      assert.ok(out.startsWith(ours));
      const rest = out.slice(ours.length);
      assert.ok(!rest.startsWith(' ') && !rest.startsWith('\t'), `original text continues our last header: ${JSON.stringify(rest.slice(0, 40))}`);
      for (const f of fields) {
        assert.equal(typeof f.value, 'string');
        if (f.name) assert.ok(!f.name.includes(':'));
      }
    }),
  );
  t.diagnostic(`runs ${runs}`);
});

const addrToken = fc.oneof(
  fc.constantFrom('"', '\\', '(', ')', '<', '>', '@', ',', ':', ';', ' ', 'a', 'b.example', 'x@y.example', '<a@b.example>'),
  fc.string({ maxLength: 5 }),
);
test('fuzz: extractAddresses never throws and returns addresses only', (t) => {
  const runs = runFuzz(
    'From address list',
    fc.property(
      fc.array(addrToken, { maxLength: 40 }).map((a) => a.join('')),
      (v) => {
        const out = extractAddresses(v);
        assert.ok(out.length <= MAX_ADDRESSES);
        for (const a of out) {
          assert.ok(a.includes('@'));
          assert.equal(a, a.toLowerCase());
          assert.ok(!a.includes('<') && !a.includes('>'));
        }
      },
    ),
  );
  t.diagnostic(`runs ${runs}`);
});

const htmlToken = fc.oneof(
  fc.constantFrom(
    '<',
    '>',
    '</',
    '<script>',
    '</script>',
    '<STYLE >',
    '</style >',
    '<br/>',
    '</p>',
    '&amp;',
    '&#x41;',
    '&#65;',
    '&',
    ';',
    '\n',
    ' ',
    '\t',
    'text',
  ),
  fc.string({ maxLength: 5 }),
);
test('fuzz: htmlToText never throws and respects maxChars', (t) => {
  const runs = runFuzz(
    'HTML to text',
    fc.property(
      fc.array(htmlToken, { maxLength: 40 }).map((a) => a.join('')),
      fc.integer({ min: 0, max: 200 }),
      (h, max) => {
        const out = htmlToText(h, max);
        assert.ok(out.length <= max);
        assert.equal(out, out.trim());
      },
    ),
  );
  t.diagnostic(`runs ${runs}`);
});
