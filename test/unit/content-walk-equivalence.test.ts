// The MIME walk (src/message/mime-walk.ts, its own line splitter) against the walk it replaced
// (test/helpers/mailsplit-walk.ts: mailsplit underneath): the same parts, types, names, sizes,
// kept bytes, text, HTML and malformed reasons on every sample of ../shared/conformance/mime, the
// content fixtures, the bench message and random MIME from the fuzz generator, whole and in chunks.
// One intended difference: parts of an attached message are listed where they are in the
// message (document order); the old walk interleaved them with later outer parts by timing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { walkMime, type MimeWalk } from '../../src/message/mime-walk.ts';
import { walkMime as oldWalk } from '../helpers/mailsplit-walk.ts';
import { mimeMessage, forwardAsRfc822, fakeExe, SHARED } from '../helpers/content-fixtures.ts';
import { smallMessage } from '../../bench/lib/corpus.ts';
import { flatMimeMessage as message } from '../helpers/random-mime.ts';

function* files(d: string): Generator<string> {
  for (const n of readdirSync(d)) {
    const p = join(d, n);
    if (statSync(p).isDirectory()) yield* files(p);
    else if (!/\.(md|txt|json|yaml|yml|LICENSE)$/i.test(n) && !n.startsWith('LICENSE')) yield p;
  }
}

/**
 * The walk as plain data; parts without their index. Where an attached message is walked, the
 * lists whose order the old walk's timing set (parts, types, text and HTML) are compared sorted.
 */
function comparable(w: MimeWalk, nested: boolean): unknown {
  const parts = w.parts.map((p) => JSON.stringify({ ...p, index: 0, head: p.head.toString('hex'), data: p.data?.toString('hex') }));
  if (!nested) return { ...w, parts, malformed: [...w.malformed].sort() };
  // Empty text parts add a separator or not depending on where they come: non-empty lines only.
  const lines = (s: string) =>
    s
      .split('\n')
      .filter((l) => l !== '' && l !== '\r')
      .sort();
  return { ...w, parts: parts.sort(), contentTypes: [...w.contentTypes].sort(), text: lines(w.text), html: lines(w.html), malformed: [...w.malformed].sort() };
}

async function same(buf: Buffer, label: string, chunks?: Buffer[]): Promise<void> {
  if (process.env.MAILGATE_EQUIV_DUMP) writeFileSync(process.env.MAILGATE_EQUIV_DUMP, buf);
  const before = await oldWalk([buf]);
  const now = await walkMime(chunks ?? [buf]);
  const nested = before.parts.some((p) => p.contentType.startsWith('message/'));
  assert.deepEqual(comparable(now, nested), comparable(before, nested), label);
  // Indexes are positions in the list.
  assert.deepEqual(
    now.parts.map((p) => p.index),
    now.parts.map((_, i) => i),
    label,
  );
}

test('equivalence: every sample of ../shared/conformance/mime', async () => {
  const all = [...files(join(SHARED, 'conformance', 'mime'))];
  assert.ok(all.length >= 100, `found ${all.length} samples`);
  for (const f of all) await same(readFileSync(f), f);
});

test('equivalence: the content fixtures and the bench message (CRLF and LF)', async () => {
  const inner = mimeMessage({ attachments: [{ filename: 'in.exe', type: 'application/octet-stream', data: fakeExe() }] });
  const cases = [
    mimeMessage({ text: 'hi =3D there http://x.example/', attachments: [{ filename: 'a.pdf', type: 'application/pdf', data: Buffer.from('%PDF-1.4') }] }),
    forwardAsRfc822(inner),
    Buffer.from(smallMessage().replace(/\n/g, '\r\n')),
    Buffer.from(smallMessage()),
  ];
  for (const [i, c] of cases.entries()) await same(c, `case ${i}`);
});

test('equivalence: the new walk in chunks gives what the old one gives whole', async () => {
  const msg = Buffer.from(smallMessage().replace(/\n/g, '\r\n'));
  for (const size of [1, 2, 3, 7, 64, 1000]) {
    const chunks: Buffer[] = [];
    for (let i = 0; i < msg.length; i += size) chunks.push(msg.subarray(i, i + size));
    await same(msg, `chunks of ${size}`, chunks);
  }
});

// The generator of test/unit/fuzz-mime.test.ts, plus tokens for delimiter edge cases.

// Structured MIME (multiparts of leaves and attached messages, boundaries reused across levels),
// then mutated: lines dropped or duplicated, noise lines inserted, CRLF or LF line ends.
const leafHeader = fc.constantFrom(
  'Content-Type: text/plain; charset=utf-8',
  'Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable',
  'Content-Type: text/html',
  'Content-Type: application/octet-stream; name="a.exe"\r\nContent-Transfer-Encoding: base64',
  'Content-Disposition: attachment; filename="r.pdf"\r\nContent-Transfer-Encoding: base64',
  "Content-Type: application/pdf;\r\n name*0*=UTF-8''%E2%80%AE; name*1=fdp.exe",
  'Content-Type: text/plain\r\nContent-Transfer-Encoding: x-unknown',
  'Content-Type: text/plain; boundary=b',
  '',
);
const leafBody = fc.constantFrom(
  'hello http://x.example/a?b=1&amp;c=2 world',
  'Caf=E9 =\r\nau lait =3D',
  '<p>Hi <a href="https://www.example.test/x">there</a></p>',
  'TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAA\r\nTVqQ*AAMAAAAE==AAAA',
  'JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFI+Pgpz',
  'begin 644 x.exe\r\nM35J0\r\nend',
  '--b-- not a delimiter',
  '',
);
type Tree = string;
const tree: fc.Arbitrary<Tree> = fc.letrec<{ node: Tree }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.tuple(leafHeader, leafBody).map(([h, b]) => `${h}${h ? '\r\n' : ''}\r\n${b}`),
    fc
      .tuple(
        fc.constantFrom('b', 'c', 'b2', '=_x'),
        fc.constantFrom('mixed', 'alternative', 'related'),
        fc.array(tie('node'), { maxLength: 4 }),
        fc.boolean(),
        fc.string({ maxLength: 6 }),
      )
      .map(
        ([b, sub, kids, close, pre]) =>
          `Content-Type: multipart/${sub}; boundary="${b}"\r\n\r\n${pre}\r\n${kids.map((k) => `--${b}\r\n${k}\r\n`).join('')}${close ? `--${b}--\r\n` : ''}`,
      ),
    fc
      .tuple(fc.constantFrom('', 'Content-Transfer-Encoding: 7bit\r\n'), tie('node'))
      .map(([e, inner]) => `Content-Type: message/rfc822\r\n${e}\r\nSubject: inner\r\n${inner}`),
  ),
})).node;
const structured = fc
  .tuple(tree, fc.array(fc.tuple(fc.nat(), fc.constantFrom('drop', 'dup', '--b', '--b--', '--c', '\r', '', 'x'.repeat(80))), { maxLength: 4 }), fc.boolean())
  .map(([t, edits, lf]) => {
    const lines = `Subject: fuzz\r\n${t}`.split('\r\n');
    for (const [at, e] of edits) {
      const i = at % (lines.length + 1);
      if (e === 'drop') lines.splice(i, 1);
      else if (e === 'dup') lines.splice(i, 0, lines[i] ?? '');
      else lines.splice(i, 0, e);
    }
    return Buffer.from(lines.join(lf ? '\n' : '\r\n'), 'latin1');
  });

function cut(buf: Buffer, at: number[]): Buffer[] {
  const points = [...new Set(at.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of points) {
    out.push(buf.subarray(prev, c));
    prev = c;
  }
  out.push(buf.subarray(prev));
  return out;
}

test('equivalence: random MIME from the fuzz generator, whole and in chunks', async () => {
  let multipart = 0;
  await fc.assert(
    fc.asyncProperty(fc.oneof(message, structured, structured), fc.array(fc.nat(), { maxLength: 8 }), async (buf, at) => {
      const label = JSON.stringify(buf.toString('latin1'));
      await same(buf, label);
      await same(buf, `${label} cut at ${at}`, cut(buf, at));
      if ((await walkMime([buf])).partCount > 2) multipart++;
    }),
    { numRuns: Number(process.env.MAILGATE_EQUIV_RUNS ?? 3000), endOnFailure: true },
  );
  // The generator reaches nested structure, not only single parts.
  assert.ok(multipart > 300, `${multipart} multipart messages`);
});

// Header blocks made of field-name, folding, quoting and parameter fragments: the part's type,
// charset, name, disposition and encoding read as before.
const headerToken = fc.constantFrom(
  'Content-Type',
  'content-TYPE',
  'Content-Disposition',
  'Content-Transfer-Encoding',
  '\xa0Content-Type',
  'From ',
  'POST ',
  'X-Other',
  ':',
  ': ',
  ';',
  '; ',
  '=',
  '"',
  '\\',
  "'",
  '*',
  '*0*',
  '*1',
  'name',
  'filename',
  'charset',
  'boundary',
  'text/plain',
  'application/pdf',
  'multipart/mixed',
  'attachment',
  'inline',
  'base64',
  '(comment)',
  'a.exe',
  'r.pdf',
  '%E2%80%AE',
  "utf-8''",
  '=?utf-8?B?aW52b2ljZS5leGU=?=',
  '=?iso-8859-1?Q?caf=E9?=',
  '\r\n',
  '\r\n ',
  '\r\n\t',
  '\n',
  '\r',
  ' ',
  '\t',
  'x',
);
const param = fc
  .tuple(
    fc.constantFrom('name', 'filename', 'charset', 'boundary', 'NAME', 'format'),
    fc.constantFrom('', '*', '*0', '*0*', '*1', '*1*', ' '),
    fc.constantFrom('a.exe', '"r .pdf"', "utf-8''%E2%80%AEfdp.exe", "iso-8859-1'en'caf%E9.txt", '=?utf-8?B?aW52b2ljZS5leGU=?=', '"a\\"b"', 'x;y', '', '"'),
  )
  .map(([n, suf, v]) => `; ${n}${suf}=${v}`);
const structuredValue = fc
  .tuple(fc.constantFrom('text/plain', 'application/octet-stream', 'multipart/mixed', 'attachment', 'inline', 'base64', ''), fc.array(param, { maxLength: 5 }))
  .map(([v, ps]) => v + ps.join(''));
const fieldName = fc.constantFrom(
  'Content-Type',
  'content-type',
  'Content-Disposition',
  'Content-Transfer-Encoding',
  'CONTENT-DISPOSITION',
  'From ',
  'X-A',
  '',
);
const field = fc
  .tuple(
    fieldName,
    fc.constantFrom(':', ': ', ' :', '', ':\r\n '),
    fc.oneof(
      fc.array(headerToken, { maxLength: 14 }).map((v) => v.join('')),
      structuredValue,
    ),
    fc.constantFrom('\r\n', '\n', '\r\n '),
  )
  .map(([n, c, v, e]) => `${n}${c}${v}${e}`);
const headerBlock = fc
  .oneof(fc.array(headerToken, { maxLength: 40 }), fc.array(field, { maxLength: 6 }))
  .map((t) => Buffer.from(`${t.join('')}\r\n\r\nbody\r\n`, 'latin1'));

test('equivalence: random header blocks', async () => {
  await fc.assert(
    fc.asyncProperty(headerBlock, async (buf) => same(buf, JSON.stringify(buf.toString('latin1')))),
    { numRuns: Number(process.env.MAILGATE_EQUIV_RUNS ?? 3000), endOnFailure: true },
  );
});
