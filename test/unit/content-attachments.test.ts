// Attachment facts, table-driven: file-name normalisation, detected types, executables,
// macros (OLE2 VBA, OOXML vbaProject.bin), active PDFs, archives (zip, nested, encrypted,
// bombs, gzip, tar), and the check's facts for the crafted samples of ../shared.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import CFB from 'cfb';
import { normalizeFileName } from '../../src/checks/content/file-name.ts';
import { sniff, typeMismatch } from '../../src/checks/content/file-sniff.ts';
import { inspectPdf, unescapePdfNames } from '../../src/checks/content/document-inspect.ts';
import { analyseAttachments, createAttachmentsCheck } from '../../src/checks/content/attachments.ts';
import { createMimeWalkCheck } from '../../src/checks/content/mime-walk-check.ts';
import { walkMime } from '../../src/message/mime-walk.ts';
import { emptyEdits, detachedConnection, type CheckOutput } from '../../src/pipeline/check.ts';
import { FactSet } from '../../src/pipeline/facts.ts';
import { fakeExe, makeZip, mimeMessage, messageView, SHARED } from '../helpers/content-fixtures.ts';

const nameCases = [
  { desc: 'plain', input: 'Report.PDF', expected: { name: 'report.pdf', extension: 'pdf', hidden: false, doubleExtension: false, risky: false } },
  {
    desc: 'double extension',
    input: 'invoice.pdf.exe',
    expected: { name: 'invoice.pdf.exe', extension: 'exe', hidden: false, doubleExtension: true, risky: true },
  },
  { desc: 'RTLO', input: 'invoice\u202efdp.exe', expected: { name: 'invoicefdp.exe', extension: 'exe', hidden: true, doubleExtension: false, risky: true } },
  {
    desc: 'trailing dots and spaces',
    input: 'photo.jpg.scr. . ',
    expected: { name: 'photo.jpg.scr', extension: 'scr', hidden: true, doubleExtension: true, risky: true },
  },
  {
    desc: 'spaces before the real extension',
    input: 'photo.jpg      .js',
    expected: { name: 'photo.jpg      .js', extension: 'js', hidden: false, doubleExtension: true, risky: true },
  },
  { desc: 'zero-width joiner', input: 'a\u200d.vbs', expected: { name: 'a.vbs', extension: 'vbs', hidden: true, doubleExtension: false, risky: true } },
  {
    desc: 'fullwidth letters fold (NFKC)',
    input: 'setup.\uff45\uff58\uff45',
    expected: { name: 'setup.exe', extension: 'exe', hidden: false, doubleExtension: false, risky: true },
  },
  {
    desc: 'path in a zip member',
    input: 'docs\\sub/readme.txt',
    expected: { name: 'readme.txt', extension: 'txt', hidden: false, doubleExtension: false, risky: false },
  },
  { desc: 'no extension', input: 'README', expected: { name: 'readme', extension: '', hidden: false, doubleExtension: false, risky: false } },
  { desc: 'iso image', input: 'Shipping.ISO', expected: { name: 'shipping.iso', extension: 'iso', hidden: false, doubleExtension: false, risky: true } },
];
for (const c of nameCases) {
  test(`file name: ${c.desc}`, () => {
    const n = normalizeFileName(c.input);
    assert.deepEqual({ name: n.name, extension: n.extension, hidden: n.hidden, doubleExtension: n.doubleExtension, risky: n.risky }, c.expected);
  });
}

const sniffCases = [
  { desc: 'PE', input: fakeExe(), mime: 'application/x-msdownload', exec: 'pe' },
  { desc: 'ELF', input: Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]), Buffer.alloc(120)]), mime: 'application/x-elf', exec: 'elf' },
  { desc: 'Mach-O 64', input: Buffer.concat([Buffer.from([0xcf, 0xfa, 0xed, 0xfe]), Buffer.alloc(60)]), exec: 'macho' },
  { desc: 'PDF', input: Buffer.from('%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj'), mime: 'application/pdf', exec: '' },
  { desc: 'zip', input: makeZip([{ name: 'a.txt', data: Buffer.from('x') }]), mime: 'application/zip', exec: '' },
  { desc: 'text', input: Buffer.from('just words'), mime: '', exec: '' },
];
for (const c of sniffCases) {
  test(`sniff: ${c.desc}`, async () => {
    const s = await sniff(c.input);
    if (c.mime !== undefined) assert.equal(s.mime, c.mime);
    assert.equal(s.executable, c.exec);
  });
}

const mismatchCases = [
  { declared: 'application/pdf', detected: 'application/x-msdownload', expected: true },
  { declared: 'application/octet-stream', detected: 'application/x-msdownload', expected: false },
  { declared: 'image/png', detected: 'image/jpeg', expected: false },
  { declared: 'image/jpeg', detected: 'application/zip', expected: true },
  { declared: 'application/x-zip-compressed', detected: 'application/zip', expected: false },
  { declared: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document', detected: 'application/zip', expected: false },
  { declared: 'application/msword', detected: 'application/x-cfb', expected: false },
  { declared: 'application/pdf', detected: '', expected: false },
];
for (const c of mismatchCases) {
  test(`type mismatch: ${c.declared} vs ${c.detected || '(unknown)'}`, () => assert.equal(typeMismatch(c.declared, c.detected), c.expected));
}

test('pdf: /JavaScript, #-escaped names, /OpenAction, /Launch', () => {
  assert.deepEqual(inspectPdf(Buffer.from('%PDF-1.4 << /S /JavaScript /JS (app.alert(1)) >>')), { javascript: true, openAction: false, launch: false });
  assert.equal(inspectPdf(Buffer.from('%PDF-1.4 << /S /J#61vaScript >>')).javascript, true);
  assert.deepEqual(inspectPdf(Buffer.from('%PDF-1.4 << /OpenAction 3 0 R /Launch >>')), { javascript: false, openAction: true, launch: true });
  assert.deepEqual(inspectPdf(Buffer.from('%PDF-1.4 << /Type /Page >>')), { javascript: false, openAction: false, launch: false });
});

function oleDoc(withMacro: boolean): Buffer {
  const cfb = CFB.utils.cfb_new();
  CFB.utils.cfb_add(cfb, '/WordDocument', Buffer.alloc(600, 1));
  if (withMacro) CFB.utils.cfb_add(cfb, '/Macros/VBA/ThisDocument', Buffer.from('Attribute VB_Name = "ThisDocument"'));
  return Buffer.from(CFB.write(cfb, { type: 'buffer' }) as Uint8Array);
}

const att = (filename: string, type: string, data: Buffer) => ({ filename, type, data });

const reportCases: Array<{ desc: string; atts: ReturnType<typeof att>[]; expect: Record<string, unknown> }> = [
  { desc: 'OLE2 Word document with VBA macros', atts: [att('a.doc', 'application/msword', oleDoc(true))], expect: { macro: true, executable: false } },
  { desc: 'OLE2 Word document without macros', atts: [att('a.doc', 'application/msword', oleDoc(false))], expect: { macro: false } },
  {
    desc: 'OOXML with vbaProject.bin',
    atts: [
      att(
        'a.docx',
        'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
        makeZip([
          { name: '[Content_Types].xml', data: Buffer.from('<Types/>') },
          { name: 'word/vbaProject.bin', data: oleDoc(true) },
        ]),
      ),
    ],
    expect: { macro: true },
  },
  { desc: '.xlsm is macro-enabled by name', atts: [att('book.xlsm', 'application/octet-stream', Buffer.from('PK'))], expect: { macro: true } },
  {
    desc: 'exe in a zip',
    atts: [att('d.zip', 'application/zip', makeZip([{ name: 'docs/readme.pdf.exe', data: fakeExe() }]))],
    expect: { executable: true, archiveExecutable: true, doubleExtension: true, archives: 1 },
  },
  {
    desc: 'script in a deflated zip',
    atts: [att('d.zip', 'application/zip', makeZip([{ name: 'run.vbs', data: Buffer.from('MsgBox 1'), deflate: true }]))],
    expect: { executable: true, archiveExecutable: true },
  },
  {
    desc: 'zip in a zip in a zip',
    atts: [
      att('a.zip', 'application/zip', makeZip([{ name: 'b.zip', data: makeZip([{ name: 'c.zip', data: makeZip([{ name: 'x.exe', data: fakeExe() }]) }]) }])),
    ],
    expect: { executable: true, archives: 3 },
  },
  {
    desc: 'encrypted zip',
    atts: [att('s.zip', 'application/zip', makeZip([{ name: 'a.pdf', data: Buffer.from('%PDF'), encrypted: true }]))],
    expect: { encrypted: true, executable: false },
  },
  {
    desc: 'zip bomb (ratio)',
    atts: [att('b.zip', 'application/zip', makeZip([{ name: 'zeros.bin', data: Buffer.alloc(8 * 1024 * 1024), deflate: true }]))],
    expect: { bomb: true },
  },
  { desc: 'gzip of an exe', atts: [att('a.exe.gz', 'application/gzip', gzipSync(fakeExe()))], expect: { executable: true, archives: 1 } },
  { desc: 'exe disguised as pdf', atts: [att('statement.pdf', 'application/pdf', fakeExe())], expect: { executable: true, typeMismatch: true } },
  {
    desc: 'clean pdf and csv',
    atts: [att('r.pdf', 'application/pdf', Buffer.from('%PDF-1.4\n')), att('d.csv', 'text/csv', Buffer.from('a,b\n'))],
    expect: { executable: false, macro: false, typeMismatch: false, count: 2 },
  },
];
for (const c of reportCases) {
  test(`attachments: ${c.desc}`, async () => {
    const r = await analyseAttachments(await walkMime([mimeMessage({ attachments: c.atts })]));
    const got: Record<string, unknown> = {
      macro: r.files.some((f) => f.macro),
      executable: r.files.some((f) => f.executable),
      archiveExecutable: r.files.some((f) => f.executable && f.container !== ''),
      doubleExtension: r.files.some((f) => f.doubleExtension),
      typeMismatch: r.files.some((f) => f.typeMismatch),
      encrypted: r.encrypted,
      bomb: r.bomb,
      archives: r.archives,
      count: r.count,
    };
    for (const [k, v] of Object.entries(c.expect)) assert.equal(got[k], v, `${k}`);
  });
}

test('tar inside gzip (.tgz) is listed', async () => {
  const header = Buffer.alloc(512);
  header.write('evil.js', 0, 'latin1');
  header.write('0000644\0', 100, 'latin1');
  header.write('00000000010\0', 124, 'latin1');
  header.write('0', 156, 'latin1');
  header.write('ustar\x0000', 257, 'latin1');
  const tar = Buffer.concat([header, Buffer.from('alert(1)\0'), Buffer.alloc(512 - 9), Buffer.alloc(1024)]);
  const r = await analyseAttachments(await walkMime([mimeMessage({ attachments: [att('a.tgz', 'application/gzip', gzipSync(tar))] })]));
  assert.ok(
    r.files.some((f) => f.name === 'evil.js' && f.executable),
    JSON.stringify(r.files.map((f) => f.name)),
  );
  assert.equal(r.archives, 2);
});

async function factsOf(msg: Buffer, held = false): Promise<FactSet> {
  const plain = messageView(msg);
  // held: also memoryChunks(), the spool's in-memory form (cut at odd places), which the walk reads instead of stream().
  const view = held
    ? { ...plain, memoryChunks: () => Array.from({ length: Math.ceil(msg.length / 4093) }, (_, i) => msg.subarray(i * 4093, (i + 1) * 4093)) }
    : plain;
  const out: CheckOutput = { facts: new FactSet(), edits: emptyEdits() };
  // Attachments first: the walk is shared and memoised, so the order does not matter.
  for (const check of [createAttachmentsCheck(), createMimeWalkCheck()]) {
    await check.run({ stage: 'data', connection: detachedConnection(), facts: new FactSet(), message: view, signal: new AbortController().signal }, out);
  }
  return out.facts;
}

const crafted = (n: string) => readFileSync(join(SHARED, 'conformance', 'mime', 'crafted', n));
const sampleCases: Array<{ file: string; facts: Record<string, unknown> }> = [
  { file: 'double-extension.eml', facts: { 'attachment.executable': true, 'attachment.double_extension': true, 'attachment.executable_types': ['pe'] } },
  { file: 'rtlo-filename.eml', facts: { 'attachment.hidden_name': true, 'attachment.extensions': ['exe'] } },
  { file: 'ctype-mismatch-pdf-is-pe.eml', facts: { 'attachment.type_mismatch': true, 'attachment.executable': true } },
  { file: 'zip-containing-exe.eml', facts: { 'archive.executable': true, 'archive.count': 1 } },
  { file: 'uuencoded-in-plain-body.eml', facts: { 'attachment.executable': true, 'attachment.names': ['tool.exe'] } },
  { file: 'message-rfc822-attachment-with-exe.eml', facts: { 'attachment.executable': true } },
  { file: 'huge-header-line-1MiB.eml', facts: { 'mime.malformed': true, 'mime.malformed_reasons': ['header-too-big'], 'mime.complete': false } },
  { file: 'many-parts-2000.eml', facts: { 'mime.malformed': true, 'mime.complete': false } },
  { file: 'name-vs-filename-conflict.eml', facts: { 'attachment.executable_types': ['js'] } },
];
for (const c of sampleCases) {
  test(`facts of crafted ${c.file}`, async () => {
    const f = await factsOf(crafted(c.file));
    for (const [k, v] of Object.entries(c.facts)) assert.deepEqual(f.get(k), v, k);
    const held = await factsOf(crafted(c.file), true);
    assert.deepEqual(Object.fromEntries(held.entries()), Object.fromEntries(f.entries()), 'memoryChunks() and stream() disagree');
  });
}

/** The byte-by-byte definition of `#xx` unescaping in PDF names, to check the fast one against. */
function unescapeReference(data: Buffer): Buffer {
  const out: number[] = [];
  let inName = false;
  const hex = (b: number) => (b >= 0x30 && b <= 0x39 ? b - 0x30 : (b | 0x20) >= 0x61 && (b | 0x20) <= 0x66 ? (b | 0x20) - 0x57 : -1);
  for (let i = 0; i < data.length; i++) {
    const b = data[i] as number;
    if (b === 0x2f) inName = true;
    else if (b <= 0x20 || b === 0x28 || b === 0x3c || b === 0x5b || b === 0x3e) inName = false;
    if (inName && b === 0x23 && i + 2 < data.length && hex(data[i + 1] as number) >= 0 && hex(data[i + 2] as number) >= 0) {
      out.push((hex(data[i + 1] as number) << 4) | hex(data[i + 2] as number));
      i += 2;
    } else out.push(b);
  }
  return Buffer.from(out);
}

test('pdf: #xx name escapes are decoded as the byte-by-byte definition says', () => {
  const bytes = fc.array(fc.oneof(fc.constantFrom(...Buffer.from('/#( <[>aF09\n')), fc.integer({ min: 0, max: 255 })), { maxLength: 200 });
  fc.assert(
    fc.property(bytes, (b) => {
      const data = Buffer.from(b);
      assert.deepEqual(unescapePdfNames(data), unescapeReference(data));
    }),
    { numRuns: 5000 },
  );
});

test('normalizeFileName: a printable-ASCII name gives what the full NFKC pass gives', () => {
  // The fast path skips the per-character pass; a zero-width space (dropped, and noted as
  // hidden) forces that pass over the same name, so everything but `hidden` must agree.
  fc.assert(
    fc.property(
      fc.string({
        unit: fc.oneof(fc.constantFrom(...' .-_/\\aAzZ09exEXpdfPDF~!'.split('')), fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 })),
        maxLength: 40,
      }),
      (name) => {
        const fast = normalizeFileName(name);
        const { hidden, ...slow } = normalizeFileName(`${name}\u200b`);
        assert.equal(hidden, true);
        const { hidden: fastHidden, ...rest } = fast;
        assert.deepEqual(rest, slow);
        assert.equal(fastHidden, /[. ]$/.test(name));
      },
    ),
    { numRuns: 2000 },
  );
});
