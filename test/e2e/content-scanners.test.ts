// The spam scanners, real where they run here: a private Rspamd (stock rules) scores a message,
// a private spamd (a tiny rule set) scores it, an HTTP hook answers facts; each one down or hung
// is its failure outcome within the timeout; and Rspamd's score drives a rule through SMTP.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { mkdtempSync, cpSync, writeFileSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createRspamdCheck } from '../../src/checks/content/rspamd-check.ts';
import { createSpamassassinCheck, parseSpamdAnswer } from '../../src/checks/content/spamd-check.ts';
import { createHttpHookCheck } from '../../src/checks/content/http-hook-check.ts';
import { createContentChecks } from '../../src/checks/content/content-checks.ts';
import { contentConfigSchema, hookSchema, rspamdSchema, spamassassinSchema } from '../../src/config/content-schema.ts';
import { emptyEdits, detachedConnection, type Check, type CheckOutput } from '../../src/pipeline/check.ts';
import { FactSet } from '../../src/pipeline/facts.ts';
import { startRspamd, startSpamd, type Scanner } from '../helpers/scanners.ts';
import { startDnsServer, type TestDnsServer } from '../helpers/dns-server.ts';
import { startPostfix, type PostfixInstance } from '../helpers/postfix.ts';
import { startGateway, testConfig } from '../helpers/gateway.ts';
import { sendMessage } from '../helpers/smtp-client.ts';
import { token } from '../helpers/maildir.ts';
import { messageView, mimeMessage } from '../helpers/content-fixtures.ts';

const prize = () =>
  Buffer.from(
    'From: Lottery <win@prize.example>\r\nTo: <alice@example.test>\r\nSubject: YOU HAVE WON\r\nMIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n<html><body><p>YOU HAVE WON!!! CLAIM NOW <a href="http://bit.ly/x1">here</a></p></body></html>\r\n',
  );

let dns: TestDnsServer;
let rspamd: Scanner | undefined;
let spamd: Scanner | undefined;
let spamdError: string | undefined;

before(async () => {
  dns = await startDnsServer({ zone: {} });
  const t0 = Date.now();
  try {
    spamd = await startSpamd(
      [
        'required_score 5',
        'body TEST_YOU_HAVE_WON /YOU HAVE WON/',
        'score TEST_YOU_HAVE_WON 6.0',
        'header TEST_HAS_DATE exists:Date',
        'meta TEST_MISSING_DATE !TEST_HAS_DATE',
        'score TEST_MISSING_DATE 1.0',
        '',
      ].join('\n'),
    );
  } catch (err) {
    spamdError = (err as Error).message;
  }
  process.stderr.write(`# spamd start: ${Date.now() - t0} ms ${spamdError ?? ''}\n`);
  const t1 = Date.now();
  rspamd = await startRspamd(dns.address);
  process.stderr.write(`# rspamd start: ${Date.now() - t1} ms\n`);
});
after(async () => {
  await rspamd?.stop();
  await spamd?.stop();
  await dns?.close();
});

async function run(check: Check, msg: Buffer, facts: FactSet = new FactSet()): Promise<FactSet> {
  const out: CheckOutput = { facts: new FactSet(), edits: emptyEdits() };
  await check.run({ stage: 'data', connection: detachedConnection(), facts, message: messageView(msg), signal: new AbortController().signal }, out);
  return out.facts;
}

function envelope(): FactSet {
  const f = new FactSet();
  f.set('mail.from', 'win@prize.example');
  f.set('rcpt.addresses', ['alice@example.test']);
  f.set('client.ip', '192.0.2.9');
  f.set('helo.name', 'prize.example');
  return f;
}

test('rspamd: a real Rspamd scores the message (score, action, symbols)', async () => {
  const f = await run(createRspamdCheck(rspamdSchema.parse({ enabled: true, url: `http://127.0.0.1:${rspamd?.port}` })), prize(), envelope());
  const score = f.get('rspamd.score') as number;
  assert.equal(typeof score, 'number');
  assert.ok(score > 0, `score ${score}`);
  assert.ok(['no action', 'greylist', 'add header', 'rewrite subject', 'soft reject', 'reject'].includes(String(f.get('rspamd.action'))));
  const symbols = f.get('rspamd.symbols') as string[];
  assert.ok(symbols.includes('MISSING_DATE'), symbols.join(' '));
  assert.ok(symbols.includes('SUBJ_ALL_CAPS'), symbols.join(' '));
  assert.equal(f.get('rspamd.skipped'), false);
});

test('rspamd: too big is skipped, not sent', async () => {
  const f = await run(createRspamdCheck(rspamdSchema.parse({ enabled: true, url: `http://127.0.0.1:${rspamd?.port}`, max_bytes: 10 })), prize());
  assert.equal(f.get('rspamd.skipped'), true);
  assert.equal(f.get('rspamd.score'), undefined);
});

async function hungServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets: net.Socket[] = [];
  // allowHalfOpen: a hung server does not even close its side when the client half-closes.
  const s = net.createServer({ allowHalfOpen: true }, (c) => {
    sockets.push(c);
    c.on('data', () => undefined);
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return {
    port: (s.address() as net.AddressInfo).port,
    close: async () => {
      for (const c of sockets) c.destroy();
      await new Promise<void>((r) => s.close(() => r()));
    },
  };
}

test('rspamd / spamd / hook hung: the check fails within its timeout (its on_failure then applies)', async () => {
  const h = await hungServer();
  try {
    const checks = [
      createRspamdCheck(rspamdSchema.parse({ enabled: true, url: `http://127.0.0.1:${h.port}`, timeout_ms: 500 })),
      createSpamassassinCheck(spamassassinSchema.parse({ enabled: true, port: h.port, timeout_ms: 500 })),
      createHttpHookCheck(hookSchema.parse({ name: 'x', url: `http://127.0.0.1:${h.port}/`, timeout_ms: 500 })),
    ];
    for (const c of checks) {
      const t0 = Date.now();
      await assert.rejects(run(c, prize()), /500 ms/);
      assert.ok(Date.now() - t0 < 2000, c.name);
      assert.equal(c.onFailure, 'continue');
    }
  } finally {
    await h.close();
  }
});

test('spamd: a real spamd scores the message (or the note says why it did not start)', async (t) => {
  if (!spamd) {
    t.skip(`spamd did not start: ${spamdError}`);
    return;
  }
  const f = await run(createSpamassassinCheck(spamassassinSchema.parse({ enabled: true, port: spamd.port })), prize());
  assert.equal(f.get('spamassassin.spam'), true);
  assert.equal(f.get('spamassassin.score'), 7);
  assert.equal(f.get('spamassassin.required'), 5);
  assert.deepEqual([...(f.get('spamassassin.symbols') as string[])].sort(), ['TEST_MISSING_DATE', 'TEST_YOU_HAVE_WON']);
  const ham = await run(
    createSpamassassinCheck(spamassassinSchema.parse({ enabled: true, port: spamd.port })),
    mimeMessage({ text: 'quarterly figures attached' }),
  );
  assert.equal(ham.get('spamassassin.spam'), false);
});

test('spamd answer parsing', () => {
  assert.deepEqual(parseSpamdAnswer('SPAMD/1.1 0 EX_OK\r\nContent-length: 5\r\nSpam: False ; 1.5 / 5.0\r\n\r\nA,B\r\n'), {
    spam: false,
    score: 1.5,
    required: 5,
    symbols: ['A', 'B'],
  });
  assert.throws(() => parseSpamdAnswer('SPAMD/1.0 76 Bad header line'), /Bad header/);
  assert.throws(() => parseSpamdAnswer('SPAMD/1.1 0 EX_OK\r\n\r\n'), /Spam header/);
});

test('http hook: POSTs envelope + message, takes only declared, typed facts', async () => {
  let seen: { headers: http.IncomingHttpHeaders; body: string } | undefined;
  const srv = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen = { headers: req.headers, body: Buffer.concat(chunks).toString('latin1') };
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ facts: { verdict: 'phish', score: 7.5, tags: ['a', 'b'], flagged: 'not-a-bool', undeclared: 1 } }));
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  try {
    const port = (srv.address() as net.AddressInfo).port;
    const check = createHttpHookCheck(
      hookSchema.parse({
        name: 'phishcheck',
        url: `http://127.0.0.1:${port}/scan`,
        headers: { Authorization: 'Bearer t0k' },
        facts: { verdict: 'string', score: 'number', tags: 'string[]', flagged: 'boolean' },
      }),
    );
    assert.deepEqual(
      check.facts.map((f) => f.name),
      ['hook.phishcheck.verdict', 'hook.phishcheck.score', 'hook.phishcheck.tags', 'hook.phishcheck.flagged', 'hook.phishcheck.skipped'],
    );
    const msg = prize();
    const f = await run(check, msg, envelope());
    assert.equal(f.get('hook.phishcheck.verdict'), 'phish');
    assert.equal(f.get('hook.phishcheck.score'), 7.5);
    assert.deepEqual(f.get('hook.phishcheck.tags'), ['a', 'b']);
    assert.equal(f.get('hook.phishcheck.flagged'), undefined, 'wrong type is dropped');
    assert.equal(f.has('hook.phishcheck.undeclared'), false);
    assert.equal(seen?.body, msg.toString('latin1'));
    assert.equal(seen?.headers['x-mailgate-mail-from'], 'win@prize.example');
    assert.equal(seen?.headers['x-mailgate-rcpt-to'], 'alice@example.test');
    assert.equal(seen?.headers['x-mailgate-client-ip'], '192.0.2.9');
    assert.equal(seen?.headers.authorization, 'Bearer t0k');
  } finally {
    await new Promise<void>((r) => srv.close(() => r()));
  }
});

test('end to end: Rspamd through SMTP — its score drives a local.d rule; delivered mail carries the header', async () => {
  const pf: PostfixInstance = await startPostfix({ users: ['alice'] });
  const dir = mkdtempSync(join(tmpdir(), 'mailgate-rspamd-e2e-'));
  const rules = join(dir, 'rules');
  cpSync(resolve(import.meta.dirname, '../../rules'), rules, { recursive: true });
  writeFileSync(
    join(rules, 'local.d', '60-rspamd.yaml'),
    'rules:\n  - name: RSPAMD_SCORE\n    description: Rspamd thinks it is spammy\n    when: { rspamd.score: { gte: 4 } }\n    score: 2\n    add_header: { X-Rspamd-Score: "{rspamd.score}" }\n',
  );
  const content = contentConfigSchema.parse({ rspamd: { enabled: true, url: `http://127.0.0.1:${rspamd?.port}` } });
  const gw = await startGateway(
    testConfig({
      backend: { host: '127.0.0.1', port: pf.port },
      rules,
      quarantine: { dir: join(dir, 'q') },
      checks: { disabled: ['spf', 'dkim-arc-dmarc', 'fcrdns', 'dnsbl', 'greylist'] },
    }),
    { extraChecks: createContentChecks(content) },
  );
  try {
    const tok = token('rsp');
    const msg = Buffer.from(prize().toString('latin1').replace('Subject: YOU HAVE WON', `Subject: YOU HAVE WON ${tok.toUpperCase()}`));
    const r = await sendMessage(gw.port, { from: 'win@prize.example', to: ['alice@example.test'], data: msg });
    assert.equal(r.end?.code, 250, r.end?.text);
    const end = Date.now() + 15_000;
    let got: string | undefined;
    while (!got && Date.now() < end) {
      const d = join(pf.mailBase, 'alice', 'new');
      if (existsSync(d))
        for (const f of readdirSync(d)) {
          const c = readFileSync(join(d, f), 'latin1');
          if (c.includes(tok.toUpperCase())) got = c;
        }
      if (!got) await new Promise((res) => setTimeout(res, 100));
    }
    assert.ok(got, 'delivered');
    assert.match(got, /^X-Rspamd-Score: \d/m);
    assert.match(got, /RSPAMD_SCORE/);
  } finally {
    await gw.stop(1000);
    pf.destroy();
  }
});
