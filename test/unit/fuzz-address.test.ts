// Fuzzing the SMTP command argument handling (src/smtp/address.ts): random addresses with the
// characters attackers use (%, !, @, quotes, brackets, dots, Unicode) never throw, and an accepted
// recipient is always one of our domains with no routing characters left in its local part.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { domainToASCII } from 'node:url';
import fc from 'fast-check';
import { checkRecipient, normalizeDomain, parseAddress } from '../../src/net/address.ts';
import { runFuzz } from '../helpers/fuzz.ts';

const domains = new Set(['example.test', 'xn--bcher-kva.example']);
const piece = fc.oneof(
  fc.constantFrom(
    '%',
    '!',
    '@',
    '"',
    '\\',
    '.',
    '[',
    ']',
    ':',
    ',',
    ' ',
    '\t',
    '<',
    '>',
    'example.test',
    'EXAMPLE.TEST.',
    'bücher.example',
    'xn--',
    'postmaster',
    '\0',
    '\r\n',
  ),
  fc.string({ maxLength: 8 }),
  fc.string({ unit: 'grapheme', maxLength: 4 }),
);
const address = fc.array(piece, { maxLength: 12 }).map((a) => a.join(''));

test('fuzz: parseAddress / checkRecipient never throw; accepted recipients are ours and free of routing', (t) => {
  const runs = runFuzz(
    'smtp address',
    fc.property(address, (a) => {
      const p = parseAddress(a);
      if (p) {
        assert.ok(p.address.endsWith(`@${p.domain}`));
        assert.equal(p.domain, p.domain.toLowerCase());
      }
      const v = checkRecipient(a, domains);
      if (v.ok) {
        assert.ok(domains.has(v.parsed.domain), `accepted a foreign domain: ${v.parsed.domain}`);
        const local = v.parsed.local.startsWith('"') ? v.parsed.local.slice(1, -1) : v.parsed.local;
        assert.ok(!/[%!@]/.test(local), `accepted routing characters: ${v.parsed.local}`);
      }
      normalizeDomain(a);
    }),
  );
  t.diagnostic(`runs ${runs}`);
});

/** normalizeDomain as it was before its ASCII shortcut: every domain through domainToASCII. */
function viaDomainToASCII(domain: string): string {
  const d = domain.trim().replace(/\.$/, '').toLowerCase();
  if (d.startsWith('[')) return d;
  const ascii = domainToASCII(d);
  return ascii === '' ? d : ascii;
}

// What the WHATWG host parser does to ASCII names: percent-decoding, IPv4 numbers in any base
// ("0x7f.1" is 127.0.0.1), punycode validation of xn-- labels, a refused numeric last label.
const domainPiece = fc.constantFrom(
  'a',
  'z',
  'Q',
  '0',
  '7',
  '9',
  'x',
  '0x',
  '0X',
  'xn--',
  '-',
  '_',
  '.',
  '..',
  '%41',
  'ü',
  ' ',
  'example',
  'test',
  '255',
  '08',
);
const domainLike = fc.array(domainPiece, { maxLength: 10 }).map((a) => a.join(''));

test('fuzz: normalizeDomain gives what domainToASCII gives (its ASCII shortcut changes nothing)', (t) => {
  const cases = [
    'example.test',
    'EXAMPLE.TEST.',
    'mx-1.example.test',
    '0x7f.1',
    'a.0x10',
    'example.123',
    '%41.com',
    'xn--abc',
    'xn--bcher-kva.example',
    '_dmarc.x',
    'a..b',
    'bücher.example',
  ];
  for (const c of cases) assert.equal(normalizeDomain(c), viaDomainToASCII(c), c);
  const runs = runFuzz(
    'domain normalisation',
    fc.property(domainLike, (d) => {
      assert.equal(normalizeDomain(d), viaDomainToASCII(d), JSON.stringify(d));
    }),
  );
  t.diagnostic(`runs ${runs}`);
});
