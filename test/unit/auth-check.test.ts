// The auth checks end to end at the check level: real DKIM/ARC signing with keys generated here,
// zone data served by the loopback test DNS server, facts and header edits checked.
import { finalizeHeader } from '../../src/pipeline/finalize.ts';
import { parseHeaderBlock } from '../../src/message/headers.ts';
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { dkimSign, sealMessage } from 'mailauth';
import { registry } from '../../src/metrics/registry.ts';
import { createAuthChecks } from '../../src/checks/auth/auth-checks.ts';
import { heloIsDomain } from '../../src/checks/auth/spf.ts';
import { authservIdOf, findForged, removalPredicate } from '../../src/checks/auth/auth-results-header.ts';
import { Resolver } from '../../src/dns/resolver.ts';
import type { Check, CheckOutput } from '../../src/pipeline/check.ts';
import type { FactRecord, FactValue } from '../../src/pipeline/facts.ts';
import { startDnsServer, type TestDnsServer, type Zone } from '../helpers/dns-server.ts';
import { authConfig, messageView, runCheck } from '../conformance/harness.ts';

const rsa = (bits = 2048) => generateKeyPairSync('rsa', { modulusLength: bits });
const keys = { example: rsa(), other: rsa(), list: rsa(), seal: rsa() };
const pem = (k: KeyObject): string => k.export({ format: 'pem', type: 'pkcs8' }).toString();
const dkimTxt = (k: KeyObject): string => `v=DKIM1; k=rsa; p=${k.export({ format: 'der', type: 'spki' }).toString('base64')}`;

const baseZone: Zone = {
  'example.com': { TXT: ['v=spf1 ip4:192.0.2.10 -all'], A: ['192.0.2.10'] },
  's1._domainkey.example.com': { TXT: [dkimTxt(keys.example.publicKey)] },
  '_dmarc.example.com': { TXT: ['v=DMARC1; p=reject; pct=50; adkim=r'] },
  'other.net': { TXT: ['v=spf1 ip4:192.0.2.20 -all'] },
  's1._domainkey.other.net': { TXT: [dkimTxt(keys.other.publicKey)] },
  'list.example.net': { TXT: ['v=spf1 ip4:192.0.2.30 -all'] },
  'arc._domainkey.list.example.net': { TXT: [dkimTxt(keys.list.publicKey)] },
  'seal._domainkey.gw.example.org': { TXT: [dkimTxt(keys.seal.publicKey)] },
  'mail.example.com': { A: ['192.0.2.10'], TXT: ['v=spf1 a -all'] },
};

function message(opts: { from?: string | string[] | null; subject?: string; extra?: string[]; body?: string } = {}): Buffer {
  const from = opts.from === undefined ? ['Alice <alice@example.com>'] : opts.from === null ? [] : Array.isArray(opts.from) ? opts.from : [opts.from];
  const lines = [
    ...(opts.extra ?? []),
    ...from.map((f) => `From: ${f}`),
    'To: bob@example.test',
    `Subject: ${opts.subject ?? 'hello'}`,
    'Date: Mon, 23 Nov 2026 10:00:00 +0000',
    'Message-ID: <m1@example.com>',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    '',
    opts.body ?? 'Hello Bob,\r\nthis is a test.\r\n',
  ];
  return Buffer.from(lines.join('\r\n'));
}

async function sign(raw: Buffer, domain: string, key: KeyObject, selector = 's1'): Promise<Buffer> {
  // mailauth signs what `signatureData` lists (the top-level key fields are per-signature defaults).
  const one = { signingDomain: domain, selector, privateKey: pem(key) };
  const res = await dkimSign(raw, { ...one, signatureData: [one] });
  assert.equal(res.errors.length, 0);
  return Buffer.concat([Buffer.from(res.signatures), raw]);
}

let dns: TestDnsServer;
let silent: TestDnsServer;
before(async () => {
  dns = await startDnsServer({ zone: baseZone });
  silent = await startDnsServer({ mode: 'silent' });
});
after(async () => {
  await dns.close();
  await silent.close();
});

function checks(overrides: Record<string, unknown> = {}, server: TestDnsServer = dns, hostname = 'mx.mailgate.test'): { spf: Check; data: Check } {
  // A generous deadline for the answering server (the test server shares our event loop); the
  // silent one is asked with a short one.
  const resolver = new Resolver({ servers: [server.address], timeoutMs: server === silent ? 300 : 1500 });
  const [spf, data] = createAuthChecks({ hostname, auth: authConfig(overrides) }, { dns: resolver });
  return { spf: spf as Check, data: data as Check };
}

interface Envelope {
  ip?: string;
  helo?: string;
  from?: string;
}

/** Runs SPF at mail, then the data check with the SPF facts, like the pipeline does. */
async function authenticate(c: { spf: Check; data: Check }, raw: Buffer, env: Envelope = {}): Promise<CheckOutput> {
  const from = env.from ?? 'alice@example.com';
  const facts: Record<string, FactValue> = {
    'client.ip': env.ip ?? '192.0.2.10',
    'helo.name': env.helo ?? 'mail.example.com',
    'mail.from': from,
    'mail.null_sender': from === '',
  };
  const mail = await runCheck(c.spf, 'mail', facts);
  return runCheck(c.data, 'data', Object.fromEntries(mail.facts.entries()), messageView(raw));
}

const sigs = (out: CheckOutput): FactRecord[] => out.facts.get('dkim.signatures') as FactRecord[];
const arHeader = (out: CheckOutput): string => out.edits.addHeaders.find((h) => h.name === 'Authentication-Results')?.value ?? '';

describe('results', () => {
  test('aligned DKIM and SPF: everything passes, Authentication-Results says so', async () => {
    const out = await authenticate(checks(), await sign(message(), 'example.com', keys.example.privateKey));
    const f = out.facts;
    assert.equal(f.get('spf.result'), 'pass');
    assert.equal(f.get('spf.identity'), 'mailfrom');
    assert.equal(f.get('spf.helo_result'), 'pass');
    assert.equal(f.get('dkim.result'), 'pass');
    assert.deepEqual(f.get('dkim.pass_domains'), ['example.com']);
    const s = sigs(out)[0];
    assert.equal(s?.domain, 'example.com');
    assert.equal(s?.selector, 's1');
    assert.equal(s?.algorithm, 'rsa-sha256');
    assert.equal(s?.key_bits, 2048);
    assert.equal(s?.aligned, true);
    assert.equal(s?.body_length_limited, false);
    assert.equal(f.get('dmarc.result'), 'pass');
    assert.equal(f.get('dmarc.policy'), 'reject');
    assert.equal(f.get('dmarc.pct'), 50);
    assert.equal(f.get('dmarc.alignment'), 'both');
    assert.equal(f.get('dmarc.adkim'), 'r');
    assert.equal(f.get('dmarc.reason'), '');
    assert.equal(f.get('arc.result'), 'none');
    assert.equal(f.get('auth.dns_temperror'), false);
    assert.ok((f.get('auth.dns_lookups') as number) >= 3);
    const ar = arHeader(out);
    assert.match(
      ar,
      /^mx\.mailgate\.test; spf=pass .*smtp\.mailfrom=alice@example\.com; dkim=pass .*header\.i=@example\.com header\.s=s1 header\.a=rsa-sha256/,
    );
    assert.match(ar, /; dmarc=pass \(p=REJECT arc=none\) policy\.dmarc=reject header\.from=example\.com/);
    assert.match(ar, /; arc=none$/);
  });

  test('DMARC p=reject failure: nothing aligned', async () => {
    const out = await authenticate(checks(), await sign(message(), 'other.net', keys.other.privateKey), {
      ip: '192.0.2.20',
      from: 'bounce@other.net',
      helo: 'mx.other.net',
    });
    const f = out.facts;
    assert.equal(f.get('spf.result'), 'pass');
    assert.equal(f.get('spf.domain'), 'other.net');
    assert.equal(f.get('dkim.result'), 'pass');
    assert.equal(sigs(out)[0]?.aligned, false);
    assert.equal(f.get('dmarc.result'), 'fail');
    assert.equal(f.get('dmarc.policy'), 'reject');
    assert.equal(f.get('dmarc.alignment'), 'none');
    assert.equal(f.get('dmarc.override'), '');
    assert.match(arHeader(out), /dmarc=fail/);
  });

  const fromCases = [
    { desc: 'no From field', from: null, reason: 'FROM_MISSING' },
    { desc: 'two From fields', from: ['alice@example.com', 'mallory@evil.example'], reason: 'FROM_MULTIPLE' },
    { desc: 'one From with two domains', from: 'alice@example.com, mallory@evil.example', reason: 'FROM_MULTIPLE' },
  ];
  for (const c of fromCases) {
    test(`${c.desc} → dmarc=none with reason ${c.reason}, never a pass`, async () => {
      const out = await authenticate(checks(), message({ from: c.from }));
      assert.equal(out.facts.get('dmarc.result'), 'none');
      assert.equal(out.facts.get('dmarc.reason'), c.reason);
      assert.equal(out.facts.get('dmarc.policy'), '');
    });
  }

  test('null sender: SPF checks the HELO identity', async () => {
    const out = await authenticate(checks(), message(), { from: '', helo: 'mail.example.com' });
    assert.equal(out.facts.get('spf.identity'), 'helo');
    assert.equal(out.facts.get('spf.domain'), 'mail.example.com');
    assert.equal(out.facts.get('spf.result'), 'pass');
    assert.match(arHeader(out), /spf=pass .*smtp\.helo=mail\.example\.com/);
  });

  test('unsigned message: dkim=none', async () => {
    const out = await authenticate(checks(), message());
    assert.equal(out.facts.get('dkim.result'), 'none');
    assert.deepEqual(out.facts.get('dkim.signatures'), []);
    assert.match(arHeader(out), /dkim=none/);
  });

  test('metrics: mailgate_auth_results_total', async () => {
    await authenticate(checks(), message());
    const text = await registry.metrics();
    for (const m of ['spf', 'dkim', 'dmarc', 'arc']) assert.match(text, new RegExp(`mailgate_auth_results_total\\{method="${m}",result="[a-z]+"\\} [1-9]`));
  });
});

describe('DNS trouble is temperror, never a pass', () => {
  test('a DNS server that never answers', async () => {
    const c = checks({}, silent);
    const t0 = performance.now();
    const out = await authenticate(c, await sign(message(), 'example.com', keys.example.privateKey));
    assert.ok(performance.now() - t0 < 3000);
    assert.equal(out.facts.get('spf.result'), 'temperror');
    assert.equal(out.facts.get('dkim.result'), 'temperror');
    assert.equal(out.facts.get('dmarc.result'), 'temperror');
    assert.equal(out.facts.get('auth.dns_temperror'), true);
    assert.doesNotMatch(arHeader(out), /=pass/);
  });
});

describe('caps', () => {
  test('max_dkim_signatures: signatures that may align are verified first, the rest reported as policy', async () => {
    let raw = message();
    raw = await sign(raw, 'other.net', keys.other.privateKey);
    raw = await sign(raw, 'example.com', keys.example.privateKey);
    raw = await sign(raw, 'other.net', keys.other.privateKey);
    const out = await authenticate(checks({ max_dkim_signatures: 1 }), raw);
    assert.equal(out.facts.get('dkim.count'), 3);
    assert.equal(out.facts.get('dkim.skipped'), 2);
    const s = sigs(out);
    assert.deepEqual(
      s.map((r) => [r.domain, r.result]),
      [
        ['example.com', 'pass'],
        ['other.net', 'policy'],
        ['other.net', 'policy'],
      ],
    );
    assert.equal(out.facts.get('dmarc.result'), 'pass');
  });

  test('keys above max_key_bits are not used: dkim=policy', async () => {
    const big = rsa(3072);
    dns.zone = { ...baseZone, 'big._domainkey.example.com': { TXT: [dkimTxt(big.publicKey)] } };
    try {
      const out = await authenticate(checks({ max_key_bits: 2048 }), await sign(message(), 'example.com', big.privateKey, 'big'));
      const s = sigs(out)[0];
      assert.equal(s?.result, 'policy');
      assert.equal(s?.key_bits, 3072);
      assert.match(String(s?.comment), /larger than 2048/);
      assert.equal(out.facts.get('dkim.result'), 'policy');
    } finally {
      dns.zone = baseZone;
    }
  });

  test('keys below min_key_bits: dkim=policy (weak key)', async () => {
    const small = rsa(1024);
    dns.zone = { ...baseZone, 'small._domainkey.example.com': { TXT: [dkimTxt(small.publicKey)] } };
    try {
      const out = await authenticate(checks({ min_key_bits: 2048 }), await sign(message(), 'example.com', small.privateKey, 'small'));
      assert.equal(sigs(out)[0]?.result, 'policy');
      assert.equal(sigs(out)[0]?.key_bits, 1024);
    } finally {
      dns.zone = baseZone;
    }
  });
});

describe('forged results and stripped headers', () => {
  const headers = [
    { name: 'Authentication-Results', value: 'mx.mailgate.test; dkim=pass header.d=bank.example' },
    { name: 'Authentication-Results', value: '(comment) "MX.Mailgate.Test" 1; spf=pass' },
    { name: 'Authentication-Results', value: 'upstream.example; spf=pass' },
    { name: 'ARC-Authentication-Results', value: 'i=2; mx.mailgate.test; dmarc=pass' },
    { name: 'ARC-Seal', value: 'i=2; a=rsa-sha256; cv=pass; d=evil.example; s=x; b=AAAA' },
    { name: 'ARC-Message-Signature', value: 'i=2; a=rsa-sha256; d=evil.example; s=x; h=from; bh=x; b=AAAA' },
    { name: 'ARC-Authentication-Results', value: 'i=1; lists.example.org; dmarc=pass' },
    { name: 'ARC-Seal', value: 'i=1; a=rsa-sha256; cv=none; d=example.org; s=x; b=AAAA' },
    { name: 'X-MS-Exchange-Organization-SCL', value: '-1' },
    { name: 'X-Other', value: 'kept' },
  ];
  const cases = [
    { desc: 'A-R with our authserv-id', index: 0, removed: true },
    { desc: 'A-R with our id quoted, other case, after a comment, with a version', index: 1, removed: true },
    { desc: 'A-R from another ADMD', index: 2, removed: false },
    { desc: 'AAR claiming our id', index: 3, removed: true },
    { desc: 'ARC-Seal of the same set', index: 4, removed: true },
    { desc: 'AMS of the same set', index: 5, removed: true },
    { desc: 'another ARC set', index: 6, removed: false },
    { desc: 'its seal', index: 7, removed: false },
    { desc: 'strip_headers glob', index: 8, removed: true },
    { desc: 'other headers', index: 9, removed: false },
  ];
  const ids = ['mx.mailgate.test'];
  const forged = findForged(headers, ids);
  const remove = removalPredicate(ids, forged, ['X-MS-Exchange-Organization-*']);
  for (const c of cases) {
    test(c.desc, () => {
      const h = headers[c.index] as { name: string; value: string };
      assert.equal(remove(h.name, h.value), c.removed);
    });
  }
  test('authserv-id parsing', () => {
    assert.equal(authservIdOf('  mx.example; spf=pass'), 'mx.example');
    assert.equal(authservIdOf('(c (nested)) "a b"; none'), 'a b');
  });

  test('the data check registers the removal before anything else and counts the forgeries', async () => {
    const raw = message({
      extra: ['Authentication-Results: mx.mailgate.test; dmarc=pass header.from=example.com', 'X-MS-Exchange-Organization-AuthAs: Internal'],
    });
    const out = await authenticate(checks(), raw);
    assert.equal(out.facts.get('auth.forged_results_removed'), 1);
    const rm = out.edits.removeHeaders[0];
    assert.ok(rm);
    assert.equal(rm('Authentication-Results', 'mx.mailgate.test; dmarc=pass'), true);
    assert.equal(rm('x-ms-exchange-organization-authas', 'Internal'), true);
    assert.equal(rm('Subject', 'hello'), false);
  });
});

describe('ARC', () => {
  /** A mailing list hop: verified the original (dmarc=pass), then changed the subject and sealed. */
  async function viaList(): Promise<Buffer> {
    const original = await sign(message(), 'example.com', keys.example.privateKey);
    const modified = Buffer.from(original.toString('latin1').replace('Subject: hello', 'Subject: [list] hello'), 'latin1');
    const seal = await sealMessage(modified, {
      signingDomain: 'list.example.net',
      selector: 'arc',
      privateKey: pem(keys.list.privateKey),
      authResults: 'list.example.net; dkim=pass header.d=example.com; spf=pass smtp.mailfrom=example.com; dmarc=pass header.from=example.com',
      cv: 'none',
    });
    return Buffer.concat([seal, modified]);
  }
  const listEnvelope = { ip: '192.0.2.30', from: 'list-bounces@list.example.net', helo: 'list.example.net' };

  test('a trusted sealer that saw dmarc=pass overrides the DMARC failure caused by forwarding', async () => {
    const out = await authenticate(checks({ trusted_arc_sealers: ['example.net'] }), await viaList(), listEnvelope);
    const f = out.facts;
    assert.equal(f.get('dkim.result'), 'fail');
    assert.equal(f.get('dmarc.result'), 'fail');
    assert.equal(f.get('arc.result'), 'pass');
    assert.equal(f.get('arc.sealer'), 'list.example.net');
    assert.equal(f.get('arc.instances'), 1);
    assert.equal(f.get('arc.trusted_sealer'), true);
    assert.equal(f.get('arc.upstream_dmarc'), 'pass');
    assert.equal(f.get('dmarc.override'), 'arc');
    assert.match(arHeader(out), /dmarc=fail \(.*override=arc sealer=list\.example\.net\)/);
  });

  test('an untrusted sealer does not', async () => {
    const out = await authenticate(checks(), await viaList(), listEnvelope);
    assert.equal(out.facts.get('arc.result'), 'pass');
    assert.equal(out.facts.get('arc.trusted_sealer'), false);
    assert.equal(out.facts.get('dmarc.override'), '');
  });

  test('our ARC seal validates at the next hop', async () => {
    const gw = checks({ arc_seal: { domain: 'gw.example.org', selector: 'seal', key: pem(keys.seal.privateKey) } });
    const raw = await sign(message(), 'example.com', keys.example.privateKey);
    const out = await authenticate(gw, raw);
    assert.equal(out.facts.get('arc.sealed'), true);
    assert.deepEqual(
      out.edits.addHeaders.map((h) => h.name),
      ['Authentication-Results'],
    );
    assert.deepEqual(
      out.edits.signers.map((x) => x.name),
      ['arc-seal'],
    );
    // The seal is made in the finalize step, over the header block as delivered (a subject tag too).
    const split = raw.indexOf('\r\n\r\n') + 4;
    out.edits.tagSubject = '[SPAM]';
    const final = await finalizeHeader({ fields: parseHeaderBlock(raw.subarray(0, split)), headerTerminated: true, edits: out.edits, trace: [] });
    assert.deepEqual(
      final.added.map((h) => h.name),
      ['ARC-Seal', 'ARC-Message-Signature', 'ARC-Authentication-Results', 'Authentication-Results'],
    );
    assert.match(final.added[2]?.value ?? '', /^i=1; mx\.mailgate\.test; spf=pass/);
    assert.match(final.block.toString(), /\r\nSubject: \[SPAM\] /);
    const relayed = Buffer.concat([final.block, raw.subarray(split)]);
    const next = await authenticate(checks({}, dns, 'mx2.example.test'), relayed);
    assert.equal(next.facts.get('arc.result'), 'pass');
    assert.equal(next.facts.get('arc.sealer'), 'gw.example.org');
    assert.equal(next.facts.get('arc.upstream_dmarc'), 'pass');
  });
});

describe('heloIsDomain: which HELO names get an SPF check', () => {
  const cases = [
    { desc: 'a host name', helo: 'mail.example.com', expected: true },
    { desc: 'trailing dot', helo: 'mail.example.com.', expected: true },
    { desc: 'underscore', helo: 'a_b.example', expected: true },
    { desc: 'no dot', helo: 'localhost', expected: false },
    { desc: 'IPv4 address', helo: '192.0.2.1', expected: false },
    { desc: 'digits and dots that are no address', helo: '1.2.3.4.5', expected: true },
    { desc: 'address literal', helo: '[192.0.2.1]', expected: false },
    { desc: 'IPv6 address', helo: '2001:db8::1', expected: false },
    { desc: 'other characters', helo: 'mail.exa mple.com', expected: false },
  ];
  for (const c of cases) test(c.desc, () => assert.equal(heloIsDomain(c.helo), c.expected));
});
