// The SPF memo through the SPF check: a remembered result gives the facts (and the
// Authentication-Results text) of a fresh evaluation, and is dropped as soon as an answer it read
// leaves the DNS cache, after spf_memo_max_ttl_s, for macros, DNS errors and temperrors.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createAuthChecks } from '../../src/checks/auth/auth-checks.ts';
import { spfResinfo } from '../../src/checks/auth/spf.ts';
import { SpfMemo } from '../../src/checks/auth/spf-memo.ts';
import { Resolver } from '../../src/dns/resolver.ts';
import type { Check } from '../../src/pipeline/check.ts';
import type { FactSet, FactValue } from '../../src/pipeline/facts.ts';
import { startDnsServer, type TestDnsServer, type Zone } from '../helpers/dns-server.ts';
import { authConfig, runCheck } from '../conformance/harness.ts';

const zone: Zone = {
  'example.com': { TXT: ['v=spf1 include:_spf.example.com -all'], ttl: 600 },
  '_spf.example.com': { TXT: ['v=spf1 ip4:192.0.2.0/24 ~all'], ttl: 120 },
  'mail.example.com': { A: ['192.0.2.10'], TXT: ['v=spf1 a -all'] },
  'macro.example': { TXT: ['v=spf1 exists:%{l}.allow.macro.example -all'] },
  'alice.allow.macro.example': { A: ['127.0.0.2'] },
  'exp.example': { TXT: ['v=spf1 -all exp=why.exp.example'] },
  'why.exp.example': { TXT: ['%{i} is not one of our senders'] },
  'soft.example': { TXT: ['v=spf1 ip4:192.0.2.0/24 ~all'] },
  'broken.example': { servfail: true },
};

let dns: TestDnsServer;
before(async () => {
  dns = await startDnsServer({ zone });
});
after(() => dns.close());

/** A fake clock shared by the resolver's cache and the memo. HELO checks off unless asked for (they use the memo too). */
function setup(overrides: Record<string, unknown> = { spf_helo: false }, size = 100, maxTtlMs = 300_000) {
  let t = 1_000_000;
  const clock = { now: () => t, advance: (s: number) => (t += s * 1000) };
  const resolver = new Resolver({ servers: [dns.address], timeoutMs: 1000, now: clock.now });
  const memo = new SpfMemo({ size, maxTtlMs, cached: resolver.cached, now: clock.now });
  const [spf] = createAuthChecks({ hostname: 'mx.test', auth: authConfig(overrides) }, { dns: resolver }, { spfMemo: memo, now: clock.now });
  return { spf: spf as Check, memo, clock, resolver };
}

const envelope = (from: string, ip = '192.0.2.10', helo = 'mail.example.com'): Record<string, FactValue> => ({
  'client.ip': ip,
  'helo.name': helo,
  'mail.from': from,
  'mail.null_sender': from === '',
});

const spfFacts = (f: FactSet): Record<string, unknown> => Object.fromEntries([...f.entries()].filter(([k]) => k.startsWith('spf.')));

/** The resinfo the data stage writes from these facts. */
const resinfo = (f: FactSet, env: Record<string, FactValue>): string =>
  spfResinfo({
    result: String(f.get('spf.result')),
    identity: String(f.get('spf.identity')),
    sender: String(env['mail.from']),
    helo: String(env['helo.name']),
    ip: String(env['client.ip']),
    domain: String(f.get('spf.domain')),
    mta: 'mx.test',
    strict: true,
  });

describe('SPF memo', () => {
  const same = [
    { desc: 'pass through an include', from: 'alice@example.com', result: 'pass' },
    { desc: 'fail', from: 'alice@example.com', ip: '198.51.100.7', result: 'fail' },
    { desc: 'softfail', from: 'alice@soft.example', ip: '198.51.100.7', result: 'softfail' },
    { desc: 'none (NXDOMAIN)', from: 'alice@nowhere.example', result: 'none' },
    { desc: 'null sender: the HELO identity', from: '', result: 'pass' },
  ];
  for (const c of same) {
    test(`${c.desc}: the second message is answered from the memo, with the same facts and A-R text`, async () => {
      const { spf, memo } = setup();
      const env = envelope(c.from, c.ip);
      const first = await runCheck(spf, 'mail', env);
      const queries = dns.queries.length;
      const second = await runCheck(spf, 'mail', env);
      assert.equal(first.facts.get('spf.result'), c.result);
      assert.ok(memo.hits >= 1);
      assert.equal(dns.queries.length, queries);
      assert.deepEqual(spfFacts(second.facts), spfFacts(first.facts));
      assert.equal(resinfo(second.facts, env), resinfo(first.facts, env));
      assert.ok((second.facts.get('spf.dns_lookups') as number) >= 1, 'counts the lookups the evaluation made');
    });
  }

  test('the HELO identity is remembered too: spf.helo_result as fresh', async () => {
    const { spf, memo } = setup({ spf_helo: true });
    const env = envelope('alice@soft.example', '192.0.2.10', 'mail.example.com');
    const first = await runCheck(spf, 'mail', env);
    const second = await runCheck(spf, 'mail', env);
    assert.equal(first.facts.get('spf.helo_result'), 'pass');
    assert.equal(memo.hits, 2);
    assert.deepEqual(spfFacts(second.facts), spfFacts(first.facts));
  });

  test('another local part and HELO of the same domain and IP share the result (no macro)', async () => {
    const { spf, memo } = setup();
    await runCheck(spf, 'mail', envelope('alice@example.com'));
    const hits = memo.hits;
    const bob = await runCheck(spf, 'mail', envelope('bob@example.com', '192.0.2.10', 'other.example.com'));
    assert.equal(bob.facts.get('spf.result'), 'pass');
    assert.ok(memo.hits > hits);
  });

  test('a record with a macro is not remembered: the local part decides', async () => {
    const { spf, memo } = setup();
    const alice = await runCheck(spf, 'mail', envelope('alice@macro.example'));
    const bob = await runCheck(spf, 'mail', envelope('bob@macro.example'));
    assert.equal(alice.facts.get('spf.result'), 'pass');
    assert.equal(bob.facts.get('spf.result'), 'fail');
    assert.equal(memo.hits, 0);
  });

  test('an explanation with a macro is not remembered either', async () => {
    const { spf, memo } = setup();
    const a = await runCheck(spf, 'mail', envelope('x@exp.example', '192.0.2.1'));
    const b = await runCheck(spf, 'mail', envelope('x@exp.example', '192.0.2.1'));
    assert.equal(a.facts.get('spf.explanation'), '192.0.2.1 is not one of our senders');
    assert.equal(b.facts.get('spf.explanation'), a.facts.get('spf.explanation'));
    assert.equal(memo.hits, 0);
  });

  test('a DNS failure (SERVFAIL) is never remembered', async () => {
    const { spf, memo } = setup();
    for (let i = 0; i < 2; i++) assert.equal((await runCheck(spf, 'mail', envelope('a@broken.example'))).facts.get('spf.result'), 'temperror');
    assert.equal(memo.hits, 0);
    assert.equal(memo.size, 0);
  });

  test('it ends with the smallest TTL of the answers read: the include expires first', async () => {
    const { spf, memo, clock } = setup();
    await runCheck(spf, 'mail', envelope('alice@example.com'));
    clock.advance(119);
    await runCheck(spf, 'mail', envelope('alice@example.com'));
    assert.equal(memo.hits, 1);
    // _spf.example.com (TTL 120) is gone from the DNS cache; example.com (600) is not.
    clock.advance(2);
    dns.zone = { ...zone, '_spf.example.com': { TXT: ['v=spf1 -all'], ttl: 120 } };
    try {
      const later = await runCheck(spf, 'mail', envelope('alice@example.com'));
      assert.equal(later.facts.get('spf.result'), 'fail', 'the changed include is read');
      assert.equal(memo.hits, 1);
    } finally {
      dns.zone = zone;
    }
  });

  test('a cleared DNS cache drops what was derived from it', async () => {
    const { spf, memo, resolver } = setup();
    await runCheck(spf, 'mail', envelope('alice@example.com'));
    resolver.clearCache();
    await runCheck(spf, 'mail', envelope('alice@example.com'));
    assert.equal(memo.hits, 0);
  });

  test('spf_memo_max_ttl_s caps it below the TTLs', async () => {
    const { spf, memo, clock } = setup(undefined, 100, 30_000);
    await runCheck(spf, 'mail', envelope('alice@example.com'));
    clock.advance(31);
    await runCheck(spf, 'mail', envelope('alice@example.com'));
    assert.equal(memo.hits, 0);
  });

  test('bounded: the least recently used result goes first', async () => {
    const { spf, memo } = setup(undefined, 1);
    await runCheck(spf, 'mail', envelope('alice@example.com'));
    await runCheck(spf, 'mail', envelope('alice@nowhere.example'));
    await runCheck(spf, 'mail', envelope('alice@example.com'));
    assert.equal(memo.hits, 0);
    assert.equal(memo.size, 1);
  });

  test('on by default from the config (spf_memo_size), off with 0', async () => {
    for (const [overrides, remembered] of [
      [{}, true],
      [{ spf_memo_size: 0 }, false],
    ] as const) {
      const resolver = new Resolver({ servers: [dns.address], timeoutMs: 1000 });
      let asked = 0;
      const counting = { resolve: (n: string, t: string) => (asked++, resolver.resolve(n, t)), cached: resolver.cached };
      const [spf] = createAuthChecks({ hostname: 'mx.test', auth: authConfig(overrides) }, { dns: counting });
      await runCheck(spf as Check, 'mail', envelope('alice@example.com'));
      const first = asked;
      const out = await runCheck(spf as Check, 'mail', envelope('alice@example.com'));
      assert.equal(out.facts.get('spf.result'), 'pass');
      assert.equal(asked === first, remembered, JSON.stringify(overrides));
    }
  });

  test('a resolver that can not say what it has cached: no memo', async () => {
    const resolver = new Resolver({ servers: [dns.address], timeoutMs: 1000 });
    let asked = 0;
    const plain = { resolve: (n: string, t: string) => (asked++, resolver.resolve(n, t)) };
    const [spf] = createAuthChecks({ hostname: 'mx.test', auth: authConfig() }, { dns: plain });
    await runCheck(spf as Check, 'mail', envelope('alice@example.com'));
    const first = asked;
    await runCheck(spf as Check, 'mail', envelope('alice@example.com'));
    assert.equal(asked, 2 * first);
  });
});
