// The SMTP protocol engine (src/fronts/smtp/engine.ts) over a recording transport and a scripted
// handler: replies in order and batched per input, limits, STARTTLS (no plaintext injection),
// DATA into the sink with back-pressure, the client leaving mid-DATA, and the timers. A
// fast-check property: however the input is cut into chunks, the replies are the same bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import fc from 'fast-check';
import pino from 'pino';
import { SmtpEngine, type EngineLimits, type SmtpHandler, type Transport } from '../../src/fronts/smtp/engine.ts';
import { SmtpReply } from '../../src/pipeline/reply.ts';
import type { TlsInfo } from '../../src/pipeline/transaction.ts';

const ok = (t = 'Ok') => new SmtpReply(250, '2.0.0', t);

class Sink extends Writable {
  chunks: Buffer[] = [];
  /** ms per write (0: the next turn of the loop). */
  slow = 0;
  constructor(hwm = 16 * 1024) {
    super({ highWaterMark: hwm });
  }
  override _write(chunk: Buffer, _e: BufferEncoding, cb: () => void): void {
    this.chunks.push(chunk);
    if (this.slow > 0) setTimeout(cb, this.slow);
    else setImmediate(cb);
  }
  get text(): string {
    return Buffer.concat(this.chunks).toString('latin1');
  }
}

class FakeHandler implements SmtpHandler {
  readonly log = pino({ level: 'silent' });
  busy = false;
  errors = 0;
  calls: string[] = [];
  messages: string[] = [];
  gone: string[] = [];
  secure: TlsInfo | undefined;
  disconnectedCalled = false;
  connect(): Promise<SmtpReply | undefined> {
    return Promise.resolve(undefined);
  }
  hello(name: string, esmtp: boolean): Promise<SmtpReply | undefined> {
    this.calls.push(`${esmtp ? 'EHLO' : 'HELO'} ${name}`);
    return Promise.resolve(name === 'refused.example' ? new SmtpReply(550, '5.7.1', 'HELO/EHLO rejected by policy') : undefined);
  }
  mail(from: string): Promise<SmtpReply> {
    this.calls.push(`MAIL ${from}`);
    this.busy = true;
    return Promise.resolve(ok());
  }
  rcpt(to: string): Promise<SmtpReply> {
    this.calls.push(`RCPT ${to}`);
    if (to.endsWith('@elsewhere.test')) {
      this.errors++;
      return Promise.resolve(new SmtpReply(550, '5.7.1', `Relaying denied: we do not accept mail for elsewhere.test\nsecond line`));
    }
    return Promise.resolve(new SmtpReply(250, '2.1.5', 'Ok'));
  }
  reset(): Promise<void> {
    this.calls.push('RESET');
    this.busy = false;
    return Promise.resolve();
  }
  sinks: Sink[] = [];
  openData(): Writable {
    const s = new Sink();
    this.sinks.push(s);
    return s;
  }
  async endData(sink: Writable, problem: 'too-big' | 'client-gone' | 'write-error' | undefined, _early?: (r: SmtpReply) => void): Promise<SmtpReply> {
    this.busy = false;
    if (problem) {
      this.gone.push(problem);
      return problem === 'too-big' ? new SmtpReply(552, '5.3.4', 'too big') : new SmtpReply(451, '4.4.2', 'gone');
    }
    this.messages.push((sink as Sink).text);
    return ok(`queued ${this.messages.length}`);
  }
  secured(info: TlsInfo): void {
    this.secure = info;
  }
  disconnected(): void {
    this.disconnectedCalled = true;
  }
}

class FakeTransport implements Transport {
  writes: string[] = [];
  ended = false;
  paused = false;
  tls: (() => Promise<TlsInfo | undefined>) | undefined;
  needsDrain = false;
  write(d: string): void {
    this.writes.push(d);
  }
  onceDrain(fn: () => void): void {
    setImmediate(fn);
  }
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
  }
  end(): void {
    this.ended = true;
  }
  get startTls(): (() => Promise<TlsInfo | undefined>) | undefined {
    return this.tls;
  }
  get all(): string {
    return this.writes.join('');
  }
  /** Reply codes in order ("250-…" lines of a multi-line reply count once). */
  get codes(): number[] {
    return this.all
      .split('\r\n')
      .filter((l) => l.length >= 4 && l[3] === ' ')
      .map((l) => Number(l.slice(0, 3)));
  }
}

const LIMITS: EngineLimits = { max_errors: 10, max_junk_commands: 100, max_session_s: 3600 };

function setup(opts: { limits?: Partial<EngineLimits>; size?: number; starttls?: boolean; now?: () => number } = {}) {
  const t = new FakeTransport();
  const h = new FakeHandler();
  const limits = { ...LIMITS, ...opts.limits };
  const e = new SmtpEngine(t, h, {
    hostname: 'mx.example.test',
    banner: 'mailgate',
    clientIp: '192.0.2.1',
    size: opts.size ?? 1000,
    starttls: opts.starttls ?? false,
    limits: () => limits,
    idleMs: 1000,
    sweep: false,
    ...(opts.now ? { now: opts.now } : {}),
  });
  return { t, h, e };
}

/** Lets every pending promise, immediate and (fake) drain run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}

async function session(chunks: Array<string | Buffer>, opts: Parameters<typeof setup>[0] = {}) {
  const s = setup(opts);
  await s.e.start();
  for (const c of chunks) {
    s.e.receive(typeof c === 'string' ? Buffer.from(c, 'latin1') : c);
    await settle();
  }
  await settle();
  return s;
}

test('greeting, EHLO keywords as smtp-server advertised them, no enhanced codes on either (RFC 2034 3)', async () => {
  const { t } = await session(['EHLO client.example.net\r\n']);
  assert.equal(
    t.all,
    '220 mx.example.test ESMTP mailgate\r\n' +
      '250-mx.example.test Nice to meet you, [192.0.2.1]\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250 SIZE 1000\r\n',
  );
  const tls = await session(['EHLO client.example.net\r\n'], { starttls: true });
  assert.match(tls.t.all, /250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n250 SIZE 1000\r\n$/);
});

test('pipelining: one input batch, its replies in one write, in order (RFC 2920)', async () => {
  const { t, h } = await session(['EHLO c.example\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<x@example.test>\r\nRCPT TO:<y@elsewhere.test>\r\nDATA\r\n']);
  assert.equal(t.writes.length, 2, JSON.stringify(t.writes));
  assert.deepEqual(t.codes, [220, 250, 250, 250, 550, 354]);
  // A multi-line text from the core becomes a multi-line reply, the enhanced code on each line.
  assert.match(t.all, /550-5\.7\.1 Relaying denied: we do not accept mail for elsewhere\.test\r\n550 5\.7\.1 second line\r\n/);
  assert.deepEqual(h.calls, ['EHLO c.example', 'MAIL a@c.example', 'RCPT x@example.test', 'RCPT y@elsewhere.test']);
});

test('DATA: content into the sink, dot-unstuffed, commands after the dot are commands', async () => {
  const { t, h } = await session([
    'EHLO c.example\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<x@example.test>\r\nDATA\r\n',
    'Subject: one\r\n\r\n..dot\r\n.\r\nMAIL FROM:<b@c.example>\r\nRCPT TO:<x@example.test>\r\nDATA\r\nSubject: two\r\n\r\nbody\r\n.\r\nQUIT\r\nNOOP\r\n',
  ]);
  assert.deepEqual(h.messages, ['Subject: one\r\n\r\n.dot\r\n', 'Subject: two\r\n\r\nbody\r\n']);
  assert.deepEqual(t.codes, [220, 250, 250, 250, 354, 250, 250, 250, 354, 250, 221]);
  assert.ok(t.ended, 'QUIT closes; the NOOP after it is never run');
});

test('end of DATA: a reply handed over early is written at once, before the handler finishes its bookkeeping, and only once', async () => {
  const s = setup();
  let finish: (() => void) | undefined;
  s.h.endData = (_sink: Writable, _problem: unknown, early?: (r: SmtpReply) => void) => {
    early?.(ok('queued early'));
    // the log line and capture still to write: the client must not wait for them
    return new Promise<SmtpReply>((resolve) => (finish = () => resolve(ok('queued early'))));
  };
  await s.e.start();
  s.e.receive(Buffer.from('EHLO c.example\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<x@example.test>\r\nDATA\r\n', 'latin1'));
  await settle();
  s.e.receive(Buffer.from('Subject: x\r\n\r\nbody\r\n.\r\n', 'latin1'));
  await settle();
  assert.ok(finish, 'the handler is still busy');
  assert.deepEqual(s.t.codes, [220, 250, 250, 250, 354, 250], 'the 250 is out while the handler still runs');
  assert.match(s.t.all, /250 2\.0\.0 queued early\r\n$/);
  s.e.receive(Buffer.from('QUIT\r\n', 'latin1'));
  await settle();
  assert.deepEqual(s.t.codes, [220, 250, 250, 250, 354, 250], 'the next command waits for the handler');
  finish?.();
  await settle();
  assert.deepEqual(s.t.codes, [220, 250, 250, 250, 354, 250, 221], 'one reply to the end of DATA, then QUIT');
});

test('DATA over SIZE: read to the end, then the too-big path (552)', async () => {
  const { t, h } = await session(['EHLO c\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<x@example.test>\r\nDATA\r\n', `${'x'.repeat(2000)}\r\n.\r\nNOOP\r\n`], {
    size: 1000,
  });
  assert.deepEqual(h.gone, ['too-big']);
  assert.deepEqual(t.codes.slice(-2), [552, 250]);
});

test('DATA respects the sink back-pressure (a slow spool is never overrun)', async () => {
  const s = setup({ size: 1_000_000 });
  await s.e.start();
  s.e.receive(Buffer.from('EHLO c\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<x@example.test>\r\nDATA\r\n'));
  await settle();
  const sink = s.h.sinks[0] as Sink;
  sink.slow = 5;
  let overrun = 0;
  let pausedSeen = false;
  const orig = sink.write.bind(sink);
  sink.write = ((c: Buffer, cb?: (e?: Error | null) => void) => {
    if (sink.writableNeedDrain) overrun++;
    return orig(c, cb);
  }) as typeof sink.write;
  // Arrives faster than the sink takes it: the engine waits for 'drain' and pauses the socket.
  for (let i = 0; i < 80; i++) {
    s.e.receive(Buffer.from(`${'y'.repeat(8190)}\r\n`));
    pausedSeen ||= s.t.paused;
    await new Promise((r) => setImmediate(r));
  }
  s.e.receive(Buffer.from('.\r\n'));
  for (let i = 0; i < 200 && s.h.messages.length === 0; i++) await settle();
  assert.equal(s.h.messages[0]?.length, 80 * 8192);
  assert.equal(overrun, 0, 'writes while the sink needed a drain');
  assert.ok(pausedSeen, 'the socket was paused while unread input piled up');
  assert.equal(s.t.paused, false, 'and resumed');
});

test('the client leaving mid-DATA: the client-gone path, then disconnected()', async () => {
  const s = await session(['EHLO c\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<x@example.test>\r\nDATA\r\nSubject: x\r\n']);
  s.e.gone();
  await settle();
  assert.deepEqual(s.h.gone, ['client-gone']);
  assert.ok(s.h.disconnectedCalled);
});

test('STARTTLS: 220, plaintext pipelined after it is dropped, the session starts over inside TLS (RFC 3207 4.2)', async () => {
  const s = setup({ starttls: true });
  let upgraded = false;
  s.t.tls = () => {
    upgraded = true;
    return Promise.resolve({ version: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384' });
  };
  await s.e.start();
  s.e.receive(Buffer.from('EHLO c\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<x@example.test>\r\n'));
  await settle();
  s.e.receive(Buffer.from('STARTTLS\r\nMAIL FROM:<injected@evil.example>\r\nRCPT TO:<x@example.test>\r\n'));
  await settle();
  assert.ok(upgraded);
  assert.deepEqual(s.h.secure, { version: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384' });
  s.e.receive(Buffer.from('RCPT TO:<x@example.test>\r\nMAIL FROM:<a@c.example>\r\nEHLO c\r\nRCPT TO:<x@example.test>\r\nSTARTTLS\r\n'));
  await settle();
  assert.deepEqual(t(s).slice(-5), [503, 503, 250, 503, 503]);
  assert.ok(!s.h.calls.some((c) => c.includes('injected')), 'the plaintext MAIL never ran');
  // After TLS, EHLO offers REQUIRETLS and no STARTTLS.
  assert.match(s.t.all, /250-ENHANCEDSTATUSCODES\r\n250-REQUIRETLS\r\n250 SIZE/);
});
function t(s: { t: FakeTransport }): number[] {
  return s.t.codes;
}

const limitCases: Array<{ desc: string; input: string; want: number[]; closes: boolean; limits?: Partial<EngineLimits> }> = [
  { desc: 'a command line over 16 KB: 421', input: `NOOP ${'a'.repeat(17_000)}\r\n`, want: [220, 421], closes: true },
  { desc: 'HTTP request: 421', input: 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', want: [220, 421], closes: true },
  { desc: 'ten unknown commands: nine 500, then 421', input: 'FROB\r\n'.repeat(12), want: [220, ...Array<number>(9).fill(500), 421], closes: true },
  { desc: 'AUTH, EXPN: 502 (known, not offered)', input: 'AUTH PLAIN x\r\nEXPN list\r\nNOOP\r\n', want: [220, 502, 502, 250], closes: false },
  { desc: 'BDAT (no CHUNKING): 500', input: 'BDAT 5 LAST\r\n', want: [220, 500], closes: false },
  { desc: 'STARTTLS where not offered: 502', input: 'STARTTLS\r\n', want: [220, 502], closes: false },
  {
    desc: 'junk commands past max_junk_commands: 421',
    input: 'NOOP\r\nRSET\r\nHELP\r\nVRFY a\r\n',
    want: [220, 250, 250, 214, 421],
    closes: true,
    limits: { max_junk_commands: 3 },
  },
  {
    desc: 'max_errors: refused MAIL/RCPT count, then 421',
    input: 'EHLO c\r\nRCPT TO:<x@example.test>\r\nMAIL FROM:bad\r\nRCPT TO:<x@example.test>\r\n',
    want: [220, 250, 503, 501, 421],
    closes: true,
    limits: { max_errors: 2 },
  },
  { desc: 'MAIL before EHLO: 503', input: 'MAIL FROM:<a@b.example>\r\nNOOP\r\n', want: [220, 503, 250], closes: false },
  { desc: 'EHLO syntax: 501, bad name: 501', input: 'EHLO\r\nEHLO a b\r\nEHLO a\x01b\r\n', want: [220, 501, 501, 501], closes: false },
  { desc: 'HELO refused by the helo stage: its reply', input: 'EHLO refused.example\r\nMAIL FROM:<a@b.example>\r\n', want: [220, 550, 503], closes: false },
  {
    desc: 'MAIL parameters: SIZE syntax, SIZE over the limit, BODY, SMTPUTF8 with a value, duplicate',
    input:
      'EHLO c\r\nMAIL FROM:<a@b.example> SIZE=x\r\nMAIL FROM:<a@b.example> SIZE=5000\r\nMAIL FROM:<a@b.example> BODY=BINARYMIME\r\nMAIL FROM:<a@b.example> SMTPUTF8=1\r\nMAIL FROM:<a@b.example> SIZE=1 SIZE=2\r\nMAIL FROM:<a@b.example> REQUIRETLS\r\n',
    want: [220, 250, 501, 552, 501, 501, 501, 530],
    closes: false,
  },
  {
    desc: 'nested MAIL, DATA without RCPT: 503',
    input: 'EHLO c\r\nMAIL FROM:<a@b.example>\r\nDATA\r\nMAIL FROM:<a@b.example>\r\n',
    want: [220, 250, 250, 503, 503],
    closes: false,
  },
];

for (const c of limitCases) {
  test(`limits: ${c.desc}`, async () => {
    const s = await session([c.input], c.limits ? { limits: c.limits } : {});
    assert.deepEqual(s.t.codes, c.want, s.t.all.slice(0, 400));
    assert.equal(s.t.ended, c.closes);
  });
}

test('timers: idle timeout, a trickled command line, and session age (with a fake clock)', async () => {
  let now = 1_000_000;
  const idle = setup({ now: () => now });
  await idle.e.start();
  now += 900;
  idle.e.tick(now);
  assert.equal(idle.t.ended, false);
  now += 200;
  idle.e.tick(now);
  assert.deepEqual(idle.t.codes, [220, 421]);
  assert.match(idle.t.all, /421 4\.4\.2 Timeout/);

  now = 1_000_000;
  const slow = setup({ now: () => now });
  await slow.e.start();
  for (let i = 0; i < 12; i++) {
    now += 200;
    slow.e.receive(Buffer.from('N')); // every byte is activity: only the line deadline catches it
    slow.e.tick(now);
  }
  assert.deepEqual(slow.t.codes, [220, 421]);
  assert.match(slow.t.all, /421 4\.4\.2 Too slow/);

  now = 1_000_000;
  const old = setup({ now: () => now, limits: { max_session_s: 2 } });
  await old.e.start();
  for (let i = 0; i < 12; i++) {
    now += 250;
    old.e.receive(Buffer.from('NOOP\r\n'));
    await settle();
    old.e.tick(now);
  }
  assert.equal(old.t.codes.at(-1), 421);
  assert.match(old.t.all, /Connection open too long/);
});

test('send() (shutdown) writes at once; 421 closes', async () => {
  const s = await session(['EHLO c\r\n']);
  s.e.send(421, '4.3.2 Service shutting down, try again later');
  assert.match(s.t.writes.at(-1) ?? '', /^421 4\.3\.2 Service shutting down/);
  assert.ok(s.t.ended);
});

// A whole session with pipelining and DATA, cut into random chunks: the bytes written back are
// always the same (batching may differ, content and order may not).
const SCRIPT =
  'EHLO client.example\r\nNOOP\r\nMAIL FROM:<a@client.example> SIZE=10 BODY=8BITMIME\r\nRCPT TO:<x@example.test>\r\nRCPT TO:<y@elsewhere.test>\r\nDATA\r\n' +
  'Subject: a\r\n\r\n..stuffed\r\nx\n.\r\nnot the end\r\n.\r\n' +
  'RSET\r\nVRFY x\r\nFROB\r\nMAIL FROM:<b@client.example>\r\nRCPT TO:<x@example.test>\r\nDATA\r\n.\r\nHELP\r\nQUIT\r\n';

test('property: random chunking of a pipelined session gives the same replies and messages', async () => {
  const whole = await session([SCRIPT]);
  const input = Buffer.from(SCRIPT, 'latin1');
  await fc.assert(
    fc.asyncProperty(fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 60 }), async (cuts) => {
      const chunks: Buffer[] = [];
      let at = 0;
      for (const n of cuts) {
        if (at >= input.length) break;
        chunks.push(input.subarray(at, at + n));
        at += n;
      }
      if (at < input.length) chunks.push(input.subarray(at));
      const s = await session(chunks);
      assert.equal(s.t.all, whole.t.all);
      assert.deepEqual(s.h.messages, whole.h.messages);
    }),
    { numRuns: 150 },
  );
  assert.deepEqual(whole.t.codes, [220, 250, 250, 250, 250, 550, 354, 250, 250, 252, 500, 250, 250, 354, 250, 214, 221]);
  assert.deepEqual(whole.h.messages, ['Subject: a\r\n\r\n.stuffed\r\nx\n.\r\nnot the end\r\n', '']);
});
