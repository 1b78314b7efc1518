// The backend SMTP client (BackendSession) against a scripted SMTP server on 127.0.0.1: greeting,
// EHLO, replies and enhanced codes, pipelining, XCLIENT (xtext), refusals returned not thrown,
// connect/timeout/close failures as BackendError, dot-stuffing and the final dot, byte for byte.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { BackendError, BackendSession, dotStuff, type BackendOptions, type BackendReply } from '../../src/delivery/backend-client.ts';
import { SmtpBackend } from '../../src/delivery/backend.ts';
import { backendSmtpSchema } from '../../src/config/schema.ts';

/** What the scripted server answers to one command line: a reply, a delayed reply, or silence (null). */
type Answer = string | { text: string; delayMs: number } | null;

interface Script {
  /** Greeting; null: never greet. */
  greeting?: string | null;
  /** Answer to each command line (upper-cased verb available as `verb`); undefined → "250 2.0.0 Ok". */
  answer?: (line: string, verb: string, srv: Recorder) => Answer | undefined;
  /** Answer after the final dot; null: never answer. */
  dataEnd?: Answer;
  /** Called with the socket whenever DATA bytes arrive (e.g. to hang up mid-DATA). */
  onDataBytes?: (sock: net.Socket, soFar: string) => void;
  /** Hang up (without a reply) when this verb arrives. */
  hangUpOn?: string;
}

interface Recorder {
  /** Command lines as received. */
  commands: string[];
  /** For each command: how many replies the server had sent when it arrived (pipelining). */
  repliesSentBefore: number[];
  /** Raw DATA bytes (dot-stuffed, final dot included) per message. */
  data: string[];
  repliesSent: number;
}

const EHLO_FULL =
  '250-backend.test Hello\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n250-XCLIENT NAME ADDR PORT PROTO HELO\r\n250 ENHANCEDSTATUSCODES';

async function scriptedServer(script: Script): Promise<{ port: number; rec: Recorder; close: () => Promise<void> }> {
  const rec: Recorder = { commands: [], repliesSentBefore: [], data: [], repliesSent: 0 };
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    let buf = '';
    let inData = false;
    // Replies leave in command order even when one is delayed (as a real server's would).
    let queue = Promise.resolve();
    const send = (a: Answer | undefined) => {
      if (a === null) return;
      const { text, delayMs } = typeof a === 'object' && a !== undefined ? a : { text: a ?? '250 2.0.0 Ok', delayMs: 0 };
      const go = () => {
        if (sock.destroyed) return;
        rec.repliesSent++;
        sock.write(`${text}\r\n`);
      };
      if (delayMs > 0) queue = queue.then(() => new Promise<void>((r) => setTimeout(() => (go(), r()), delayMs)));
      else queue = queue.then(go);
    };
    if (script.greeting !== null) send(script.greeting ?? '220 backend.test ESMTP scripted');
    sock.setEncoding('latin1');
    sock.on('data', (chunk: string) => {
      buf += chunk;
      for (;;) {
        if (inData) {
          script.onDataBytes?.(sock, buf);
          // The data ends with CRLF.CRLF, or is just ".CRLF" when empty.
          const end = buf.startsWith('.\r\n') ? 0 : buf.indexOf('\r\n.\r\n');
          if (end < 0) return;
          const stop = end === 0 && buf.startsWith('.\r\n') ? 3 : end + 5;
          rec.data.push(buf.slice(0, stop));
          buf = buf.slice(stop);
          inData = false;
          send(script.dataEnd === undefined ? '250 2.0.0 Ok: queued as ABC' : script.dataEnd);
          continue;
        }
        const nl = buf.indexOf('\r\n');
        if (nl < 0) return;
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        rec.commands.push(line);
        rec.repliesSentBefore.push(rec.repliesSent);
        const verb = (line.split(' ')[0] ?? '').toUpperCase();
        if (verb === script.hangUpOn) {
          sock.destroy();
          return;
        }
        let a = script.answer?.(line, verb, rec);
        if (a === undefined) {
          if (verb === 'EHLO') a = EHLO_FULL;
          else if (verb === 'DATA') a = '354 End data with <CR><LF>.<CR><LF>';
          else if (verb === 'QUIT') a = '221 2.0.0 Bye';
        }
        if (verb === 'DATA' && (a === undefined || (typeof a === 'string' && a.startsWith('354')))) inData = true;
        send(a);
      }
    });
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  return {
    port: (srv.address() as net.AddressInfo).port,
    rec,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => srv.close(() => r()));
    },
  };
}

function opts(port: number, over: Partial<BackendOptions> = {}): BackendOptions {
  return { host: '127.0.0.1', port, helo: 'mailgate.test', connectTimeoutMs: 2000, commandTimeoutMs: 2000, dataTimeoutMs: 2000, ...over };
}

async function withServer(script: Script, fn: (s: Awaited<ReturnType<typeof scriptedServer>>) => Promise<void>): Promise<void> {
  const s = await scriptedServer(script);
  try {
    await fn(s);
  } finally {
    await s.close();
  }
}

async function* chunks(...parts: string[]): AsyncGenerator<Buffer> {
  for (const p of parts) yield Buffer.from(p, 'latin1');
}

// --- greeting and EHLO ------------------------------------------------------------------------

test('open: reads the greeting, sends EHLO with our name, parses the capabilities', async () => {
  await withServer({}, async ({ port, rec }) => {
    const s = await BackendSession.open(opts(port));
    try {
      assert.deepEqual(rec.commands, ['EHLO mailgate.test']);
      assert.equal(s.has('PIPELINING'), true);
      assert.equal(s.has('8BITMIME'), true);
      assert.equal(s.capabilities.get('SIZE'), '10240000');
      assert.equal(s.capabilities.get('XCLIENT'), 'NAME ADDR PORT PROTO HELO');
      assert.equal(s.has('BACKEND.TEST'), false, 'the greeting line of the EHLO reply is not a capability');
      assert.equal(s.canXclientAddr, true);
      assert.equal(s.alive, true);
    } finally {
      s.close();
    }
  });
});

test('open: EHLO refused → HELO, no capabilities', async () => {
  await withServer({ answer: (_l, verb) => (verb === 'EHLO' ? '502 5.5.2 Error: command not recognized' : undefined) }, async ({ port, rec }) => {
    const s = await BackendSession.open(opts(port));
    try {
      assert.deepEqual(rec.commands, ['EHLO mailgate.test', 'HELO mailgate.test']);
      assert.equal(s.capabilities.size, 0);
      assert.equal(s.has('PIPELINING'), false);
    } finally {
      s.close();
    }
  });
});

test('open: EHLO and HELO refused → BackendError protocol', async () => {
  await withServer({ answer: (_l, verb) => (verb === 'EHLO' || verb === 'HELO' ? '550 5.7.1 go away' : undefined) }, async ({ port }) => {
    await assert.rejects(BackendSession.open(opts(port)), (e: unknown) => e instanceof BackendError && e.kind === 'protocol' && /550/.test(e.message));
  });
});

test('open: a 554 greeting → BackendError protocol, no EHLO sent', async () => {
  await withServer({ greeting: '554 5.3.2 not now' }, async ({ port, rec }) => {
    await assert.rejects(BackendSession.open(opts(port)), (e: unknown) => e instanceof BackendError && e.kind === 'protocol' && /554/.test(e.message));
    assert.deepEqual(rec.commands, []);
  });
});

test('open: a multi-line greeting is one reply', async () => {
  await withServer({ greeting: '220-backend.test first\r\n220-second\r\n220 third' }, async ({ port, rec }) => {
    const s = await BackendSession.open(opts(port));
    s.close();
    assert.deepEqual(rec.commands, ['EHLO mailgate.test']);
  });
});

// --- replies and enhanced codes ---------------------------------------------------------------

const replyCases: Array<{ desc: string; input: string; expected: BackendReply }> = [
  { desc: 'code, enhanced code and text', input: '250 2.1.0 Ok', expected: { code: 250, enhanced: '2.1.0', lines: ['Ok'] } },
  { desc: 'no enhanced code', input: '250 Ok', expected: { code: 250, enhanced: '', lines: ['Ok'] } },
  {
    desc: 'multi-line with the enhanced code on every line',
    input: '550-5.1.1 <x@example.test>: Recipient address rejected:\r\n550 5.1.1 User unknown in virtual mailbox table',
    expected: { code: 550, enhanced: '5.1.1', lines: ['<x@example.test>: Recipient address rejected:', 'User unknown in virtual mailbox table'] },
  },
  {
    desc: 'multi-line with the enhanced code on the first line only',
    input: '452-4.5.3 Too many\r\n452 recipients',
    expected: { code: 452, enhanced: '4.5.3', lines: ['Too many', 'recipients'] },
  },
  { desc: 'enhanced class must match the code class', input: '550 4.1.1 mismatched', expected: { code: 550, enhanced: '', lines: ['4.1.1 mismatched'] } },
  { desc: 'three-digit detail', input: '451 4.7.100 slow down', expected: { code: 451, enhanced: '4.7.100', lines: ['slow down'] } },
  { desc: 'enhanced code alone', input: '451 4.3.0', expected: { code: 451, enhanced: '4.3.0', lines: [''] } },
  { desc: 'a bare code', input: '250', expected: { code: 250, enhanced: '', lines: [''] } },
  { desc: 'something that only looks like a code is text', input: '250 2.0.0.1 odd', expected: { code: 250, enhanced: '', lines: ['2.0.0.1 odd'] } },
];

for (const c of replyCases) {
  test(`reply: ${c.desc}`, async () => {
    await withServer({ answer: (_l, verb) => (verb === 'NOOP' ? c.input : undefined) }, async ({ port }) => {
      const s = await BackendSession.open(opts(port));
      try {
        assert.deepEqual(await s.command('NOOP'), c.expected);
      } finally {
        s.close();
      }
    });
  });
}

test('reply: an unparseable reply → BackendError protocol, session dead', async () => {
  await withServer({ answer: (_l, verb) => (verb === 'NOOP' ? 'hello there' : undefined) }, async ({ port }) => {
    const s = await BackendSession.open(opts(port));
    await assert.rejects(s.command('NOOP'), (e: unknown) => e instanceof BackendError && e.kind === 'protocol');
    assert.equal(s.alive, false);
  });
});

test('reply: an endless reply line → BackendError protocol (bounded memory)', async () => {
  await withServer({ answer: (_l, verb) => (verb === 'NOOP' ? `250-${'x'.repeat(70_000)}` : undefined) }, async ({ port }) => {
    const s = await BackendSession.open(opts(port));
    await assert.rejects(s.command('NOOP'), (e: unknown) => e instanceof BackendError && e.kind === 'protocol' && /too long/.test(e.message));
  });
});

// --- pipelining -------------------------------------------------------------------------------

test('pipeline: with PIPELINING all commands leave before the first reply; replies in order', async () => {
  const answer = (l: string, verb: string) =>
    verb === 'MAIL' ? { text: '250 2.1.0 Ok', delayMs: 50 } : verb === 'RCPT' ? (l.includes('bad') ? '550 5.1.1 unknown' : '250 2.1.5 Ok') : undefined;
  await withServer({ answer }, async ({ port, rec }) => {
    const s = await BackendSession.open(opts(port));
    try {
      const r = await s.pipeline(['MAIL FROM:<a@example.org>', 'RCPT TO:<bad@example.test>', 'RCPT TO:<good@example.test>']);
      assert.deepEqual(
        r.map((x) => `${x.code} ${x.enhanced}`),
        ['250 2.1.0', '550 5.1.1', '250 2.1.5'],
      );
      const i = rec.commands.indexOf('MAIL FROM:<a@example.org>');
      assert.deepEqual(rec.repliesSentBefore.slice(i, i + 3), [2, 2, 2], 'RCPTs arrived before the MAIL reply was sent');
    } finally {
      s.close();
    }
  });
});

test('pipeline: without PIPELINING each command waits for the previous reply', async () => {
  const answer = (_l: string, verb: string) =>
    verb === 'EHLO' ? '250-backend.test\r\n250 SIZE 1000' : verb === 'MAIL' ? { text: '250 2.1.0 Ok', delayMs: 50 } : undefined;
  await withServer({ answer }, async ({ port, rec }) => {
    const s = await BackendSession.open(opts(port));
    try {
      assert.equal(s.has('PIPELINING'), false);
      const r = await s.pipeline(['MAIL FROM:<a@example.org>', 'RCPT TO:<b@example.test>']);
      assert.deepEqual(
        r.map((x) => x.code),
        [250, 250],
      );
      const i = rec.commands.indexOf('MAIL FROM:<a@example.org>');
      assert.deepEqual(rec.repliesSentBefore.slice(i, i + 2), [2, 3]);
    } finally {
      s.close();
    }
  });
});

// --- XCLIENT ----------------------------------------------------------------------------------

const xclientCases = [
  {
    desc: 'every attribute offered: NAME ADDR PORT PROTO HELO sent, IPv6 tagged',
    input: {
      offered: 'NAME ADDR PORT PROTO HELO',
      attrs: { addr: '2001:db8::1', port: 40000, name: 'client.example.org', helo: 'client.example.org', proto: 'ESMTP' as const },
    },
    expected: 'XCLIENT NAME=client.example.org ADDR=IPV6:2001:db8::1 PORT=40000 PROTO=ESMTP HELO=client.example.org',
  },
  {
    desc: 'IPv4 address, no reverse name → [UNAVAILABLE]',
    input: { offered: 'NAME ADDR PORT PROTO HELO', attrs: { addr: '192.0.2.10', port: 1, helo: 'h' } },
    expected: 'XCLIENT NAME=[UNAVAILABLE] ADDR=192.0.2.10 PORT=1 HELO=h',
  },
  {
    desc: 'only what the backend offers is sent',
    input: { offered: 'ADDR HELO', attrs: { addr: '192.0.2.10', port: 1, name: 'n.example', helo: 'h' } },
    expected: 'XCLIENT ADDR=192.0.2.10 HELO=h',
  },
  {
    desc: 'xtext: "+", "=", space and controls encoded as +XX',
    input: { offered: 'ADDR HELO', attrs: { addr: '192.0.2.10', helo: 'a+b=c d\x7f' } },
    expected: 'XCLIENT ADDR=192.0.2.10 HELO=a+2Bb+3Dc+20d+7F',
  },
  {
    desc: 'xtext: a non-ASCII HELO is encoded as its UTF-8 octets (RFC 3461 4: xtext is octets)',
    input: { offered: 'ADDR HELO', attrs: { addr: '192.0.2.10', helo: 'b\u00fccher.example' } },
    expected: 'XCLIENT ADDR=192.0.2.10 HELO=b+C3+BCcher.example',
  },
  {
    desc: 'xtext: a character above U+00FF is never a 4-digit escape',
    input: { offered: 'ADDR HELO', attrs: { addr: '192.0.2.10', helo: '\u20ac' } },
    expected: 'XCLIENT ADDR=192.0.2.10 HELO=+E2+82+AC',
  },
];

for (const c of xclientCases) {
  test(`xclient: ${c.desc}`, async () => {
    const answer = (_l: string, verb: string) =>
      verb === 'EHLO' ? `250-backend.test\r\n250-PIPELINING\r\n250 XCLIENT ${c.input.offered}` : verb === 'XCLIENT' ? '220 backend.test ESMTP' : undefined;
    await withServer({ answer }, async ({ port, rec }) => {
      const s = await BackendSession.open(opts(port));
      try {
        const r = await s.xclient(c.input.attrs, 'client-helo.example');
        assert.equal(r.code, 220);
        const x = rec.commands.find((l) => l.startsWith('XCLIENT'));
        assert.equal(x, c.expected);
        // The backend greets again: we EHLO again, with the client's HELO name.
        assert.equal(rec.commands.at(-1), 'EHLO client-helo.example');
        assert.equal(s.xclientSent, true);
      } finally {
        s.close();
      }
    });
  });
}

test('xclient: refused by the backend → reply returned, session not marked', async () => {
  const answer = (_l: string, verb: string) => (verb === 'XCLIENT' ? '550 5.7.0 insufficient authorization' : undefined);
  await withServer({ answer }, async ({ port, rec }) => {
    const s = await BackendSession.open(opts(port));
    try {
      const r = await s.xclient({ addr: '192.0.2.1' }, 'h');
      assert.equal(r.code, 550);
      assert.equal(s.xclientSent, false);
      assert.equal(rec.commands.filter((l) => l.startsWith('EHLO')).length, 1, 'no second EHLO');
    } finally {
      s.close();
    }
  });
});

test('xclient: without ADDR offered canXclientAddr is false', async () => {
  const answer = (_l: string, verb: string) => (verb === 'EHLO' ? '250-backend.test\r\n250 XCLIENT NAME HELO' : undefined);
  await withServer({ answer }, async ({ port }) => {
    const s = await BackendSession.open(opts(port));
    assert.equal(s.canXclientAddr, false);
    s.close();
  });
});

// --- refusals are replies, not exceptions -----------------------------------------------------

const refusalCases = [
  { desc: '4xx at MAIL', input: { verb: 'MAIL', reply: '451 4.3.0 try later' }, expected: { at: 'mail', code: 451, enhanced: '4.3.0' } },
  { desc: '5xx at MAIL', input: { verb: 'MAIL', reply: '553 5.1.8 bad sender' }, expected: { at: 'mail', code: 553, enhanced: '5.1.8' } },
  { desc: '4xx at RCPT', input: { verb: 'RCPT', reply: '450 4.2.0 mailbox busy' }, expected: { at: 'rcpt', code: 450, enhanced: '4.2.0' } },
  { desc: '5xx at RCPT', input: { verb: 'RCPT', reply: '550 5.1.1 no such user' }, expected: { at: 'rcpt', code: 550, enhanced: '5.1.1' } },
  { desc: '4xx at DATA', input: { verb: 'DATA', reply: '451 4.3.0 no DATA now' }, expected: { at: 'data', code: 451, enhanced: '4.3.0' } },
  { desc: '5xx at DATA', input: { verb: 'DATA', reply: '554 5.5.1 no valid recipients' }, expected: { at: 'data', code: 554, enhanced: '5.5.1' } },
];

for (const c of refusalCases) {
  test(`refusal: ${c.desc} is returned as the reply`, async () => {
    await withServer({ answer: (_l, verb) => (verb === c.input.verb ? c.input.reply : undefined) }, async ({ port, rec }) => {
      const s = await BackendSession.open(opts(port));
      try {
        const m = await s.mail('a@example.org', []);
        let r: BackendReply = m;
        if (c.expected.at !== 'mail') {
          assert.equal(s.inTransaction, true);
          r = await s.rcpt('b@example.test');
        }
        let skipped = false;
        let pulled = false;
        if (c.expected.at === 'data') {
          async function* content(): AsyncGenerator<Buffer> {
            pulled = true;
            yield Buffer.from('Subject: x\r\n\r\nbody\r\n');
          }
          r = await s.data(content(), () => (skipped = true));
          assert.equal(skipped, true, 'onSkip called when DATA is refused');
          assert.equal(pulled, false, 'the content is not read');
          assert.equal(s.inTransaction, false);
          assert.deepEqual(rec.data, []);
        }
        assert.equal(r.code, c.expected.code);
        assert.equal(r.enhanced, c.expected.enhanced);
        if (c.expected.at === 'mail') assert.equal(s.inTransaction, false);
        assert.equal(s.alive, true, 'a refusal does not kill the session');
        assert.equal((await s.rset()).code, 250);
      } finally {
        s.close();
      }
    });
  });
}

test('mail/rcpt: parameters are appended to the command', async () => {
  await withServer({}, async ({ port, rec }) => {
    const s = await BackendSession.open(opts(port));
    try {
      await s.mail('a@example.org', ['SIZE=100', 'BODY=8BITMIME']);
      await s.rcpt('b@example.test');
      await s.mail('', []);
      assert.deepEqual(rec.commands.slice(1), ['MAIL FROM:<a@example.org> SIZE=100 BODY=8BITMIME', 'RCPT TO:<b@example.test>', 'MAIL FROM:<>']);
    } finally {
      s.close();
    }
  });
});

// --- failures ---------------------------------------------------------------------------------

test('connect refused → BackendError connect', async () => {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address() as net.AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  await assert.rejects(BackendSession.open(opts(port)), (e: unknown) => e instanceof BackendError && e.kind === 'connect');
});

test('a server that never greets → BackendError timeout within connectTimeoutMs', async () => {
  await withServer({ greeting: null }, async ({ port }) => {
    const started = performance.now();
    await assert.rejects(BackendSession.open(opts(port, { connectTimeoutMs: 200 })), (e: unknown) => e instanceof BackendError && e.kind === 'timeout');
    const took = performance.now() - started;
    assert.ok(took >= 190 && took < 1500, `took ${took} ms`);
  });
});

test('a server that never answers a command → BackendError timeout within commandTimeoutMs, session dead', async () => {
  await withServer({ answer: (_l, verb) => (verb === 'MAIL' ? null : undefined) }, async ({ port }) => {
    const s = await BackendSession.open(opts(port, { commandTimeoutMs: 200 }));
    const started = performance.now();
    await assert.rejects(s.mail('a@example.org', []), (e: unknown) => e instanceof BackendError && e.kind === 'timeout');
    const took = performance.now() - started;
    assert.ok(took >= 190 && took < 1500, `took ${took} ms`);
    assert.equal(s.alive, false);
    await assert.rejects(s.command('NOOP'), BackendError, 'a dead session refuses further commands');
  });
});

test('a server that never answers the final dot → BackendError timeout within dataTimeoutMs', async () => {
  await withServer({ dataEnd: null }, async ({ port }) => {
    const s = await BackendSession.open(opts(port, { commandTimeoutMs: 2000, dataTimeoutMs: 250 }));
    await s.mail('a@example.org', []);
    await s.rcpt('b@example.test');
    const started = performance.now();
    await assert.rejects(s.data(chunks('Subject: x\r\n\r\nbody\r\n')), (e: unknown) => e instanceof BackendError && e.kind === 'timeout');
    const took = performance.now() - started;
    assert.ok(took >= 240 && took < 1500, `took ${took} ms`);
  });
});

test('a server that closes mid-DATA → BackendError, not a hang', async () => {
  const script: Script = {
    onDataBytes: (sock, soFar) => {
      if (soFar.length > 0) sock.destroy();
    },
  };
  await withServer(script, async ({ port }) => {
    const s = await BackendSession.open(opts(port));
    await s.mail('a@example.org', []);
    await s.rcpt('b@example.test');
    // Over the cork flush size, so the server sees bytes (and hangs up) while we still stream.
    async function* big(): AsyncGenerator<Buffer> {
      yield Buffer.from(`Subject: x\r\n\r\n${'y'.repeat(300 * 1024)}\r\n`);
      for (let i = 0; i < 3; i++) {
        await new Promise((r) => setTimeout(r, 100));
        yield Buffer.from('more body\r\n');
      }
    }
    await assert.rejects(s.data(big()), (e: unknown) => e instanceof BackendError && e.kind === 'closed');
    assert.equal(s.alive, false);
  });
});

test('a server that hangs up on a command fails it with BackendError closed', async () => {
  await withServer({ hangUpOn: 'RCPT' }, async ({ port }) => {
    const s = await BackendSession.open(opts(port));
    assert.equal((await s.mail('a@example.org', [])).code, 250);
    await assert.rejects(s.rcpt('b@example.test'), (e: unknown) => e instanceof BackendError && e.kind === 'closed');
    assert.equal(s.alive, false);
  });
});

// --- DATA: dot-stuffing and the final dot -----------------------------------------------------

const dataCases = [
  { desc: 'plain message ending in CRLF: ".CRLF" added', input: ['Subject: x\r\n\r\nbody\r\n'], expected: 'Subject: x\r\n\r\nbody\r\n.\r\n' },
  { desc: 'no final CRLF: CRLF.CRLF added', input: ['Subject: x\r\n\r\nbody'], expected: 'Subject: x\r\n\r\nbody\r\n.\r\n' },
  { desc: 'empty message: just the dot', input: [], expected: '.\r\n' },
  { desc: 'a line starting with "." is doubled', input: ['Subject: x\r\n\r\n.hidden\r\nok\r\n'], expected: 'Subject: x\r\n\r\n..hidden\r\nok\r\n.\r\n' },
  {
    desc: 'a lone "." line (smuggled end) is doubled',
    input: ['Subject: x\r\n\r\na\r\n.\r\nMAIL FROM:<e@vil>\r\n'],
    expected: 'Subject: x\r\n\r\na\r\n..\r\nMAIL FROM:<e@vil>\r\n.\r\n',
  },
  {
    desc: 'a "." at the start of a chunk after a chunk that ended a line',
    input: ['Subject: x\r\n\r\na\r\n', '.b\r\n', '..c\r\n'],
    expected: 'Subject: x\r\n\r\na\r\n..b\r\n...c\r\n.\r\n',
  },
  { desc: 'a "." at the start of a chunk in mid-line is not doubled', input: ['Subject: x\r\n\r\na', '.b\r\n'], expected: 'Subject: x\r\n\r\na.b\r\n.\r\n' },
  { desc: 'the very first byte is "."', input: ['.x: y\r\n\r\n'], expected: '..x: y\r\n\r\n.\r\n' },
  { desc: 'a message ending in CR LF split over chunks', input: ['Subject: x\r\n\r\nbody\r', '\n'], expected: 'Subject: x\r\n\r\nbody\r\n.\r\n' },
  {
    desc: 'header block and body as separate parts (as the core sends them)',
    input: ['Received: r\r\nSubject: x\r\n\r\n', '.\r\n'],
    expected: 'Received: r\r\nSubject: x\r\n\r\n..\r\n.\r\n',
  },
];

for (const c of dataCases) {
  test(`data: ${c.desc}`, async () => {
    await withServer({}, async ({ port, rec }) => {
      const s = await BackendSession.open(opts(port));
      try {
        await s.mail('a@example.org', []);
        await s.rcpt('b@example.test');
        const r = await s.data(chunks(...c.input));
        assert.equal(r.code, 250);
        assert.deepEqual(r.lines, ['Ok: queued as ABC']);
        assert.deepEqual(rec.data, [c.expected]);
        assert.equal(s.inTransaction, false);
        assert.equal(s.socket.writableCorked, 0, 'cork balanced');
      } finally {
        s.close();
      }
    });
  });
}

test('data: a large message is streamed (flushed in pieces) and arrives intact', async () => {
  await withServer({}, async ({ port, rec }) => {
    const s = await BackendSession.open(opts(port));
    try {
      await s.mail('a@example.org', []);
      await s.rcpt('b@example.test');
      const lines = Array.from({ length: 20_000 }, (_, i) => (i % 7 === 0 ? `.dot line ${i}` : `line ${i} ${'z'.repeat(40)}`));
      const body = lines.join('\r\n') + '\r\n';
      async function* pieces(): AsyncGenerator<Buffer> {
        yield Buffer.from('Subject: big\r\n\r\n');
        for (let i = 0; i < body.length; i += 4093) yield Buffer.from(body.slice(i, i + 4093));
      }
      const r = await s.data(pieces());
      assert.equal(r.code, 250);
      const expected = 'Subject: big\r\n\r\n' + lines.map((l) => (l.startsWith('.') ? `.${l}` : l)).join('\r\n') + '\r\n.\r\n';
      assert.equal(rec.data[0]?.length, expected.length);
      assert.equal(rec.data[0], expected);
    } finally {
      s.close();
    }
  });
});

// --- the link: MAIL held for the first RCPT (pipelining) ---------------------------------------

const EHLO_PLAIN = '250-backend.test Hello\r\n250-SIZE 10240000\r\n250 8BITMIME';

async function withLink(script: Script, fn: (l: ReturnType<SmtpBackend['link']>, rec: Recorder) => Promise<void>): Promise<void> {
  await withServer(script, async ({ port, rec }) => {
    const backend = new SmtpBackend(backendSmtpSchema.parse({ host: '127.0.0.1', port, pool_size: 0 }), 'mailgate.test');
    const link = backend.link({ ip: '192.0.2.10', port: 40000, helo: 'client.example', esmtp: true });
    try {
      await fn(link, rec);
    } finally {
      link.release();
      backend.close();
    }
  });
}

/** Commands after the session was set up (the last EHLO: after XCLIENT, EHLO is sent again). */
const afterEhlo = (rec: Recorder) => rec.commands.slice(rec.commands.findLastIndex((l) => l.startsWith('EHLO')) + 1);

test('link with PIPELINING: MAIL waits for the first RCPT and leaves in the same write; each reply is checked', async () => {
  // The MAIL reply is delayed: the RCPT must have arrived before it was sent (one write).
  const answer = (_l: string, verb: string) =>
    verb === 'MAIL' ? { text: '250 2.1.0 Sender ok', delayMs: 50 } : verb === 'RCPT' ? '250 2.1.5 Recipient ok' : undefined;
  await withLink({ answer }, async (link, rec) => {
    const m = await link.mail('a@example.org', { SIZE: '100', BODY: '8BITMIME' });
    assert.equal(m.code, 250);
    assert.deepEqual(afterEhlo(rec), [], 'nothing sent at MAIL');
    const r = await link.rcpt('b@example.test');
    assert.equal(`${r.code} ${r.enhanced} ${r.lines.join(' ')}`, '250 2.1.5 Recipient ok');
    const r2 = await link.rcpt('c@example.test');
    assert.equal(r2.code, 250);
    assert.deepEqual(afterEhlo(rec), ['MAIL FROM:<a@example.org> SIZE=100 BODY=8BITMIME', 'RCPT TO:<b@example.test>', 'RCPT TO:<c@example.test>']);
    const i = rec.commands.findIndex((l) => l.startsWith('MAIL'));
    assert.equal(rec.repliesSentBefore[i], rec.repliesSentBefore[i + 1], 'the first RCPT arrived before the MAIL reply was sent');
    const d = await link.data([Buffer.from('Subject: x\r\n\r\nbody\r\n')]);
    assert.equal(d.code, 250);
    assert.equal(rec.data.length, 1);
  });
});

test('link with PIPELINING: a refused MAIL is the reply to every RCPT; nothing more is sent, no RSET needed', async () => {
  const answer = (_l: string, verb: string) => (verb === 'MAIL' ? '553 5.1.8 sender refused' : verb === 'RCPT' ? '503 5.5.1 need MAIL' : undefined);
  await withLink({ answer }, async (link, rec) => {
    assert.equal((await link.mail('bad@example.org', {})).code, 250);
    for (const to of ['b@example.test', 'c@example.test']) {
      const r = await link.rcpt(to);
      assert.equal(`${r.code} ${r.enhanced} ${r.lines.join(' ')}`, '553 5.1.8 sender refused', to);
    }
    await link.abort();
    assert.deepEqual(afterEhlo(rec), ['MAIL FROM:<bad@example.org>', 'RCPT TO:<b@example.test>']);
    // The next transaction asks the backend again (this script refuses every MAIL).
    assert.equal((await link.mail('other@example.org', {})).code, 250);
    assert.equal((await link.rcpt('b@example.test')).code, 553);
    assert.deepEqual(afterEhlo(rec).slice(2), ['MAIL FROM:<other@example.org>', 'RCPT TO:<b@example.test>']);
  });
});

test('link with PIPELINING: a RCPT refused after an accepted MAIL is the backend’s reply; the transaction stays open', async () => {
  const answer = (l: string, verb: string) => (verb === 'RCPT' ? (l.includes('bad') ? '550 5.1.1 no such user' : '250 2.1.5 Ok') : undefined);
  await withLink({ answer }, async (link, rec) => {
    await link.mail('a@example.org', {});
    assert.equal((await link.rcpt('bad@example.test')).code, 550);
    assert.equal((await link.rcpt('good@example.test')).code, 250);
    await link.abort();
    assert.deepEqual(afterEhlo(rec), ['MAIL FROM:<a@example.org>', 'RCPT TO:<bad@example.test>', 'RCPT TO:<good@example.test>', 'RSET']);
  });
});

test('link with PIPELINING: MAIL while a transaction is open sends RSET, MAIL and RCPT in one write', async () => {
  const answer = (_l: string, verb: string) => (verb === 'RSET' ? { text: '250 2.0.0 Ok', delayMs: 50 } : undefined);
  await withLink({ answer }, async (link, rec) => {
    await link.mail('a@example.org', {});
    await link.rcpt('b@example.test');
    await link.mail('c@example.org', {});
    assert.equal((await link.rcpt('d@example.test')).code, 250);
    const cmds = afterEhlo(rec);
    assert.deepEqual(cmds, ['MAIL FROM:<a@example.org>', 'RCPT TO:<b@example.test>', 'RSET', 'MAIL FROM:<c@example.org>', 'RCPT TO:<d@example.test>']);
    const i = rec.commands.indexOf('RSET');
    assert.deepEqual(rec.repliesSentBefore.slice(i, i + 3), Array(3).fill(rec.repliesSentBefore[i]), 'RSET, MAIL and RCPT in one write');
  });
});

test('link with PIPELINING: abort before any RCPT sends nothing (the MAIL was never sent)', async () => {
  await withLink({}, async (link, rec) => {
    await link.mail('a@example.org', {});
    await link.abort();
    assert.deepEqual(afterEhlo(rec), []);
  });
});

test('link without PIPELINING: MAIL is sent at once and its reply is the backend’s', async () => {
  const answer = (_l: string, verb: string) => (verb === 'EHLO' ? EHLO_PLAIN : verb === 'MAIL' ? '451 4.3.0 try later' : undefined);
  await withLink({ answer }, async (link, rec) => {
    const m = await link.mail('a@example.org', {});
    assert.equal(`${m.code} ${m.enhanced}`, '451 4.3.0');
    assert.deepEqual(afterEhlo(rec), ['MAIL FROM:<a@example.org>']);
  });
});

test('data: parts given as a list (a Buffer, then a stream) are dot-stuffed across the boundary, byte for byte', async () => {
  await withServer({}, async ({ port, rec }) => {
    const s = await BackendSession.open(opts(port));
    try {
      await s.mail('a@example.org', []);
      await s.rcpt('b@example.test');
      const r = await s.data([Buffer.from('Subject: x\r\n\r\n'), Readable.from([Buffer.from('.dot first\r\nline\r'), Buffer.from('\n.'), Buffer.from('')])]);
      assert.equal(r.code, 250);
      assert.equal(rec.data[0], 'Subject: x\r\n\r\n..dot first\r\nline\r\n..\r\n.\r\n');
    } finally {
      s.close();
    }
  });
});

const stuffCases = [
  { desc: 'nothing to stuff: same buffer', input: { text: 'abc\r\ndef\r\n', atLineStart: true }, expected: 'abc\r\ndef\r\n' },
  { desc: 'leading dot at line start', input: { text: '.abc', atLineStart: true }, expected: '..abc' },
  { desc: 'leading dot in mid-line', input: { text: '.abc', atLineStart: false }, expected: '.abc' },
  { desc: 'dots after every LF', input: { text: 'a\r\n.b\r\n..c\r\n.', atLineStart: false }, expected: 'a\r\n..b\r\n...c\r\n..' },
  { desc: 'dot not at line start untouched', input: { text: 'a.b\r\nc .d\r\n', atLineStart: true }, expected: 'a.b\r\nc .d\r\n' },
  { desc: 'empty chunk', input: { text: '', atLineStart: true }, expected: '' },
];

for (const c of stuffCases) {
  test(`dotStuff: ${c.desc}`, () => {
    assert.equal(dotStuff(Buffer.from(c.input.text), c.input.atLineStart).toString(), c.expected);
  });
}
