// Hostile and broken input thrown at a running gateway (real sockets, real Postfix behind it): the
// README's contract "bad input gets a clear SMTP reply and a log line, never a crash or a hang".
// Every case asserts the reply (code or class), a bounded time, that a normal message still goes
// through afterwards, and at the end that nothing unintended reached the backend. Cases that show
// a bug were first kept as `todo`; all of them are fixed now and run as ordinary tests.
import { test, before, after, afterEach, describe } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import v8 from 'node:v8';
import vm from 'node:vm';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, statSync, existsSync, openSync, readSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { RawSmtp, sendMessage, type Reply } from '../helpers/smtp-client.ts';
import { startGateway, testConfig, requireBackend, BACKEND_PORT, type TestGateway } from '../helpers/gateway.ts';
import { token, MAIL_BASE } from '../helpers/maildir.ts';
import { makeRulesDir } from '../helpers/rules-dir.ts';
import { writeTestCert } from '../helpers/tls-cert.ts';

// --- helpers ------------------------------------------------------------------------------------

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const EHLO = 'EHLO client.example.net';
const MAIL = 'MAIL FROM:<sender@client.example.net>';
const RCPT = 'RCPT TO:<alice@example.test>';

/** A well-formed message (Date and Message-ID present, so no shipped rule scores it). */
function msg(tok: string, extraHeaders = '', body = 'Hello from the hostile-input tests.\r\n'): string {
  return (
    `From: Sender <sender@client.example.net>\r\nTo: alice@example.test\r\nSubject: ${tok}\r\n` +
    `Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <${tok}@client.example.net>\r\n${extraHeaders}\r\n${body}`
  );
}

/** Every client a test opens, closed after the test even when an assertion fails half-way. */
const clients: Array<{ close(): void }> = [];
async function connect(port: number): Promise<RawSmtp> {
  const c = await RawSmtp.connect(port);
  clients.push(c);
  return c;
}

/** Up to `n` replies; fewer if the server closes. A missing reply within the time is a hang. */
async function collect(c: RawSmtp, n: number, timeoutMs = 5000): Promise<Reply[]> {
  const out: Reply[] = [];
  const deadline = Date.now() + timeoutMs;
  while (out.length < n) {
    const r = await c.read(Math.max(1, deadline - Date.now()));
    if (!r) break;
    out.push(r);
  }
  return out;
}

/** Expected reply: an exact code or a class. */
type Want = number | '2xx' | '4xx' | '5xx';
function matches(code: number, w: Want): boolean {
  return typeof w === 'number' ? code === w : String(code)[0] === w[0];
}
function show(rs: readonly Reply[]): string {
  return rs.map((r) => `${r.code} ${r.text}`).join(' | ') || '(none)';
}
/** Reply codes as runs: "250×100, 452×10, 421×1". */
function runs(rs: readonly Reply[]): string {
  const out: Array<[number, number]> = [];
  for (const r of rs) {
    const last = out[out.length - 1];
    if (last && last[0] === r.code) last[1]++;
    else out.push([r.code, 1]);
  }
  return out.map(([c, n]) => `${c}×${n}`).join(', ');
}

async function until(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) return false;
    await sleep(25);
  }
  return true;
}

/** Writes with back-pressure, so a large payload never sits in this (the test's) process. */
async function writeAll(socket: net.Socket | tls.TLSSocket, chunks: Iterable<Buffer>): Promise<void> {
  for (const chunk of chunks) if (!socket.write(chunk)) await once(socket, 'drain');
}
function* repeat(chunk: Buffer, times: number): Generator<Buffer> {
  for (let i = 0; i < times; i++) yield chunk;
}
function* pieces(buf: Buffer, size = 64 * 1024): Generator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

/** Backend (Postfix) connections open in this process: the gateways run in-process. */
function backendSockets(): net.Socket[] {
  const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
  return handles.filter((h): h is net.Socket => h instanceof net.Socket && h.remotePort === BACKEND_PORT && !h.destroyed);
}

/** Live memory (heap + Buffers) after a forced GC: what the process really holds. */
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
async function liveBytes(): Promise<number> {
  gc();
  await sleep(20);
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}
const MB = 1024 * 1024;

// Delivered mail: only files written since this file started are read (the test Maildirs hold
// every earlier run), each once, and only its first 256 KB (tokens sit in the header).
const startedAt = Date.now() - 2000;
const seenFiles = new Map<string, string>();
function deliveredWith(needle: string): string[] {
  if (existsSync(MAIL_BASE)) {
    for (const user of readdirSync(MAIL_BASE)) {
      for (const sub of ['new', 'cur']) {
        const dir = join(MAIL_BASE, user, sub);
        if (!existsSync(dir)) continue;
        for (const f of readdirSync(dir)) {
          const p = join(dir, f);
          if (seenFiles.has(f)) continue;
          try {
            if (statSync(p).mtimeMs < startedAt) {
              seenFiles.set(f, '');
              continue;
            }
            const fd = openSync(p, 'r');
            const buf = Buffer.alloc(256 * 1024);
            const n = readSync(fd, buf, 0, buf.length, 0);
            closeSync(fd);
            seenFiles.set(f, buf.subarray(0, n).toString('latin1'));
          } catch {
            // moved new/ → cur/ under us: found on the next scan
          }
        }
      }
    }
  }
  return [...seenFiles.values()].filter((c) => c.includes(needle));
}
async function waitDeliveredWith(needle: string, timeoutMs = 15_000): Promise<string[]> {
  await until(() => deliveredWith(needle).length > 0, timeoutMs);
  return deliveredWith(needle);
}

/** Tokens that must reach the backend exactly once / never (checked together at the end). */
const mustArrive: string[] = [];
const mustNotArrive: string[] = [];

/** The gateway still relays a normal message, on a new connection. */
async function assertServes(port: number): Promise<void> {
  const tok = token('alive');
  const r = await sendMessage(port, { from: 'sender@client.example.net', to: ['alice@example.test'], data: msg(tok) });
  assert.equal(
    r.end?.code,
    250,
    `a normal message afterwards: MAIL ${r.mail?.code} RCPT ${r.rcpts[0]?.code} DATA ${r.data?.code} end ${r.end?.code} ${r.end?.text}`,
  );
  mustArrive.push(tok);
}

// Log lines of the gateways that get `logger` (JSON objects as pino writes them).
const logLines: Array<Record<string, unknown>> = [];
const logger = pino({ level: 'info' }, { write: (s: string) => void logLines.push(JSON.parse(s) as Record<string, unknown>) });

// --- gateways -----------------------------------------------------------------------------------

let gw: TestGateway; // defaults, logs captured
let small: TestGateway; // max_message_bytes 10 000
let body: TestGateway; // a rule reads the body, so every message is MIME-parsed
let idle: TestGateway; // idle_timeout_s 1, room for many connections from 127.0.0.1
let tlsGw: TestGateway; // STARTTLS on ports[0], implicit TLS on ports[1]
let certDir: string;

before(async () => {
  await requireBackend();
  certDir = mkdtempSync(join(tmpdir(), 'mg-hostile-tls-'));
  writeTestCert(certDir);
  const key = join(certDir, 'key.pem');
  const cert = join(certDir, 'cert.pem');
  const bodyRules = makeRulesDir({
    'r.yaml':
      'rules:\n  - { name: BODY_PROBE, description: makes the body-text check parse every message, when: { message.body_text: { regex: "/zzz-never-matches-zzz/" } }, score: 0.1 }\n',
  });
  [gw, small, body, idle, tlsGw] = await Promise.all([
    startGateway(testConfig({ limits: { idle_timeout_s: 20 } }), { logger }),
    startGateway(testConfig({ limits: { max_message_bytes: 10_000 } }), { logger }),
    startGateway(testConfig({ rules: bodyRules }), { logger }),
    startGateway(testConfig({ limits: { idle_timeout_s: 1, max_connections_per_ip: 100 } })),
    startGateway(
      testConfig({
        listen: [
          { host: '127.0.0.1', port: 0, tls: { key, cert } },
          { host: '127.0.0.1', port: 0, tls: { key, cert, implicit: true } },
        ],
      }),
    ),
  ]);
});

afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});

after(async () => {
  for (const c of clients.splice(0)) c.close();
  // Bounded: stop() must not be able to hang the run (see the shutdown case below).
  await Promise.all([gw, small, body, idle, tlsGw].map((g) => (g ? Promise.race([g.stop(500), sleep(3000)]) : undefined)));
});

// --- command level ------------------------------------------------------------------------------

interface ScriptCase {
  desc: string;
  /** Sent one at a time first, each must be answered 2xx/3xx (default: EHLO). */
  setup?: string[];
  /** Written in one write (a Buffer for exact bytes). */
  input: string | Buffer;
  /** The replies, in order. */
  want: Want[];
  /** The gateway closes the connection after the last reply. */
  closes?: boolean;
  /** Extra assertions on the replies. */
  check?: (rs: Reply[]) => void;
  todo?: string;
}

const bytes = (s: string) => Buffer.from(s, 'latin1');

async function runScript(port: number, sc: ScriptCase): Promise<void> {
  const c = await connect(port);
  assert.equal((await c.read())?.code, 220);
  for (const s of sc.setup ?? [EHLO]) {
    const r = await c.cmd(s);
    assert.ok(r && r.code < 400, `setup "${s}": ${r?.code} ${r?.text}`);
  }
  c.write(sc.input);
  const rs = await collect(c, sc.want.length);
  assert.ok(rs.length === sc.want.length && rs.every((r, i) => matches(r.code, sc.want[i] as Want)), `want ${sc.want.join(', ')}; got ${show(rs)}`);
  sc.check?.(rs);
  if (sc.closes) {
    assert.ok(await c.waitClosed(3000), 'the gateway closes the connection');
  } else {
    // Still in step: the next command gets its own reply, no stray reply is queued before it.
    const noop = await c.cmd('NOOP');
    assert.equal(noop?.code, 250, `NOOP afterwards: ${noop?.code} ${noop?.text}`);
  }
  c.close();
  await assertServes(port);
}

const COMMAND_CASES: ScriptCase[] = [
  { desc: 'NUL byte inside a verb', input: bytes('NO\0OP\r\n'), want: [500] },
  { desc: 'NUL byte in the EHLO name', input: bytes('EHLO client\0.example.net\r\n'), want: [501] },
  { desc: '8-bit garbage line', input: bytes('\xff\xfe\xfd\x80\x9b garbage\r\n'), want: [500] },
  {
    desc: 'CR-only terminators do not end lines ("NOOP\\rRSET\\rQUIT\\r" is one unknown command; QUIT is not run)',
    input: 'NOOP\rRSET\rQUIT\r\r\n',
    want: [500],
  },
  { desc: 'LF-only terminators end command lines', input: 'NOOP\nRSET\n', want: [250, 250] },
  { desc: 'empty command line', input: '\r\n', want: [500] },
  { desc: 'command line of 20 KB (over the 16 KB command limit): 421 and close', input: `NOOP ${'a'.repeat(20_000)}\r\n`, want: [421], closes: true },
  { desc: 'MAIL with a 10 KB address (under the command limit)', input: `MAIL FROM:<${'a'.repeat(10_000)}@client.example.net>\r\n`, want: [501] },
  { desc: 'MAIL, RCPT, DATA before EHLO', setup: [], input: `${MAIL}\r\n${RCPT}\r\nDATA\r\n`, want: [503, 503, 503] },
  { desc: 'DATA without RCPT', setup: [EHLO, MAIL], input: 'DATA\r\n', want: [503] },
  { desc: 'RCPT without MAIL', input: `${RCPT}\r\n`, want: [503] },
  { desc: 'nested MAIL', setup: [EHLO, MAIL], input: 'MAIL FROM:<other@client.example.net>\r\n', want: [503] },
  { desc: 'unknown verb', input: 'FROBNICATE now\r\n', want: [500] },
  { desc: 'ten unknown verbs: 421 and close', input: 'FROB\r\n'.repeat(10), want: [...Array<Want>(9).fill(500), 421], closes: true },
  { desc: 'AUTH (not offered)', input: 'AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n', want: ['5xx'] },
  { desc: 'VRFY reveals nothing', input: 'VRFY alice\r\nVRFY nobody\r\n', want: [252, 252] },
  { desc: 'EXPN', input: 'EXPN staff\r\n', want: ['5xx'] },
  { desc: 'HELP', input: 'HELP\r\n', want: [214] },
  { desc: 'XCLIENT from an untrusted client', input: 'XCLIENT ADDR=203.0.113.9 NAME=spoof.example\r\n', want: [550] },
  { desc: 'XFORWARD from an untrusted client', input: 'XFORWARD ADDR=203.0.113.9 HELO=spoof.example\r\n', want: [550] },
  {
    desc: 'BDAT (CHUNKING not offered): refused, the chunk is read as a command line',
    setup: [EHLO, MAIL, RCPT],
    input: 'BDAT 7 LAST\r\nhello\r\n',
    want: [500, 500],
  },
  {
    desc: 'mixed-case verbs',
    setup: [],
    input: `eHlO client.example.net\r\nmAiL fRoM:<sender@client.example.net>\r\nRcPt To:<alice@example.test>\r\nrSeT\r\n`,
    want: [250, 250, 250, 250],
  },
  { desc: 'HTTP request instead of SMTP: 421 and close', setup: [], input: 'GET / HTTP/1.1\r\nHost: mx.example.test\r\n\r\n', want: [421], closes: true },
  {
    desc: 'HTTP POST after EHLO (cross-protocol from a browser): 421 and close',
    input: 'POST /form HTTP/1.0\r\nContent-Length: 20\r\n\r\nMAIL FROM:<x@evil>\r\n',
    want: [421],
    closes: true,
  },
  { desc: 'EHLO without a name', input: 'EHLO\r\n', want: [501] },
  { desc: 'EHLO with a 1000-character name', input: `EHLO ${'a'.repeat(1000)}\r\n`, want: [501] },
  { desc: 'QUIT mid-transaction', setup: [EHLO, MAIL, RCPT], input: 'QUIT\r\n', want: [221], closes: true },
];

describe('command level: one hostile write, clear replies in order, the gateway keeps serving', () => {
  for (const sc of COMMAND_CASES) {
    test(sc.desc, sc.todo ? { todo: sc.todo } : {}, () => runScript(gw.port, sc));
  }
});

// --- address level ------------------------------------------------------------------------------

const ADDRESS_CASES: ScriptCase[] = [
  { desc: 'MAIL FROM with a 1000-character local part', input: `MAIL FROM:<${'a'.repeat(1000)}@client.example.net>\r\n`, want: [501] },
  { desc: 'RCPT TO with a 1000-character local part', setup: [EHLO, MAIL], input: `RCPT TO:<${'a'.repeat(1000)}@example.test>\r\n`, want: [501] },
  {
    desc: 'CRLF injected through xtext in ENVID (ENVID=a+0D+0A...)',
    input: 'MAIL FROM:<sender@client.example.net> ENVID=a+0D+0ARCPT+20TO:<victim@elsewhere.test>\r\n',
    want: [501],
  },
  { desc: 'CRLF injected through xtext in ORCPT', setup: [EHLO, MAIL], input: 'RCPT TO:<alice@example.test> ORCPT=rfc822;a+0D+0ADATA\r\n', want: [501] },
  { desc: 'NUL in the sender address', input: bytes('MAIL FROM:<sen\0der@client.example.net>\r\n'), want: [501] },
  { desc: 'address without angle brackets', input: 'MAIL FROM:sender@client.example.net\r\n', want: [501] },
  { desc: 'duplicate ESMTP parameter (SIZE=10 SIZE=20)', input: `${MAIL} SIZE=10 SIZE=20\r\n`, want: [501] },
  { desc: 'SIZE=-1', input: `${MAIL} SIZE=-1\r\n`, want: [501] },
  { desc: 'SIZE=abc', input: `${MAIL} SIZE=abc\r\n`, want: [501] },
  {
    desc: 'SIZE far over the limit (20 digits)',
    input: `${MAIL} SIZE=99999999999999999999\r\n`,
    want: [552],
    check: (rs) => assert.match(rs[0]?.text ?? '', /^5\.3\.4/),
  },
  { desc: 'BODY=BINARYMIME (needs CHUNKING, not offered)', input: `${MAIL} BODY=BINARYMIME\r\n`, want: ['5xx'] },
  { desc: 'SMTPUTF8 with a value', input: `${MAIL} SMTPUTF8=yes\r\n`, want: [501] },
  {
    desc: 'source route in RCPT: ignored (RFC 5321 4.1.2), never followed',
    setup: [EHLO, MAIL],
    input: 'RCPT TO:<@relay.elsewhere.test:alice@example.test>\r\nRCPT TO:<@example.test:victim@elsewhere.test>\r\n',
    want: [250, 550],
  },
  {
    desc: 'domainless postmaster goes to the backend as postmaster@<first domain> (its answer relayed)',
    setup: [EHLO, MAIL],
    input: 'RCPT TO:<postmaster>\r\nRCPT TO:<PostMaster>\r\n',
    want: ['5xx', '5xx'], // the test Postfix has no postmaster mailbox: its 550 is relayed
    check: (rs) => rs.forEach((r) => assert.match(r.text, /postmaster@example\.test/)),
  },
  {
    desc: "RCPT with an 8-bit local part and no SMTPUTF8: the backend's answer",
    setup: [EHLO, MAIL],
    input: Buffer.from('RCPT TO:<\u00e9l\u00e8ve@example.test>\r\n', 'utf8'),
    want: ['5xx'],
  },
  {
    desc: 'MAIL FROM with invalid UTF-8 and no SMTPUTF8 is refused',
    input: bytes('MAIL FROM:<\xff\xfe@client.example.net>\r\n'),
    want: ['5xx'],
  },
  {
    desc: 'unknown MAIL parameter is refused with 555 (RFC 5321 4.1.1.11)',
    input: `${MAIL} X-FOO=bar\r\n`,
    want: [555],
  },
  {
    desc: 'RCPT NOTIFY= while DSN is not offered is refused with 555',
    setup: [EHLO, MAIL],
    input: 'RCPT TO:<alice@example.test> NOTIFY=SUCCESS,FAILURE\r\n',
    want: [555],
  },
];

describe('address level: hostile envelopes', () => {
  for (const sc of ADDRESS_CASES) {
    test(sc.desc, sc.todo ? { todo: sc.todo } : {}, () => runScript(gw.port, sc));
  }

  test('1000 pipelined RCPTs: 250 up to max_recipients, 452 past it, and the message still goes through', async () => {
    const tok = token('rcpts');
    const c = await connect(gw.port);
    await c.read();
    await c.cmd(EHLO);
    assert.equal((await c.cmd(`MAIL FROM:<${tok}@client.example.net>`))?.code, 250);
    c.write(`${RCPT}\r\n`.repeat(1000) + 'DATA\r\n');
    const rs = await collect(c, 1001, 15_000);
    const codes = rs.map((r) => r.code);
    const max = gw.runtime.config.limits.max_recipients;
    const expected = `250×${max}, 452×${1000 - max}, 354×1`;
    assert.equal(runs(rs), expected, `last reply: ${show(rs.slice(-1))}`);
    assert.equal(codes[1000], 354, 'DATA');
    c.write(`${msg(tok)}.\r\n`);
    assert.equal((await c.read(15_000))?.code, 250);
    mustArrive.push(tok);
  });

  test('refused commands count towards max_errors even when smtp-server refuses them (RCPT without MAIL, bad syntax)', async () => {
    const c = await connect(gw.port);
    await c.read();
    await c.cmd(EHLO);
    c.write(`${RCPT}\r\nMAIL FROM:bad-syntax\r\n`.repeat(15));
    const rs = await collect(c, 30);
    const max = gw.runtime.config.limits.max_errors;
    const first421 = rs.findIndex((r) => r.code === 421);
    assert.equal(first421, max, `421 after ${max} refusals; got ${runs(rs)}`);
    assert.ok(await c.waitClosed(2000));
  });

  test('XCLIENT/XFORWARD from the client are not honoured: the backend sees the real client', async () => {
    const tok = token('xclient');
    const c = await connect(gw.port);
    await c.read();
    await c.cmd(EHLO);
    assert.equal((await c.cmd('XCLIENT ADDR=203.0.113.9 NAME=spoof.example HELO=spoof.example'))?.code, 550);
    assert.equal((await c.cmd('XFORWARD ADDR=203.0.113.9 NAME=spoof.example'))?.code, 550);
    assert.equal((await c.cmd(MAIL))?.code, 250);
    assert.equal((await c.cmd(RCPT))?.code, 250);
    assert.equal((await c.cmd('DATA'))?.code, 354);
    c.write(`${msg(tok)}.\r\n`);
    assert.equal((await c.read())?.code, 250);
    const got = await waitDeliveredWith(tok);
    assert.equal(got.length, 1);
    const text = got[0] as string;
    assert.ok(!text.includes('203.0.113.9') && !text.includes('spoof.example'), text.slice(0, 800));
    assert.match(text, /Received: from client\.example\.net \(unknown \[127\.0\.0\.1\]\)\s+by backend\.example\.test/);
    assert.match(text, /from client\.example\.net \(\[127\.0\.0\.1\]\)\s+by\s+mx\.example\.test\s+\(mailgate\)/);
    mustArrive.push(tok);
  });

  test('a HELO name refused with 501 is not used (Received, XCLIENT HELO, helo.name)', async () => {
    const tok = token('helo');
    const c = await connect(gw.port);
    await c.read();
    assert.equal((await c.cmd('EHLO good.client.example.net'))?.code, 250);
    assert.equal((await c.cmd('EHLO bad\x01name(x;'))?.code, 501);
    assert.equal((await c.cmd(MAIL))?.code, 250);
    assert.equal((await c.cmd(RCPT))?.code, 250);
    assert.equal((await c.cmd('DATA'))?.code, 354);
    c.write(`${msg(tok)}.\r\n`);
    assert.equal((await c.read())?.code, 250);
    mustArrive.push(tok);
    const text = (await waitDeliveredWith(tok))[0] ?? '';
    assert.ok(!text.includes('\x01'), 'a control character reached the delivered header');
    assert.match(text, /from good\.client\.example\.net \(\[127\.0\.0\.1\]\)\s+by\s+mx\.example\.test\s+\(mailgate\)/);
  });
});

// --- data level ---------------------------------------------------------------------------------

interface DataCase {
  desc: string;
  gateway?: 'gw' | 'small' | 'body';
  /** The DATA content before the final ".\r\n" (must end with CRLF to be a complete line). */
  data: (tok: string) => string | Buffer;
  want: Want | Want[];
  text?: RegExp;
  /** Most milliseconds from the final dot to the reply. */
  maxMs?: number;
  /** Assertions on what the backend delivered (when accepted). */
  delivered?: (text: string) => void;
  todo?: string;
}

function deepMime(levels: number): string {
  let s = 'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b0"\r\n\r\n';
  for (let i = 0; i < levels; i++) s += `--b${i}\r\nContent-Type: multipart/mixed; boundary="b${i + 1}"\r\n\r\n`;
  s += `--b${levels}\r\nContent-Type: text/plain\r\n\r\ninnermost\r\n--b${levels}--\r\n`;
  for (let i = levels - 1; i >= 0; i--) s += `--b${i}--\r\n`;
  return s;
}
function manyParts(n: number, type: string, content = (i: number) => `part ${i}\r\n`, extra = ''): string {
  let s = 'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n';
  for (let i = 0; i < n; i++) s += `--b\r\nContent-Type: ${type}\r\n${extra}\r\n${content(i)}`;
  return `${s}--b--\r\n`;
}
/** `msg()` with its own header block replaced by `mime` (which carries MIME headers + body). */
function mimeMsg(tok: string, mime: string): string {
  return `From: sender@client.example.net\r\nTo: alice@example.test\r\nSubject: ${tok}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <${tok}@client.example.net>\r\n${mime}`;
}
function sized(tok: string, total: number): string {
  const head = `From: sender@client.example.net\r\nSubject: ${tok}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <${tok}@x>\r\n\r\n`;
  const lines: string[] = [];
  let left = total - head.length;
  while (left > 0) {
    const n = left > 200 ? 100 : left - 2; // the last line takes the rest, so no 1-byte tail
    lines.push(`${'s'.repeat(n)}\r\n`);
    left -= n + 2;
  }
  const s = head + lines.join('');
  assert.equal(s.length, total);
  return s;
}
const allBytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

const DATA_CASES: DataCase[] = [
  {
    desc: 'no empty line between header and body (lines without a colon)',
    data: (t) => `From: sender@client.example.net\r\nSubject: ${t}\r\nthis line is not a header field\r\nnor is this one\r\n`,
    want: 250,
    delivered: (text) => assert.match(text, /this line is not a header field/),
  },
  { desc: 'only a header block, no empty line, no body', data: (t) => `From: sender@client.example.net\r\nSubject: ${t}\r\n`, want: 250 },
  { desc: 'header block and the empty line, no body', data: (t) => `From: sender@client.example.net\r\nSubject: ${t}\r\n\r\n`, want: 250 },
  { desc: 'empty message (".\\r\\n" right after 354)', data: () => '', want: ['2xx', '5xx'] },
  {
    desc: 'header fields with bare CR',
    data: (t) => msg(t, 'X-Bare: one\rtwo\r\nX-Bare-End: three\r\n'),
    want: 250,
    delivered: (text) => assert.ok(!text.includes('\r'), 'bare CR normalised before the backend'),
  },
  { desc: 'LF-only line endings throughout', data: (t) => msg(t).replace(/\r\n/g, '\n') + '\r\n', want: 250 },
  {
    desc: '10,000 header fields (under max_header_bytes)',
    data: (t) => msg(t, Array.from({ length: 10_000 }, (_, i) => `X-F${i}: v\r\n`).join('')),
    want: 250,
    maxMs: 5000,
  },
  {
    desc: '20,000 header fields (over max_header_bytes): 552 5.3.4',
    data: (t) => msg(t, Array.from({ length: 20_000 }, (_, i) => `X-Field-${i}: value\r\n`).join('')),
    want: 552,
    text: /^5\.3\.4/,
  },
  { desc: 'one 2 MB header line: 552 5.3.4', data: (t) => msg(t, `X-Huge: ${'h'.repeat(2 * MB)}\r\n`), want: 552, text: /^5\.3\.4/ },
  { desc: 'one 2 MB body line: 552 5.3.4', data: (t) => msg(t, '', `${'b'.repeat(2 * MB)}\r\n`), want: 552, text: /^5\.3\.4/ },
  { desc: 'one field folded over 5,000 continuation lines', data: (t) => msg(t, `X-Folded: start\r\n${' more\r\n'.repeat(5000)}`), want: 250 },
  {
    desc: 'binary body: every byte value, 200 times, no MIME',
    data: (t) => Buffer.concat([Buffer.from(msg(t, '', '')), ...Array<Buffer>(200).fill(allBytes), Buffer.from('\r\n')]),
    want: 250,
  },
  { desc: 'NUL bytes in a header and in the body', data: (t) => bytes(msg(t, 'X-Nul: a\0b\r\n', 'body\0with\0nuls\r\n')), want: 250 },
  { desc: '8-bit header without MIME', data: (t) => bytes(msg(t, 'X-Latin: caf\xe9 \xff\xfe\r\n')), want: 250 },
  {
    desc: "100 Received fields (a mail loop): the backend's end-of-data refusal is relayed",
    data: (t) => msg(t, 'Received: from a by b; Mon, 23 Nov 2026 10:00:00 +0000\r\n'.repeat(100)),
    want: '5xx',
  },
  {
    desc: '300 DKIM-Signature fields (verification capped)',
    data: (t) => msg(t, `DKIM-Signature: v=1; a=rsa-sha256; d=client.example.net; s=s1; h=from; bh=AAAA; b=AAAA\r\n`.repeat(300)),
    want: 250,
    maxMs: 5000,
  },
  { desc: 'MIME nested 1000 levels deep', gateway: 'body', data: (t) => mimeMsg(t, deepMime(1000)), want: ['2xx', '5xx'], maxMs: 5000 },
  { desc: 'MIME bomb: 5,000 text parts', gateway: 'body', data: (t) => mimeMsg(t, manyParts(5000, 'text/plain')), want: 250, maxMs: 5000 },
  {
    desc: 'MIME bomb: 25,000 empty attachment parts (~1.2 MB) is answered promptly',
    gateway: 'body',
    data: (t) =>
      mimeMsg(
        t,
        manyParts(25_000, 'application/octet-stream', () => '\r\n'),
      ),
    want: 250,
    maxMs: 5000,
  },
  {
    desc: 'broken base64 parts',
    gateway: 'body',
    data: (t) =>
      mimeMsg(
        t,
        manyParts(50, 'text/plain; charset=utf-8', () => '!!!!====@@@@ not base64 ====\r\nQUJD===RA\r\n====\r\n', 'Content-Transfer-Encoding: base64\r\n'),
      ),
    want: 250,
  },
  { desc: 'exactly max_message_bytes: accepted', gateway: 'small', data: (t) => sized(t, 10_000), want: 250 },
  { desc: 'max_message_bytes + 1: 552 5.3.4', gateway: 'small', data: (t) => sized(t, 10_001), want: 552, text: /^5\.3\.4/ },
];

async function runData(dc: DataCase): Promise<void> {
  const g = dc.gateway === 'small' ? small : dc.gateway === 'body' ? body : gw;
  const tok = token('data');
  // The token is the envelope sender too: Postfix writes it into Return-Path, so even an empty
  // message can be found in the Maildir, and the log line can be found by "from".
  const from = `${tok}@client.example.net`;
  const c = await connect(g.port);
  await c.read();
  await c.cmd(EHLO);
  assert.equal((await c.cmd(`MAIL FROM:<${from}>`))?.code, 250);
  assert.equal((await c.cmd(RCPT))?.code, 250);
  assert.equal((await c.cmd('DATA'))?.code, 354);
  const d = dc.data(tok);
  await writeAll(c.socket, pieces(Buffer.isBuffer(d) ? d : Buffer.from(d, 'utf8')));
  const t0 = performance.now();
  c.write('.\r\n');
  const end = await c.read(30_000);
  const ms = performance.now() - t0;
  assert.ok(end, 'a reply to the end of data');
  const wants = Array.isArray(dc.want) ? dc.want : [dc.want];
  assert.ok(
    wants.some((w) => matches(end.code, w)),
    `want ${wants.join(' or ')}; got ${end.code} ${end.text}`,
  );
  if (dc.text) assert.match(end.text, dc.text);
  assert.ok(ms < (dc.maxMs ?? 10_000), `answered in ${Math.round(ms)} ms`);
  // In step afterwards (no stray reply), and the transaction left one log line with the reply.
  assert.equal((await c.cmd('NOOP'))?.code, 250);
  c.close();
  await until(() => logLines.some((l) => l.msg === 'message' && l.from === from), 2000);
  const lines = logLines.filter((l) => l.msg === 'message' && l.from === from);
  assert.equal(lines.length, 1, 'one "message" log line per DATA transaction');
  assert.match(String(lines[0]?.reply), new RegExp(`^${end.code} `));
  // 250 is also the answer for a quarantined message (the empty one scores high enough): only
  // what was accepted is relayed to the backend.
  if (end.code === 250 && lines[0]?.action === 'accept') {
    mustArrive.push(from);
    if (dc.delivered) {
      const got = await waitDeliveredWith(from);
      assert.equal(got.length, 1);
      dc.delivered(got[0] as string);
    }
  } else {
    mustNotArrive.push(from);
  }
  await assertServes(g.port);
}

describe('data level: broken and hostile messages', () => {
  for (const dc of DATA_CASES) {
    test(dc.desc, dc.todo ? { todo: dc.todo } : {}, () => runData(dc));
  }
});

// --- protocol level -----------------------------------------------------------------------------

describe('protocol level', () => {
  test('pipelining past DATA: commands after the final dot in the same write are commands, replies in order', async () => {
    const [t1, t2] = [token('pipe'), token('pipe')];
    const c = await connect(gw.port);
    await c.read();
    await c.cmd(EHLO);
    c.write(`MAIL FROM:<${t1}@client.example.net>\r\n${RCPT}\r\nDATA\r\n`);
    assert.deepEqual(
      (await collect(c, 3)).map((r) => r.code),
      [250, 250, 354],
    );
    c.write(`${msg(t1)}.\r\nMAIL FROM:<${t2}@client.example.net>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n`);
    assert.deepEqual(
      (await collect(c, 4)).map((r) => r.code),
      [250, 250, 250, 354],
    );
    c.write(`${msg(t2)}.\r\nNOOP\r\nQUIT\r\n`);
    assert.deepEqual(
      (await collect(c, 3)).map((r) => r.code),
      [250, 250, 221],
    );
    assert.ok(await c.waitClosed());
    mustArrive.push(t1, t2);
  });

  test('a whole session with two messages in one write (DATA not last in its group)', async () => {
    const [t1, t2] = [token('onewrite'), token('onewrite')];
    const c = await connect(gw.port);
    await c.read();
    const tx = (t: string) => `MAIL FROM:<${t}@client.example.net>\r\n${RCPT}\r\nDATA\r\n${msg(t)}.\r\n`;
    c.write(`${EHLO}\r\n${tx(t1)}RSET\r\n${tx(t2)}QUIT\r\n`);
    // EHLO, MAIL, RCPT, DATA, end, RSET, MAIL, RCPT, DATA, end, QUIT
    assert.deepEqual(
      (await collect(c, 11)).map((r) => r.code),
      [250, 250, 250, 354, 250, 250, 250, 250, 354, 250, 221],
    );
    mustArrive.push(t1, t2);
  });

  test('10,000 pipelined NOOP/RSET in one write: every reply, in order, within 5 s', async () => {
    // Junk commands are limited (limits.max_junk_commands, default 100; tested in
    // test/e2e/found-postfix.test.ts): lifted here, this test is about pipelining throughput.
    const limits = gw.runtime.config.limits;
    const junk = limits.max_junk_commands;
    limits.max_junk_commands = 20_000;
    try {
      const c = await connect(gw.port);
      await c.read();
      await c.cmd(EHLO);
      const t0 = Date.now();
      c.write('NOOP\r\nRSET\r\n'.repeat(5000));
      const rs = await collect(c, 10_000, 10_000);
      assert.equal(rs.length, 10_000);
      assert.ok(
        rs.every((r, i) => r.code === 250 && (i % 2 === 0 ? /OK/ : /Flushed/).test(r.text)),
        'replies in order',
      );
      assert.ok(Date.now() - t0 < 5000, `${Date.now() - t0} ms`);
    } finally {
      limits.max_junk_commands = junk;
    }
    await assertServes(gw.port);
  });

  test('MAIL/RSET storm: max_messages_per_connection transactions, then 421 and close', async () => {
    const c = await connect(gw.port);
    await c.read();
    await c.cmd(EHLO);
    c.write(`${MAIL}\r\nRSET\r\n`.repeat(150));
    const rs = await collect(c, 300, 15_000);
    const max = gw.runtime.config.limits.max_messages_per_connection;
    assert.ok(
      rs.slice(0, 2 * max).every((r) => r.code === 250),
      show(rs.slice(0, 4)),
    );
    assert.equal(rs[2 * max]?.code, 421);
    assert.match(rs[2 * max]?.text ?? '', /^4\.7\.0 Too many messages/);
    assert.equal(rs.length, 2 * max + 1);
    assert.ok(await c.waitClosed());
    await assertServes(gw.port);
  });
});

// --- connection abuse ---------------------------------------------------------------------------

/** Backend sockets opened by `fn` that are still open `waitMs` later (closed here afterwards). */
async function leakedBackendSockets(fn: () => Promise<void>, waitMs = 3000): Promise<number> {
  const before = new Set(backendSockets());
  await fn();
  const fresh = () => backendSockets().filter((s) => !before.has(s));
  await until(() => fresh().length === 0, waitMs);
  const leaked = fresh();
  // Never leave Postfix sessions behind for the other tests sharing this Postfix.
  for (const s of leaked) s.destroy();
  return leaked.length;
}

async function openTransaction(port: number, from: string): Promise<RawSmtp> {
  const c = await connect(port);
  await c.read();
  await c.cmd(EHLO);
  assert.equal((await c.cmd(`MAIL FROM:<${from}>`))?.code, 250);
  assert.equal((await c.cmd(RCPT))?.code, 250);
  return c;
}

describe('connection abuse: resets, half-closes, slow and idle clients', () => {
  for (const [how, kill] of [
    ['RST (resetAndDestroy)', (s: net.Socket) => void s.resetAndDestroy()],
    ['close (destroy)', (s: net.Socket) => void s.destroy()],
    ['half-close (FIN, end)', (s: net.Socket) => void s.end()],
  ] as const) {
    test(`client ${how} mid-DATA with the backend transaction open: nothing delivered, backend session closed`, async () => {
      const tok = token('abort');
      const from = `${tok}@client.example.net`;
      const leaked = await leakedBackendSockets(async () => {
        const c = await openTransaction(gw.port, from);
        assert.equal((await c.cmd('DATA'))?.code, 354);
        c.write(msg(tok).slice(0, 120));
        c.write('QUIT\r\n'); // looks like a command, is content
        await sleep(50);
        kill(c.socket as net.Socket);
      });
      assert.equal(leaked, 0, 'backend sessions left open');
      mustNotArrive.push(from);
      await assertServes(gw.port);
    });
  }

  test('QUIT: the 221 arrives, then mailgate closes at once, without waiting for the client to close its side', async () => {
    // allowHalfOpen: this client never closes its side by itself, so only the server can end it.
    const s = net.connect({ port: gw.port, host: '127.0.0.1', allowHalfOpen: true });
    let got = '';
    s.setEncoding('latin1');
    s.on('data', (d: string) => (got += d));
    const errored = new Promise<string>((r) => s.once('error', (e: NodeJS.ErrnoException) => r(e.code ?? e.message)));
    const ended = once(s, 'end');
    await once(s, 'connect');
    s.write('QUIT\r\n');
    await ended;
    assert.match(got, /^220 .*\r\n221 /s, 'the 221 came before the FIN');
    // Gone on the server's side, not half-closed: a byte sent now meets a closed socket (RST).
    // A half-closed server would read and drop it until its 5 s half-close limit.
    // (The client learns of the RST at its next write: its reading stopped at the FIN.)
    await sleep(100);
    s.write('NOOP\r\n');
    await sleep(100);
    s.write('NOOP\r\n');
    const code = await Promise.race([errored, sleep(2000).then(() => 'still open')]);
    s.destroy();
    assert.match(code, /ECONNRESET|EPIPE/, 'the server had closed the connection');
  });

  test('QUIT, then the client resets (as smtp-source does): mailgate keeps serving', async () => {
    for (let i = 0; i < 20; i++) {
      const c = await connect(gw.port);
      await c.read();
      c.write('QUIT\r\n');
      await c.read();
      (c.socket as net.Socket).resetAndDestroy();
    }
    await assertServes(gw.port);
  });

  test('a client gone mid-DATA is logged as a result (info, not action "error")', async () => {
    const tok = token('gone');
    const from = `${tok}@client.example.net`;
    const c = await openTransaction(gw.port, from);
    assert.equal((await c.cmd('DATA'))?.code, 354);
    c.write(msg(tok).slice(0, 100));
    await sleep(50);
    c.socket.destroy();
    assert.ok(await until(() => logLines.some((l) => l.msg === 'message' && l.from === from), 2000), 'the transaction has its message line');
    const lines = logLines.filter((l) => l.from === from || (l.qid !== undefined && l.qid === logLines.find((m) => m.from === from)?.qid));
    assert.ok(
      lines.every((l) => Number(l.level) < 50),
      JSON.stringify(lines),
    );
    assert.notEqual(lines.find((l) => l.msg === 'message')?.action, 'error');
    mustNotArrive.push(from);
  });

  test('client vanishes while its MAIL is being relayed: the backend session is closed too', async () => {
    const leaked = await leakedBackendSockets(async () => {
      for (let i = 0; i < 8; i++) {
        const c = await connect(gw.port);
        await c.read();
        await c.cmd(EHLO);
        c.write(`${MAIL}\r\n`);
        await sleep(i % 4);
        c.socket.destroy();
      }
    });
    assert.equal(leaked, 0, 'backend sessions left open after their clients went away');
    await assertServes(gw.port);
  });

  test('idle timeout: after a CR-only line, mid-DATA and in 30 open transactions: 421, closed, backend released', async () => {
    const tok = token('idle');
    const leaked = await leakedBackendSockets(async () => {
      const crOnly = await connect(idle.port);
      await crOnly.read();
      crOnly.write('NOOP\r');
      const midData = await openTransaction(idle.port, `${tok}@client.example.net`);
      assert.equal((await midData.cmd('DATA'))?.code, 354);
      midData.write(msg(tok).slice(0, 100));
      const many = await Promise.all(Array.from({ length: 30 }, () => openTransaction(idle.port, 'sender@client.example.net')));
      const t0 = Date.now();
      const all = [crOnly, midData, ...many];
      const rs = await Promise.all(all.map((c) => c.read(5000)));
      assert.ok(
        rs.every((r) => r?.code === 421),
        rs.map((r) => r?.code).join(','),
      );
      assert.ok((await Promise.all(all.map((c) => c.waitClosed(2000)))).every(Boolean), 'closed after 421');
      assert.ok(Date.now() - t0 < 4000, `${Date.now() - t0} ms`);
    });
    assert.equal(leaked, 0, 'backend sessions left open');
    mustNotArrive.push(`${tok}@client.example.net`);
    await assertServes(idle.port);
  });

  test('slowloris: a byte every 100 ms (in DATA, and in a command line) is cut off with 421 (idle_timeout_s 1)', async () => {
    const inData = await openTransaction(idle.port, 'sender@client.example.net');
    assert.equal((await inData.cmd('DATA'))?.code, 354);
    const inCmd = await connect(idle.port);
    await inCmd.read();
    const trickle = async (c: RawSmtp, byte: string) => {
      const got = c.read(4500).then(
        (r) => r,
        () => undefined,
      );
      let answered = false;
      void got.then(() => (answered = true));
      const t0 = Date.now();
      while (!answered && !c.closed && Date.now() - t0 < 4500) {
        c.write(byte);
        await sleep(100);
      }
      return got;
    };
    const [a, b] = await Promise.all([trickle(inData, 'x'), trickle(inCmd, 'N')]);
    assert.equal(a?.code, 421, 'DATA trickle');
    assert.equal(b?.code, 421, 'command trickle');
  });
});

// --- TLS ----------------------------------------------------------------------------------------

/** Reads SMTP replies from any socket (RawSmtp cannot adopt a TLS socket we made ourselves). */
function replyReader(s: net.Socket | tls.TLSSocket): (timeoutMs?: number) => Promise<Reply | undefined> {
  let buf = '';
  const queue: Reply[] = [];
  const waiting: Array<(r: Reply | undefined) => void> = [];
  let lines: string[] = [];
  s.on('data', (d: Buffer) => {
    buf += d.toString('latin1');
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).replace(/\r$/, '');
      buf = buf.slice(nl + 1);
      lines.push(line);
      if (line[3] !== '-') {
        const r: Reply = { code: Number(line.slice(0, 3)), lines: lines.map((l) => l.slice(4)), text: line.slice(4) };
        lines = [];
        const w = waiting.shift();
        if (w) w(r);
        else queue.push(r);
      }
    }
  });
  s.on('close', () => waiting.splice(0).forEach((w) => w(undefined)));
  s.on('error', () => undefined);
  return (timeoutMs = 5000) =>
    queue.length
      ? Promise.resolve(queue.shift())
      : s.destroyed
        ? Promise.resolve(undefined)
        : new Promise((resolve, reject) => {
            const t = setTimeout(() => reject(new Error(`no reply within ${timeoutMs} ms`)), timeoutMs);
            waiting.push((r) => {
              clearTimeout(t);
              resolve(r);
            });
          });
}

describe('TLS', () => {
  test('STARTTLS on a listener without TLS is refused', async () => {
    const c = await connect(gw.port);
    await c.read();
    const ehlo = await c.cmd(EHLO);
    assert.ok(!ehlo?.lines.includes('STARTTLS'), 'not advertised');
    const r = await c.cmd('STARTTLS');
    let cert = '';
    if (r?.code === 220) {
      const plain = c.socket as net.Socket;
      plain.removeAllListeners('data');
      const secure = tls.connect({ socket: plain, rejectUnauthorized: false });
      secure.on('error', () => undefined);
      clients.push({ close: () => secure.destroy() });
      await Promise.race([once(secure, 'secureConnect'), sleep(2000)]);
      const peer = secure.getPeerCertificate();
      cert = `; handshake done with CN=${String(peer.subject?.CN)} valid to ${peer.valid_to}`;
      secure.destroy();
    }
    assert.ok(r && r.code >= 500, `want 5xx (502/454), got ${r?.code} ${r?.text}${cert}`);
  });

  test('garbage instead of a TLS handshake after STARTTLS: connection closed, no hang', async () => {
    const c = await connect(tlsGw.port);
    await c.read();
    await c.cmd(EHLO);
    assert.equal((await c.cmd('STARTTLS'))?.code, 220);
    c.write(`${MAIL}\r\n${'\x16\x03\x01garbage'.repeat(100)}\r\n`);
    assert.ok(await c.waitClosed(3000), 'closed');
    await assertServes(tlsGw.port);
  });

  test('plaintext pipelined after STARTTLS is discarded (no command injection into the TLS session)', async () => {
    const s = net.connect(tlsGw.ports[0] as number, '127.0.0.1');
    clients.push({ close: () => s.destroy() });
    const read = replyReader(s);
    assert.equal((await read())?.code, 220);
    s.write(`${EHLO}\r\n`);
    assert.equal((await read())?.code, 250);
    s.write('STARTTLS\r\nMAIL FROM:<injected@evil.example>\r\nRCPT TO:<alice@example.test>\r\n');
    assert.equal((await read())?.code, 220);
    s.removeAllListeners('data');
    const secure = tls.connect({ socket: s, rejectUnauthorized: false });
    clients.push({ close: () => secure.destroy() });
    const readTls = replyReader(secure);
    await once(secure, 'secureConnect');
    secure.write(`${EHLO}\r\n${RCPT}\r\nSTARTTLS\r\n`);
    assert.equal((await readTls())?.code, 250, 'EHLO in TLS');
    assert.equal((await readTls())?.code, 503, 'no MAIL transaction was smuggled in: RCPT needs MAIL');
    assert.equal((await readTls())?.code, 503, 'STARTTLS twice');
    secure.destroy();
    await assertServes(tlsGw.port);
  });

  test('plaintext SMTP to an implicit-TLS port: dropped without a reply, no hang', async () => {
    const s = net.connect(tlsGw.ports[1] as number, '127.0.0.1');
    clients.push({ close: () => s.destroy() });
    const read = replyReader(s);
    await once(s, 'connect');
    s.write(`${EHLO}\r\n${MAIL}\r\n`);
    assert.equal(await read(3000), undefined, 'closed without an SMTP reply');
  });
});

// --- memory -------------------------------------------------------------------------------------

describe('memory stays bounded under large abuse', () => {
  test('64 MB of DATA against a 1 MB limit: 552 5.3.4, nothing retained', async () => {
    const g = await startGateway(testConfig({ limits: { max_message_bytes: MB } }));
    try {
      const tok = token('mem');
      const c = await openTransaction(g.port, `${tok}@client.example.net`);
      assert.equal((await c.cmd('DATA'))?.code, 354);
      c.write(msg(tok, '', ''));
      const rss0 = process.memoryUsage().rss;
      const live0 = await liveBytes();
      await writeAll(c.socket, repeat(Buffer.from(`${'x'.repeat(998)}\r\n`.repeat(64)), 1024)); // 64 MB
      await sleep(200);
      const liveGrowth = (await liveBytes()) - live0;
      c.write('.\r\n');
      const end = await c.read(30_000);
      assert.equal(end?.code, 552);
      assert.match(end?.text ?? '', /^5\.3\.4/);
      const rssGrowth = process.memoryUsage().rss - rss0;
      assert.ok(liveGrowth < 16 * MB, `live memory grew ${(liveGrowth / MB).toFixed(1)} MB while 64 MB went by`);
      assert.ok(rssGrowth < 128 * MB, `rss grew ${(rssGrowth / MB).toFixed(1)} MB`);
      mustNotArrive.push(`${tok}@client.example.net`);
      await assertServes(g.port);
    } finally {
      await Promise.race([g.stop(500), sleep(3000)]);
    }
  });

  test('20,000 header fields and a 2 MB header line in a row: nothing retained', async () => {
    const live0 = await liveBytes();
    for (const extra of [Array.from({ length: 20_000 }, (_, i) => `X-Field-${i}: value\r\n`).join(''), `X-Huge: ${'h'.repeat(2 * MB)}\r\n`]) {
      const tok = token('memh');
      const r = await sendMessage(gw.port, { from: `${tok}@client.example.net`, to: ['alice@example.test'], data: msg(tok, extra) });
      assert.equal(r.end?.code, 552);
      mustNotArrive.push(`${tok}@client.example.net`);
    }
    const growth = (await liveBytes()) - live0;
    assert.ok(growth < 16 * MB, `live memory grew ${(growth / MB).toFixed(1)} MB`);
  });
});

// --- shutdown and logging -----------------------------------------------------------------------

describe('shutdown and logging under abuse', () => {
  test('an idle client does not hold up stop(): it gets 421 4.3.2 and stop() returns within the grace time', async () => {
    const g = await startGateway(testConfig());
    const c = await connect(g.port);
    await c.read();
    await c.cmd(EHLO);
    let stopped = false;
    const stopping = g.stop(1000).then(() => (stopped = true));
    try {
      const r = await c.read(3000);
      assert.equal(r?.code, 421);
      assert.match(r?.text ?? '', /^4\.3\.2/);
      assert.ok(await until(() => stopped, 3000), 'stop() returned');
    } finally {
      c.close();
      await Promise.race([stopping, sleep(3000)]);
    }
  });

  test('protocol abuse that ends the connection is logged (README: a clear reply and a log line)', async () => {
    for (const input of ['GET / HTTP/1.1\r\n\r\n', `NOOP ${'a'.repeat(20_000)}\r\n`, 'FROB\r\n'.repeat(10)]) {
      const mark = logLines.length;
      const c = await connect(gw.port);
      await c.read();
      c.write(input);
      assert.ok(await c.waitClosed(3000));
      await sleep(100);
      const fresh = logLines.slice(mark).filter((l) => Number(l.level) >= 30);
      assert.ok(
        fresh.some((l) => /^421 /.test(String(l.reply ?? ''))),
        `${JSON.stringify(input.slice(0, 20))}: ${JSON.stringify(fresh)}`,
      );
    }
  });
});

// --- the backend ----------------------------------------------------------------------------------

describe('the backend', () => {
  test('nothing unintended reached it; every accepted message arrived exactly once', async () => {
    for (const tok of mustArrive) {
      const got = await waitDeliveredWith(tok);
      assert.equal(got.length, 1, `${tok}: delivered ${got.length} times`);
    }
    await sleep(1000); // late deliveries of what was refused or aborted
    for (const tok of mustNotArrive) assert.equal(deliveredWith(tok).length, 0, `${tok} reached the backend`);
    for (const tok of mustArrive) assert.equal(deliveredWith(tok).length, 1, `${tok}: delivered more than once`);
  });

  test('no gateway logged an error: every hostile input was a handled case, not an accident', () => {
    // Clients that went away mid-DATA are logged as errors today: a case of its own above.
    const errors = logLines.filter((l) => Number(l.level) >= 50 && !String(l.err).startsWith('Connection closed before the message'));
    assert.deepEqual(errors, []);
  });
});
