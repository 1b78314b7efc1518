// mailgate as a Postfix milter, end to end: a private Postfix with smtpd_milters pointing at the
// milter listener of a gateway started through createGateway (no SMTP listener, no backend).
// An SMTP client talks to Postfix; the test asserts what the client is told and what Postfix
// delivers or holds: DMARC p=reject refused with mailgate's text, Authentication-Results added,
// forged ones removed, quarantine → HOLD queue, a rate limit defers, mailgate down → tempfail.
import assert from 'node:assert/strict';
import { chmodSync, cpSync, existsSync, statSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startDnsServer, type TestDnsServer, type Zone } from '../helpers/dns-server.ts';
import { startGateway, testConfig, type TestGateway } from '../helpers/gateway.ts';
import { postfixAvailable, startPostfix, type PostfixInstance } from '../helpers/postfix.ts';
import { token } from '../helpers/maildir.ts';
import { RawSmtp, sendMessage } from '../helpers/smtp-client.ts';
import { Writable } from 'node:stream';
import pino from 'pino';
import type { Check } from '../../src/pipeline/check.ts';

const avail = postfixAvailable();
const SKIP = avail.ok ? false : avail.why;

const zone: Zone = {
  // The client connects to Postfix from 127.0.0.1; Postfix hands that address to mailgate.
  'sender.example': { TXT: ['v=spf1 ip4:127.0.0.1 -all'] },
  '_dmarc.sender.example': { TXT: ['v=DMARC1; p=none'] },
  'bank.example': { TXT: ['v=spf1 ip4:192.0.2.1 -all'] },
  '_dmarc.bank.example': { TXT: ['v=DMARC1; p=reject'] },
};

/** The shipped rules plus a quarantine rule and a tight per-recipient rate limit for one sender. */
const LOCAL = `
ratelimits:
  - name: milter_test_recipient
    description: test limit, only for limited@sender.example
    key: recipient
    phase: recipient
    rate: 2/1h
    burst: 2
    escalate: false
    when: { mail.from: limited@sender.example }
rules:
  - name: TEST_QUARANTINE
    description: test rule, quarantines on a subject word
    when: { message.subject: { contains: quarantine-me } }
    action: quarantine
  - name: TEST_MILTER_FACT
    description: test rule reading a milter-only fact (the MTA's hostname, macro j)
    when: { milter.mta_hostname: backend.example.test }
    add_header: { X-Test-MTA: "{milter.mta_hostname}" }
  - name: TEST_TAG
    description: test rule, tags the subject
    when: { message.subject: { contains: tag-me } }
    tag_subject: "[EXT]"
`;

/** A check that fails for one sender: its failure outcome (tempfail) must apply as in proxy mode. */
const boomCheck: Check = {
  name: 'test-boom',
  stages: ['mail'],
  facts: [],
  run(input) {
    if (input.facts.get('mail.from') === 'boom@sender.example') throw new Error('boom');
  },
};

let dns: TestDnsServer;
let gw: TestGateway;
/** The same rules behind the SMTP front (delivering into a Maildir), for the two-front comparison. */
let smtpGw: TestGateway;
let smtpMaildir: string;
const logs = { milter: [] as Array<Record<string, unknown>>, smtp: [] as Array<Record<string, unknown>> };
const capture = (into: Array<Record<string, unknown>>) =>
  pino(
    { level: 'info' },
    new Writable({
      write: (c, _e, cb) => {
        into.push(JSON.parse(String(c)) as Record<string, unknown>);
        cb();
      },
    }),
  );
let pf: PostfixInstance;
let rulesDir: string;

before(async () => {
  if (!avail.ok) return;
  dns = await startDnsServer({ zone });
  rulesDir = mkdtempSync(join(tmpdir(), 'mailgate-milter-rules-'));
  cpSync(new URL('../../rules/', import.meta.url), rulesDir, { recursive: true });
  mkdirSync(join(rulesDir, 'local.d'), { recursive: true });
  writeFileSync(join(rulesDir, 'local.d', 'zz-milter-test.yaml'), LOCAL);
  gw = await startGateway(
    testConfig({ listen: [], backend: undefined, milter: { listen: 'inet:0@127.0.0.1' }, rules: rulesDir, dns: { servers: [dns.address], timeout_ms: 1000 } }),
    { logger: capture(logs.milter), extraChecks: [boomCheck] },
  );
  smtpMaildir = mkdtempSync(join(tmpdir(), 'mailgate-milter-cmp-'));
  smtpGw = await startGateway(testConfig({ backend: { maildir: smtpMaildir }, rules: rulesDir, dns: { servers: [dns.address], timeout_ms: 1000 } }), {
    logger: capture(logs.smtp),
  });
  assert.ok(gw.milterPort && gw.milterPort > 0);
  pf = await startPostfix({ main: { smtpd_milters: `inet:127.0.0.1:${gw.milterPort}`, milter_protocol: '6', milter_default_action: 'tempfail' } });
});
after(async () => {
  await gw?.stop(1000).catch(() => undefined);
  await smtpGw?.stop(1000).catch(() => undefined);
  if (smtpMaildir) rmSync(smtpMaildir, { recursive: true, force: true });
  pf?.destroy();
  await dns?.close();
  if (rulesDir) rmSync(rulesDir, { recursive: true, force: true });
});

function message(tok: string, from: string, extra = '', subject = tok): string {
  return `${extra}From: ${from}\r\nTo: alice@example.test\r\nSubject: ${subject}\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\nMessage-ID: <${tok}@sender.example>\r\n\r\nHello Alice,\r\nthis is ${tok}.\r\n`;
}

/** Messages Postfix delivered into the private instance's Maildirs that contain `needle`. */
async function delivered(needle: string, timeoutMs = 15_000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found: string[] = [];
    for (const u of existsSync(pf.mailBase) ? readdirSync(pf.mailBase) : []) {
      const dir = join(pf.mailBase, u, 'new');
      if (!existsSync(dir)) continue;
      for (const f of readdirSync(dir)) {
        const text = readFileSync(join(dir, f), 'latin1');
        if (text.includes(needle)) found.push(text);
      }
    }
    if (found.length > 0 || Date.now() > deadline) return found;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Header fields of a delivered message (Postfix stores LF), unfolded. */
function fields(text: string): Array<{ name: string; value: string }> {
  const head = text.slice(0, text.indexOf('\n\n'));
  return head.split(/\n(?![ \t])/).map((f) => {
    const i = f.indexOf(':');
    return {
      name: f.slice(0, i),
      value: f
        .slice(i + 1)
        .replace(/\n[ \t]+/g, ' ')
        .trim(),
    };
  });
}

describe('over a unix socket', { skip: SKIP }, () => {
  test('Postfix reaches mailgate through unix:/path with the configured mode and owner', async () => {
    const sdir = mkdtempSync(join(tmpdir(), 'mailgate-milter-unix-'));
    chmodSync(sdir, 0o755);
    const path = join(sdir, 'milter.sock');
    const g = await startGateway(
      testConfig({
        listen: [],
        backend: undefined,
        milter: { listen: `unix:${path}`, mode: '0660', owner: 'postfix:postfix' },
        rules: rulesDir,
        dns: { servers: [dns.address], timeout_ms: 1000 },
      }),
    );
    const p = await startPostfix({ main: { smtpd_milters: `unix:${path}`, milter_protocol: '6', milter_default_action: 'tempfail' } });
    try {
      const st = statSync(path);
      assert.equal(st.mode & 0o777, 0o660);
      const tok = token('milter-unix');
      const r = await sendMessage(p.port, { from: 'ivan@sender.example', to: ['alice@example.test'], data: message(tok, 'ivan@sender.example') });
      assert.equal(r.end?.code, 250, r.end?.text);
      const deadline = Date.now() + 15_000;
      let text = '';
      while (!text && Date.now() < deadline) {
        const dir = join(p.mailBase, 'alice', 'new');
        for (const f of existsSync(dir) ? readdirSync(dir) : []) {
          const t = readFileSync(join(dir, f), 'latin1');
          if (t.includes(tok)) text = t;
        }
        if (!text) await new Promise((res) => setTimeout(res, 100));
      }
      assert.match(text, /^Authentication-Results: mx\.example\.test; spf=pass/m);
    } finally {
      await g.stop(1000);
      p.destroy();
      rmSync(sdir, { recursive: true, force: true });
    }
  });
});

describe('quarantine: store (mailgate quarantine, Postfix discards)', { skip: SKIP }, () => {
  test('the copy is in mailgate quarantine with our headers; Postfix neither delivers nor holds it', async () => {
    const qdir = mkdtempSync(join(tmpdir(), 'mailgate-milter-q-'));
    const g = await startGateway(
      testConfig({
        listen: [],
        backend: undefined,
        milter: { listen: 'inet:0@127.0.0.1', quarantine: 'store' },
        rules: rulesDir,
        quarantine: { dir: qdir },
        dns: { servers: [dns.address], timeout_ms: 1000 },
      }),
    );
    const p = await startPostfix({ main: { smtpd_milters: `inet:127.0.0.1:${g.milterPort}`, milter_protocol: '6', milter_default_action: 'tempfail' } });
    try {
      const tok = token('milter-store');
      const r = await sendMessage(p.port, {
        from: 'hank@sender.example',
        to: ['alice@example.test'],
        data: message(tok, 'hank@sender.example', '', `${tok} quarantine-me`),
      });
      assert.equal(r.end?.code, 250, r.end?.text);
      const { rows: list } = await g.quarantine.list({ status: 'all' });
      assert.equal(list.length, 1);
      assert.equal(list[0]?.from, 'hank@sender.example');
      assert.ok(list[0]?.rules.includes('TEST_QUARANTINE'));
      const copy = await g.quarantine.get(list[0]?.id ?? '');
      assert.ok(copy, 'a stored copy');
      const text = (await g.quarantine.bytes(copy.row)).toString('latin1');
      assert.ok(text.includes(tok) && /^Authentication-Results: mx\.example\.test;/m.test(text), 'copy has our results');
      await new Promise((res) => setTimeout(res, 1000));
      assert.deepEqual(p.queue(), [], 'nothing queued or held');
    } finally {
      await g.stop(1000);
      p.destroy();
      rmSync(qdir, { recursive: true, force: true });
    }
  });
});

describe('mailgate as a Postfix milter', { skip: SKIP }, () => {
  test('clean mail arrives with mailgate Authentication-Results on top and the status header', async () => {
    const tok = token('milter-clean');
    const r = await sendMessage(pf.port, {
      from: 'alice@sender.example',
      to: ['alice@example.test'],
      data: message(tok, 'Alice <alice@sender.example>'),
      helo: 'mail.sender.example',
    });
    assert.equal(r.mail?.code, 250, r.mail?.text);
    assert.equal(r.end?.code, 250, r.end?.text);
    const [got] = await delivered(tok);
    assert.ok(got, 'delivered by Postfix');
    const f = fields(got);
    const ars = f.filter((h) => h.name.toLowerCase() === 'authentication-results');
    assert.equal(ars.length, 1, JSON.stringify(f));
    assert.match(ars[0]?.value ?? '', /^mx\.example\.test; spf=pass .*smtp\.mailfrom=alice@sender\.example/);
    assert.match(ars[0]?.value ?? '', /dmarc=pass/);
    // Our results come before the sender's own header fields (inserted at index 0).
    const names = f.map((h) => h.name.toLowerCase());
    assert.ok(names.indexOf('authentication-results') < names.indexOf('from'));
    assert.ok(
      f.some((h) => h.name === 'X-Mailgate-Status' && h.value.startsWith('accept')),
      'status header',
    );
    assert.ok(
      f.some((h) => h.name === 'X-Test-MTA' && h.value === 'backend.example.test'),
      'a rule read a milter-only fact',
    );
  });

  test('a forged Authentication-Results with our authserv-id is removed, foreign ones are kept', async () => {
    const tok = token('milter-forged');
    const forged =
      'Authentication-Results: mx.example.test; dkim=pass header.d=bank.example; dmarc=pass header.from=bank.example\r\n' +
      'Authentication-Results: upstream.example; spf=pass smtp.mailfrom=x@upstream.example\r\n';
    const r = await sendMessage(pf.port, { from: 'bob@sender.example', to: ['alice@example.test'], data: message(tok, 'bob@sender.example', forged) });
    assert.equal(r.end?.code, 250, r.end?.text);
    const [got] = await delivered(tok);
    assert.ok(got);
    const ars = fields(got)
      .filter((h) => h.name.toLowerCase() === 'authentication-results')
      .map((h) => h.value);
    assert.equal(ars.filter((v) => v.startsWith('mx.example.test')).length, 1, ars.join('\n'));
    assert.ok(!ars.some((v) => v.includes('header.d=bank.example')), 'the forged one is gone');
    assert.ok(
      ars.some((v) => v.startsWith('upstream.example')),
      'a foreign one is kept',
    );
  });

  test('a DMARC p=reject spoof is refused in the SMTP session with mailgate reply text', async () => {
    const tok = token('milter-spoof');
    const r = await sendMessage(pf.port, { from: 'ceo@bank.example', to: ['alice@example.test'], data: message(tok, 'CEO <ceo@bank.example>') });
    assert.equal(r.mail?.code, 250);
    assert.equal(r.end?.code, 550, r.end?.text);
    assert.equal(r.end?.text, '5.7.1 Message rejected: it fails DMARC authentication and the DMARC policy of bank.example is reject');
    assert.equal((await delivered(tok, 1500)).length, 0);
  });

  test('a quarantined message lands in Postfix HOLD queue', async () => {
    const tok = token('milter-hold');
    const r = await sendMessage(pf.port, {
      from: 'carol@sender.example',
      to: ['alice@example.test'],
      data: message(tok, 'carol@sender.example', '', `${tok} quarantine-me`),
    });
    assert.equal(r.end?.code, 250, r.end?.text);
    let held: Array<Record<string, unknown>> = [];
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      held = pf.queue().filter((q) => q.queue_name === 'hold');
      if (held.length > 0) break;
      await new Promise((res) => setTimeout(res, 200));
    }
    assert.equal(held.length, 1, JSON.stringify(pf.queue()));
    assert.equal(held[0]?.sender, 'carol@sender.example');
    assert.equal((await delivered(tok, 1000)).length, 0, 'held, not delivered');
    // postsuper -H releases it (docs/milter.md), and then it is delivered.
    pf.tool('postsuper', ['-H', String(held[0]?.queue_id)]);
    pf.tool('postqueue', ['-f']);
    const [got] = await delivered(tok);
    assert.ok(got, 'delivered after release');
  });

  test('a rate limit defers the recipient with mailgate reply', async () => {
    const tok = token('milter-rl');
    const results: Array<number | undefined> = [];
    let last = '';
    for (let i = 0; i < 3; i++) {
      const r = await sendMessage(pf.port, {
        from: 'limited@sender.example',
        to: ['bob@example.test'],
        data: message(`${tok}-${i}`, 'limited@sender.example'),
      });
      results.push(r.rcpts[0]?.code);
      last = r.rcpts[0]?.text ?? '';
    }
    assert.deepEqual(results, [250, 250, 450]);
    assert.match(last, /^4\.7\.1 Rate limit exceeded \(milter_test_recipient\)/);
  });

  test('RSET in the middle of a transaction: the next one on the same connection starts clean', async () => {
    const tok = token('milter-rset');
    const c = await RawSmtp.connect(pf.port);
    try {
      await c.read();
      await c.cmd('EHLO mail.sender.example');
      assert.equal((await c.cmd('MAIL FROM:<ceo@bank.example>'))?.code, 250);
      assert.equal((await c.cmd('RCPT TO:<carol@example.test>'))?.code, 250);
      assert.equal((await c.cmd('RSET'))?.code, 250);
      assert.equal((await c.cmd('MAIL FROM:<alice@sender.example>'))?.code, 250);
      assert.equal((await c.cmd('RCPT TO:<alice@example.test>'))?.code, 250);
      assert.equal((await c.cmd('DATA'))?.code, 354);
      c.write(`${message(tok, 'alice@sender.example')}.\r\n`);
      assert.equal((await c.read())?.code, 250);
      await c.cmd('QUIT');
    } finally {
      c.close();
    }
    const [got] = await delivered(tok);
    assert.ok(got);
    // The aborted transaction left nothing behind: one recipient, results for the new sender.
    const f = fields(got);
    assert.equal(f.find((h) => h.name === 'Delivered-To')?.value, 'alice@example.test');
    assert.match(f.find((h) => h.name === 'Authentication-Results')?.value ?? '', /smtp\.mailfrom=alice@sender\.example/);
    const line = logs.milter.filter((l) => l.msg === 'message' && l.from === 'alice@sender.example').at(-1);
    assert.deepEqual(line?.rcpts, ['alice@example.test']);
  });

  test("a failing check's outcome (tempfail) applies as in proxy mode, with the same reply", async () => {
    const tok = token('milter-boom');
    const r = await sendMessage(pf.port, { from: 'boom@sender.example', to: ['alice@example.test'], data: message(tok, 'boom@sender.example') });
    assert.equal(r.mail?.code, 451);
    assert.equal(r.mail?.text, '4.7.1 Temporary failure in message checks (test-boom), try again later');
  });

  test('the subject tag of a rule is applied with CHGHEADER', async () => {
    const tok = token('milter-tag');
    const r = await sendMessage(pf.port, {
      from: 'dave@sender.example',
      to: ['alice@example.test'],
      data: message(tok, 'dave@sender.example', '', `${tok} tag-me`),
    });
    assert.equal(r.end?.code, 250, r.end?.text);
    const [got] = await delivered(tok);
    assert.ok(got);
    const subjects = fields(got).filter((h) => h.name.toLowerCase() === 'subject');
    assert.deepEqual(
      subjects.map((h) => h.value),
      [`[EXT] ${tok} tag-me`],
    );
  });

  test('one corpus through both fronts: the same action, score, rules and refusal text', async () => {
    const corpus = [
      { name: 'clean', from: 'erin@sender.example', header: 'Erin <erin@sender.example>', subject: 'hello' },
      { name: 'dmarc-spoof', from: 'cfo@bank.example', header: 'CFO <cfo@bank.example>', subject: 'wire transfer' },
      { name: 'quarantine', from: 'frank@sender.example', header: 'frank@sender.example', subject: 'quarantine-me please' },
      { name: 'tagged', from: 'gina@sender.example', header: 'gina@sender.example', subject: 'tag-me please' },
      { name: 'null-sender', from: '', header: 'MAILER-DAEMON@sender.example', subject: 'bounce' },
    ];
    for (const c of corpus) {
      const tok = token(`cmp-${c.name}`);
      const data = message(tok, c.header, '', `${c.subject} ${tok}`);
      const viaSmtp = await sendMessage(smtpGw.port, { from: c.from, to: ['alice@example.test'], data, helo: 'mail.sender.example' });
      const viaMilter = await sendMessage(pf.port, { from: c.from, to: ['alice@example.test'], data, helo: 'mail.sender.example' });
      assert.equal(viaMilter.end?.code, viaSmtp.end?.code, `${c.name}: end-of-data code`);
      if ((viaSmtp.end?.code ?? 0) >= 400) assert.equal(viaMilter.end?.text, viaSmtp.end?.text, `${c.name}: refusal text`);
      // Log lines carry the verdict: wait for both (the milter one may trail the SMTP reply).
      const pick = (lines: Array<Record<string, unknown>>) => lines.filter((l) => l.msg === 'message' && l.from === c.from).at(-1);
      const deadline = Date.now() + 5000;
      while ((!pick(logs.smtp) || !pick(logs.milter)) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
      const a = pick(logs.smtp);
      const b = pick(logs.milter);
      assert.ok(a && b, `${c.name}: both fronts logged the message`);
      // TEST_MILTER_FACT reads a fact only the milter front has (score 0): the one expected difference.
      const rules = (b.rules as string[]).filter((r) => !r.startsWith('TEST_MILTER_FACT('));
      assert.deepEqual({ action: b.action, score: b.score, rules }, { action: a.action, score: a.score, rules: a.rules }, c.name);
    }
  });

  test('with mailgate stopped, Postfix tempfails (milter_default_action = tempfail)', async () => {
    await gw.stop(1000);
    const tok = token('milter-down');
    const r = await sendMessage(pf.port, { from: 'alice@sender.example', to: ['alice@example.test'], data: message(tok, 'alice@sender.example') });
    // Postfix answers the first command the milter would have seen with 451 4.7.1; what follows
    // in the same session is sequence errors (503), never an acceptance.
    const first = [r.mail, ...r.rcpts, r.data, r.end].find((x) => x !== undefined && x.code >= 400);
    assert.equal(first?.code, 451, `${first?.code} ${first?.text}`);
    assert.match(first?.text ?? '', /^4\.7\.1 /);
    assert.notEqual(r.end?.code, 250, 'not accepted');
  });
});
