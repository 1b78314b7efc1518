// Sender authentication end to end: SMTP client → mailgate (auth checks, rules) → real Postfix →
// Maildir, with zone data served by the loopback test DNS server. DKIM and ARC keys are generated
// here. Covers: Authentication-Results on delivered mail, our ARC seal validating downstream,
// DMARC p=reject → 550 at SMTP time, forged Authentication-Results removed, a DNS server that does
// not answer → 4xx within the configured timeout.
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { dkimSign, dkimVerify, arc as arcVerify } from 'mailauth';
import type { ARCData, DNSResolver } from 'mailauth';
import { Resolver } from '../../src/dns/resolver.ts';
import { startDnsServer, type TestDnsServer, type Zone } from '../helpers/dns-server.ts';
import { requireBackend, startGateway, testConfig, type TestGateway } from '../helpers/gateway.ts';
import { settle, token, waitDelivered } from '../helpers/maildir.ts';
import { RawSmtp, sendMessage } from '../helpers/smtp-client.ts';

const rsa = () => generateKeyPairSync('rsa', { modulusLength: 2048 });
const senderKey = rsa();
const sealKey = rsa();
const pem = (k: KeyObject): string => k.export({ format: 'pem', type: 'pkcs8' }).toString();
const dkimTxt = (k: KeyObject): string => `v=DKIM1; k=rsa; p=${k.export({ format: 'der', type: 'spki' }).toString('base64')}`;

const zone: Zone = {
  // The test client connects from 127.0.0.1.
  'sender.example': { TXT: ['v=spf1 ip4:127.0.0.1 -all'] },
  's1._domainkey.sender.example': { TXT: [dkimTxt(senderKey.publicKey)] },
  '_dmarc.sender.example': { TXT: ['v=DMARC1; p=reject'] },
  'strict.example': { TXT: ['v=spf1 ip4:192.0.2.1 -all'] },
  '_dmarc.strict.example': { TXT: ['v=DMARC1; p=reject'] },
  'relaxed.example': { TXT: ['v=spf1 ip4:192.0.2.1 -all'] },
  '_dmarc.relaxed.example': { TXT: ['v=DMARC1; p=none'] },
  'arc._domainkey.mx.example.test': { TXT: [dkimTxt(sealKey.publicKey)] },
};

/** A site policy stricter than the shipped one: SPF temperror refused already at MAIL FROM. */
const RULES = `
rules:
  - name: DMARC_REJECT
    description: DMARC policy reject, not overridden by a trusted ARC sealer
    when: { dmarc.result: fail, dmarc.policy: reject, dmarc.override: "" }
    action: reject
    reply: { code: 550, enhanced: 5.7.1, text: "Rejected by the DMARC policy of {dmarc.domain}" }
  - name: SPF_TEMPERROR
    description: SPF could not be evaluated (DNS)
    when: { spf.result: temperror }
    action: tempfail
    reply: { code: 451, enhanced: 4.4.3, text: "Temporary DNS failure checking SPF, try again later" }
  - name: DMARC_TEMPERROR
    description: DMARC could not be evaluated (DNS)
    when: { dmarc.result: temperror }
    action: tempfail
    reply: { code: 451, enhanced: 4.4.3, text: "Temporary DNS failure checking DMARC, try again later" }
`;

function rulesDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'mailgate-auth-rules-'));
  writeFileSync(join(dir, '60-auth-test.yaml'), RULES);
  return dir;
}

function message(tok: string, from: string, extra = ''): Buffer {
  return Buffer.from(
    `${extra}From: ${from}\r\nTo: alice@example.test\r\nSubject: ${tok}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <${tok}@sender.example>\r\n\r\nHello Alice,\r\nthis is ${tok}.\r\n`,
  );
}

async function signed(raw: Buffer): Promise<Buffer> {
  const one = { signingDomain: 'sender.example', selector: 's1', privateKey: pem(senderKey.privateKey) };
  const res = await dkimSign(raw, { ...one, signatureData: [one] });
  return Buffer.concat([Buffer.from(res.signatures), raw]);
}

/** Postfix stores LF; header fields of the delivered message, unfolded. */
function fields(delivered: Buffer): Array<{ name: string; value: string }> {
  const text = delivered.toString('latin1');
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

let dns: TestDnsServer;
let silent: TestDnsServer;
let gw: TestGateway;

before(async () => {
  await requireBackend();
  dns = await startDnsServer({ zone });
  silent = await startDnsServer({ mode: 'silent' });
  // The shipped rules (rules/ in the repository): 20-auth.yaml is the default DMARC policy.
  gw = await startGateway(
    testConfig({
      dns: { servers: [dns.address], timeout_ms: 1000 },
      auth: { arc_seal: { domain: 'mx.example.test', selector: 'arc', key: pem(sealKey.privateKey) } },
    }),
  );
});
after(async () => {
  await gw?.stop(1000);
  await dns?.close();
  await silent?.close();
});

describe('authenticated mail is delivered with honest results', () => {
  test('DKIM-signed, SPF-authorised mail: Authentication-Results and a valid ARC seal reach the mailbox', async () => {
    const tok = token('auth');
    const r = await sendMessage(gw.port, {
      from: 'alice@sender.example',
      to: ['alice@example.test'],
      data: await signed(message(tok, 'Alice <alice@sender.example>')),
      helo: 'mail.sender.example',
    });
    assert.equal(r.mail?.code, 250);
    assert.equal(r.end?.code, 250, r.end?.text);
    const [got] = await waitDelivered(tok);
    assert.ok(got, 'delivered');
    const f = fields(got.content);
    const ars = f.filter((h) => h.name.toLowerCase() === 'authentication-results');
    assert.equal(ars.length, 1);
    const ar = ars[0]?.value ?? '';
    assert.match(ar, /^mx\.example\.test; spf=pass .*smtp\.mailfrom=alice@sender\.example/);
    assert.match(ar, /; dkim=pass .*header\.i=@sender\.example header\.s=s1/);
    assert.match(ar, /; dmarc=pass .*header\.from=sender\.example/);
    assert.match(ar, /; arc=none$/);
    // Our ARC set validates for the next hop, Postfix's own header fields notwithstanding.
    const names = f.map((h) => h.name);
    assert.ok(names.includes('ARC-Seal') && names.includes('ARC-Message-Signature') && names.includes('ARC-Authentication-Results'));
    const crlf = Buffer.from(got.content.toString('latin1').replace(/\n/g, '\r\n'), 'latin1');
    const resolver = new Resolver({ servers: [dns.address], timeoutMs: 1000 }).resolve as unknown as DNSResolver;
    const verified = await dkimVerify(crlf, { resolver });
    const arcResult = await arcVerify(verified.arc as unknown as ARCData, { resolver });
    assert.equal(arcResult.status.result, 'pass', arcResult.status.comment);
  });

  test('a forged Authentication-Results claiming our authserv-id is removed, others are kept', async () => {
    const tok = token('forged');
    const forged =
      'Authentication-Results: mx.example.test; dkim=pass header.d=bank.example; dmarc=pass header.from=bank.example\r\n' +
      'Authentication-Results: upstream.example; spf=pass smtp.mailfrom=x@upstream.example\r\n';
    const r = await sendMessage(gw.port, { from: 'bob@relaxed.example', to: ['alice@example.test'], data: message(tok, 'bob@relaxed.example', forged) });
    assert.equal(r.end?.code, 250, r.end?.text);
    const [got] = await waitDelivered(tok);
    assert.ok(got);
    const ars = fields(got.content).filter((h) => h.name.toLowerCase() === 'authentication-results');
    assert.equal(ars.length, 2);
    assert.match(ars[0]?.value ?? '', /^mx\.example\.test; spf=fail .*dmarc=fail/, 'ours, with the real results');
    assert.match(ars[1]?.value ?? '', /^upstream\.example; /);
    assert.doesNotMatch(got.content.toString('latin1'), /bank\.example/);
  });
});

describe('policy at SMTP time (shipped rules)', () => {
  test('DMARC p=reject failure → 550 5.7.1 naming DMARC at end of DATA, nothing delivered', async () => {
    const tok = token('dmarc');
    const r = await sendMessage(gw.port, { from: 'ceo@strict.example', to: ['alice@example.test'], data: message(tok, 'CEO <ceo@strict.example>') });
    assert.equal(r.mail?.code, 250, 'SPF fail alone is not rejected at MAIL FROM');
    assert.equal(r.end?.code, 550);
    assert.match(r.end?.text ?? '', /^5\.7\.1 .*DMARC.*strict\.example/);
    assert.equal((await settle(tok, 1000)).length, 0);
  });

  test('a DNS server that does not answer → 4xx at end of DATA (DMARC temperror) within the configured timeout', async () => {
    const timeoutMs = 500;
    const gw2 = await startGateway(testConfig({ dns: { servers: [silent.address], timeout_ms: timeoutMs } }));
    try {
      const tok = token('dnsdown');
      const c = await RawSmtp.connect(gw2.port);
      try {
        await c.read();
        await c.cmd('EHLO client.example.net');
        let t0 = performance.now();
        assert.equal((await c.cmd('MAIL FROM:<alice@sender.example>'))?.code, 250, 'SPF temperror alone is not refused by the shipped rules');
        assert.ok(performance.now() - t0 < timeoutMs * 3);
        assert.equal((await c.cmd('RCPT TO:<alice@example.test>'))?.code, 250);
        assert.equal((await c.cmd('DATA'))?.code, 354);
        c.write(message(tok, 'alice@sender.example'));
        t0 = performance.now();
        const end = await c.cmd('.');
        const took = performance.now() - t0;
        assert.equal(end?.code, 451);
        assert.match(end?.text ?? '', /^4\.\d\.\d .*DMARC/);
        assert.ok(took < timeoutMs * 4, `answered in ${Math.round(took)} ms`);
      } finally {
        c.close();
      }
      assert.equal((await settle(tok, 500)).length, 0);
    } finally {
      await gw2.stop(1000);
    }
  });
});

describe('policy at SMTP time (a stricter site policy)', () => {
  test('a DNS server that does not answer → 451 at MAIL FROM within the configured timeout', async () => {
    const timeoutMs = 500;
    const gw2 = await startGateway(testConfig({ rules: rulesDir(), dns: { servers: [silent.address], timeout_ms: timeoutMs } }));
    try {
      const tok = token('dnsdown');
      const t0 = performance.now();
      const r = await sendMessage(gw2.port, { from: 'alice@sender.example', to: ['alice@example.test'], data: message(tok, 'alice@sender.example') });
      const took = performance.now() - t0;
      assert.equal(r.mail?.code, 451);
      assert.match(r.mail?.text ?? '', /^4\.4\.3 Temporary DNS failure checking SPF/);
      // SPF's lookups are sequential; the first one already fails after one DNS deadline.
      assert.ok(took < timeoutMs * 4, `answered in ${Math.round(took)} ms`);
      assert.equal((await settle(tok, 500)).length, 0);
    } finally {
      await gw2.stop(1000);
    }
  });
});
