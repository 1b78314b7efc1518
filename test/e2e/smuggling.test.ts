// SMTP smuggling through mailgate must be impossible: every end-of-data variant in
// ../shared/conformance/smtp-smuggling/ is sent through mailgate to a real Postfix configured to be
// lenient about bare line endings (smtpd_forbid_bare_newline = no). Pass criteria from the suite:
// at most one message per DATA phase, never one from smuggled@spoof.example.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { RawSmtp } from '../helpers/smtp-client.ts';
import { startGateway, testConfig, requireBackend, type TestGateway } from '../helpers/gateway.ts';
import { token, waitDelivered, settle, findDelivered } from '../helpers/maildir.ts';

interface Variant {
  id: string;
  sequence?: string;
  bytes_hex?: string;
  role: string;
}

const SUITE = join(import.meta.dirname, '..', '..', '..', 'shared', 'conformance', 'smtp-smuggling', 'end-of-data-variants.yaml');
const suite = parse(readFileSync(SUITE, 'utf8')) as { smuggling_variants: Variant[]; valid_and_content_cases: Variant[] };
const variants = suite.smuggling_variants.filter((v) => v.role === 'smuggling_variant' && v.bytes_hex);

function payload(tok: string, seqHex: string): Buffer {
  const head = `From: <sender@client.example.net>\r\nTo: <alice@example.test>\r\nSubject: ${tok}\r\n\r\nbody before the sequence ${tok}`;
  const smuggled =
    'MAIL FROM:<smuggled@spoof.example>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n' +
    `From: <ceo@example.test>\r\nTo: <bob@example.test>\r\nSubject: smuggled ${tok}\r\n\r\nsmuggled body ${tok}\r\n`;
  return Buffer.concat([Buffer.from(head), Buffer.from(seqHex, 'hex'), Buffer.from(smuggled), Buffer.from('\r\n.\r\n')]);
}

async function sendRaw(port: number, data: Buffer): Promise<{ end: number | undefined; after: number | undefined }> {
  const c = await RawSmtp.connect(port);
  try {
    await c.read();
    await c.cmd('EHLO client.example.net');
    await c.cmd('MAIL FROM:<sender@client.example.net>');
    await c.cmd('RCPT TO:<alice@example.test>');
    assert.equal((await c.cmd('DATA'))?.code, 354);
    c.write(data);
    const end = await c.read(20_000);
    // Anything after the real end of data must be a fresh command exchange; nothing else pending.
    const after = (await c.cmd('NOOP'))?.code;
    return { end: end?.code, after };
  } finally {
    c.close();
  }
}

let normalize: TestGateway;
let reject: TestGateway;
before(async () => {
  await requireBackend();
  normalize = await startGateway(testConfig({ smtp: { bare_newlines: 'normalize' } }));
  reject = await startGateway(testConfig({ smtp: { bare_newlines: 'reject' } }));
});
after(async () => {
  await normalize?.stop(500);
  await reject?.stop(500);
});

describe(`SMTP smuggling: ${variants.length} end-of-data variants, bare_newlines: normalize (default)`, () => {
  for (const v of variants) {
    test(v.id, async () => {
      const tok = token(v.id);
      const r = await sendRaw(normalize.port, payload(tok, v.bytes_hex as string));
      assert.equal(r.end, 250, 'one message accepted for the one DATA phase');
      assert.equal(r.after, 250, 'the smuggled commands were content, not commands');
      const got = await waitDelivered(tok, 1);
      await settle(tok, 300);
      const all = findDelivered(tok);
      assert.equal(all.length, 1, `exactly one message arrived (got ${all.length})`);
      assert.equal(all[0]!.user, 'alice');
      assert.ok(!all.some((m) => m.content.includes('Return-Path: <smuggled@spoof.example>')), 'no smuggled envelope');
      // The smuggled text is inside the one message, as content.
      assert.ok(got[0]!.content.includes(`smuggled body ${tok}`));
    });
  }
});

describe(`SMTP smuggling: ${variants.length} variants, bare_newlines: reject`, () => {
  for (const v of variants) {
    test(v.id, async () => {
      const tok = token(v.id);
      const bare = /0d(?!0a)|(?<!0d)0a/.test((v.bytes_hex as string).match(/../g)!.join(''));
      const r = await sendRaw(reject.port, payload(tok, v.bytes_hex as string));
      if (bare) assert.equal(r.end, 550, 'bare CR/LF refused');
      else assert.equal(r.end, 250);
      const all = await settle(tok, bare ? 800 : 1500);
      assert.ok(all.length <= 1);
      assert.ok(!all.some((m) => m.content.includes('Return-Path: <smuggled@spoof.example>')));
    });
  }
});

describe('end-of-data cases that are content', () => {
  for (const v of suite.valid_and_content_cases.filter((x) => x.role === 'not_eod' && x.id !== 'dot-at-end-without-crlf')) {
    test(v.id, async () => {
      const tok = token(v.id);
      const r = await sendRaw(normalize.port, payload(tok, v.bytes_hex as string));
      assert.equal(r.end, 250);
      assert.equal((await waitDelivered(tok, 1)).length, 1);
    });
  }
});
