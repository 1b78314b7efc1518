// End to end with real Postfix instances: the site's Postfix relays outgoing mail through the
// outbound listener (relayhost), which BATV-signs it and relays to a next-hop Postfix that bounces
// it; Postfix's own bounce comes back through the inbound gateway and is delivered. Forged bounces
// are refused (strict) or scored (tag-only); the outbound listener refuses foreign clients.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, postfixAvailable, startPostfix, type PostfixInstance } from '../helpers/postfix.ts';
import { startGateway, testConfig, type TestGateway } from '../helpers/gateway.ts';
import { RawSmtp, sendMessage } from '../helpers/smtp-client.ts';
import { writeRules } from '../helpers/rules-dir.ts';
import { batvSign } from '../../src/checks/backscatter/batv.ts';
import { keyringOf } from '../../src/checks/backscatter/batv-check.ts';
import { registry } from '../../src/metrics/registry.ts';

const avail = postfixAvailable();
const skip = avail.ok ? false : avail.why;

let site: PostfixInstance | undefined; // the site's MTA: inbound backend, and relays out via relayhost
let nextHop: PostfixInstance | undefined; // the Internet: accepts, then bounces unknown users itself
let gw: TestGateway | undefined;
let outPort = 0;
const KEYS = [{ id: 3, secret: 'e2e-backscatter-secret-0123456789' }];

function token(): string {
  return `bs${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
}

/** Messages in a Maildir user's new/ containing `needle`. */
function delivered(pf: PostfixInstance, user: string, needle: string): string[] {
  const dir = join(pf.mailBase, user, 'new');
  if (!existsSync(dir)) return [];
  return (
    readdirSync(dir)
      // Unfolded, so a test can match a whole header field on one line.
      .map((f) => readFileSync(join(dir, f), 'latin1').replace(/\r?\n[ \t]+/g, ' '))
      .filter((m) => m.includes(needle))
  );
}

async function waitFor<T>(what: string, fn: () => T | undefined, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

before(async () => {
  if (skip) return;
  const gwPort = await freePort();
  outPort = await freePort();
  nextHop = await startPostfix({
    domains: ['remote.test'],
    users: ['carol'],
    main: {
      myhostname: 'relay.remote.test',
      // Accept unknown users at RCPT so that Postfix's virtual(8) bounces them itself.
      smtpd_reject_unlisted_recipient: 'no',
      smtpd_recipient_restrictions:
        'check_recipient_access inline:{ { refused@remote.test = 550 5.1.1 <refused@remote.test>: no such user here } }, permit_mynetworks, reject_unauth_destination',
      // Bounces for our domains go back through the inbound gateway.
      transport_maps: `inline:{ example.test=smtp:[127.0.0.1]:${gwPort}, other.test=smtp:[127.0.0.1]:${gwPort} }`,
    },
  });
  site = await startPostfix({
    domains: ['example.test', 'other.test'],
    users: ['alice', 'bob'],
    main: {
      // The README's BATV setup: the site's MTA relays outgoing mail through the outbound listener.
      relayhost: `[127.0.0.1]:${outPort}`,
      default_transport: 'smtp',
      relay_transport: 'smtp',
    },
  });
  const rulesDir = mkdtempSync(join(tmpdir(), 'mailgate-bs-rules-'));
  cpSync(new URL('../../rules/', import.meta.url), rulesDir, { recursive: true });
  writeRules(rulesDir, {
    'local.d/99-test.yaml': `rules:
  - name: TEST_SHOW_BACKSCATTER
    description: test only - shows what decided
    when: { mail.null_sender: true }
    add_header: { X-Test-Backscatter: "reason={backscatter.reason} kind={backscatter.kind}" }
`,
  });
  const config = testConfig({
    listen: [{ host: '127.0.0.1', port: gwPort }],
    domains: ['example.test', 'other.test'],
    backend: { host: '127.0.0.1', port: site.port, command_timeout_ms: 5000, data_timeout_ms: 10_000, connect_timeout_ms: 2000 },
    rules: rulesDir,
    backscatter: {
      mode: 'strict',
      domains: { 'other.test': 'tag-only' },
      batv: { keys: KEYS },
      outbound: {
        listen: { host: '127.0.0.1', port: outPort },
        relay_networks: ['127.0.0.1/32'],
        next_hop: { host: '127.0.0.1', port: nextHop.port },
      },
    },
  });
  // The backscatter checks come from the catalogue, built from config.backscatter like in serve.
  gw = await startGateway(config);
});

after(async () => {
  await gw?.stop(1000);
  site?.destroy();
  nextHop?.destroy();
});

test('a message sent out through the outbound listener bounces at a real Postfix; that bounce comes back and is delivered', { skip }, async () => {
  const tok = token();
  // The site's Postfix takes alice's mail and relays it through the outbound listener.
  const r = await sendMessage(site!.port, {
    from: 'alice@example.test',
    to: [`nobody-${tok}@remote.test`],
    data: `From: Alice <alice@example.test>\r\nTo: nobody-${tok}@remote.test\r\nSubject: ${tok}\r\nMessage-ID: <${tok}@mua.example.net>\r\n\r\nhello ${tok}\r\n`,
  });
  assert.equal(r.end?.code, 250);
  // The next hop's own bounce, relayed back through mailgate into alice's Maildir.
  const bounce = await waitFor('the bounce in alice/new', () => delivered(site!, 'alice', tok).find((m) => m.includes('Undelivered Mail Returned to Sender')));
  assert.match(bounce, /This is the mail system at host relay\.remote\.test/, 'generated by Postfix itself');
  // The next hop saw a BATV-signed envelope sender ...
  const sender = /X-Postfix-Sender: rfc822; (\S+)/.exec(bounce)?.[1] ?? '';
  assert.match(sender, /^prvs=3\d{3}[0-9a-f]{6}=alice@example\.test$/);
  // ... and the message itself is unchanged (From, Message-ID as the MUA wrote them).
  assert.match(bounce, new RegExp(`Message-ID: <${tok}@mua\\.example\\.net>`));
  assert.match(bounce, /X-Test-Backscatter: reason=batv-valid kind=postfix/);
  assert.doesNotMatch(bounce, /BATV_|BOUNCE_/, 'no backscatter rule fired');
});

test("the backend sees the recipient without the tag (the core applies the check's envelope edit)", { skip }, async () => {
  const ring = keyringOf(gw!.runtime.config.backscatter)!;
  const tok = token();
  const r = await sendMessage(gw!.port, {
    from: '',
    to: [batvSign('bob@example.test', ring, Date.now())],
    data: `From: MAILER-DAEMON@remote.test\r\nTo: bob@example.test\r\nSubject: ${tok}\r\nAuto-Submitted: auto-replied\r\n\r\nx\r\n`,
  });
  assert.equal(r.end?.code, 250);
  const m = await waitFor('delivery', () => delivered(site!, 'bob', tok)[0]);
  // X-Original-To is the recipient as the backend received it.
  assert.match(m, /X-Original-To: bob@example\.test/);
});

const forged = (tok: string, mid: string) =>
  `From: MAILER-DAEMON@evil.test\r\nTo: x\r\nDate: ${new Date().toUTCString()}\r\nMessage-ID: <dsn-${tok}@evil.test>\r\nSubject: Undelivered Mail Returned to Sender ${tok}\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nThis is the mail system at host evil.test.\r\n\r\n--b\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: alice@example.test\r\nMessage-ID: <${mid}>\r\nSubject: pills\r\n\r\n--b--\r\n`;

test('strict: forged bounces (untagged, bad tag, expired tag) are refused at RCPT with 550 5.7.1 saying why', { skip }, async () => {
  const ring = keyringOf(gw!.runtime.config.backscatter)!;
  const good = batvSign('alice@example.test', ring, Date.now());
  const badSig = good.slice(0, 10) + (good[10] === 'a' ? 'b' : 'a') + good.slice(11);
  const expired = batvSign('alice@example.test', ring, Date.now() - 30 * 86_400_000);
  const c = await RawSmtp.connect(gw!.port);
  await c.read();
  await c.cmd('EHLO bot.evil.test');
  assert.equal((await c.cmd('MAIL FROM:<>'))?.code, 250);
  const untagged = await c.cmd('RCPT TO:<alice@example.test>');
  assert.equal(untagged?.code, 550);
  assert.match(untagged?.text ?? '', /^5\.7\.1 Bounce refused: <alice@example\.test> signs all its mail \(BATV\)/);
  const bad = await c.cmd(`RCPT TO:<${badSig}>`);
  assert.equal(bad?.code, 550);
  assert.match(bad?.text ?? '', /5\.7\.1 .*not valid/);
  const old = await c.cmd(`RCPT TO:<${expired}>`);
  assert.equal(old?.code, 550);
  assert.match(old?.text ?? '', /5\.7\.1 .*expired/);
  // Ordinary mail to the same user is not affected.
  await c.cmd('RSET');
  assert.equal((await c.cmd('MAIL FROM:<carol@remote.test>'))?.code, 250);
  assert.equal((await c.cmd('RCPT TO:<alice@example.test>'))?.code, 250);
  await c.cmd('QUIT').catch(() => undefined);
  c.close();
  const text = await registry.getSingleMetricAsString('mailgate_backscatter_total');
  assert.match(text, /result="batv-missing"\} [1-9]/);
  assert.match(text, /result="batv-invalid"\} [1-9]/);
  assert.match(text, /result="batv-expired"\} [1-9]/);
});

test('tag-only: a forged bounce is accepted and scored (BATV_MISSING, BOUNCE_FOREIGN_MSGID)', { skip }, async () => {
  const tok = token();
  // Message-ID of our own domain: only the BATV rule scores (stays under the quarantine threshold).
  const r1 = await sendMessage(gw!.port, { from: '', to: ['bob@other.test'], data: forged(tok, `${tok}@other.test`) });
  assert.equal(r1.rcpts[0]?.code, 250);
  assert.equal(r1.end?.code, 250);
  const m = await waitFor('the scored bounce', () => delivered(site!, 'bob', tok)[0]);
  assert.match(m, /X-Mailgate-Status: .*BATV_MISSING/);
  assert.match(m, /X-Test-Backscatter: reason=batv-missing kind=postfix/);
  // A foreign Message-ID never recorded outbound adds BOUNCE_FOREIGN_MSGID: quarantined, not delivered.
  const tok2 = token();
  const r2 = await sendMessage(gw!.port, { from: '', to: ['bob@other.test'], data: forged(tok2, `${tok2}@botnet.test`) });
  assert.equal(r2.end?.code, 250);
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(delivered(site!, 'bob', tok2).length, 0);
  const q = gw!.runtime.config.quarantine.dir;
  const quarantined = readdirSync(q, { recursive: true })
    .map(String)
    .filter((f) => f.endsWith('.json'))
    .map((f) => readFileSync(join(q, f), 'utf8'))
    .find((j) => j.includes(tok2));
  assert.ok(quarantined, 'quarantined');
  assert.match(quarantined, /BOUNCE_FOREIGN_MSGID/);
  assert.match(quarantined, /BATV_MISSING/);
});

test('a null-sender message to two recipients is scored (BOUNCE_MULTI_RCPT)', { skip }, async () => {
  const tok = token();
  const ring = keyringOf(gw!.runtime.config.backscatter)!;
  // Valid tags pass BATV; with two recipients the bounce is still genuine (tags prove it), so no score.
  const ok = await sendMessage(gw!.port, {
    from: '',
    to: [batvSign('alice@example.test', ring, Date.now()), batvSign('bob@example.test', ring, Date.now())],
    data: forged(tok, `${tok}@x.example.net`),
  });
  assert.equal(ok.end?.code, 250);
  const genuine = await waitFor('the tagged bounce', () => delivered(site!, 'bob', tok)[0]);
  assert.match(genuine, /X-Test-Backscatter: reason=batv-valid/);
  assert.doesNotMatch(genuine, /BOUNCE_MULTI_RCPT/);
  // Untagged, tag-only domain, two recipients: multi-rcpt and BATV both score.
  const tok2 = token();
  const r = await sendMessage(gw!.port, { from: '', to: ['alice@other.test', 'bob@other.test'], data: forged(tok2, `${tok2}@other.test`) });
  assert.equal(r.end?.code, 250);
  const q = gw!.runtime.config.quarantine.dir;
  const found = await waitFor('the multi-rcpt bounce', () => {
    const d = delivered(site!, 'bob', tok2)[0];
    if (d) return d;
    const j = readdirSync(q, { recursive: true })
      .map(String)
      .filter((f) => f.endsWith('.json'))
      .map((f) => readFileSync(join(q, f), 'utf8'))
      .find((x) => x.includes(tok2));
    return j;
  });
  assert.match(found, /BOUNCE_MULTI_RCPT/);
});

test('the outbound listener refuses clients outside relay_networks with 554 5.7.1', { skip }, async () => {
  const greeting = await new Promise<string>((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port: outPort, localAddress: '127.0.0.2' });
    let buf = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      buf += d;
      if (buf.includes('\n')) {
        s.destroy();
        resolve(buf);
      }
    });
    s.on('error', reject);
    s.on('close', () => resolve(buf));
  });
  assert.match(greeting, /^554 5\.7\.1 Relay access denied: \[127\.0\.0\.2\]/);
  // From 127.0.0.1 (in relay_networks) the same listener greets normally.
  const c = await RawSmtp.connect(outPort);
  assert.equal((await c.read())?.code, 220);
  c.close();
});

test("the outbound listener relays before-queue: the MTA gets the next hop's own refusal", { skip }, async () => {
  const c = await RawSmtp.connect(outPort);
  await c.read();
  await c.cmd('EHLO site.example.test');
  assert.equal((await c.cmd('MAIL FROM:<alice@example.test>'))?.code, 250);
  const r = await c.cmd('RCPT TO:<refused@remote.test>');
  assert.equal(r?.code, 550);
  assert.match(r?.text ?? '', /^5\.1\.1 .*no such user here/);
  await c.cmd('QUIT').catch(() => undefined);
  c.close();
});

test('the outbound listener relays the message unchanged with a signed MAIL FROM, and records its Message-ID', { skip }, async () => {
  const tok = token();
  const content = `From: Alice <alice@example.test>\r\nTo: carol@remote.test\r\nDate: ${new Date().toUTCString()}\r\nSubject: ${tok}\r\nMessage-ID: <${tok}@mua.example.net>\r\nX-Odd:   spacing kept\r\n\r\nline one\r\n.leading dot\r\n\r\nlast line\r\n`;
  // sendMessage writes raw DATA: dot-stuff it (RFC 5321 4.5.2) as an MTA would.
  const r = await sendMessage(outPort, { from: 'alice@example.test', to: ['carol@remote.test'], data: content.replace(/\r\n\./g, '\r\n..') });
  assert.equal(r.mail?.code, 250);
  assert.equal(r.end?.code, 250);
  assert.match(r.end?.text ?? '', /queued as/, "the next hop's own 250");
  const dir = join(nextHop!.mailBase, 'carol', 'new');
  const raw = await waitFor('delivery at the next hop', () => {
    if (!existsSync(dir)) return undefined;
    return readdirSync(dir)
      .map((f) => readFileSync(join(dir, f), 'latin1'))
      .find((m) => m.includes(tok));
  });
  assert.match(raw, /^Return-Path: <prvs=3\d{3}[0-9a-f]{6}=alice@example\.test>/);
  // Everything from our From line on is byte-identical (Postfix stores LF line endings).
  const expected = content.replace(/\r\n/g, '\n');
  assert.equal(raw.slice(raw.indexOf('From: Alice')), expected, 'content unchanged');
  const check = gw!.runtime.checks.find((c) => c.name === 'backscatter') as unknown as { record: { seen(id: string, now: number): Promise<string> } };
  assert.equal(await check.record.seen(`${tok}@mua.example.net`, Date.now()), 'seen');
  assert.equal(await check.record.seen(`other-${tok}@mua.example.net`, Date.now()), 'unseen');
});
