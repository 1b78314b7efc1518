// Issue 14 items 5, 7, 8 and 12 through SMTP against misbehaving backends: real socket servers
// written here that speak just enough SMTP, record every command mailgate sends, and then stop
// reading after 354, drop the connection at RCPT, or never answer the final dot.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import http from 'node:http';
import { Writable } from 'node:stream';
import pino from 'pino';
import { RawSmtp } from '../helpers/smtp-client.ts';
import { startGateway, testConfig, type TestGateway } from '../helpers/gateway.ts';
import { startDnsServer } from '../helpers/dns-server.ts';

type Mode = 'ok' | 'pause-after-354' | 'silent-after-dot' | 'drop-at-rcpt';

interface FakeBackend {
  port: number;
  /** Every command line received (not DATA content), in order. */
  commands: string[];
  /** Connections accepted so far. */
  connections: number;
  close(): Promise<void>;
}

/** A scripted SMTP server: answers 2xx/354, and misbehaves as `mode` says. */
async function fakeBackend(mode: Mode, ehlo: string[] = ['PIPELINING', '8BITMIME', 'SIZE 104857600']): Promise<FakeBackend> {
  const commands: string[] = [];
  const sockets = new Set<net.Socket>();
  const fb = { connections: 0 };
  const server = net.createServer((sock) => {
    fb.connections++;
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    let buf = '';
    let inData = false;
    sock.write('220 fake.example ESMTP\r\n');
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => {
      buf += d;
      for (;;) {
        if (inData) {
          const end = buf.indexOf('\r\n.\r\n');
          if (end < 0) {
            buf = buf.slice(-4);
            return;
          }
          buf = buf.slice(end + 5);
          inData = false;
          if (mode === 'silent-after-dot') continue;
          sock.write('250 2.0.0 queued as FAKE\r\n');
          continue;
        }
        const nl = buf.indexOf('\r\n');
        if (nl < 0) return;
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        commands.push(line);
        const verb = line.split(' ')[0]!.toUpperCase();
        if (verb === 'EHLO')
          sock.write(
            ['250-fake.example', ...ehlo].map((l, i, a) => `250${i === a.length - 1 ? ' ' : '-'}${i === 0 ? 'fake.example' : l}`).join('\r\n') + '\r\n',
          );
        else if (verb === 'XCLIENT') sock.write('220 fake.example ESMTP\r\n');
        else if (verb === 'RCPT' && mode === 'drop-at-rcpt') {
          sock.destroy();
          return;
        } else if (verb === 'DATA') {
          sock.write('354 go ahead\r\n');
          inData = true;
          buf = '\r\n' + buf; // so a message that is only "." still matches "\r\n.\r\n"
          if (mode === 'pause-after-354') {
            sock.pause();
            return;
          }
        } else if (verb === 'QUIT') {
          sock.end('221 bye\r\n');
          return;
        } else sock.write('250 2.0.0 ok\r\n');
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    commands,
    get connections() {
      return fb.connections;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function gatewayFor(
  fb: FakeBackend,
  extra: Record<string, unknown> = {},
  backend: Record<string, unknown> = {},
  logger?: pino.Logger,
): Promise<TestGateway> {
  const cfg = testConfig({
    backend: { host: '127.0.0.1', port: fb.port, command_timeout_ms: 2000, data_timeout_ms: 2000, connect_timeout_ms: 2000, pool_size: 0, ...backend },
    checks: { disabled: ['spf', 'dkim-arc-dmarc', 'dnsbl', 'greylist'] },
    ...extra,
  });
  const gw = await startGateway(cfg, logger ? { logger } : {});
  cleanups.push(() => gw.stop(100));
  return gw;
}

async function client(port: number, helo = 'client.example.net'): Promise<RawSmtp> {
  const c = await RawSmtp.connect(port);
  cleanups.push(() => c.close());
  assert.equal((await c.read())?.code, 220);
  assert.equal((await c.cmd(`EHLO ${helo}`))?.code, 250);
  return c;
}

/** A logger whose lines are kept for assertions. */
function memoryLogger(): { logger: pino.Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

test('item 5: a backend that stops reading after 354 ends in 451 4.4.2 within the write timeout', async () => {
  const fb = await fakeBackend('pause-after-354');
  cleanups.push(() => fb.close());
  const gw = await gatewayFor(fb, {}, { write_timeout_ms: 1000, data_timeout_ms: 60_000 });
  const c = await client(gw.port);
  assert.equal((await c.cmd('MAIL FROM:<s@client.example.net>'))?.code, 250);
  assert.equal((await c.cmd('RCPT TO:<alice@example.test>'))?.code, 250);
  assert.equal((await c.cmd('DATA'))?.code, 354);
  // 24 MB: more than the loopback socket buffers on both sides can hold.
  const line = 'x'.repeat(998) + '\r\n';
  c.write('Subject: big\r\nFrom: s@client.example.net\r\n\r\n');
  const block = line.repeat(1024);
  for (let i = 0; i < 24; i++) c.write(block);
  c.write('.\r\n');
  const started = Date.now();
  const r = await c.read(30_000);
  assert.equal(r?.code, 451, r?.text);
  assert.match(r?.text ?? '', /^4\.4\.2 /);
  assert.ok(Date.now() - started < 20_000);
});

test('item 8: RSET is passed to the backend before the client gets 250', async () => {
  const fb = await fakeBackend('ok');
  cleanups.push(() => fb.close());
  const gw = await gatewayFor(fb);
  const c = await client(gw.port);
  assert.equal((await c.cmd('MAIL FROM:<s@client.example.net>'))?.code, 250);
  assert.equal((await c.cmd('RCPT TO:<alice@example.test>'))?.code, 250);
  assert.equal((await c.cmd('RSET'))?.code, 250);
  const verbs = fb.commands.map((l) => l.split(' ')[0]);
  assert.equal(verbs.at(-1), 'RSET', fb.commands.join(' | '));
  // The next transaction still works.
  assert.equal((await c.cmd('MAIL FROM:<s@client.example.net>'))?.code, 250);
});

test('item 8: after the backend drops at RCPT, the next RCPT gets a backend 4xx, not "internal error"', async () => {
  const fb = await fakeBackend('drop-at-rcpt');
  cleanups.push(() => fb.close());
  const { logger, lines } = memoryLogger();
  const gw = await gatewayFor(fb, {}, {}, logger);
  const c = await client(gw.port);
  assert.equal((await c.cmd('MAIL FROM:<s@client.example.net>'))?.code, 250);
  const r1 = await c.cmd('RCPT TO:<alice@example.test>');
  assert.equal(r1?.code, 451, r1?.text);
  const r2 = await c.cmd('RCPT TO:<bob@example.test>');
  assert.equal(r2?.code, 451, r2?.text);
  assert.match(r2?.text ?? '', /^4\.4\.1 Backend mail server unavailable/);
  assert.ok(!lines.some((l) => l.includes('TypeError')), lines.join(''));
});

test('item 12: no answer to the final dot: 451, and the log says the backend may have the message', async () => {
  const fb = await fakeBackend('silent-after-dot');
  cleanups.push(() => fb.close());
  const { logger, lines } = memoryLogger();
  const gw = await gatewayFor(fb, {}, { data_timeout_ms: 800 }, logger);
  const c = await client(gw.port);
  assert.equal((await c.cmd('MAIL FROM:<s@client.example.net>'))?.code, 250);
  assert.equal((await c.cmd('RCPT TO:<alice@example.test>'))?.code, 250);
  assert.equal((await c.cmd('DATA'))?.code, 354);
  c.write('Subject: t\r\n\r\nbody\r\n.\r\n');
  const r = await c.read(10_000);
  assert.equal(r?.code, 451, r?.text);
  assert.ok(
    lines.some((l) => l.includes('may have queued the message')),
    lines.join(''),
  );
});

test('item 7: XCLIENT carries the client rDNS name and a UTF-8 HELO xtext-encoded', async () => {
  const dns = await startDnsServer({
    zone: { '1.0.0.127.in-addr.arpa': { PTR: ['mail.client.example'] }, 'mail.client.example': { A: ['127.0.0.1'] } },
  });
  cleanups.push(() => dns.close());
  const fb = await fakeBackend('ok', ['PIPELINING', 'XCLIENT NAME ADDR PORT PROTO HELO']);
  cleanups.push(() => fb.close());
  const gw = await gatewayFor(fb, { dns: { servers: [dns.address], timeout_ms: 2000 } });
  const c = await client(gw.port, 'bücher.example');
  assert.equal((await c.cmd('MAIL FROM:<s@client.example.net>'))?.code, 250);
  const x = fb.commands.find((l) => l.startsWith('XCLIENT '));
  assert.ok(x, fb.commands.join(' | '));
  assert.match(x, / NAME=mail\.client\.example( |$)/);
  assert.match(x, / HELO=b\+C3\+BCcher\.example( |$)/);
});

test('item 11: concurrent /readyz requests share one backend probe', async () => {
  const fb = await fakeBackend('ok');
  cleanups.push(() => fb.close());
  const gw = await gatewayFor(fb, { admin: { host: '127.0.0.1', port: 0 } });
  const before = fb.connections;
  const get = () =>
    new Promise<number>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: gw.adminPort, path: '/readyz' }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        })
        .on('error', reject);
    });
  const codes = await Promise.all(Array.from({ length: 10 }, get));
  assert.deepEqual(codes, Array(10).fill(200));
  assert.equal(fb.connections - before, 1, 'each /readyz opened its own backend session');
});
