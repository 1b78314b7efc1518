// Issue 14 "Found" items through SMTP: a real gateway in front of a private Postfix, the hostile
// input of each finding sent by a raw client, and what reached the Maildir read back.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import http from 'node:http';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RawSmtp } from '../helpers/smtp-client.ts';
import { startGateway, testConfig, type TestGateway } from '../helpers/gateway.ts';
import { startPostfix, type PostfixInstance } from '../helpers/postfix.ts';
import { token } from '../helpers/maildir.ts';
import type { Config } from '../../src/config/schema.ts';
import { writeTestCert } from '../helpers/tls-cert.ts';

let pf: PostfixInstance;
let gw: TestGateway;
const cleanups: Array<() => Promise<void> | void> = [];

const DISABLED = ['spf', 'dkim-arc-dmarc', 'dnsbl', 'greylist', 'fcrdns'];

function config(overrides: Record<string, unknown> = {}): Config {
  return testConfig({
    backend: { host: '127.0.0.1', port: pf.port, command_timeout_ms: 5000, data_timeout_ms: 10_000, connect_timeout_ms: 2000 },
    checks: { disabled: DISABLED },
    ...overrides,
  });
}

before(async () => {
  pf = await startPostfix();
  gw = await startGateway(
    config({
      listen: [
        { host: '127.0.0.1', port: 0 },
        { host: '127.0.0.1', port: 0, proxy_protocol: ['127.0.0.1'] },
      ],
    }),
  );
});
after(async () => {
  for (const c of cleanups.reverse()) await c();
  await gw?.stop(100);
  pf?.destroy();
});

async function connect(port: number, preface?: Buffer): Promise<RawSmtp> {
  const c = await RawSmtp.connect(port, '127.0.0.1', preface);
  cleanups.push(() => c.close());
  return c;
}

/** Greeting + EHLO + MAIL + RCPT alice, then DATA with `data` (ending CRLF) and the final reply. */
async function send(port: number, data: string | Buffer, rcpt = 'alice@example.test'): Promise<{ code: number | undefined; text: string }> {
  const c = await connect(port);
  assert.equal((await c.read())?.code, 220);
  assert.equal((await c.cmd('EHLO client.example.net'))?.code, 250);
  assert.equal((await c.cmd('MAIL FROM:<sender@client.example.net>'))?.code, 250);
  assert.equal((await c.cmd(`RCPT TO:<${rcpt}>`))?.code, 250);
  assert.equal((await c.cmd('DATA'))?.code, 354);
  c.write(data);
  c.write('.\r\n');
  const r = await c.read(30_000);
  await c.cmd('QUIT').catch(() => undefined);
  return { code: r?.code, text: r?.text ?? '' };
}

/** The delivered message containing `needle` (Postfix delivers asynchronously). */
async function delivered(needle: string, user = 'alice', timeoutMs = 15_000): Promise<Buffer> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const sub of ['new', 'cur']) {
      const dir = join(pf.mailBase, user, sub);
      if (!existsSync(dir)) continue;
      for (const f of readdirSync(dir)) {
        const content = readFileSync(join(dir, f));
        if (content.includes(needle)) return content;
      }
    }
    if (Date.now() > deadline) throw new Error(`no delivered message contains ${needle}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function msg(tok: string, extraHeaders = '', body = 'Hello.\r\n'): string {
  return `From: Sender <sender@client.example.net>\r\nTo: alice@example.test\r\nSubject: ${tok}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <${tok}@client.example.net>\r\n${extraHeaders}\r\n${body}`;
}

test('item 1: four 60 KB From fields do not stall other connections', async () => {
  const tok = token('from');
  const from = `From: ${'a'.repeat(60_000)}\r\n`;
  const data = `${from.repeat(4)}Subject: ${tok}\r\nTo: alice@example.test\r\n\r\nbody\r\n`;
  const other = await connect(gw.port);
  await other.read();
  const h = monitorEventLoopDelay({ resolution: 5 });
  h.enable();
  let worstNoopMs = 0;
  let stop = false;
  const pinger = (async () => {
    while (!stop) {
      const t = Date.now();
      assert.equal((await other.cmd('NOOP'))?.code, 250);
      worstNoopMs = Math.max(worstNoopMs, Date.now() - t);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  const r = await send(gw.port, data);
  stop = true;
  await pinger;
  h.disable();
  assert.ok(r.code !== undefined && r.code < 600, r.text);
  assert.ok(h.max / 1e6 < 500, `event loop blocked ${(h.max / 1e6).toFixed(0)} ms`);
  assert.ok(worstNoopMs < 1000, `a NOOP on another connection took ${worstNoopMs} ms`);
});

test('item 2: a header block starting with whitespace cannot extend our headers', async () => {
  const tok = token('orphan');
  const r = await send(gw.port, ` dkim=pass header.d=paypal.com; dmarc=pass\r\n${msg(tok)}`);
  assert.equal(r.code, 250, r.text);
  const m = (await delivered(tok)).toString('latin1');
  assert.ok(!m.includes('header.d=paypal.com'), m.slice(0, 800));
  const head = m.slice(0, m.indexOf('\n\n'));
  assert.match(head, /Received: from client\.example\.net/);
});

test('item 3: a PROXY v1 source field with a bare LF is refused; a valid one from a trusted LB is used', async () => {
  const bad = await connect(gw.ports[1]!, Buffer.from('PROXY TCP4 1.2.3.4\nX-Injected:yes 127.0.0.1 40000 25\r\n'));
  assert.equal(await bad.read(5000), undefined, 'connection must be dropped without a banner');
  const tok = token('proxy');
  const c = await connect(gw.ports[1]!, Buffer.from('PROXY TCP4 192.0.2.10 127.0.0.1 40000 25\r\n'));
  assert.equal((await c.read())?.code, 220);
  await c.cmd('EHLO client.example.net');
  assert.equal((await c.cmd('MAIL FROM:<sender@client.example.net>'))?.code, 250);
  assert.equal((await c.cmd('RCPT TO:<alice@example.test>'))?.code, 250);
  assert.equal((await c.cmd('DATA'))?.code, 354);
  c.write(`${msg(tok)}.\r\n`);
  assert.equal((await c.read(20_000))?.code, 250);
  const m = (await delivered(tok)).toString('latin1');
  assert.match(m, /\(\[192\.0\.2\.10\]\) by mx\.example\.test \(mailgate\)/);
  assert.ok(!m.includes('X-Injected'));
});

test('item 4: forged Authentication-Results, X-Spam-* and X-Mailgate-* are stripped with the auth check disabled', async () => {
  const tok = token('forged');
  const forged =
    'Authentication-Results: mx.example.test; dkim=pass header.d=paypal.com; dmarc=pass\r\n' +
    'Authentication-Results: other.example; spf=pass\r\nX-Spam-Flag: NO\r\nX-Spam-Score: -100\r\nX-Mailgate-Status: clean\r\n';
  const r = await send(gw.port, msg(tok, forged));
  assert.equal(r.code, 250, r.text);
  const m = (await delivered(tok)).toString('latin1');
  assert.ok(!m.includes('header.d=paypal.com'), 'forged A-R for our authserv-id survived');
  assert.ok(!/^X-Spam-/im.test(m), 'X-Spam-* survived');
  assert.ok(!/^X-Mailgate-Status: clean/im.test(m), 'X-Mailgate-Status survived');
  assert.match(m, /Authentication-Results: other\.example; spf=pass/, 'a third party A-R is kept');
});

test('item 9: NUL bytes are stripped by default and refused with smtp.nul_bytes: reject', async () => {
  const tok = token('nul');
  const r = await send(gw.port, Buffer.from(msg(tok, '', 'before\0after\r\n'), 'latin1'));
  assert.equal(r.code, 250, r.text);
  const m = await delivered(tok);
  assert.ok(!m.includes(0), 'a NUL byte reached the mailbox');
  assert.ok(m.includes('beforeafter'));
  const g2 = await startGateway(config({ smtp: { nul_bytes: 'reject', shutdown_grace_s: 1 } }));
  cleanups.push(() => g2.stop(100));
  const r2 = await send(g2.port, Buffer.from(msg(token('nul'), '', 'a\0b\r\n'), 'latin1'));
  assert.equal(r2.code, 550);
  assert.match(r2.text, /^5\.6\.0 Message contains NUL bytes/);
});

test('item 10: the spool is a private 0700 directory from config, emptied at start', async () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'mailgate-spool-e2e-')), 'spool');
  mkdirSync(dir);
  chmodSync(dir, 0o755);
  writeFileSync(join(dir, 'spool-999999999-crashed'), 'left over by a crash');
  const g2 = await startGateway(config({ spool_dir: dir, limits: { memory_spool_bytes: 100 } }));
  cleanups.push(() => g2.stop(100));
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  assert.deepEqual(readdirSync(dir), []);
  const tok = token('spool');
  const r = await send(g2.port, msg(tok, '', 'x'.repeat(5000) + '\r\n'));
  assert.equal(r.code, 250, r.text);
  await delivered(tok);
  assert.deepEqual(readdirSync(dir), [], 'the temp file is removed after the transaction');
});

test('item 6: an implicit-TLS client that never starts the handshake is dropped at the deadline', async () => {
  const certDir = mkdtempSync(join(tmpdir(), 'mailgate-tls-'));
  writeTestCert(certDir);
  const g2 = await startGateway(
    config({
      listen: [{ host: '127.0.0.1', port: 0, tls: { key: join(certDir, 'key.pem'), cert: join(certDir, 'cert.pem'), implicit: true } }],
      smtp: { tls_handshake_timeout_ms: 500, shutdown_grace_s: 1 },
    }),
  );
  cleanups.push(() => g2.stop(100));
  const s = net.connect(g2.port, '127.0.0.1');
  cleanups.push(() => void s.destroy());
  s.on('error', () => undefined);
  const started = Date.now();
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('still open after 5 s')), 5000);
    s.once('close', () => {
      clearTimeout(t);
      resolve();
    });
  });
  assert.ok(Date.now() - started >= 400);
  // A real TLS client still gets its banner.
  const t = tls.connect({ port: g2.port, host: '127.0.0.1', rejectUnauthorized: false });
  cleanups.push(() => void t.destroy());
  const banner = await new Promise<string>((resolve) => t.once('data', (d: Buffer) => resolve(d.toString())));
  assert.match(banner, /^220 /);
});

test('item 11: junk commands past limits.max_junk_commands get 421 and the connection closes', async () => {
  const g2 = await startGateway(config({ limits: { max_junk_commands: 5 } }));
  cleanups.push(() => g2.stop(100));
  const c = await connect(g2.port);
  await c.read();
  for (let i = 0; i < 5; i++) assert.equal((await c.cmd(i % 2 ? 'NOOP' : 'RSET'))?.code, 250);
  const r = await c.cmd('NOOP');
  assert.equal(r?.code, 421);
  assert.match(r?.text ?? '', /^4\.7\.0 Too many NOOP/);
  assert.ok(await c.waitClosed(3000));
});

test('item 11: a session older than limits.max_session_s is closed between transactions', async () => {
  const g2 = await startGateway(config({ limits: { max_session_s: 1 } }));
  cleanups.push(() => g2.stop(100));
  const c = await connect(g2.port);
  await c.read();
  const started = Date.now();
  let last: number | undefined;
  while (Date.now() - started < 5000) {
    const r = await c.cmd('NOOP', 3000).catch(() => undefined);
    last = r?.code;
    if (last !== 250) break;
    await new Promise((res) => setTimeout(res, 200));
  }
  assert.equal(last, 421);
  assert.ok(Date.now() - started >= 900);
  assert.ok(await c.waitClosed(3000));
});

test('item 11: SIGHUP (reload) updates the advertised SIZE and the idle timeout for new connections', async () => {
  const g2 = await startGateway(config());
  cleanups.push(() => g2.stop(100));
  const next = config({ limits: { max_message_bytes: 1234567, idle_timeout_s: 1 } });
  await g2.reload(next);
  const c = await connect(g2.port);
  await c.read();
  const ehlo = await c.cmd('EHLO client.example.net');
  assert.ok(ehlo?.lines.includes('SIZE 1234567'), ehlo?.lines.join(' | '));
  assert.ok(await c.waitClosed(4000), 'idle connection not closed after the reloaded 1 s idle timeout');
});

test('item 11: a %-hack recipient is refused for its routing characters, not as "not our domain"', async () => {
  const c = await connect(gw.port);
  await c.read();
  await c.cmd('EHLO client.example.net');
  await c.cmd('MAIL FROM:<sender@client.example.net>');
  const r = await c.cmd('RCPT TO:<bob%other.example@example.test>');
  assert.equal(r?.code, 550);
  assert.match(r?.text ?? '', /^5\.7\.1 Relaying denied: routing characters/);
  assert.ok(!(r?.text ?? '').includes('we do not accept mail for example.test'));
});

test('item 11: the Maildir backend writes in tmp/ and moves into new/', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mailgate-maildir-'));
  const g2 = await startGateway(testConfig({ backend: { maildir: dir }, checks: { disabled: DISABLED } }));
  cleanups.push(() => g2.stop(100));
  const tok = token('maildir');
  const r = await send(g2.port, msg(tok));
  assert.equal(r.code, 250, r.text);
  assert.ok(existsSync(join(dir, 'tmp')) && existsSync(join(dir, 'cur')));
  assert.deepEqual(readdirSync(join(dir, 'tmp')), []);
  const files = readdirSync(join(dir, 'new'));
  assert.equal(files.length, 1);
  assert.ok(!files[0]!.startsWith('.'));
  assert.ok(readFileSync(join(dir, 'new', files[0]!), 'latin1').includes(tok));
});

test('item 11: no mailgate_redis_up without a Redis', async () => {
  const g2 = await startGateway(config({ admin: { host: '127.0.0.1', port: 0 } }));
  cleanups.push(() => g2.stop(100));
  const body = await new Promise<string>((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: g2.adminPort, path: '/metrics' }, (res) => {
        let b = '';
        res.on('data', (d) => (b += d));
        res.on('end', () => resolve(b));
      })
      .on('error', reject);
  });
  assert.match(body, /mailgate_messages_total|mailgate_connections_total/);
  assert.ok(!body.includes('mailgate_redis_up'), 'mailgate_redis_up exported without Redis');
});
