// Rules end to end: SMTP client → mailgate → real Postfix → Maildir. A rule refuses at the stage
// of the facts it reads (connect, HELO, MAIL, RCPT, end of DATA), and only that command is
// refused; delivered mail carries the status header and tags; rules reload while a connection
// stays open, and a broken edit leaves the previous rules in force.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { metrics } from '../../src/metrics/registry.ts';
import { requireBackend, startGateway, testConfig, type TestGateway } from '../helpers/gateway.ts';
import { settle, token, waitDelivered } from '../helpers/maildir.ts';
import { RawSmtp, sendMessage } from '../helpers/smtp-client.ts';
import { makeRulesDir, writeRules } from '../helpers/rules-dir.ts';
import { startDnsServer } from '../helpers/dns-server.ts';

const gateways: TestGateway[] = [];
const clients: RawSmtp[] = [];

/** A client closed after the tests even when an assertion fails half-way. */
async function connect(port: number): Promise<RawSmtp> {
  const c = await RawSmtp.connect(port);
  clients.push(c);
  return c;
}

async function gatewayWith(files: Record<string, string>): Promise<{ gw: TestGateway; dir: string }> {
  const dir = makeRulesDir(files);
  const gw = await startGateway(testConfig({ rules: dir }));
  gateways.push(gw);
  return { gw, dir };
}

function message(tok: string, subject = 'hello'): string {
  return `From: sender@client.example\r\nTo: alice@example.test\r\nSubject: ${subject} ${tok}\r\nMessage-ID: <${tok}@client.example>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nbody ${tok}\r\n`;
}

async function counterValue(c: { get(): Promise<{ values: ReadonlyArray<{ value: number; labels: object }> }> }, label?: string): Promise<number> {
  const values = (await c.get()).values;
  return values.filter((v) => label === undefined || (v.labels as Record<string, unknown>).rule === label).reduce((n, v) => n + v.value, 0);
}

/** On an open, greeted connection: one message from an accepted sender, delivered exactly once. */
async function deliversOn(c: RawSmtp, tok: string): Promise<void> {
  assert.equal((await c.cmd('MAIL FROM:<ok@good.example>'))?.code, 250);
  assert.equal((await c.cmd('RCPT TO:<alice@example.test>'))?.code, 250);
  assert.equal((await c.cmd('DATA'))?.code, 354);
  c.write(`${message(tok)}.\r\n`);
  assert.equal((await c.read())?.code, 250);
  await c.cmd('QUIT');
  c.close();
  assert.equal((await waitDelivered(tok)).length, 1);
}

before(requireBackend);
after(async () => {
  for (const c of clients) c.close();
  for (const gw of gateways) await gw.stop(1000);
});

describe('a rule refuses at the stage of its facts', () => {
  test('connect: a blocked client gets 554 instead of the greeting', async () => {
    const { gw } = await gatewayWith({
      'r.yaml':
        'rules:\n  - name: BLOCK_LOOPBACK\n    description: d\n    when: { client.ip: { cidr: 127.0.0.0/8 } }\n    action: reject\n    reply: { text: "Client [{client.ip}] is blocked" }\n',
    });
    const hits = await counterValue(metrics.ruleHits, 'BLOCK_LOOPBACK');
    const c = await connect(gw.port);
    const greeting = await c.read();
    assert.equal(greeting?.code, 554);
    assert.equal(greeting?.text, '5.7.1 Client [127.0.0.1] is blocked');
    const next = await c.cmd('EHLO client.example.net').catch(() => undefined);
    assert.ok(next === undefined || next.code >= 500, `no service after a refused greeting, got ${next?.code}`);
    c.close();
    assert.equal(await counterValue(metrics.ruleHits, 'BLOCK_LOOPBACK'), hits + 1);
  });

  test('helo: a forbidden HELO name is refused, a good one then works', async () => {
    const { gw } = await gatewayWith({
      'r.yaml': 'rules:\n  - { name: BAD_HELO, description: d, when: { helo.name: { glob: "*.bad.example" } }, action: reject }\n',
    });
    const c = await connect(gw.port);
    assert.equal((await c.read())?.code, 220);
    const bad = await c.cmd('EHLO bot.bad.example');
    assert.equal(bad?.code, 550);
    assert.equal(bad?.text, '5.7.1 HELO/EHLO rejected by policy');
    assert.equal((await c.cmd('EHLO mail.good.example'))?.code, 250);
    assert.equal((await c.cmd('MAIL FROM:<a@good.example>'))?.code, 250);
    await c.cmd('QUIT');
    c.close();
  });

  test('mail: a blocked sender is refused at MAIL FROM; the next transaction is delivered', async () => {
    const { gw } = await gatewayWith({
      'r.yaml':
        'rules:\n  - name: BLOCKED_SENDER\n    description: d\n    when: { mail.from_domain: blocked.example }\n    action: reject\n    reply: { code: 550, enhanced: 5.7.1, text: "Sender <{mail.from}> is blocked" }\n',
    });
    const tok = token('mail');
    const c = await connect(gw.port);
    await c.read();
    await c.cmd('EHLO client.example.net');
    const refused = await c.cmd('MAIL FROM:<spam@blocked.example>');
    assert.equal(refused?.code, 550);
    assert.equal(refused?.text, '5.7.1 Sender <spam@blocked.example> is blocked');
    assert.equal((await c.cmd('RCPT TO:<alice@example.test>'))?.code, 503, 'no transaction after a refused MAIL');
    await deliversOn(c, tok);
  });

  test('rcpt: only the matching recipient is refused; the others get the message', async () => {
    const { gw } = await gatewayWith({
      'r.yaml':
        'rules:\n  - { name: NO_BOB, description: d, when: { rcpt.address: bob@example.test }, action: reject, reply: { text: "Bob does not take mail from you" } }\n',
    });
    const tok = token('rcpt');
    const r = await sendMessage(gw.port, { from: 'a@good.example', to: ['bob@example.test', 'alice@example.test'], data: message(tok) });
    assert.equal(r.rcpts[0]?.code, 550);
    assert.equal(r.rcpts[0]?.text, '5.7.1 Bob does not take mail from you');
    assert.equal(r.rcpts[1]?.code, 250);
    assert.equal(r.end?.code, 250);
    const got = await waitDelivered(tok);
    assert.deepEqual(
      got.map((g) => g.user),
      ['alice'],
    );
    assert.deepEqual(
      (await settle(tok, 500)).map((g) => g.user),
      ['alice'],
    );
  });

  test('data: a content rule refuses at end of DATA and nothing is delivered', async () => {
    const { gw } = await gatewayWith({
      'r.yaml': 'rules:\n  - { name: FORBIDDEN_SUBJECT, description: d, when: { message.subject: { regex: "/forbidden/i" } }, action: reject }\n',
    });
    const tok = token('data');
    const r = await sendMessage(gw.port, { from: 'a@good.example', to: ['alice@example.test'], data: message(tok, 'FORBIDDEN words') });
    assert.equal(r.mail?.code, 250);
    assert.equal(r.rcpts[0]?.code, 250);
    assert.equal(r.end?.code, 550);
    assert.equal(r.end?.text, '5.7.1 Message rejected by policy');
    assert.equal((await settle(tok)).length, 0);
  });
});

test('delivered mail carries X-Mailgate-Status, threshold tags and rule headers', async () => {
  const { gw } = await gatewayWith({
    '00-actions.yaml': 'actions: { reject: 15, quarantine: 8, tag: { score: 5, add_header: { X-Spam-Flag: "YES" }, tag_subject: "[SPAM]" } }\n',
    '10-r.yaml':
      'rules:\n  - { name: SCORE_SIX, description: d, when: { message.subject: { contains: scored } }, score: 6, add_header: { X-Note: "sender {mail.from_domain}" } }\n',
  });
  const tok = token('tag');
  const r = await sendMessage(gw.port, { from: 'a@good.example', to: ['alice@example.test'], data: message(tok, 'scored') });
  assert.equal(r.end?.code, 250);
  const [got] = await waitDelivered(tok);
  const text = got?.content.toString('utf8') ?? '';
  assert.match(text, /\nX-Mailgate-Status: accept score=6 required=15 tests=SCORE_SIX\(\+6\)\r?\n/);
  assert.match(text, /\nX-Spam-Flag: YES\r?\n/);
  assert.match(text, /\nX-Note: sender good\.example\r?\n/);
  assert.match(text, new RegExp(`\\nSubject: \\[SPAM\\] scored ${tok}\\r?\\n`));
});

test('a forged X-Mailgate-Status from the client is removed', async () => {
  const { gw } = await gatewayWith({ '00.yaml': '# no rules\n' });
  const tok = token('strip');
  const r = await sendMessage(gw.port, {
    from: 'a@good.example',
    to: ['alice@example.test'],
    data: `X-Mailgate-Status: accept score=-100 forged-by-sender\r\n${message(tok)}`,
  });
  assert.equal(r.end?.code, 250);
  const [got] = await waitDelivered(tok);
  const text = got?.content.toString('utf8') ?? '';
  assert.doesNotMatch(text, /forged-by-sender/);
  assert.match(text, /X-Mailgate-Status: accept score=0/);
});

test('hot reload under an open connection: the next command follows the new rules; a broken edit keeps them', async () => {
  const { gw, dir } = await gatewayWith({
    '10-r.yaml': 'rules:\n  - { name: FIRST, description: d, when: { mail.from_domain: first.example }, action: reject }\n',
  });
  const c = await connect(gw.port);
  await c.read();
  await c.cmd('EHLO client.example.net');
  assert.equal((await c.cmd('MAIL FROM:<a@first.example>'))?.code, 550);
  assert.equal((await c.cmd('MAIL FROM:<a@second.example>'))?.code, 250);
  await c.cmd('RSET');

  // An edit picked up by the file watcher while the connection stays open.
  writeRules(dir, { '10-r.yaml': 'rules:\n  - { name: SECOND, description: d, when: { mail.from_domain: second.example }, action: reject }\n' });
  const deadline = Date.now() + 10_000;
  let code: number | undefined;
  while (Date.now() < deadline) {
    code = (await c.cmd('MAIL FROM:<a@second.example>'))?.code;
    if (code === 550) break;
    await c.cmd('RSET');
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(code, 550, 'the new rule applies on the open connection');
  assert.equal((await c.cmd('MAIL FROM:<a@first.example>'))?.code, 250, 'the old rule is gone');
  await c.cmd('RSET');

  // A broken edit (and a SIGHUP-style reload): refused, the rules in force stay.
  const errors = await counterValue(metrics.rulesReloadErrors);
  writeRules(dir, { '10-r.yaml': 'rules:\n  - { name: THIRD, description: d, when: { mail.frm: x }, action: reject }\n' });
  await gw.reload();
  assert.ok((await counterValue(metrics.rulesReloadErrors)) > errors);
  assert.equal((await c.cmd('MAIL FROM:<a@second.example>'))?.code, 550, 'still the previous rules');
  await c.cmd('RSET');

  // The connection survived all of it and still delivers.
  const tok = token('reload');
  await deliversOn(c, tok);
});

test('connection checks feed rules through the real pipeline: DNSBL at connect, HELO sanity, FCrDNS', async () => {
  const dns = await startDnsServer({
    zone: {
      '1.0.0.127.in-addr.arpa': { PTR: ['client.rdns.test'] },
      'client.rdns.test': { A: ['127.0.0.1'] },
      '1.0.0.127.bl.test': { A: ['127.0.0.2'] },
    },
  });
  try {
    const listed = makeRulesDir({
      '10.yaml': `dnsbl: { enabled: true, skip_private: false, lists: [ { name: testbl, zone: bl.test, weight: 5 } ] }
rules:
  - { name: DNSBL_BLOCK, description: d, when: { dnsbl.score: { gte: 5 } }, action: reject, reply: { text: "Client [{client.ip}] blocked using {dnsbl.listed}" } }
`,
    });
    const gw1 = await startGateway(testConfig({ rules: listed, dns: { servers: [dns.address], timeout_ms: 2000 } }));
    gateways.push(gw1);
    const c = await connect(gw1.port);
    const greeting = await c.read();
    assert.equal(greeting?.code, 554);
    assert.equal(greeting?.text, '5.7.1 Client [127.0.0.1] blocked using testbl');

    const sane = makeRulesDir({
      '10.yaml': `rules:
  - { name: HELO_NOT_FQDN, description: d, when: { helo.fqdn: false, helo.is_ip_literal: false }, action: reject }
  - { name: RDNS_OK, description: d, when: { client.fcrdns: true }, score: 0, add_header: { X-Test-RDNS: "{client.rdns}" } }
`,
    });
    const gw2 = await startGateway(testConfig({ rules: sane, dns: { servers: [dns.address], timeout_ms: 2000 } }));
    gateways.push(gw2);
    const c2 = await connect(gw2.port);
    assert.equal((await c2.read())?.code, 220);
    assert.equal((await c2.cmd('EHLO localhost'))?.code, 550);
    assert.equal((await c2.cmd('EHLO client.example.net'))?.code, 250);
    await c2.cmd('QUIT');
    const tok = token('rdns');
    const r = await sendMessage(gw2.port, { from: 'a@good.example', to: ['alice@example.test'], data: message(tok) });
    assert.equal(r.end?.code, 250);
    const [got] = await waitDelivered(tok);
    assert.match(got?.content.toString('utf8') ?? '', /\nX-Test-RDNS: client\.rdns\.test\r?\n/);
  } finally {
    await dns.close();
  }
});

test('an invalid rules directory stops the gateway from starting, naming file and line', async () => {
  await assert.rejects(
    startGateway(testConfig({ rules: makeRulesDir({ '10-r.yaml': 'rules:\n  - name: A\n    description: d\n    when: { tls: maybe }\n    score: 1\n' }) })),
    /10-r.yaml:4: rules\[0\].when.tls: tls is true or false; got "maybe"/,
  );
});
