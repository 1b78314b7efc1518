// DKIM test vectors (../shared/conformance/dkim) run through mailgate's DKIM/ARC/DMARC check and
// resolver against the test DNS server: the Perl Mail::DKIM corpus (expected.yaml), the RFC 8463
// example signed by dkimpy, the Exim ed25519 sample, and mailauth's EC fixture.
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createAuthChecks } from '../../src/checks/auth/auth-checks.ts';
import { Resolver } from '../../src/dns/resolver.ts';
import type { Check } from '../../src/pipeline/check.ts';
import type { FactRecord } from '../../src/pipeline/facts.ts';
import { startDnsServer, type TestDnsServer, type Zone } from '../helpers/dns-server.ts';
import { authConfig, judge, loadKnownFailures, loadYaml, messageView, runCheck, suitePath, toCrlf, type CaseOutcome } from './harness.ts';

interface Expected {
  tests: Array<{ file: string; mail_dkim_expected: string; kind?: string }>;
}

/** FAKE_DNS.dat: "<name>  <TXT value>"; NXDOMAIN, ~~Query timed out~~ and ~~SERVFAIL~~ are special. */
function zoneFromFakeDns(text: string): Zone {
  const zone: Zone = {};
  for (const line of text.split('\n')) {
    if (/^\s*([#;]|$)/.test(line)) continue;
    const m = /^(\S+)\s+(.*)$/.exec(line.trimEnd());
    if (!m?.[1]) continue;
    const [, name, value = ''] = m;
    if (value === 'NXDOMAIN') continue; // absent = NXDOMAIN
    if (value === '~~Query timed out~~') zone[name] = { timeout: true };
    else if (value === '~~SERVFAIL~~') zone[name] = { servfail: true };
    else zone[name] = { TXT: [value === '""' ? '' : value] };
  }
  return zone;
}

/** mailauth's dns.json: { name: { TXT: [[chunk, ...]] } }. */
function zoneFromJson(json: Record<string, { TXT?: string[][] }>): Zone {
  const zone: Zone = {};
  for (const [name, rr] of Object.entries(json)) if (rr.TXT) zone[name] = { TXT: rr.TXT };
  return zone;
}

/** Mail::DKIM's message-level verdict from our per-signature records. */
function category(sigs: readonly FactRecord[]): string {
  const results = sigs.map((s) => String(s.result));
  if (results.includes('pass')) return 'pass';
  if (results.includes('fail')) return 'fail';
  return results.length > 0 ? 'invalid' : 'none';
}

let dns: TestDnsServer;

before(async () => {
  dns = await startDnsServer();
});
after(async () => {
  await dns.close();
});

function dataCheck(now: number, overrides: Record<string, unknown> = {}): { check: Check; resolver: Resolver } {
  const resolver = new Resolver({ servers: [dns.address], timeoutMs: 1000 });
  const checks = createAuthChecks({ hostname: 'mx.mailgate.test', auth: authConfig(overrides) }, { dns: resolver }, { now: () => now });
  return { check: checks.find((c) => c.name === 'dkim-arc-dmarc') as Check, resolver };
}

async function verify(check: Check, raw: Buffer): Promise<FactRecord[]> {
  const facts = { 'mail.from': '', 'client.ip': '192.0.2.1', 'spf.result': 'none', 'spf.domain': '' };
  const out = await runCheck(check, 'data', facts, messageView(raw));
  // The same message held in memory (the spool's buffers, cut at odd places, instead of its
  // stream): every fact must be the same.
  const held = await runCheck(check, 'data', facts, messageView(raw, 61));
  assert.deepEqual(Object.fromEntries(held.facts.entries()), Object.fromEntries(out.facts.entries()), 'memoryChunks() and stream() disagree');
  return (out.facts.get('dkim.signatures') ?? []) as FactRecord[];
}

test('DKIM: Mail::DKIM corpus', async () => {
  const dir = suitePath('dkim', 'mail-dkim');
  dns.zone = zoneFromFakeDns(readFileSync(`${dir}/FAKE_DNS.dat`, 'utf8'));
  // The corpus keys are mostly 512-bit RSA (the 2006-2010 era): accept them here to compare with
  // Mail::DKIM; the default min_key_bits (1024) turns those into dkim=policy (tested below).
  // The expected outcomes were recorded verifying "as of" 2010-01-01.
  const { check } = dataCheck(Date.UTC(2010, 0, 1), { min_key_bits: 512 });
  const expected = loadYaml<Expected>(`${dir}/expected.yaml`);
  const outcomes: CaseOutcome[] = [];
  for (const t of expected.tests) {
    const sigs = await verify(check, readFileSync(`${dir}/${t.file}`));
    // DomainKeys (RFC 4870) messages: a DKIM-only verifier finds no DKIM signature.
    const want = t.kind?.startsWith('DomainKeys') ? 'none' : t.mail_dkim_expected;
    const got = category(sigs);
    outcomes.push({
      id: t.file,
      ok: got === want,
      detail: `expected ${want} got ${got} (${sigs.map((s) => `${s.result}${s.comment ? ` ${s.comment}` : ''}`).join(' | ')})`,
    });
  }
  judge('dkim_mail_dkim', 'DKIM Mail::DKIM corpus', outcomes, loadKnownFailures());
});

test('DKIM: RFC 8463 example (dkimpy), Exim ed25519, mailauth EC fixture', async () => {
  const dir = suitePath('dkim');
  const testKey = readFileSync(`${dir}/dkimpy/test.txt`, 'utf8').trim();
  const zone: Zone = {
    ...zoneFromJson(JSON.parse(readFileSync(`${dir}/mailauth-ec/dns.json`, 'utf8')) as Record<string, { TXT?: string[][] }>),
    'test._domainkey.football.example.com': { TXT: [testKey] },
    'sed._domainkey.test.ex': { TXT: [readFileSync(`${dir}/dkimpy/eximtest.dns`, 'utf8').trim()] },
  };
  dns.zone = zone;
  const cases: Array<{ id: string; file: string; now: number; want: string[] }> = [
    { id: 'dkimpy/rfc6376.signed.msg', file: 'dkimpy/rfc6376.signed.msg', now: Date.now(), want: ['pass', 'pass'] },
    { id: 'dkimpy/ed25519test2.msg', file: 'dkimpy/ed25519test2.msg', now: Date.now(), want: ['pass'] },
    { id: 'mailauth-ec/signed.eml', file: 'mailauth-ec/signed.eml', now: 1528637909000, want: ['pass', 'pass'] },
  ];
  const outcomes: CaseOutcome[] = [];
  for (const c of cases) {
    const { check } = dataCheck(c.now);
    const sigs = await verify(check, toCrlf(readFileSync(`${dir}/${c.file}`)));
    const got = sigs.map((s) => String(s.result));
    outcomes.push({
      id: c.id,
      ok: JSON.stringify(got) === JSON.stringify(c.want),
      detail: `expected ${c.want.join(',')} got ${sigs.map((s) => `${s.result} ${s.algorithm} ${s.comment}`).join(' | ')}`,
    });
  }
  judge('dkim_rfc8463', 'DKIM RFC 8463/ed25519 vectors', outcomes, loadKnownFailures());
});

test('DKIM: 512-bit corpus keys are refused with the default min_key_bits', async () => {
  const dir = suitePath('dkim', 'mail-dkim');
  dns.zone = zoneFromFakeDns(readFileSync(`${dir}/FAKE_DNS.dat`, 'utf8'));
  const { check } = dataCheck(Date.UTC(2010, 0, 1));
  const sigs = await verify(check, readFileSync(`${dir}/corpus/good_ietf01_1.txt`));
  assert.equal(sigs[0]?.result, 'policy');
  assert.ok(typeof sigs[0]?.key_bits === 'number' && sigs[0].key_bits < 1024, 'key size recorded');
});
