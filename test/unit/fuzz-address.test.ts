// Fuzzing the SMTP command argument handling (src/smtp/address.ts): random addresses with the
// characters attackers use (%, !, @, quotes, brackets, dots, Unicode) never throw, and an accepted
// recipient is always one of our domains with no routing characters left in its local part.
import { test } from 'node:test';
import assert from 'node:assert/strict';
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
