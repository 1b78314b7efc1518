// Regression tests for the transaction core's ordering and finalize step, end to end through SMTP,
// mailgate and a private Postfix: checks of one stage that read another check's facts run after
// it (greylisting skips DMARC-pass mail; a limit keyed on the DMARC domain counts), and the ARC
// seal is made after a rule tagged the Subject, so the next hop verifies it as pass.
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { cpSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { dkimSign, dkimVerify, arc as arcVerify } from 'mailauth';
import type { ARCData, DNSResolver } from 'mailauth';
import { Resolver } from '../../src/dns/resolver.ts';
import { startDnsServer, type TestDnsServer, type Zone } from '../helpers/dns-server.ts';
import { startGateway, testConfig, type TestGateway } from '../helpers/gateway.ts';
import { startPostfix, type PostfixInstance } from '../helpers/postfix.ts';
import { writeRules } from '../helpers/rules-dir.ts';
import { sendMessage } from '../helpers/smtp-client.ts';
import { token } from '../helpers/maildir.ts';
import { readdirSync, readFileSync, existsSync } from 'node:fs';

const rsa = () => generateKeyPairSync('rsa', { modulusLength: 2048 });
const senderKey = rsa();
const sealKey = rsa();
const pem = (k: KeyObject): string => k.export({ format: 'pem', type: 'pkcs8' }).toString();
const dkimTxt = (k: KeyObject): string => `v=DKIM1; k=rsa; p=${k.export({ format: 'der', type: 'spki' }).toString('base64')}`;

const zone: Zone = {
  // SPF does not authorise the test client (127.0.0.1): DMARC passes through aligned DKIM only.
  'signed.example': { TXT: ['v=spf1 -all'] },
  's1._domainkey.signed.example': { TXT: [dkimTxt(senderKey.publicKey)] },
  '_dmarc.signed.example': { TXT: ['v=DMARC1; p=none'] },
  'plain.example': { TXT: ['v=spf1 -all'] },
  'arc._domainkey.mx.example.test': { TXT: [dkimTxt(sealKey.publicKey)] },
};

function message(tok: string, from: string): Buffer {
  return Buffer.from(
    `From: ${from}\r\nTo: alice@example.test\r\nSubject: ${tok}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <${tok}@x.example>\r\n\r\nHello Alice,\r\nthis is ${tok}.\r\n`,
  );
}

async function signed(raw: Buffer): Promise<Buffer> {
  const one = { signingDomain: 'signed.example', selector: 's1', privateKey: pem(senderKey.privateKey) };
  const res = await dkimSign(raw, { ...one, signatureData: [one] });
  return Buffer.concat([Buffer.from(res.signatures), raw]);
}

/** The shipped rules plus a local.d override, in a temp dir. */
function rules(local: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'mailgate-core-order-'));
  cpSync(join(import.meta.dirname, '..', '..', 'rules'), dir, { recursive: true });
  writeRules(dir, { 'local.d/90-test.yaml': local });
  return dir;
}

let pf: PostfixInstance;
let dns: TestDnsServer;
const gateways: TestGateway[] = [];

async function gateway(local: string, extra: Record<string, unknown> = {}): Promise<TestGateway> {
  const gw = await startGateway(
    testConfig({
      backend: { host: '127.0.0.1', port: pf.port, command_timeout_ms: 5000, data_timeout_ms: 10_000 },
      dns: { servers: [dns.address], timeout_ms: 1000 },
      rules: rules(local),
      ...extra,
    }),
  );
  gateways.push(gw);
  return gw;
}

async function delivered(tok: string, timeoutMs = 10_000): Promise<Buffer | undefined> {
  const dir = join(pf.mailBase, 'alice', 'new');
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (existsSync(dir))
      for (const f of readdirSync(dir)) {
        const c = readFileSync(join(dir, f));
        if (c.includes(tok)) return c;
      }
    await new Promise((r) => setTimeout(r, 100));
  }
  return undefined;
}

before(async () => {
  pf = await startPostfix();
  dns = await startDnsServer({ zone });
});
after(async () => {
  for (const g of gateways) await g.stop(1000);
  await dns?.close();
  pf?.destroy();
});

describe('checks of one stage see the facts they need', () => {
  test('greylisting is skipped for DKIM-aligned DMARC-pass mail (and still defers the rest)', async () => {
    const gw = await gateway('greylist:\n  enabled: true\n  skip: { dmarc.result: pass }\n');
    const tok = token('grey-pass');
    const ok = await sendMessage(gw.port, {
      from: 'news@signed.example',
      to: ['alice@example.test'],
      data: await signed(message(tok, 'News <news@signed.example>')),
    });
    assert.equal(ok.end?.code, 250, `DMARC-pass mail is not greylisted: ${ok.end?.text}`);
    assert.ok(await delivered(tok), 'delivered');
    const tok2 = token('grey-defer');
    const deferred = await sendMessage(gw.port, { from: 'someone@plain.example', to: ['alice@example.test'], data: message(tok2, 'someone@plain.example') });
    assert.equal(deferred.end?.code, 451, 'unauthenticated mail is greylisted');
    assert.match(deferred.end?.text ?? '', /^4\.7\.1 /);
  });

  test('a rate limit keyed on dmarc_domain counts (second message of the hour deferred)', async () => {
    const gw = await gateway('ratelimits:\n  - { name: dmarc_domain_messages, key: dmarc_domain, phase: message, rate: 1/1h, action: tempfail }\n');
    const first = await sendMessage(gw.port, {
      from: 'news@signed.example',
      to: ['alice@example.test'],
      data: await signed(message(token('rl1'), 'News <news@signed.example>')),
    });
    assert.equal(first.end?.code, 250, first.end?.text);
    const second = await sendMessage(gw.port, {
      from: 'news@signed.example',
      to: ['alice@example.test'],
      data: await signed(message(token('rl2'), 'News <news@signed.example>')),
    });
    assert.equal(second.end?.code, 451, `the second message of the DMARC domain is over the limit: ${second.end?.text}`);
    // Mail that does not authenticate has no DMARC domain: the limit does not apply to it.
    const other = await sendMessage(gw.port, { from: 'x@plain.example', to: ['alice@example.test'], data: message(token('rl3'), 'x@plain.example') });
    assert.equal(other.end?.code, 250, other.end?.text);
  });
});

describe('finalize: edits first, then the signers', () => {
  test('a message whose Subject a rule tags arrives with an ARC set mailauth verifies as pass', async () => {
    const tok = token('arc-tag');
    const gw = await gateway(
      `rules:\n  - { name: TAG_TEST, description: tag this test message, when: { message.subject: "${tok}" }, tag_subject: "[TAGGED]" }\n`,
      {
        auth: { arc_seal: { domain: 'mx.example.test', selector: 'arc', key: pem(sealKey.privateKey) } },
      },
    );
    const r = await sendMessage(gw.port, {
      from: 'news@signed.example',
      to: ['alice@example.test'],
      data: await signed(message(tok, 'News <news@signed.example>')),
    });
    assert.equal(r.end?.code, 250, r.end?.text);
    const got = await delivered(tok);
    assert.ok(got, 'delivered');
    const text = got.toString('latin1');
    assert.match(text, new RegExp(`\\nSubject: \\[TAGGED\\] ${tok}\\n`));
    assert.match(text, /^ARC-Seal: /m);
    const crlf = Buffer.from(text.replace(/\n/g, '\r\n'), 'latin1');
    const resolver = new Resolver({ servers: [dns.address], timeoutMs: 1000 }).resolve as unknown as DNSResolver;
    const verified = await dkimVerify(crlf, { resolver });
    const arcResult = await arcVerify(verified.arc as unknown as ARCData, { resolver });
    assert.equal(arcResult.status.result, 'pass', arcResult.status.comment);
  });
});
