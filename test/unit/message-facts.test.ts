// The message facts computed at end of DATA from the spooled header block (messageFacts): the
// header records, the decoded Subject, the RFC 5322.From addresses and domain, the Message-ID.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { Spool, spoolFrom } from '../../src/message/spool.ts';
import { FactSet } from '../../src/pipeline/facts.ts';
import { messageFacts } from '../../src/pipeline/message-facts.ts';

const tmp = mkdtempSync(join(tmpdir(), 'mailgate-message-facts-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

async function factsOf(header: string): Promise<Record<string, unknown>> {
  const spool = new Spool({ maxBytes: 1_000_000, maxHeaderBytes: 100_000, maxLineBytes: 10_000, memoryBytes: 1_000_000, tmpDir: tmp }, true);
  await spoolFrom(Readable.from([Buffer.from(`${header}\r\nbody\r\n`, 'latin1')]), spool);
  const facts = new FactSet();
  messageFacts(spool, facts);
  spool.release();
  return facts.toJSON();
}

const cases = [
  {
    desc: 'plain fields',
    input: 'From: "A" <a@Example.ORG>\r\nSubject: hello\r\nMessage-ID: <1@example.org>\r\n',
    expected: { subject: 'hello', from: ['a@example.org'], from_domain: 'example.org', message_id: '<1@example.org>' },
  },
  {
    desc: 'encoded words in the Subject are decoded',
    input: 'Subject: =?UTF-8?B?w6TDtsO8?= und =?ISO-8859-1?Q?caf=E9?=\r\nFrom: a@example.org\r\n',
    expected: { subject: 'äöü und café', from: ['a@example.org'], from_domain: 'example.org', message_id: '' },
  },
  {
    desc: 'names in any case; the first Subject and Message-ID win',
    input: 'SUBJECT: first\r\nsubject: second\r\nmessage-id: <a@x>\r\nMessage-Id: <b@x>\r\nfrom: a@example.org\r\n',
    expected: { subject: 'first', from: ['a@example.org'], from_domain: 'example.org', message_id: '<a@x>' },
  },
  {
    desc: 'several From addresses: no single From domain',
    input: 'From: a@one.example, b@two.example\r\nSubject: x\r\n',
    expected: { subject: 'x', from: ['a@one.example', 'b@two.example'], from_domain: '', message_id: '' },
  },
  {
    desc: 'two From fields: both read, no single domain',
    input: 'From: a@one.example\r\nFrom: b@one.example\r\n',
    expected: { subject: '', from: ['a@one.example', 'b@one.example'], from_domain: '', message_id: '' },
  },
  {
    desc: 'an IDN From domain as its A-label',
    input: 'From: a@b\u00fccher.example\r\n',
    expected: { subject: '', from: ['a@bücher.example'], from_domain: 'xn--bcher-kva.example', message_id: '' },
  },
  {
    desc: 'no header fields at all',
    input: '',
    expected: { subject: '', from: [], from_domain: '', message_id: '' },
  },
];

for (const c of cases) {
  test(`messageFacts: ${c.desc}`, async () => {
    const f = await factsOf(Buffer.from(c.input, 'utf8').toString('latin1'));
    assert.deepEqual(
      { subject: f['message.subject'], from: f['message.from'], from_domain: f['message.from_domain'], message_id: f['message.message_id'] },
      c.expected,
    );
  });
}

test('messageFacts: message.headers lists every named field in order, name as written and value unfolded; a line without a colon is left out', async () => {
  const f = await factsOf('X-A: one\r\n two\r\nbroken line\r\nSubject: s\r\n');
  assert.deepEqual(f['message.headers'], [
    { name: 'X-A', value: 'one two' },
    { name: 'Subject', value: 's' },
  ]);
  assert.equal(typeof f['message.size'], 'number');
});
