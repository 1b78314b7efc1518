// dkim-body-hash.ts against RFC 6376's canonicalisations (3.4.3, 3.4.4, the examples of 3.4.5,
// l= of 3.5) and against mailauth's own body hashers (lib/dkim/body/), which it replaces in the
// verifier: the same hash, canonical and hashed lengths and MIME structure start, for edge cases
// and for generated bodies cut into chunks anywhere.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { DkimBodyHash, type BodyCanonicalization, type MimeStartFinder } from '../../src/checks/auth/dkim-body-hash.ts';
import { repairLineBreaks } from '../../src/checks/auth/dkim-feed.ts';

const require = createRequire(import.meta.url);
interface MailauthHash {
  update(chunk: Buffer): void;
  digest(enc: 'base64'): string;
  getMimeStructureStart(): number;
  setContentType(ct: { value: string; params: Record<string, string> }): void;
  canonicalizedLength: number;
  bodyHashedBytes: number;
  byteLength: number;
  mimeStructureStartFinder: MimeStartFinder;
}
const { dkimBody } = require('mailauth/lib/dkim/body/index.js') as { dkimBody: (c: string, a: string, l: number | false | undefined) => MailauthHash };
const { MimeStructureStartFinder } = require('mailauth/lib/dkim/mime-structure-start-finder.js') as { MimeStructureStartFinder: new () => MimeStartFinder };

const sha = (s: string): string => createHash('sha256').update(Buffer.from(s, 'latin1')).digest('base64');

function ours(
  canon: BodyCanonicalization,
  chunks: Buffer[],
  l?: number,
  boundary?: string,
): { hash: string; canonical: number; hashed: number; bytes: number; mime: number } {
  const finder = new MimeStructureStartFinder();
  const h = new DkimBodyHash(canon, 'sha256', l, finder);
  if (boundary) h.setContentType({ value: 'multipart/mixed', params: { boundary } });
  for (const c of chunks) h.update(c);
  const hash = h.digest('base64');
  return { hash, canonical: h.canonicalizedLength, hashed: h.bodyHashedBytes, bytes: h.byteLength, mime: h.getMimeStructureStart() };
}
function theirs(canon: BodyCanonicalization, chunks: Buffer[], l?: number, boundary?: string): ReturnType<typeof ours> {
  const h = dkimBody(canon, 'sha256', l);
  if (boundary) h.setContentType({ value: 'multipart/mixed', params: { boundary } });
  for (const c of chunks) h.update(c);
  const hash = h.digest('base64');
  return { hash, canonical: h.canonicalizedLength, hashed: h.bodyHashedBytes, bytes: h.byteLength, mime: h.getMimeStructureStart() };
}

describe('canonicalisation (RFC 6376 3.4)', () => {
  const cases: Array<{ desc: string; canon: BodyCanonicalization; input: string; canonical: string; l?: number }> = [
    { desc: '3.4.5 example, relaxed', canon: 'relaxed', input: ' C \r\nD \t E\r\n\r\n\r\n', canonical: ' C\r\nD E\r\n' },
    { desc: '3.4.5 example, simple', canon: 'simple', input: ' C \r\nD \t E\r\n\r\n\r\n', canonical: ' C \r\nD \t E\r\n' },
    { desc: 'empty body, simple: one CRLF', canon: 'simple', input: '', canonical: '\r\n' },
    { desc: 'empty body, relaxed: nothing', canon: 'relaxed', input: '', canonical: '' },
    { desc: 'only empty lines, relaxed: nothing', canon: 'relaxed', input: '\r\n\r\n\r\n', canonical: '' },
    { desc: 'only empty lines, simple: one CRLF', canon: 'simple', input: '\r\n\r\n', canonical: '\r\n' },
    { desc: 'lines of whitespace at the end are empty lines (relaxed)', canon: 'relaxed', input: 'a\r\n \t\r\n  \r\n', canonical: 'a\r\n' },
    { desc: 'but not for simple', canon: 'simple', input: 'a\r\n \t\r\n\r\n', canonical: 'a\r\n \t\r\n' },
    { desc: 'no final CRLF, relaxed', canon: 'relaxed', input: 'a  b \t', canonical: 'a b\r\n' },
    { desc: 'no final CRLF, simple', canon: 'simple', input: 'a  b ', canonical: 'a  b \r\n' },
    { desc: 'a lone CR is content, relaxed', canon: 'relaxed', input: 'a \r b\r\r\n', canonical: 'a \r b\r\r\n' },
    { desc: 'a lone CR at the end, simple', canon: 'simple', input: 'a\r\n\r', canonical: 'a\r\n\r\r\n' },
    { desc: 'empty lines inside the body are kept', canon: 'relaxed', input: 'a\r\n\r\n\r\nb\r\n\r\n', canonical: 'a\r\n\r\n\r\nb\r\n' },
    { desc: 'leading WSP becomes one SP', canon: 'relaxed', input: '\t\t x\r\n', canonical: ' x\r\n' },
    { desc: 'l= cuts the hashed bytes', canon: 'relaxed', input: 'abc  def\r\nghi\r\n', canonical: 'abc d', l: 5 },
    { desc: 'l=0 hashes nothing', canon: 'simple', input: 'abc\r\n', canonical: '', l: 0 },
    { desc: 'l= past the end hashes everything', canon: 'simple', input: 'abc\r\n', canonical: 'abc\r\n', l: 100 },
  ];
  for (const c of cases) {
    test(c.desc, () => {
      const whole = ours(c.canon, [Buffer.from(c.input, 'latin1')], c.l);
      assert.equal(whole.hash, sha(c.canonical));
      // every cut of the input into two chunks gives the same
      for (let i = 1; i < c.input.length; i++) {
        const cut = ours(c.canon, [Buffer.from(c.input.slice(0, i), 'latin1'), Buffer.from(c.input.slice(i), 'latin1')], c.l);
        assert.deepEqual(cut, whole, `cut at ${i}`);
      }
      assert.deepEqual(whole, theirs(c.canon, [Buffer.from(c.input, 'latin1')], c.l));
    });
  }
});

describe('the same as mailauth on generated bodies', () => {
  const token = fc.constantFrom('a', 'bc', ' ', '  ', '\t', ' \t ', '\r\n', '\r\n\r\n', '\n', '\r', '--b1', '--b1--', 'x'.repeat(300), '.');
  const body = fc.array(token, { maxLength: 60 }).map((ts) => repairLineBreaks(Buffer.from(ts.join(''), 'latin1'), -1));
  const cuts = fc.array(fc.nat(), { maxLength: 6 });
  const chunked = (b: Buffer, at: number[]): Buffer[] => {
    const points = [...new Set(at.map((p) => (b.length ? p % b.length : 0)))].sort((x, y) => x - y);
    const out: Buffer[] = [];
    let from = 0;
    for (const p of points) {
      if (p > from) out.push(b.subarray(from, p));
      from = Math.max(from, p);
    }
    out.push(b.subarray(from));
    return out;
  };
  for (const canon of ['relaxed', 'simple'] as const) {
    test(canon, () => {
      fc.assert(
        fc.property(body, cuts, fc.option(fc.nat({ max: 200 }), { nil: undefined }), fc.boolean(), (b, at, l, multipart) => {
          const chunks = chunked(b, at);
          const boundary = multipart ? 'b1' : undefined;
          assert.deepEqual(ours(canon, chunks, l, boundary), theirs(canon, [b], l, boundary));
        }),
        { numRuns: 3000 },
      );
    });
  }
});
