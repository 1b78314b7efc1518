// End to end through real sockets: SMTP client → mailgate → real Postfix → Maildir. Covers the
// before-queue relay contract (issue 2): the backend's answers reach the client, no open relay,
// 4xx when the backend is down, limits, pipelining, STARTTLS, PROXY protocol, SIGTERM.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { RawSmtp, sendMessage } from '../helpers/smtp-client.ts';
import { startGateway, testConfig, requireBackend, closedPort, loopbackDns, type TestGateway, BACKEND_PORT } from '../helpers/gateway.ts';
import { token, waitDelivered, settle } from '../helpers/maildir.ts';
import { START_TIMEOUT_MS } from '../helpers/gateway-child.ts';

function msg(tok: string, extraHeaders = '', body = 'Hello from the tests.\r\n'): string {
  return `From: Sender <sender@client.example.net>\r\nTo: alice@example.test\r\nSubject: ${tok}\r\nMessage-ID: <${tok}@client.example.net>\r\n${extraHeaders}\r\n${body}`;
}

let gw: TestGateway;

before(async () => {
  await requireBackend();
  gw = await startGateway();
});
after(async () => {
  await gw?.stop(1000);
});

describe('relaying to the real backend', () => {
  test('plain delivery: backend reply relayed, Received added, body byte for byte', async () => {
    const tok = token();
    const body = `Line one\r\n.leading dot line\r\n..two dots\r\nUTF-8: h\u00e9llo\r\n`;
    const r = await sendMessage(gw.port, { from: 'sender@client.example.net', to: ['alice@example.test'], data: msg(tok, '', body) });
    assert.equal(r.mail?.code, 250);
    assert.equal(r.rcpts[0]?.code, 250);
    assert.equal(r.end?.code, 250);
    assert.match(r.end?.text ?? '', /^2\.0\.0 Ok: queued as [0-9A-F]+/, "the 250 is Postfix's own");
    const got = await waitDelivered(tok);
    assert.equal(got.length, 1);
    const content = got[0]!.content.toString('latin1');
    assert.match(content, /Received: from client\.example\.net \(\[127\.0\.0\.1\]\)\s+by mx\.example\.test \(mailgate\)\s+with ESMTP id/);
    // Postfix stores LF line endings; the body must be exactly what the client sent, with the
    // transparency dot of "..two dots" removed (RFC 5321 4.5.2) and re-added on our backend leg.
    const deliveredBody = content.slice(content.indexOf('\n\n') + 2);
    assert.equal(deliveredBody, Buffer.from(body.replace(/\r\n/g, '\n').replace('\n..', '\n.'), 'utf8').toString('latin1'));
  });

  test('nodemailer client: delivered', async () => {
    const tok = token();
    const t = nodemailer.createTransport({ host: '127.0.0.1', port: gw.port, secure: false, ignoreTLS: true });
    const info = await t.sendMail({
      from: 'a@client.example.net',
      to: 'bob@example.test',
      subject: tok,
      text: 'hi',
      attachments: [{ filename: 'a.txt', content: 'x'.repeat(2000) }],
    });
    assert.match(info.response, /^250 2\.0\.0 Ok: queued/);
    assert.equal((await waitDelivered(tok, 1, 15_000, 'bob')).length, 1);
  });

  test('multi-recipient with one unknown user: backend 550 5.1.1 relayed at RCPT, others delivered once', async () => {
    const tok = token();
    const r = await sendMessage(gw.port, {
      from: 's@client.example.net',
      to: ['alice@example.test', 'nobody@example.test', 'bob@example.test'],
      data: msg(tok),
    });
    assert.equal(r.rcpts[0]?.code, 250);
    assert.equal(r.rcpts[1]?.code, 550);
    assert.match(r.rcpts[1]?.text ?? '', /^5\.1\.1 <nobody@example\.test>: Recipient address rejected: User unknown/);
    assert.equal(r.rcpts[2]?.code, 250);
    assert.equal(r.end?.code, 250);
    const got = await waitDelivered(tok, 2);
    assert.deepEqual(got.map((g) => g.user).sort(), ['alice', 'bob']);
    assert.equal((await settle(tok, 500)).length, 2, 'delivered exactly once per recipient');
  });

  test('relay attempts are refused with 550 5.7.1 (tricks included), nothing reaches the backend', async () => {
    // More refusals than limits.max_errors allows on one connection by default.
    const g = await startGateway(testConfig({ limits: { max_errors: 50 } }));
    after(() => g.stop(500));
    const c = await RawSmtp.connect(g.port);
    await c.read();
    await c.cmd('EHLO client.example.net');
    assert.equal((await c.cmd('MAIL FROM:<s@client.example.net>'))?.code, 250);
    const attempts = [
      'victim@elsewhere.test',
      'alice%elsewhere.test@example.test',
      'elsewhere.test!alice@example.test',
      '@example.test,@relay.test:victim@elsewhere.test',
      'victim@EXAMPLE.TEST.elsewhere.test',
      'victim@example.test.evil.test',
      'victim@[192.0.2.1]',
      'victim@xn--exmple-cua.test',
    ];
    for (const a of attempts) {
      const r = await c.cmd(`RCPT TO:<${a}>`);
      assert.equal(r?.code, 550, `${a}: ${r?.code} ${r?.text}`);
      assert.match(r?.text ?? '', /^5\.7\.1 Relaying denied/, a);
    }
    // Quoted local part hiding a second domain: refused (syntax or relay), never relayed.
    const q = await c.cmd('RCPT TO:<"victim@elsewhere.test"@example.test>');
    assert.ok(q && q.code >= 500, `quoted: ${q?.code} ${q?.text}`);
    // A trailing dot is not valid domain syntax (RFC 5321 4.1.2): refused as such, ours or not.
    assert.equal((await c.cmd('RCPT TO:<victim@elsewhere.test.>'))?.code, 501);
    assert.equal((await c.cmd('RCPT TO:<alice@example.test.>'))?.code, 501);
    // Our domain in another case is ours.
    assert.equal((await c.cmd('RCPT TO:<Alice@EXAMPLE.test>'))?.code, 250);
    c.close();
    // MAIL_CONFIG (exported by npm test) points postqueue at the private Postfix, not /etc/postfix.
    const queue = execFileSync('postqueue', ['-j'], { env: process.env }).toString();
    assert.ok(!/elsewhere\.test|relay\.test|evil\.test/.test(queue), `backend queue has relayed mail: ${queue}`);
  });

  test('IDN: a U-label recipient domain matches its configured A-label (and vice versa)', async () => {
    const idn = await startGateway(
      testConfig({ domains: ['example.test', 'xn--bcher-kva.test'], backend: { maildir: mkdtempSync(join(tmpdir(), 'mg-idn-')) } }),
    );
    try {
      const c = await RawSmtp.connect(idn.port);
      await c.read();
      await c.cmd('EHLO client.example.net');
      await c.cmd('MAIL FROM:<s@client.example.net> SMTPUTF8');
      assert.equal((await c.cmd('RCPT TO:<a@b\u00fccher.test>'))?.code, 250);
      assert.equal((await c.cmd('RCPT TO:<a@XN--BCHER-KVA.test>'))?.code, 250);
      assert.equal((await c.cmd('RCPT TO:<a@bucher.test>'))?.code, 550);
      c.close();
    } finally {
      await idn.stop(500);
    }
  });

  test("backend rejects at end of DATA: client gets the backend's 5xx", async () => {
    const tok = token();
    const r = await sendMessage(gw.port, { from: 's@client.example.net', to: ['alice@example.test'], data: msg(tok, 'X-Backend-Reject: yes\r\n') });
    assert.equal(r.end?.code, 550);
    assert.match(r.end?.text ?? '', /^5\.7\.1 rejected by backend header check/);
    assert.equal((await settle(tok, 800)).length, 0);
  });

  test('ESMTP parameters passed through: BODY=8BITMIME, SMTPUTF8, SIZE', async () => {
    const tok = token();
    const c = await RawSmtp.connect(gw.port);
    await c.read();
    const ehlo = await c.cmd('EHLO client.example.net');
    for (const kw of ['PIPELINING', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES', 'SIZE 52428800']) assert.ok(ehlo?.lines.includes(kw), kw);
    assert.equal((await c.cmd('MAIL FROM:<s\u00e9nder@client.example.net> BODY=8BITMIME SMTPUTF8 SIZE=500'))?.code, 250);
    assert.equal((await c.cmd('RCPT TO:<alice@example.test>'))?.code, 250);
    assert.equal((await c.cmd('DATA'))?.code, 354);
    c.write(Buffer.from(msg(tok, '', 'Gr\u00fc\u00dfe, 8-bit body\r\n') + '.\r\n', 'utf8'));
    assert.equal((await c.read())?.code, 250);
    c.close();
    const got = await waitDelivered(tok);
    assert.equal(got.length, 1);
    assert.ok(got[0]!.content.includes(Buffer.from('Gr\u00fc\u00dfe', 'utf8')));
  });

  test('pipelined transactions on one connection (RFC 2920): one write, replies in order', async () => {
    const t1 = token();
    const t2 = token();
    const c = await RawSmtp.connect(gw.port);
    await c.read();
    await c.cmd('EHLO client.example.net');
    c.write(`MAIL FROM:<a@client.example.net>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<nobody@example.test>\r\nDATA\r\n`);
    assert.equal((await c.read())?.code, 250);
    assert.equal((await c.read())?.code, 250);
    assert.equal((await c.read())?.code, 550);
    assert.equal((await c.read())?.code, 354);
    c.write(`${msg(t1)}.\r\nRSET\r\nMAIL FROM:<b@client.example.net>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n`);
    assert.equal((await c.read())?.code, 250);
    assert.equal((await c.read())?.code, 250); // RSET
    assert.equal((await c.read())?.code, 250);
    assert.equal((await c.read())?.code, 250);
    assert.equal((await c.read())?.code, 354);
    c.write(`${msg(t2)}.\r\nQUIT\r\n`);
    assert.equal((await c.read())?.code, 250);
    assert.equal((await c.read())?.code, 221);
    c.close();
    assert.equal((await waitDelivered(t1)).length, 1);
    assert.equal((await waitDelivered(t2, 1, 15_000, 'bob')).length, 1);
  });

  test('RSET in the middle drops the transaction on the backend too', async () => {
    const tok = token();
    const c = await RawSmtp.connect(gw.port);
    await c.read();
    await c.cmd('EHLO client.example.net');
    await c.cmd('MAIL FROM:<a@client.example.net>');
    await c.cmd('RCPT TO:<alice@example.test>');
    assert.equal((await c.cmd('RSET'))?.code, 250);
    await c.cmd('MAIL FROM:<b@client.example.net>');
    await c.cmd('RCPT TO:<bob@example.test>');
    await c.cmd('DATA');
    c.write(`${msg(tok)}.\r\n`);
    assert.equal((await c.read())?.code, 250);
    c.close();
    const got = await waitDelivered(tok);
    assert.deepEqual(
      got.map((g) => g.user),
      ['bob'],
      'only the recipient of the second transaction',
    );
  });
});

describe('quarantine', () => {
  test('quarantine action: 250 with the queue id only once .eml and .json are on disk; nothing relayed; CLI lists and shows it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mg-quar-'));
    const rules = join(dir, 'rules');
    mkdirSync(rules);
    writeFileSync(
      join(rules, '10-test.yaml'),
      'rules:\n  - name: QUARANTINE_ME\n    description: test rule\n    when: { message.subject: { glob: "*QUARANTINE-ME*" } }\n    action: quarantine\n',
    );
    const qdir = join(dir, 'quarantine');
    const g = await startGateway(testConfig({ rules, quarantine: { dir: qdir } }));
    try {
      const tok = token();
      const r = await sendMessage(g.port, { from: 's@client.example.net', to: ['alice@example.test'], data: msg(`${tok} QUARANTINE-ME`) });
      assert.equal(r.end?.code, 250);
      const id = /^2\.0\.0 Message accepted \((\w+)\)$/.exec(r.end?.text ?? '')?.[1];
      assert.ok(id, r.end?.text);
      // On disk when the client got 250 (written and fsync'd before the reply).
      const day = new Date().toISOString().slice(0, 10);
      const eml = readFileSync(join(qdir, day, `${id}.eml`), 'latin1');
      assert.match(eml, /by mx\.example\.test \(mailgate\)/);
      assert.ok(eml.includes(tok));
      const meta = JSON.parse(readFileSync(join(qdir, day, `${id}.json`), 'utf8')) as { rules: string[]; rcpts: string[] };
      assert.deepEqual(meta.rules, ['QUARANTINE_ME']);
      assert.deepEqual(meta.rcpts, ['alice@example.test']);
      assert.equal((await settle(tok, 800)).length, 0, 'not relayed');
      const cfg = join(dir, 'mailgate.yaml');
      writeFileSync(cfg, `hostname: mx.example.test\ndomains: [example.test]\nbackend: { maildir: ${dir}/md }\nquarantine: { dir: ${qdir} }\n`);
      const list = execFileSync(process.execPath, ['src/cli/main.ts', 'quarantine', 'list', '--config', cfg]).toString();
      assert.match(list, new RegExp(`^${id} +\\S+ \\S+ +<s@client\\.example\\.net> +alice@example\\.test `, 'm'));
      const shown = execFileSync(process.execPath, ['src/cli/main.ts', 'quarantine', 'show', id, '--raw', '--config', cfg]).toString('latin1');
      assert.equal(shown, eml);
    } finally {
      await g.stop(500);
    }
  });
});

describe('backend failures', () => {
  test('backend down: 4xx at MAIL, never a silent accept', async () => {
    const down = await startGateway(testConfig({ backend: { host: '127.0.0.1', port: await closedPort(), connect_timeout_ms: 1000 } }));
    try {
      const r = await sendMessage(down.port, { from: 's@client.example.net', to: ['alice@example.test'], data: msg(token()) });
      assert.equal(r.mail?.code, 451);
      assert.match(r.mail?.text ?? '', /^4\.4\.1 Backend mail server unavailable/);
      assert.notEqual(r.end?.code, 250);
    } finally {
      await down.stop(500);
    }
  });

  test('backend that stops answering: 4xx within the configured timeout', async () => {
    const net = await import('node:net');
    const silent = net.createServer((s) => {
      s.write('220 silent ESMTP\r\n');
      s.on('data', () => undefined); // never answers EHLO
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const port = (silent.address() as { port: number }).port;
    const g = await startGateway(testConfig({ backend: { host: '127.0.0.1', port, command_timeout_ms: 700, connect_timeout_ms: 700 } }));
    try {
      const t0 = Date.now();
      const r = await sendMessage(g.port, { from: 's@client.example.net', to: ['alice@example.test'], data: msg(token()) });
      assert.ok(r.mail && r.mail.code >= 400 && r.mail.code < 500, `${r.mail?.code} ${r.mail?.text}`);
      assert.ok(Date.now() - t0 < 5000);
    } finally {
      await g.stop(500);
      silent.close();
    }
  });
});

describe('limits', () => {
  test('message over max_message_bytes: 552, nothing delivered', async () => {
    const g = await startGateway(testConfig({ limits: { max_message_bytes: 10_000 } }));
    try {
      const tok = token();
      const r = await sendMessage(g.port, {
        from: 's@client.example.net',
        to: ['alice@example.test'],
        data: msg(tok, '', 'x'.repeat(70) + '\r\n'.repeat(1) + ('y'.repeat(78) + '\r\n').repeat(200)),
      });
      assert.equal(r.end?.code, 552);
      assert.match(r.end?.text ?? '', /^5\.3\.4/);
      assert.equal((await settle(tok, 800)).length, 0);
      // SIZE declared over the limit is refused at MAIL.
      const c = await RawSmtp.connect(g.port);
      await c.read();
      await c.cmd('EHLO client.example.net');
      assert.equal((await c.cmd('MAIL FROM:<s@client.example.net> SIZE=20000'))?.code, 552);
      c.close();
    } finally {
      await g.stop(500);
    }
  });

  test('max_recipients: 452 4.5.3 past the limit', async () => {
    const g = await startGateway(testConfig({ limits: { max_recipients: 2 } }));
    try {
      const c = await RawSmtp.connect(g.port);
      await c.read();
      await c.cmd('EHLO client.example.net');
      await c.cmd('MAIL FROM:<s@client.example.net>');
      assert.equal((await c.cmd('RCPT TO:<alice@example.test>'))?.code, 250);
      assert.equal((await c.cmd('RCPT TO:<bob@example.test>'))?.code, 250);
      const r = await c.cmd('RCPT TO:<carol@example.test>');
      assert.equal(r?.code, 452);
      assert.match(r?.text ?? '', /^4\.5\.3/);
      c.close();
    } finally {
      await g.stop(500);
    }
  });

  test('max_connections_per_ip and max_connections: 421 before the banner', async () => {
    const g = await startGateway(testConfig({ limits: { max_connections_per_ip: 2, max_connections: 3 } }));
    try {
      const a = await RawSmtp.connect(g.port);
      const b = await RawSmtp.connect(g.port);
      assert.equal((await a.read())?.code, 220);
      assert.equal((await b.read())?.code, 220);
      const c = await RawSmtp.connect(g.port);
      const r = await c.read();
      assert.equal(r?.code, 421);
      assert.match(r?.text ?? '', /^4\.7\.0 Too many connections from 127\.0\.0\.1/);
      assert.ok(await c.waitClosed());
      a.close();
      b.close();
    } finally {
      await g.stop(500);
    }
  });

  test('max_errors: a dictionary attack on unknown users gets 421 and is disconnected', async () => {
    const g = await startGateway(testConfig({ limits: { max_errors: 3 } }));
    try {
      const c = await RawSmtp.connect(g.port);
      await c.read();
      await c.cmd('EHLO client.example.net');
      await c.cmd('MAIL FROM:<s@client.example.net>');
      for (const u of ['u1', 'u2', 'u3']) assert.equal((await c.cmd(`RCPT TO:<${u}@example.test>`))?.code, 550);
      const r = await c.cmd('RCPT TO:<alice@example.test>');
      assert.equal(r?.code, 421);
      assert.match(r?.text ?? '', /^4\.7\.0 Too many errors/);
      assert.ok(await c.waitClosed());
    } finally {
      await g.stop(500);
    }
  });

  test('idle timeout: 421 and the connection is closed', async () => {
    const g = await startGateway(testConfig({ limits: { idle_timeout_s: 0.5 } }));
    try {
      const c = await RawSmtp.connect(g.port);
      await c.read();
      const r = await c.read(5000);
      assert.equal(r?.code, 421);
      assert.ok(await c.waitClosed());
    } finally {
      await g.stop(500);
    }
  });

  test('header block over max_header_bytes and lines over max_line_bytes: 552', async () => {
    const g = await startGateway(testConfig({ limits: { max_header_bytes: 2000, max_line_bytes: 1000 } }));
    try {
      const big = await sendMessage(g.port, {
        from: 's@client.example.net',
        to: ['alice@example.test'],
        data: msg(token(), `X-Big: ${'a'.repeat(900)}\r\nX-Big2: ${'b'.repeat(900)}\r\nX-Big3: ${'c'.repeat(900)}\r\n`),
      });
      assert.equal(big.end?.code, 552);
      const long = await sendMessage(g.port, { from: 's@client.example.net', to: ['alice@example.test'], data: msg(token(), '', 'z'.repeat(5000) + '\r\n') });
      assert.equal(long.end?.code, 552);
    } finally {
      await g.stop(500);
    }
  });

  test('large message is streamed through a temp file and delivered intact', async () => {
    const tok = token();
    const line = 'The quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnopqrstuvwxyz\r\n';
    const body = line.repeat(40_000); // ~3.3 MB, over the 1 MiB memory spool threshold
    const r = await sendMessage(gw.port, { from: 's@client.example.net', to: ['alice@example.test'], data: msg(tok, '', body) });
    assert.equal(r.end?.code, 250);
    const got = await waitDelivered(tok);
    assert.equal(got.length, 1);
    const c = got[0]!.content.toString('latin1');
    assert.equal(c.slice(c.indexOf('\n\n') + 2), body.replace(/\r\n/g, '\n'));
  });
});

describe('TLS and PROXY protocol', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'mg-tls-'));
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
        '-days',
        '2',
        '-subj',
        '/CN=mx.example.test',
      ],
      { stdio: 'ignore' },
    );
  });

  test('STARTTLS: advertised, negotiated, Received says ESMTPS', async () => {
    const g = await startGateway(testConfig({ listen: [{ host: '127.0.0.1', port: 0, tls: { key: join(dir, 'key.pem'), cert: join(dir, 'cert.pem') } }] }));
    try {
      const tok = token();
      const c = await RawSmtp.connect(g.port);
      await c.read();
      const ehlo = await c.cmd('EHLO client.example.net');
      assert.ok(ehlo?.lines.includes('STARTTLS'));
      await c.starttls();
      const ehlo2 = await c.cmd('EHLO client.example.net');
      assert.ok(!ehlo2?.lines.includes('STARTTLS'));
      await c.cmd('MAIL FROM:<s@client.example.net>');
      await c.cmd('RCPT TO:<alice@example.test>');
      await c.cmd('DATA');
      c.write(`${msg(tok)}.\r\n`);
      assert.equal((await c.read())?.code, 250);
      c.close();
      const got = await waitDelivered(tok);
      assert.match(got[0]!.content.toString(), /with ESMTPS \(version=TLSv1\.3/);
      // SIGHUP-style reload of the certificate does not disturb the listener.
      await g.reload();
      const c2 = await RawSmtp.connect(g.port);
      await c2.read();
      await c2.cmd('EHLO client.example.net');
      await c2.starttls();
      assert.equal((await c2.cmd('NOOP'))?.code, 250);
      c2.close();
    } finally {
      await g.stop(500);
    }
  });

  test('PROXY v1 and v2: the real client address is used and passed to Postfix by XCLIENT', async () => {
    const g = await startGateway(testConfig({ listen: [{ host: '127.0.0.1', port: 0, proxy_protocol: ['127.0.0.0/8'] }] }));
    try {
      const v1 = Buffer.from('PROXY TCP4 192.0.2.10 127.0.0.1 40000 25\r\n');
      const v2addr = Buffer.from([198, 51, 100, 7, 127, 0, 0, 1, 0x9c, 0x40, 0, 25]);
      const v2 = Buffer.concat([Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 12]), v2addr]);
      for (const [preface, ip] of [
        [v1, '192.0.2.10'],
        [v2, '198.51.100.7'],
      ] as const) {
        const tok = token();
        const c = await RawSmtp.connect(g.port, '127.0.0.1', preface);
        assert.equal((await c.read())?.code, 220);
        await c.cmd('EHLO proxied-client.example.net');
        assert.equal((await c.cmd('MAIL FROM:<s@client.example.net>'))?.code, 250);
        assert.equal((await c.cmd('RCPT TO:<alice@example.test>'))?.code, 250);
        await c.cmd('DATA');
        c.write(`${msg(tok)}.\r\n`);
        assert.equal((await c.read())?.code, 250);
        c.close();
        const got = await waitDelivered(tok);
        const text = got[0]!.content.toString();
        // Our Received names the real client; Postfix's (via XCLIENT) too.
        assert.match(text, new RegExp(`from proxied-client\\.example\\.net \\(\\[${ip.replace(/\./g, '\\.')}\\]\\)\\s+by mx\\.example\\.test`));
        assert.match(
          text,
          new RegExp(`Received: from proxied-client\\.example\\.net \\(unknown \\[${ip.replace(/\./g, '\\.')}\\]\\)\\s+by backend\\.example\\.test`),
        );
      }
      // Garbage instead of a PROXY header: connection dropped without a banner.
      const bad = await RawSmtp.connect(g.port, '127.0.0.1', Buffer.from('EHLO x\r\n'));
      assert.ok(await bad.waitClosed());
    } finally {
      await g.stop(500);
    }
  });
});

describe('lifecycle', () => {
  test('SIGTERM mid-transaction: the message in flight is delivered, the process exits 0', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mg-sigterm-'));
    const port = await closedPort();
    const cfg = join(dir, 'mailgate.yaml');
    mkdirSync(join(dir, 'rules'));
    writeFileSync(
      cfg,
      `hostname: mx.example.test\nlisten: [{ host: 127.0.0.1, port: ${port} }]\ndomains: [example.test]\nbackend: { host: 127.0.0.1, port: ${BACKEND_PORT} }\nadmin: false\nlog: { level: info }\nrules: ${dir}/rules\ndns: { servers: ["${await loopbackDns()}"] }\nsmtp: { shutdown_grace_s: 10 }\n`,
    );
    const child = spawn(process.execPath, ['src/cli/main.ts', 'serve', '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    try {
      for (const end = Date.now() + START_TIMEOUT_MS; Date.now() < end && !out.includes('mailgate listening') && child.exitCode === null; ) {
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(out.includes('mailgate listening'), out);
      const tok = token();
      const c = await RawSmtp.connect(port);
      await c.read();
      await c.cmd('EHLO client.example.net');
      await c.cmd('MAIL FROM:<s@client.example.net>');
      await c.cmd('RCPT TO:<alice@example.test>');
      assert.equal((await c.cmd('DATA'))?.code, 354);
      c.write(msg(tok).slice(0, 40));
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      child.kill('SIGTERM');
      await new Promise((r) => setTimeout(r, 300));
      // New connections are refused while draining.
      await assert.rejects(
        RawSmtp.connect(port)
          .then((x) => x.read(1000))
          .then((x) => {
            if (x?.code !== 220) throw new Error('refused');
          }),
      );
      c.write(`${msg(tok).slice(40)}.\r\n`);
      const end = await c.read();
      assert.equal(end?.code, 250, `${end?.code} ${end?.text}`);
      c.close();
      assert.equal(await exited, 0, out);
      assert.equal((await waitDelivered(tok)).length, 1);
    } finally {
      child.kill('SIGKILL');
    }
  });

  test('SIGHUP reloads domains live; a broken config on SIGHUP keeps the running one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mg-sighup-'));
    mkdirSync(join(dir, 'rules'));
    const port = await closedPort();
    const cfg = join(dir, 'mailgate.yaml');
    const dns = await loopbackDns();
    const write = (domains: string, extra = '') =>
      writeFileSync(
        cfg,
        `hostname: mx.example.test\nlisten: [{ host: 127.0.0.1, port: ${port} }]\ndomains: [${domains}]\nbackend: { maildir: ${dir}/maildir }\nadmin: false\nrules: ${dir}/rules\ndns: { servers: ["${dns}"] }\n${extra}`,
      );
    write('example.test');
    const child = spawn(process.execPath, ['src/cli/main.ts', 'serve', '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const rcpt = async (addr: string) => {
      const c = await RawSmtp.connect(port);
      await c.read();
      await c.cmd('EHLO client.example.net');
      await c.cmd('MAIL FROM:<s@client.example.net>');
      const r = await c.cmd(`RCPT TO:<${addr}>`);
      c.close();
      return r?.code;
    };
    const waitLog = async (needle: string, count: number) => {
      // Long enough for a slow start on a loaded host; it ends as soon as the line is there.
      for (const end = Date.now() + START_TIMEOUT_MS; Date.now() < end && out.split(needle).length - 1 < count && child.exitCode === null; ) {
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    try {
      await waitLog('mailgate listening', 1);
      assert.ok(out.includes('mailgate listening'), out);
      assert.equal(await rcpt('a@second.test'), 550);
      write('example.test, second.test');
      child.kill('SIGHUP');
      await waitLog('configuration reloaded', 1);
      assert.equal(await rcpt('a@second.test'), 250);
      write('example.test', 'limits: { max_recipients: many }\n');
      child.kill('SIGHUP');
      await waitLog('config reload refused', 1);
      assert.match(out, /config reload refused/);
      assert.equal(await rcpt('a@second.test'), 250, 'the running config stays in force');
    } finally {
      child.kill('SIGKILL');
    }
  });

  test('checks.disabled: a disabled check sets no facts (no SPF lookup); an unknown name is an error', async () => {
    const { startDnsServer } = await import('../helpers/dns-server.ts');
    const dns = await startDnsServer({ zone: {} });
    try {
      const g = await startGateway(testConfig({ dns: { servers: [dns.address] }, checks: { disabled: ['spf', 'dkim-arc-dmarc', 'fcrdns'] } }));
      const r = await sendMessage(g.port, { from: 's@client.example.net', to: ['alice@example.test'], data: msg(token()) });
      assert.equal(r.end?.code, 250);
      await g.stop(500);
      assert.equal(dns.queries.length, 0, 'no DNS lookups with the DNS checks disabled');
      const g2 = await startGateway(testConfig({ dns: { servers: [dns.address] } }));
      await sendMessage(g2.port, { from: 's@client.example.net', to: ['alice@example.test'], data: msg(token()) });
      await g2.stop(500);
      assert.ok(
        dns.queries.some((q) => q.name.includes('client.example.net')),
        'SPF looked up when enabled',
      );
      await assert.rejects(startGateway(testConfig({ checks: { disabled: ['spff'] } })), /checks\.disabled: unknown check "spff"/);
    } finally {
      await dns.close();
    }
  });

  test('config errors name the file, line and key; unknown keys are errors', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mg-cfg-'));
    const f = join(dir, 'bad.yaml');
    writeFileSync(
      f,
      `hostname: mx.example.test\ndomains: [example.test]\nbackend: { host: 127.0.0.1, port: ${BACKEND_PORT} }\nlimits:\n  max_recipients: lots\n  max_recipents: 5\n`,
    );
    let err = '';
    try {
      execFileSync(process.execPath, ['src/cli/main.ts', 'config', 'check', f], { stdio: 'pipe' });
    } catch (e) {
      err = String((e as { stderr: Buffer }).stderr);
    }
    assert.match(err, new RegExp(`${f.replace(/[.]/g, '\\.')}:5: limits\\.max_recipients: .*number`));
    assert.match(err, /:6: limits\.max_recipents: unknown key "max_recipents"/);
    assert.ok(existsSync(f));
  });
});
