// The DSN / auto-reply parser: messages built in the test to their published formats (RFC 3464,
// Exchange NDR, Postfix, qmail-send, RFC 3834, challenge-response), the sisimai bounce corpus in
// ../shared/conformance/, and a fast-check property: any (cut, random) input is parsed, bounded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { DSN_MAX_INPUT, parseDsn, readCapped, dkimDomain, fromAddress, type DsnKind } from '../../src/checks/backscatter/dsn-parse.ts';

const crlf = (s: string) => s.replace(/\r?\n/g, '\r\n');

const ORIGINAL = `Received: from mail.example.test (mail.example.test [192.0.2.1])
\tby mx.remote.test with ESMTPS id 4Xy; Tue, 1 Dec 2026 10:00:00 +0000
DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=Example.TEST; s=s1;
\th=from:to:subject; bh=abc=; b=def=
From: Alice <alice@example.test>
To: nobody@remote.test
Subject: hello
Message-ID: <orig-1234@example.test>

body of the original
`;

const exchangeNdr = crlf(`Received: from EX01.remote.test by EX02.remote.test; Tue, 1 Dec 2026 10:00:05 +0000
From: Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@remote.test>
To: <alice@example.test>
Date: Tue, 1 Dec 2026 10:00:05 +0000
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="ndr_b0undary"
X-MS-Exchange-Message-Is-Ndr:
Content-Language: en-US
Message-ID: <ndr-5678@EX02.remote.test>
Subject: Undeliverable: hello
Auto-Submitted: auto-replied
MIME-Version: 1.0

--ndr_b0undary
Content-Type: multipart/alternative; boundary="alt_b0undary"

--alt_b0undary
Content-Type: text/plain; charset="us-ascii"

Your message to nobody@remote.test couldn't be delivered.
nobody wasn't found at remote.test.

--alt_b0undary
Content-Type: text/html; charset="us-ascii"

<html><body>Your message couldn't be delivered.</body></html>
--alt_b0undary--

--ndr_b0undary
Content-Type: message/delivery-status

Reporting-MTA: dns;EX02.remote.test
Received-From-MTA: dns;mail.example.test
Arrival-Date: Tue, 1 Dec 2026 10:00:00 +0000

Final-Recipient: rfc822;nobody@remote.test
Action: failed
Status: 5.1.10
Diagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup

--ndr_b0undary
Content-Type: message/rfc822

${ORIGINAL}
--ndr_b0undary--
`);

const autoReply = crlf(`From: Bob <bob@remote.test>
To: alice@example.test
Subject: Auto: hello
Date: Tue, 1 Dec 2026 10:01:00 +0000
Message-ID: <auto-1@remote.test>
In-Reply-To: <orig-1234@example.test>
References: <orig-1234@example.test>
Auto-Submitted: auto-replied
Content-Type: text/plain

I am out of the office until Monday.
`);

const notAuto = autoReply.replace('Auto-Submitted: auto-replied', 'Auto-Submitted: no');

const postfixBounce = crlf(`Date: Tue, 1 Dec 2026 10:00:03 +0000 (UTC)
From: MAILER-DAEMON@relay.remote.test (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: prvs=1234abcdef=alice@example.test
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="AB12CD34.1764583203/relay.remote.test"
Content-Transfer-Encoding: 8bit
Message-Id: <20261201100003.AB12CD34@relay.remote.test>

This is a MIME-encapsulated message.

--AB12CD34.1764583203/relay.remote.test
Content-Description: Notification
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

This is the mail system at host relay.remote.test.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

                   The mail system

<nobody@remote.test>: mailbox unavailable

--AB12CD34.1764583203/relay.remote.test
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.remote.test
X-Postfix-Queue-ID: AB12CD34
X-Postfix-Sender: rfc822; prvs=1234abcdef=alice@example.test
Arrival-Date: Tue,  1 Dec 2026 10:00:02 +0000 (UTC)

Final-Recipient: rfc822; nobody@remote.test
Original-Recipient: rfc822;nobody@remote.test
Action: failed
Status: 5.0.0
Diagnostic-Code: X-Postfix; mailbox unavailable

--AB12CD34.1764583203/relay.remote.test
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers
Content-Transfer-Encoding: 8bit

${ORIGINAL.slice(0, ORIGINAL.indexOf('\n\n') + 1)}
--AB12CD34.1764583203/relay.remote.test--
`);

const qmailBounce = crlf(`From: MAILER-DAEMON@qmail.remote.test
To: alice@example.test
Subject: failure notice

Hi. This is the qmail-send program at qmail.remote.test.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<nobody@remote.test>:
Sorry, no mailbox here by that name. (#5.1.1)

--- Below this line is a copy of the message.

${ORIGINAL}`);

const challenge = crlf(`From: Bob's spam filter <confirm@remote.test>
To: alice@example.test
Subject: Please confirm your message to bob@remote.test
X-Delivery-Agent: TMDA/1.1.12 (Macallan)
In-Reply-To: <orig-1234@example.test>

Click the link below to confirm that you are a human.
`);

const forged = crlf(`From: MAILER-DAEMON@evil.test
To: alice@example.test
Subject: Undelivered Mail Returned to Sender
Content-Type: multipart/report; report-type=delivery-status; boundary=x

--x
Content-Type: text/plain

Your message could not be delivered.
--x
Content-Type: message/rfc822

From: Alice <alice@example.test>
Message-ID: <spam-9999@botnet.test>
Subject: cheap pills

buy now
--x--
`);

const plain = crlf(`From: carol@remote.test
To: alice@example.test
Subject: lunch?
Message-ID: <x@remote.test>

see you at noon
`);

const cases: Array<{
  desc: string;
  input: string;
  kind: DsnKind;
  bounce: boolean;
  messageId?: string;
  from?: string;
  dkim?: string[];
  received?: number;
  source?: string;
  status?: string;
  action?: string;
}> = [
  {
    desc: 'Exchange NDR (multipart/report inside, X-MS-Exchange-Message-Is-Ndr)',
    input: exchangeNdr,
    kind: 'exchange',
    bounce: true,
    messageId: 'orig-1234@example.test',
    from: 'alice@example.test',
    dkim: ['example.test'],
    received: 1,
    source: 'message/rfc822',
    status: '5.1.10',
    action: 'failed',
  },
  {
    desc: 'RFC 3834 auto-reply: original from In-Reply-To',
    input: autoReply,
    kind: 'auto-reply',
    bounce: false,
    messageId: 'orig-1234@example.test',
    source: 'in-reply-to',
  },
  { desc: 'Auto-Submitted: no is not an auto-reply', input: notAuto, kind: 'none', bounce: false },
  {
    desc: "Postfix's own bounce with text/rfc822-headers",
    input: postfixBounce,
    kind: 'postfix',
    bounce: true,
    messageId: 'orig-1234@example.test',
    from: 'alice@example.test',
    dkim: ['example.test'],
    received: 1,
    source: 'rfc822-headers',
    status: '5.0.0',
  },
  {
    desc: 'qmail-send bounce',
    input: qmailBounce,
    kind: 'qmail',
    bounce: true,
    messageId: 'orig-1234@example.test',
    from: 'alice@example.test',
    dkim: ['example.test'],
    source: 'qmail',
  },
  { desc: 'challenge-response (TMDA)', input: challenge, kind: 'challenge', bounce: false, messageId: 'orig-1234@example.test' },
  { desc: 'forged RFC 3464 bounce for a message we never sent', input: forged, kind: 'rfc3464', bounce: true, messageId: 'spam-9999@botnet.test', dkim: [] },
  { desc: 'ordinary message', input: plain, kind: 'none', bounce: false },
  { desc: 'LF line endings', input: postfixBounce.replace(/\r\n/g, '\n'), kind: 'postfix', bounce: true, messageId: 'orig-1234@example.test' },
  { desc: 'empty input', input: '', kind: 'none', bounce: false },
];

for (const c of cases) {
  test(`parseDsn: ${c.desc}`, () => {
    const r = parseDsn(Buffer.from(c.input, 'latin1'));
    assert.equal(r.kind, c.kind);
    assert.equal(r.isBounce, c.bounce);
    if (c.messageId !== undefined) assert.equal(r.original?.messageId, c.messageId);
    if (c.from !== undefined) assert.equal(r.original?.from, c.from);
    if (c.dkim !== undefined) assert.deepEqual(r.original?.dkimDomains, c.dkim);
    if (c.received !== undefined) assert.equal(r.original?.received.length, c.received);
    if (c.source !== undefined) assert.equal(r.original?.source, c.source);
    if (c.status !== undefined) assert.equal(r.status, c.status);
    if (c.action !== undefined) assert.equal(r.action, c.action);
  });
}

test('helpers: d= of a DKIM-Signature, From address', () => {
  assert.equal(dkimDomain('v=1; a=rsa-sha256; d=Example.COM; s=x'), 'example.com');
  assert.equal(dkimDomain('v=1; s=x'), undefined);
  assert.equal(fromAddress('"Alice" <Alice@Example.test>'), 'alice@example.test');
  assert.equal(fromAddress('alice@example.test (Alice)'), 'alice@example.test');
  assert.equal(fromAddress('undisclosed'), '');
});

// ../shared/conformance beside the repository (one level further up from a worktree in /work/wt/).
const CORPUS =
  [
    new URL('../../../shared/conformance/mime/dsn-sisimai/', import.meta.url),
    new URL('../../../../shared/conformance/mime/dsn-sisimai/', import.meta.url),
  ].find((u) => existsSync(u)) ?? new URL('../../../shared/conformance/mime/dsn-sisimai/', import.meta.url);
test('sisimai corpus: real bounces are bounces, the auto-reply is one, the non-bounces are not', {
  skip: !existsSync(CORPUS) && 'no ../shared/conformance',
}, () => {
  const files = readdirSync(CORPUS).filter((f) => f.endsWith('.eml'));
  assert.ok(files.length > 20);
  const wrong: string[] = [];
  for (const f of files) {
    const r = parseDsn(readFileSync(new URL(f, CORPUS)));
    const empty = readFileSync(new URL(f, CORPUS)).length === 0;
    const expectBounce = (f.startsWith('lhost-') || f.startsWith('rhost-') || f.startsWith('rfc3464-')) && !empty;
    if (f === 'rfc3834-01.eml' && r.kind !== 'auto-reply') wrong.push(`${f}: ${r.kind}`);
    else if (expectBounce && !r.isBounce) wrong.push(`${f}: ${r.kind}`);
    else if (f.startsWith('not-bounce--is-not-bounce') && r.isBounce) wrong.push(`${f}: ${r.kind}`);
  }
  assert.deepEqual(wrong, []);
  const kind = (f: string) => parseDsn(readFileSync(new URL(f, CORPUS))).kind;
  assert.equal(kind('lhost-exchange2007-01.eml'), 'exchange');
  assert.equal(kind('lhost-office365-01.eml'), 'exchange');
  assert.equal(kind('lhost-postfix-03.eml'), 'postfix');
  assert.equal(kind('lhost-qmail-01.eml'), 'qmail');
  assert.equal(kind('rfc3834-01.eml'), 'auto-reply');
  const sendmail = parseDsn(readFileSync(new URL('lhost-sendmail-01.eml', CORPUS)));
  assert.equal(sendmail.original?.messageId, 'E1C50F1B-1C83-4820-BC36-AC6FBFBE8568@example.org');
  assert.equal(sendmail.status, '5.1.1');
});

test('readCapped stops at the cap and reports truncation', async () => {
  const big = Buffer.alloc(DSN_MAX_INPUT * 2, 0x61);
  const r = await readCapped(Readable.from([big.subarray(0, 1000), big.subarray(1000)]));
  assert.equal(r.bytes.length, DSN_MAX_INPUT);
  assert.equal(r.truncated, true);
  const s = await readCapped(Readable.from([Buffer.from('short')]));
  assert.equal(s.truncated, false);
  assert.equal(s.bytes.toString(), 'short');
});

test('property: random, cut and mangled input never throws, results stay bounded', () => {
  const samples = [exchangeNdr, postfixBounce, qmailBounce, autoReply, forged, challenge];
  const mangled = fc.tuple(fc.constantFrom(...samples), fc.nat(), fc.nat(), fc.string({ maxLength: 200 })).map(([s, a, b, junk]) => {
    const cut = s.slice(0, a % (s.length + 1));
    const at = b % (cut.length + 1);
    return cut.slice(0, at) + junk + cut.slice(at);
  });
  const anything = fc.oneof(
    mangled,
    fc.string({ maxLength: 2000 }),
    fc.uint8Array({ maxLength: 2000 }).map((u) => Buffer.from(u).toString('latin1')),
  );
  fc.assert(
    fc.property(anything, (input) => {
      const r = parseDsn(Buffer.from(input, 'latin1'));
      assert.ok(r.kind.length > 0);
      if (r.original) {
        assert.ok(r.original.received.length <= 20);
        assert.ok(r.original.dkimDomains.length <= 10);
        assert.ok(r.original.messageId.length <= input.length);
      }
    }),
    { numRuns: 2000 },
  );
});

test('hostile shapes stay fast: 5000 parts, deep nesting, 1 MiB header line, many boundaries', () => {
  const many =
    'Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n' +
    '--b\r\nContent-Type: text/plain\r\n\r\nx\r\n'.repeat(5000) +
    '--b--\r\n';
  let deep = 'x\r\n';
  for (let i = 0; i < 200; i++) deep = `Content-Type: multipart/mixed; boundary=b${i}\r\n\r\n--b${i}\r\n${deep}\r\n--b${i}--\r\n`;
  const longLine = 'Subject: ' + 'a'.repeat(1 << 20) + '\r\n\r\nbody';
  const noLf = 'Received: ' + 'x'.repeat(DSN_MAX_INPUT * 2);
  for (const input of [many, deep, longLine, noLf]) {
    const t = performance.now();
    const r = parseDsn(Buffer.from(input, 'latin1'));
    assert.ok(performance.now() - t < 500, `took ${performance.now() - t} ms`);
    assert.ok(r);
  }
  assert.equal(parseDsn(Buffer.from(many)).truncated, true);
});

test('the MIME walk limits given by the caller tighten the parser (never loosen it)', () => {
  const nested = (depth: number): string => {
    let body = 'Content-Type: text/rfc822-headers\r\n\r\nMessage-ID: <deep@example.test>\r\n';
    for (let i = 0; i < depth; i++) body = `Content-Type: multipart/mixed; boundary="b${i}"\r\n\r\n--b${i}\r\n${body}\r\n--b${i}--\r\n`;
    return `From: MAILER-DAEMON@example.test\r\nAuto-Submitted: auto-replied\r\n${body}`;
  };
  assert.equal(parseDsn(nested(3)).truncated, false);
  assert.equal(parseDsn(nested(3), false, { maxDepth: 2 }).truncated, true, 'content.mime.max_depth 2 applies');
  assert.equal(parseDsn(nested(3), false, { maxDepth: 100 }).truncated, false, 'a looser limit changes nothing');
});
