// Corpus tests of the shipped content policy (Rspamd's functional-test idea): each case is a
// message built here plus facts the network checks would give; the content checks run on it
// through the transaction core offline, exactly as `mailgate rules test` runs them, then the
// shipped rules decide. Expected rules, action and reply document the policy.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import CFB from 'cfb';
import { loadRules } from '../../src/rules/loader.ts';
import { knownFacts, knownSections } from '../../src/checks/catalogue.ts';
import { offlineChecks, runOffline } from '../../src/cli/offline-transaction.ts';
import type { FactValue } from '../../src/pipeline/facts.ts';
import { fakeExe, makeZip, mimeMessage, SHARED } from '../helpers/content-fixtures.ts';
import { offlineConfig } from '../helpers/offline-config.ts';

const repo = resolve(import.meta.dirname, '../..');
const shipped = loadRules(join(repo, 'rules'), knownFacts(), knownSections());
const config = offlineConfig;

/** What the network checks would say about a well-behaved sender. */
const goodSender: Record<string, FactValue> = {
  'client.rdns_status': 'pass',
  'client.fcrdns': true,
  'spf.result': 'pass',
  'dkim.result': 'none',
  'dmarc.result': 'none',
};

async function decide(message: Buffer, facts: Record<string, FactValue> = {}) {
  const { checks, close } = await offlineChecks(config, shipped, false);
  try {
    return await runOffline({
      policy: shipped.policy,
      checks,
      config,
      envelope: {
        ip: '198.51.100.20',
        helo: 'mail.sender.example',
        from: 'sender@sender.example',
        to: ['alice@example.test'],
        facts: { ...goodSender, ...facts },
      },
      message,
    });
  } finally {
    await close();
  }
}

function ole(paths: Record<string, Buffer>): Buffer {
  const cfb = CFB.utils.cfb_new();
  for (const [p, d] of Object.entries(paths)) CFB.utils.cfb_add(cfb, p, d);
  return Buffer.from(CFB.write(cfb, { type: 'buffer' }) as Uint8Array);
}
const macroDoc = () => ole({ '/WordDocument': Buffer.alloc(600, 1), '/Macros/VBA/ThisDocument': Buffer.from('Attribute VB_Name') });
const att = (filename: string, type: string, data: Buffer) => ({ filename, type, data });

const cases: Array<{ desc: string; msg: () => Buffer; facts?: Record<string, FactValue>; action: string; rules: string[]; absent?: string[]; reply?: RegExp }> =
  [
    {
      desc: 'clean message with a PDF and a zip of text',
      msg: () =>
        mimeMessage({
          attachments: [
            att('r.pdf', 'application/pdf', Buffer.from('%PDF-1.4\n')),
            att('n.zip', 'application/zip', makeZip([{ name: 'n.txt', data: Buffer.from('notes') }])),
          ],
        }),
      action: 'accept',
      rules: [],
      absent: ['ATTACHMENT_EXECUTABLE', 'MIME_SLOPPY', 'ATTACHMENT_TYPE_MISMATCH'],
    },
    {
      desc: 'an exe',
      msg: () => mimeMessage({ attachments: [att('setup.exe', 'application/octet-stream', fakeExe())] }),
      action: 'reject',
      rules: ['ATTACHMENT_EXECUTABLE'],
      reply: /^554 5\.7\.1 Executable attachments are not accepted \(file type: pe\)$/,
    },
    {
      desc: 'a .lnk by name',
      msg: () => mimeMessage({ attachments: [att('Invoice.lnk', 'application/octet-stream', Buffer.from('L'))] }),
      action: 'reject',
      rules: ['ATTACHMENT_EXECUTABLE'],
      reply: /file type: lnk/,
    },
    {
      desc: 'an exe in a zip',
      msg: () => mimeMessage({ attachments: [att('d.zip', 'application/zip', makeZip([{ name: 'a/readme.pdf.exe', data: fakeExe() }]))] }),
      action: 'reject',
      rules: ['ATTACHMENT_EXECUTABLE', 'ATTACHMENT_DOUBLE_EXTENSION'],
    },
    {
      desc: 'an encrypted zip',
      msg: () => mimeMessage({ attachments: [att('s.zip', 'application/zip', makeZip([{ name: 'a.pdf', data: Buffer.from('%PDF'), encrypted: true }]))] }),
      action: 'quarantine',
      rules: ['ARCHIVE_ENCRYPTED'],
    },
    {
      desc: 'an encrypted Office document',
      msg: () =>
        mimeMessage({
          attachments: [
            att(
              's.docx',
              'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
              ole({ '/EncryptionInfo': Buffer.alloc(100, 1), '/EncryptedPackage': Buffer.alloc(5000, 2) }),
            ),
          ],
        }),
      action: 'quarantine',
      rules: ['ARCHIVE_ENCRYPTED'],
    },
    {
      desc: 'a zip bomb',
      msg: () =>
        mimeMessage({ attachments: [att('b.zip', 'application/zip', makeZip([{ name: 'z.bin', data: Buffer.alloc(8 * 1024 * 1024), deflate: true }]))] }),
      action: 'quarantine',
      rules: ['ARCHIVE_BOMB'],
    },
    {
      desc: 'a macro document: scored, tagged',
      msg: () => mimeMessage({ attachments: [att('a.doc', 'application/msword', macroDoc())] }),
      action: 'accept',
      rules: ['ATTACHMENT_MACRO'],
    },
    {
      desc: 'a macro document with a hidden name: quarantined by score',
      msg: () => mimeMessage({ attachments: [att('report\u202ecod.doc', 'application/msword', macroDoc())] }),
      action: 'quarantine',
      rules: ['ATTACHMENT_MACRO', 'ATTACHMENT_HIDDEN_NAME'],
    },
    {
      desc: 'a virus (clamd fact)',
      msg: () => mimeMessage(),
      facts: { 'av.virus': true, 'av.signature': 'Win.Test.EICAR_HDB-1', 'av.result': 'virus' },
      action: 'reject',
      rules: ['VIRUS_FOUND'],
      reply: /^554 5\.7\.1 Message contains malware \(Win\.Test\.EICAR_HDB-1\)$/,
    },
    {
      desc: 'unscanned by clamd: scored and marked, not passed silently',
      msg: () => mimeMessage(),
      facts: { 'av.unscanned': true, 'av.unscanned_reason': 'INSTREAM size limit exceeded', 'av.result': 'unscanned', 'av.virus': false },
      action: 'accept',
      rules: ['AV_UNSCANNED'],
    },
    {
      desc: '2000 parts (crafted sample): quarantined',
      msg: () => readFileSync(join(SHARED, 'conformance', 'mime', 'crafted', 'many-parts-2000.eml')),
      action: 'quarantine',
      rules: ['MIME_PARSE_LIMIT'],
    },
    {
      desc: 'two boundary= parameters (crafted sample): never delivered',
      msg: () => readFileSync(join(SHARED, 'conformance', 'mime', 'crafted', 'duplicate-boundary-param.eml')),
      action: 'reject',
      rules: ['MIME_PARSE_LIMIT', 'ATTACHMENT_EXECUTABLE'],
    },
    {
      desc: '120 nesting levels (crafted sample): quarantined',
      msg: () => readFileSync(join(SHARED, 'conformance', 'mime', 'crafted', 'deep-nesting-120.eml')),
      action: 'quarantine',
      rules: ['MIME_PARSE_LIMIT'],
    },
    {
      desc: 'uuencoded exe in the text (crafted sample): refused',
      msg: () => readFileSync(join(SHARED, 'conformance', 'mime', 'crafted', 'uuencoded-in-plain-body.eml')),
      action: 'reject',
      rules: ['ATTACHMENT_EXECUTABLE'],
    },
    {
      desc: 'a shortened link and an IP link',
      msg: () => mimeMessage({ html: '<a href="https://bit.ly/x1">YOU HAVE WON</a> <a href="http://192.0.2.7/login">login</a>' }),
      action: 'accept',
      rules: ['URL_SHORTENER', 'URL_IP_HOST'],
    },
    {
      desc: 'a PDF with JavaScript',
      msg: () =>
        mimeMessage({ attachments: [att('p.pdf', 'application/pdf', Buffer.from('%PDF-1.4\n<< /OpenAction << /S /JavaScript /JS (app.alert(1)) >> >>'))] }),
      action: 'accept',
      rules: ['PDF_JAVASCRIPT', 'PDF_OPEN_ACTION'],
    },
  ];

for (const c of cases) {
  test(`shipped content policy: ${c.desc} → ${c.action}`, async () => {
    const r = await decide(c.msg(), c.facts);
    const fired = r.verdict.fired.map((f) => f.rule);
    for (const rule of c.rules) assert.ok(fired.includes(rule), `${rule} not in ${fired.join(', ')}`);
    for (const rule of c.absent ?? []) assert.ok(!fired.includes(rule), `${rule} fired`);
    assert.equal(r.action, c.action, `fired: ${fired.join(', ')} score ${r.verdict.score}`);
    if (c.reply) assert.match(r.reply?.toString() ?? '', c.reply);
  });
}
