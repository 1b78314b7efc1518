// A backend link released while a command is still in flight (the client left while its MAIL or
// XCLIENT was out) must close that session, never pool it: pooled, it would be handed to the next
// client while the old link still writes to it. Found by test/e2e/hostile.test.ts ("client
// vanishes while its MAIL is being relayed") once the SMTP front got faster.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { SmtpBackend } from '../../src/delivery/backend.ts';
import { testConfig } from '../helpers/gateway.ts';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * A backend that answers everything at once, except MAIL (after `mailDelayMs`), without XCLIENT
 * (sessions are poolable); with `pipelining` it offers PIPELINING (MAIL then leaves with the first RCPT).
 */
async function slowMailServer(mailDelayMs: number, pipelining = false): Promise<{ port: number; open: () => number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.write('220 backend.test ESMTP\r\n');
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString('latin1');
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        const verb = line.split(' ')[0]?.toUpperCase();
        if (verb === 'EHLO') s.write(pipelining ? '250-backend.test\r\n250 PIPELINING\r\n' : '250 backend.test\r\n');
        else if (verb === 'MAIL') setTimeout(() => s.writable && s.write('250 2.1.0 Ok\r\n'), mailDelayMs);
        else if (verb === 'QUIT') s.end('221 2.0.0 Bye\r\n');
        else s.write('250 2.0.0 Ok\r\n');
      }
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return {
    port: (srv.address() as net.AddressInfo).port,
    open: () => [...sockets].filter((s) => !s.destroyed).length,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        srv.close(() => r());
      }),
  };
}

test('a link released while its MAIL is in flight closes the backend session instead of pooling it', async () => {
  const srv = await slowMailServer(300);
  const cfg = testConfig({ backend: { host: '127.0.0.1', port: srv.port } });
  const backend = new SmtpBackend(cfg.backend as never, 'mx.example.test');
  try {
    const link = backend.link({ ip: '192.0.2.1', port: 1, helo: 'c.example', esmtp: true });
    const mail = link.mail('a@c.example', {}).catch((e: Error) => e);
    await sleep(100); // the session is up, MAIL is out, its reply 200 ms away
    assert.equal(srv.open(), 1);
    link.release();
    await mail;
    await sleep(100);
    assert.equal(srv.open(), 0, 'the busy session was closed, not kept in the pool');
    // The next client gets a fresh session, which works.
    const next = backend.link({ ip: '192.0.2.2', port: 2, helo: 'd.example', esmtp: true });
    assert.equal((await next.mail('b@d.example', {})).code, 250);
    next.release();
  } finally {
    backend.close();
    await srv.close();
  }
});

test('a link released while its pipelined MAIL+RCPT is in flight closes the backend session instead of pooling it', async () => {
  const srv = await slowMailServer(300, true);
  const cfg = testConfig({ backend: { host: '127.0.0.1', port: srv.port } });
  const backend = new SmtpBackend(cfg.backend as never, 'mx.example.test');
  try {
    const link = backend.link({ ip: '192.0.2.1', port: 1, helo: 'c.example', esmtp: true });
    // MAIL is held until the first RCPT (PIPELINING): the session is up, nothing in flight yet.
    assert.equal((await link.mail('a@c.example', {})).code, 250);
    const rcpt = link.rcpt('r@c.example').catch((e: Error) => e);
    await sleep(100); // MAIL+RCPT are out, the MAIL reply 200 ms away
    assert.equal(srv.open(), 1);
    link.release();
    await rcpt;
    await sleep(100);
    assert.equal(srv.open(), 0, 'the busy session was closed, not kept in the pool');
  } finally {
    backend.close();
    await srv.close();
  }
});
