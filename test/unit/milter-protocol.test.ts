// Milter protocol unit tests: decoding the bytes a real Postfix sent (recorded by
// test/e2e/milter-record.test.ts into test/fixtures/milter/), the session state machine over
// them with a declarative pipeline, reply encodings, the reply map, macros, and fast-check
// properties: streams cut or mutated at any byte never throw, never allocate past the packet
// limit and never leave a transaction open.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import pino from 'pino';
import {
  Cmd,
  decodeCommand,
  encode,
  formatReply,
  MilterProtocolError,
  PacketReader,
  Reply,
  Step,
  WANTED_ACTIONS,
  WANTED_STEPS,
  type Command,
} from '../../src/fronts/milter/protocol.ts';
import { MilterSession } from '../../src/fronts/milter/milter-session.ts';
import { connectionFacts, esmtpArgs, mailMacroFacts, tlsFacts } from '../../src/fronts/milter/macros.ts';
import { eomReplies, unfoldValue, wireValue } from '../../src/fronts/milter/reply-map.ts';
import { parseMilterAddress } from '../../src/net/milter-address.ts';
import type { FinalEdits, MilterPipeline, MilterPipelineFactory, Outcome } from '../../src/fronts/milter/milter-pipeline.ts';
import type { FactValue } from '../../src/pipeline/facts.ts';

const fixture = JSON.parse(readFileSync(new URL('../fixtures/milter/postfix-capture.json', import.meta.url), 'utf8')) as {
  postfix: string;
  sessions: Array<{ scenario: string; hex: string }>;
};
const captured = (name: string): Buffer => Buffer.from(fixture.sessions.find((s) => s.scenario === name)?.hex ?? '', 'hex');
const log = pino({ level: 'silent' });

function decodeAll(bytes: Buffer): Command[] {
  const r = new PacketReader();
  return r.push(bytes).map((p) => decodeCommand(p.cmd, p.payload));
}

/** Splits a stream into packets' raw bytes (length prefix included). */
function rawPackets(bytes: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let pos = 0;
  while (pos + 4 <= bytes.length) {
    const len = bytes.readUInt32BE(pos);
    out.push(bytes.subarray(pos, pos + 4 + len));
    pos += 4 + len;
  }
  return out;
}

describe('decoding what Postfix sent (recorded fixture)', () => {
  test('fixture comes from a real Postfix speaking milter protocol 6', () => {
    assert.match(fixture.postfix, /^\d+\.\d+/);
    const first = decodeAll(captured('message-two-recipients'))[0];
    assert.deepEqual(first && first.cmd === 'optneg' ? first.version : undefined, 6);
  });

  test('a message with two recipients: every command in order, values exact', () => {
    const cmds = decodeAll(captured('message-two-recipients'));
    const seq = cmds.filter((c) => c.cmd !== 'macro').map((c) => c.cmd);
    assert.deepEqual(seq, [
      'optneg',
      'connect',
      'helo',
      'mail',
      'rcpt',
      'rcpt',
      'header',
      'header',
      'header',
      'header',
      'header',
      'header',
      'eoh',
      'body',
      'eom',
      'abort',
      'abort',
      'quit',
    ]);
    const connect = cmds.find((c) => c.cmd === 'connect');
    assert.ok(connect?.cmd === 'connect');
    assert.equal(connect.family, 'inet');
    assert.equal(connect.address, '127.0.0.1');
    assert.ok(connect.port > 0);
    const mail = cmds.find((c) => c.cmd === 'mail');
    assert.deepEqual(mail, { cmd: 'mail', from: 'sender@example.net', args: ['SIZE=300', 'BODY=8BITMIME'] });
    const rcpts = cmds.flatMap((c) => (c.cmd === 'rcpt' ? [c.to] : []));
    assert.deepEqual(rcpts, ['alice@example.test', 'bob@example.test']);
    const headers = cmds.flatMap((c) => (c.cmd === 'header' ? [[c.name, c.value]] : []));
    // HDR_LEADSPC negotiated: values keep their leading space; folding arrives as LF + WSP.
    assert.deepEqual(headers.slice(0, 5), [
      ['From', ' Sender <sender@example.net>'],
      ['To', ' alice@example.test, bob@example.test'],
      ['Subject', ' recorded'],
      ['X-Folded', ' first line\n\tsecond line'],
      ['Message-ID', ' <rec-1@example.net>'],
    ]);
    const body = cmds.find((c) => c.cmd === 'body');
    assert.equal(body?.cmd === 'body' ? body.chunk.toString() : '', 'Hello,\r\nthis is a recorded message.\r\n');
    const connMacros = cmds.find((c) => c.cmd === 'macro' && c.for === Cmd.CONNECT);
    assert.ok(connMacros?.cmd === 'macro');
    assert.match(connMacros.macros.get('v') ?? '', /^Postfix /);
    assert.ok(connMacros.macros.has('daemon_name') && connMacros.macros.has('j'));
  });

  test('RSET mid-transaction arrives as ABORT, then a new MAIL on the same connection', () => {
    const seq = decodeAll(captured('rset-then-message'))
      .filter((c) => c.cmd !== 'macro')
      .map((c) => (c.cmd === 'mail' ? `mail:${c.from}` : c.cmd));
    const i = seq.indexOf('abort');
    assert.deepEqual(seq.slice(i - 2, i + 3), ['mail:first@example.net', 'rcpt', 'abort', 'mail:', 'rcpt']);
  });

  test('Postfix offers every step and action; we ask for a subset with no-reply flags', () => {
    const o = decodeAll(captured('message-two-recipients'))[0];
    assert.ok(o?.cmd === 'optneg');
    assert.equal(WANTED_ACTIONS & ~o.actions, 0);
    assert.equal(WANTED_STEPS & ~o.protocol, 0);
    for (const f of [Step.NR_HDR, Step.NR_EOH, Step.NR_BODY, Step.NODATA, Step.NOUNKNOWN, Step.HDR_LEADSPC]) assert.ok(WANTED_STEPS & f);
    for (const f of [Step.NR_CONN, Step.NR_HELO, Step.NR_MAIL, Step.NR_RCPT, Step.NOBODY, Step.NOHDRS])
      assert.equal(WANTED_STEPS & f, 0, 'steps that can be refused keep their reply');
  });
});

// --- a declarative pipeline: records calls, answers from a script ------------------------------

interface Recorded {
  calls: string[];
  messages: string[];
  closed: number;
  open: number;
}

function scriptedPipeline(answers: Partial<Record<'connect' | 'helo' | 'mail' | 'rcpt' | 'data', Outcome>> = {}): {
  factory: MilterPipelineFactory;
  rec: Recorded;
} {
  const rec: Recorded = { calls: [], messages: [], closed: 0, open: 0 };
  const ok: Outcome = { kind: 'continue' };
  const factory: MilterPipelineFactory = () => {
    rec.open++;
    const p: MilterPipeline = {
      async connect(info) {
        rec.calls.push(`connect ${String(info.facts.get('client.ip'))}`);
        return answers.connect ?? ok;
      },
      async helo(name) {
        rec.calls.push(`helo ${name}`);
        return answers.helo ?? ok;
      },
      async mail(from, args, facts: ReadonlyMap<string, FactValue>) {
        rec.calls.push(`mail <${from}> ${Object.keys(args).join(',')} tls=${String(facts.get('tls'))}`);
        return answers.mail ?? ok;
      },
      async rcpt(to) {
        rec.calls.push(`rcpt <${to}>`);
        return answers.rcpt ?? ok;
      },
      async data(message: Readable, facts) {
        rec.calls.push(`data qid=${String(facts.get('milter.queue_id'))}`);
        const chunks: Buffer[] = [];
        try {
          for await (const c of message) chunks.push(c as Buffer);
        } catch {
          rec.calls.push('data aborted');
          return { kind: 'refuse', reply: { code: 451, enhanced: '4.4.2', text: 'aborted' } };
        }
        rec.messages.push(Buffer.concat(chunks).toString('latin1'));
        return answers.data ?? { kind: 'deliver', edits: noEdits() };
      },
      abort() {
        rec.calls.push('abort');
      },
      async close() {
        rec.closed++;
      },
    };
    return p;
  };
  return { factory, rec };
}

function noEdits(): FinalEdits {
  return { addHeaders: [], appendHeaders: [], removeHeaders: [], rcptRewrites: new Map() };
}

async function drive(
  bytes: Buffer,
  chunkSizes: number[],
  factory: MilterPipelineFactory,
  maxPacketBytes = 1_048_576,
): Promise<{ out: Command[]; replies: number[]; session: MilterSession; closedByUs: boolean }> {
  const written: Buffer[] = [];
  let closedByUs = false;
  const session = new MilterSession({ id: 't', log, pipeline: factory, maxPacketBytes, write: (b) => written.push(b), close: () => (closedByUs = true) });
  let pos = 0;
  let i = 0;
  while (pos < bytes.length) {
    const n = Math.max(1, chunkSizes[i++ % Math.max(1, chunkSizes.length)] ?? bytes.length);
    session.feed(bytes.subarray(pos, pos + n));
    pos += n;
    // Let the session's async steps run between chunks, like socket reads do.
    await new Promise((r) => setImmediate(r));
  }
  for (let k = 0; k < 20; k++) await new Promise((r) => setImmediate(r));
  await session.end();
  const all = Buffer.concat(written);
  const r = new PacketReader();
  const pkts = r.push(all);
  return { out: [], replies: pkts.map((p) => p.cmd), session, closedByUs };
}

describe('the session over recorded Postfix bytes', () => {
  test('whole stream: pipeline sees each stage, the message is rebuilt byte for byte, replies as negotiated', async () => {
    const { factory, rec } = scriptedPipeline();
    const { replies, session, closedByUs } = await drive(captured('message-two-recipients'), [], factory);
    assert.deepEqual(rec.calls.slice(0, 6), [
      'connect 127.0.0.1',
      'helo client.example.net',
      'mail <sender@example.net> SIZE,BODY tls=false',
      'rcpt <alice@example.test>',
      'rcpt <bob@example.test>',
      rec.calls[5],
    ]);
    assert.match(rec.calls[5] ?? '', /^data qid=[0-9A-F]+$/);
    const msg = rec.messages[0] ?? '';
    assert.ok(
      msg.startsWith(
        'From: Sender <sender@example.net>\r\nTo: alice@example.test, bob@example.test\r\nSubject: recorded\r\nX-Folded: first line\r\n\tsecond line\r\n',
      ),
      msg,
    );
    assert.ok(msg.endsWith('\r\n\r\nHello,\r\nthis is a recorded message.\r\n'));
    // OPTNEG, then CONTINUE for connect, helo, mail, 2×rcpt and end of message; nothing for headers/body.
    assert.deepEqual(replies, [Cmd.OPTNEG, Reply.CONTINUE, Reply.CONTINUE, Reply.CONTINUE, Reply.CONTINUE, Reply.CONTINUE, Reply.CONTINUE]);
    assert.equal(closedByUs, true, 'QUIT closes');
    assert.equal(session.inTransaction, false);
    assert.equal(rec.closed, rec.open);
  });

  test('RSET → abort reaches the pipeline and the next transaction starts clean', async () => {
    const { factory, rec } = scriptedPipeline();
    await drive(captured('rset-then-message'), [7], factory);
    const i = rec.calls.indexOf('abort');
    assert.ok(i > 0);
    assert.deepEqual(
      rec.calls.slice(i - 2, i + 3).map((c) => c.split(' ')[0]),
      ['mail', 'rcpt', 'abort', 'mail', 'rcpt'],
    );
    assert.equal(rec.messages.length, 1);
    assert.ok(rec.messages[0]?.startsWith('Subject: after rset\r\n'));
  });

  test('a refusal at RCPT becomes REPLYCODE with the code, enhanced code and text', async () => {
    const { factory } = scriptedPipeline({
      rcpt: { kind: 'refuse', reply: { code: 450, enhanced: '4.7.1', text: 'Rate limit exceeded (recipient_messages); try again in 1 hour' } },
    });
    const written: Buffer[] = [];
    const s = new MilterSession({ id: 't', log, pipeline: factory, maxPacketBytes: 1 << 20, write: (b) => written.push(b), close: () => undefined });
    s.feed(captured('message-two-recipients'));
    for (let k = 0; k < 50; k++) await new Promise((r) => setImmediate(r));
    await s.end();
    const pk = new PacketReader().push(Buffer.concat(written));
    const codes = pk.filter((p) => p.cmd === Reply.REPLYCODE).map((p) => p.payload.toString('latin1'));
    assert.deepEqual(codes[0], '450 4.7.1 Rate limit exceeded (recipient_messages); try again in 1 hour\0');
  });
});

describe('backpressure', () => {
  test('a pipeline that does not read pauses the MTA; buffered bytes stay bounded; resumes after', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const { factory } = scriptedPipeline();
    const slow: MilterPipelineFactory = (ctx) => {
      const p = factory(ctx);
      return { ...p, data: async (m, f) => (await gate, p.data(m, f)) };
    };
    let paused = 0;
    let resumed = 0;
    const s = new MilterSession({
      id: 't',
      log,
      pipeline: slow,
      maxPacketBytes: 65_536,
      write: () => undefined,
      close: () => undefined,
      pause: () => paused++,
      resume: () => resumed++,
    });
    const pk = rawPackets(captured('message-two-recipients'));
    const upToEoh = pk.slice(0, pk.findIndex((b) => b[4] === Cmd.EOH) + 1);
    s.feed(Buffer.concat(upToEoh));
    const chunk = Buffer.alloc(60_000, 0x61);
    const body = Buffer.concat([Buffer.from([0, 0, 0xea, 0x61, Cmd.BODY]), chunk]);
    for (let i = 0; i < 40; i++) {
      s.feed(body);
      await new Promise((r) => setImmediate(r));
    }
    assert.ok(paused > 0, 'paused the MTA');
    release();
    for (let k = 0; k < 200 && resumed === 0; k++) await new Promise((r) => setTimeout(r, 5));
    assert.ok(resumed > 0, 'resumed once the pipeline reads');
    await s.end();
    assert.equal(s.inTransaction, false);
  });
});

describe('encoding replies (table)', () => {
  const cases: Array<{ desc: string; got: Buffer; hex: string }> = [
    { desc: 'CONTINUE', got: encode.continue(), hex: '0000000163' },
    { desc: 'ACCEPT', got: encode.accept(), hex: '0000000161' },
    { desc: 'DISCARD', got: encode.discard(), hex: '0000000164' },
    { desc: 'TEMPFAIL', got: encode.tempfail(), hex: '0000000174' },
    { desc: 'REJECT', got: encode.reject(), hex: '0000000172' },
    { desc: 'PROGRESS', got: encode.progress(), hex: '0000000170' },
    { desc: 'OPTNEG v6', got: encode.optneg(6, 0x3d, 0x1d0280), hex: '0000000d4f000000060000003d001d0280' },
    { desc: 'REPLYCODE', got: encode.replycode(550, '5.7.1', 'No'), hex: '0000000e79' + Buffer.from('550 5.7.1 No\0').toString('hex') },
    { desc: 'QUARANTINE', got: encode.quarantine('spam'), hex: '0000000671' + Buffer.from('spam\0').toString('hex') },
    { desc: 'INSHEADER at 0', got: encode.insHeader(0, 'A', ' b'), hex: '0000000a6900000000' + Buffer.from('A\0 b\0').toString('hex') },
    { desc: 'CHGHEADER delete 2nd', got: encode.chgHeader(2, 'A', ''), hex: '000000086d00000002' + Buffer.from('A\0\0').toString('hex') },
    { desc: 'ADDRCPT', got: encode.addRcpt('a@b'), hex: '000000072b' + Buffer.from('<a@b>\0').toString('hex') },
    { desc: 'DELRCPT', got: encode.delRcpt('a@b'), hex: '000000072d' + Buffer.from('<a@b>\0').toString('hex') },
  ];
  for (const c of cases) test(c.desc, () => assert.equal(c.got.toString('hex'), c.hex));

  test('multi-line replies and % (Sendmail format characters)', () => {
    assert.equal(formatReply(550, '5.7.1', 'one\ntwo'), '550-5.7.1 one\r\n550 5.7.1 two');
    assert.equal(formatReply(451, '4.7.1', '100% sure\r'), '451 4.7.1 100%% sure');
  });
});

describe('framing and decoding hostile input (table)', () => {
  const len = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n >>> 0);
    return b;
  };
  const cases: Array<{ desc: string; bytes: Buffer; reason: MilterProtocolError['reason'] }> = [
    { desc: 'length 0', bytes: len(0), reason: 'empty' },
    { desc: 'length 4 GiB - 1, rejected from the 4 length bytes alone', bytes: len(0xffffffff), reason: 'oversized' },
    { desc: 'length just over the limit', bytes: len(65_537), reason: 'oversized' },
    { desc: 'unknown command', bytes: Buffer.concat([len(1), Buffer.from('Z')]), reason: 'unknown-command' },
    { desc: 'OPTNEG too short', bytes: Buffer.concat([len(5), Buffer.from('O'), Buffer.alloc(4)]), reason: 'malformed' },
    { desc: 'HELO without NUL', bytes: Buffer.concat([len(4), Buffer.from('Hxyz')]), reason: 'malformed' },
    { desc: 'HEADER with one string', bytes: Buffer.concat([len(3), Buffer.from('La\0')]), reason: 'malformed' },
    { desc: 'CONNECT with bad family', bytes: Buffer.concat([len(6), Buffer.from('Ch\0X\0\0')]), reason: 'malformed' },
    { desc: 'MACRO with odd strings', bytes: Buffer.concat([len(4), Buffer.from('DCa\0')]), reason: 'malformed' },
  ];
  for (const c of cases) {
    test(c.desc, () => {
      const r = new PacketReader(65_536);
      assert.throws(
        () => r.push(c.bytes).forEach((p) => decodeCommand(p.cmd, p.payload)),
        (e: unknown) => e instanceof MilterProtocolError && e.reason === c.reason,
      );
    });
  }

  test('an oversized packet closes the session and counts nothing as a transaction', async () => {
    const { factory, rec } = scriptedPipeline();
    const prefix = Buffer.concat(rawPackets(captured('message-two-recipients')).slice(0, 3));
    const bytes = Buffer.concat([prefix, len(2_000_000), Buffer.from('L')]);
    const { closedByUs, session } = await drive(bytes, [prefix.length, 100], factory);
    assert.equal(rec.calls[0], 'connect 127.0.0.1');
    assert.equal(closedByUs, true);
    assert.equal(session.inTransaction, false);
    assert.equal(rec.closed, 1);
  });
});

describe('reply map at end of message (table)', () => {
  const headers = [
    { name: 'Authentication-Results', value: ' mx.example.test; dkim=pass header.d=bank.example' },
    { name: 'Subject', value: ' Hello' },
    { name: 'Authentication-Results', value: ' mx.example.test; spf=pass' },
    { name: 'authentication-results', value: ' upstream.example; spf=pass' },
  ];
  const forged = (n: string, v: string) => n.toLowerCase() === 'authentication-results' && v.startsWith('mx.example.test');
  const decode = (bufs: Buffer[]) =>
    bufs.map((b) => {
      const p = new PacketReader().push(b)[0] as { cmd: number; payload: Buffer };
      const s = p.payload.toString('latin1');
      return p.cmd === Reply.INSHEADER || p.cmd === Reply.CHGHEADER
        ? `${String.fromCharCode(p.cmd)} ${p.payload.readUInt32BE(0)} ${s.slice(4)}`
        : `${String.fromCharCode(p.cmd)} ${s}`;
    });
  const cases: Array<{ desc: string; outcome: Outcome; expected: string[] }> = [
    {
      desc: 'refuse → REPLYCODE only',
      outcome: { kind: 'refuse', reply: { code: 550, enhanced: '5.7.1', text: 'Rejected by the DMARC policy of bank.example' } },
      expected: ['y 550 5.7.1 Rejected by the DMARC policy of bank.example\0'],
    },
    { desc: 'discard → DISCARD', outcome: { kind: 'discard' }, expected: ['d '] },
    {
      desc: 'deliver: forged results deleted highest index first, subject tagged, ours inserted on top in order, rcpt rewritten',
      outcome: {
        kind: 'deliver',
        edits: {
          addHeaders: [{ name: 'Authentication-Results', value: 'mx.example.test; spf=pass' }],
          appendHeaders: [{ name: 'X-Mailgate-Status', value: 'accept score=0' }],
          removeHeaders: [forged],
          tagSubject: '[SPAM]',
          rcptRewrites: new Map([['prvs=1=bob@example.test', 'bob@example.test']]),
        },
      },
      expected: [
        'm 2 Authentication-Results\0\0',
        'm 1 Authentication-Results\0\0',
        'm 1 Subject\0 [SPAM] Hello\0',
        'i 0 X-Mailgate-Status\0 accept score=0\0',
        'i 0 Authentication-Results\0 mx.example.test; spf=pass\0',
        '- <prvs=1=bob@example.test>\0',
        '+ <bob@example.test>\0',
        'c ',
      ],
    },
    {
      desc: 'quarantine (hold) → edits, QUARANTINE, CONTINUE',
      outcome: { kind: 'quarantine', edits: noEdits(), reason: 'mailgate X: SPAM' },
      expected: ['q mailgate X: SPAM\0', 'c '],
    },
    { desc: 'quarantine (store) → DISCARD', outcome: { kind: 'quarantine', edits: noEdits(), reason: 'x', stored: 'ID' }, expected: ['d '] },
  ];
  for (const c of cases) test(c.desc, () => assert.deepEqual(decode(eomReplies(c.outcome, headers, { leadingSpace: true })), c.expected));

  test('non-ASCII header bytes are sent back unchanged, our UTF-8 tag encoded as UTF-8', () => {
    const raw = Buffer.from(' Grüße', 'utf8').toString('latin1');
    const edits = { ...noEdits(), tagSubject: '[ÄUSSERE]' };
    const [chg] = eomReplies({ kind: 'deliver', edits }, [{ name: 'Subject', value: raw }], { leadingSpace: true });
    const p = new PacketReader().push(chg as Buffer)[0] as { payload: Buffer };
    assert.deepEqual(p.payload.subarray(4), Buffer.from('Subject\0 [ÄUSSERE] Grüße\0', 'utf8'));
  });

  test('long values are folded with LF + tab; without HDR_LEADSPC the leading space goes', () => {
    const v = wireValue('Authentication-Results', `mx.example.test; ${'dkim=pass header.d=example.com; '.repeat(4)}`.trim(), { leadingSpace: true });
    assert.ok(v.startsWith(' mx.example.test;') && v.includes('\n\t') && !v.includes('\r'));
    assert.equal(wireValue('X', 'y', { leadingSpace: false }), 'y');
    assert.equal(unfoldValue(' first\n\tsecond '), 'first\tsecond');
  });
});

describe('macros → the SMTP front facts (table)', () => {
  const cases: Array<{ desc: string; got: Map<string, FactValue>; expected: Record<string, FactValue> }> = [
    {
      desc: 'connect packet only',
      got: connectionFacts({ address: '192.0.2.7', port: 4000 }, new Map()),
      expected: { 'client.ip': '192.0.2.7', 'client.port': 4000, 'client.proxied': false },
    },
    {
      desc: 'macros win, names normalised',
      got: connectionFacts(
        { address: '::ffff:10.0.0.1', port: 1 },
        new Map([
          ['client_addr', '::ffff:198.51.100.2'],
          ['client_port', '2525'],
          ['client_name', 'unknown'],
          ['daemon_name', 'smtpd'],
          ['j', 'mx.example.test'],
        ]),
      ),
      expected: {
        'client.ip': '198.51.100.2',
        'client.port': 2525,
        'client.proxied': false,
        'milter.client_name': '',
        'milter.daemon_name': 'smtpd',
        'milter.mta_hostname': 'mx.example.test',
      },
    },
    {
      desc: 'a unix-socket client counts as local',
      got: connectionFacts({ address: '/run/x.sock', port: 0 }, new Map()),
      expected: { 'client.ip': '127.0.0.1', 'client.port': 0, 'client.proxied': false },
    },
    { desc: 'no TLS', got: tlsFacts(new Map()), expected: { tls: false } },
    {
      desc: 'TLS',
      got: tlsFacts(
        new Map([
          ['tls_version', 'TLSv1.3'],
          ['cipher', 'TLS_AES_256_GCM_SHA384'],
        ]),
      ),
      expected: { tls: true, 'tls.version': 'TLSv1.3', 'tls.cipher': 'TLS_AES_256_GCM_SHA384' },
    },
    {
      desc: 'SASL login and queue id',
      got: mailMacroFacts(
        new Map([
          ['auth_authen', 'alice'],
          ['i', 'ABC123'],
        ]),
      ),
      expected: { 'milter.queue_id': 'ABC123', 'milter.authenticated': true, 'milter.auth_user': 'alice' },
    },
  ];
  for (const c of cases) test(c.desc, () => assert.deepEqual(Object.fromEntries(c.got), c.expected));

  test('ESMTP args like smtp-server gives them', () =>
    assert.deepEqual(esmtpArgs(['SIZE=300', 'body=8BITMIME', 'SMTPUTF8']), { SIZE: '300', BODY: '8BITMIME', SMTPUTF8: true }));

  const addrs: Array<{ s: string; expected: unknown }> = [
    { s: 'inet:11332@127.0.0.1', expected: { kind: 'inet', host: '127.0.0.1', port: 11332 } },
    { s: 'inet:11332', expected: { kind: 'inet', host: '0.0.0.0', port: 11332 } },
    { s: 'inet6:11332@[::1]', expected: { kind: 'inet', host: '::1', port: 11332 } },
    { s: 'unix:/run/mailgate/milter.sock', expected: { kind: 'unix', path: '/run/mailgate/milter.sock' } },
    { s: 'unix:relative', expected: 'a unix socket path must be absolute' },
    { s: 'inet:99999@h', expected: 'bad port "99999"' },
    { s: 'tcp:1@h', expected: 'unknown socket type "tcp" (expected inet, inet6 or unix)' },
  ];
  for (const a of addrs) test(`address ${a.s}`, () => assert.deepEqual(parseMilterAddress(a.s), a.expected));
});

describe('properties (fast-check)', () => {
  const streams = fixture.sessions.map((s) => Buffer.from(s.hex, 'hex'));

  test('the same commands come out however the stream is cut', () => {
    fc.assert(
      fc.property(fc.constantFrom(...streams), fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 40 }), (bytes, cuts) => {
        const r = new PacketReader();
        const got: Command[] = [];
        let pos = 0;
        let i = 0;
        while (pos < bytes.length) {
          const n = cuts[i++ % cuts.length] as number;
          for (const p of r.push(bytes.subarray(pos, pos + n))) got.push(decodeCommand(p.cmd, p.payload));
          pos += n;
        }
        assert.deepEqual(got, decodeAll(bytes));
        assert.equal(r.idle, true);
      }),
      { numRuns: 200 },
    );
  });

  test('any command byte with any payload decodes or throws MilterProtocolError, nothing else', () => {
    const cmds = Object.values(Cmd) as number[];
    fc.assert(
      fc.property(fc.oneof(fc.constantFrom(...cmds), fc.integer({ min: 0, max: 255 })), fc.uint8Array({ maxLength: 64 }), (cmd, payload) => {
        try {
          decodeCommand(cmd, Buffer.from(payload));
        } catch (e) {
          assert.ok(e instanceof MilterProtocolError, String(e));
        }
      }),
      { numRuns: 2000 },
    );
  });

  test('a length prefix over the limit is refused before its body arrives (no allocation by claimed length)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 65_537, max: 0xffffffff }), (n) => {
        const r = new PacketReader(65_536);
        const b = Buffer.alloc(4);
        b.writeUInt32BE(n);
        assert.throws(
          () => r.push(b),
          (e: unknown) => e instanceof MilterProtocolError && e.reason === 'oversized',
        );
      }),
      { numRuns: 300 },
    );
  });

  test('a stream cut at any byte: no throw, no open transaction, pipeline closed once', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...streams), fc.nat(), fc.integer({ min: 1, max: 64 }), async (bytes, cutAt, chunk) => {
        const { factory, rec } = scriptedPipeline();
        const { session } = await drive(bytes.subarray(0, cutAt % (bytes.length + 1)), [chunk], factory);
        assert.equal(session.inTransaction, false);
        assert.ok(rec.closed <= rec.open && rec.open === 1);
        // connect seen ⇒ closed
        if (rec.calls.some((c) => c.startsWith('connect'))) assert.equal(rec.closed, 1);
      }),
      { numRuns: 150 },
    );
  });

  test('mutated bytes (flips, inserts, deletions): only protocol errors, never a crash or a leak', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...streams),
        fc.array(fc.record({ at: fc.nat(), kind: fc.constantFrom('flip', 'insert', 'delete'), byte: fc.integer({ min: 0, max: 255 }) }), {
          minLength: 1,
          maxLength: 8,
        }),
        async (orig, muts) => {
          const bytes = [...orig];
          for (const m of muts) {
            const i = m.at % (bytes.length + 1);
            if (m.kind === 'flip' && i < bytes.length) bytes[i] = m.byte;
            else if (m.kind === 'insert') bytes.splice(i, 0, m.byte);
            else bytes.splice(i, 1);
          }
          const { factory, rec } = scriptedPipeline();
          const { session } = await drive(Buffer.from(bytes), [97], factory, 65_536);
          assert.equal(session.inTransaction, false);
          if (rec.calls.some((c) => c.startsWith('connect'))) assert.equal(rec.closed, 1);
        },
      ),
      { numRuns: 200 },
    );
  });
});
