// End to end, the heuristics-only setup (a site that cannot sign: BATV off, the outbound listener
// only records Message-IDs): Postfix's own bounce of mail we sent is recognised by its recorded
// Message-ID and delivered; a forged bounce for a Message-ID never sent is scored.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, postfixAvailable, startPostfix, type PostfixInstance } from '../helpers/postfix.ts';
import { startGateway, testConfig, type TestGateway } from '../helpers/gateway.ts';
import { sendMessage } from '../helpers/smtp-client.ts';
import { writeRules } from '../helpers/rules-dir.ts';

const avail = postfixAvailable();
const skip = avail.ok ? false : avail.why;

let site: PostfixInstance | undefined;
let nextHop: PostfixInstance | undefined;
let gw: TestGateway | undefined;

const token = () => `bh${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;

function delivered(pf: PostfixInstance, user: string, needle: string): string[] {
  const dir = join(pf.mailBase, user, 'new');
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .map((f) => readFileSync(join(dir, f), 'latin1').replace(/\r?\n[ \t]+/g, ' '))
    .filter((m) => m.includes(needle));
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
  const outPort = await freePort();
  nextHop = await startPostfix({
    domains: ['remote.test'],
    users: ['carol'],
    main: {
      myhostname: 'relay.remote.test',
      smtpd_reject_unlisted_recipient: 'no',
      transport_maps: `inline:{ example.test=smtp:[127.0.0.1]:${gwPort} }`,
    },
  });
  site = await startPostfix({
    domains: ['example.test'],
    users: ['alice'],
    // transport_maps instead of relayhost: only mail for remote.test leaves through the listener.
    main: { transport_maps: `inline:{ remote.test=smtp:[127.0.0.1]:${outPort} }` },
  });
  const rulesDir = mkdtempSync(join(tmpdir(), 'mailgate-bh-rules-'));
  cpSync(new URL('../../rules/', import.meta.url), rulesDir, { recursive: true });
  writeRules(rulesDir, {
    'local.d/99-test.yaml': `rules:
  - name: TEST_SHOW_BACKSCATTER
    description: test only - shows what decided
    when: { mail.null_sender: true }
    add_header: { X-Test-Backscatter: "reason={backscatter.reason} genuine={backscatter.genuine}" }
`,
  });
  const config = testConfig({
    listen: [{ host: '127.0.0.1', port: gwPort }],
    backend: { host: '127.0.0.1', port: site.port, command_timeout_ms: 5000, data_timeout_ms: 10_000, connect_timeout_ms: 2000 },
    rules: rulesDir,
    backscatter: {
      outbound: {
        listen: { host: '127.0.0.1', port: outPort },
        relay_networks: ['127.0.0.0/8'],
        next_hop: { host: '127.0.0.1', port: nextHop.port },
        sign: false,
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

test('heuristics only: the bounce of a message really sent (recorded Message-ID) is delivered unscored', { skip }, async () => {
  const tok = token();
  const r = await sendMessage(site!.port, {
    from: 'alice@example.test',
    to: [`nobody-${tok}@remote.test`],
    data: `From: alice@example.test\r\nTo: nobody-${tok}@remote.test\r\nSubject: ${tok}\r\nMessage-ID: <${tok}@laptop.example.net>\r\n\r\nhi\r\n`,
  });
  assert.equal(r.end?.code, 250);
  const bounce = await waitFor('the bounce', () => delivered(site!, 'alice', tok).find((m) => m.includes('Undelivered Mail Returned to Sender')));
  assert.match(bounce, /X-Postfix-Sender: rfc822; alice@example\.test/, 'not signed (sign: false)');
  assert.match(bounce, /X-Test-Backscatter: reason=recorded-outbound genuine=true/);
  assert.doesNotMatch(bounce, /BOUNCE_/);
});

test('heuristics only: a forged bounce for a Message-ID never sent is scored BOUNCE_FOREIGN_MSGID', { skip }, async () => {
  const tok = token();
  const data =
    `From: MAILER-DAEMON@evil.test\r\nTo: alice@example.test\r\nDate: ${new Date().toUTCString()}\r\nMessage-ID: <d-${tok}@evil.test>\r\n` +
    `Subject: failure notice ${tok}\r\n\r\nHi. This is the qmail-send program at evil.test.\r\n\r\n--- Below this line is a copy of the message.\r\n\r\n` +
    `From: alice@example.test\r\nMessage-ID: <${tok}@spam.botnet.test>\r\nSubject: pills\r\n\r\nbuy\r\n`;
  const r = await sendMessage(gw!.port, { from: '', to: ['alice@example.test'], data });
  assert.equal(r.rcpts[0]?.code, 250, 'BATV off: nothing refused at RCPT');
  assert.equal(r.end?.code, 250);
  const m = await waitFor('the scored bounce', () => delivered(site!, 'alice', tok)[0]);
  assert.match(m, /X-Test-Backscatter: reason=foreign-msgid genuine=false/);
  assert.match(m, /X-Mailgate-Status: .*BOUNCE_FOREIGN_MSGID\(\+4\)/);
});
