// The openspf RFC 7208 and RFC 4408 SPF suites (../shared/conformance/spf), run through mailgate's
// SPF check and resolver against the test DNS server on loopback, which serves each scenario's
// zone data. Every case passes or is listed in test/conformance/known-failures.yaml. Every case
// runs twice: the second run may come from the SPF memo (src/checks/auth/spf-memo.ts) and must
// give the same facts as the first.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createAuthChecks } from '../../src/checks/auth/auth-checks.ts';
import { SpfMemo } from '../../src/checks/auth/spf-memo.ts';
import type { FactSet } from '../../src/pipeline/facts.ts';
import { Resolver } from '../../src/dns/resolver.ts';
import type { Check } from '../../src/pipeline/check.ts';
import { startDnsServer, type NameData, type TestDnsServer, type Zone } from '../helpers/dns-server.ts';
import { authConfig, judge, loadKnownFailures, loadYamlDocuments, runCheck, suitePath, type CaseOutcome } from './harness.ts';

type ZoneEntry = string | Record<string, string | Array<string | number>>;

interface Scenario {
  description: string;
  tests: Record<string, { helo: string; host: string; mailfrom?: string | null; result: string | string[] }>;
  zonedata?: Record<string, ZoneEntry[]>;
}

/**
 * Suite conventions: SPF-type records are served as TXT too unless the name has its own TXT
 * entries ("TXT: NONE" = no TXT at all); a bare TIMEOUT makes queries for types the name has no
 * data for go unanswered.
 */
export function zoneFromSpfSuite(zonedata: Record<string, ZoneEntry[]>): Zone {
  const zone: Zone = {};
  for (const [name, entries] of Object.entries(zonedata)) {
    const d: NameData = {};
    const spf: Array<string | string[]> = [];
    const txt: Array<string | string[]> = [];
    let txtGiven = false;
    for (const e of entries ?? []) {
      if (e === 'TIMEOUT') {
        d.timeout = true;
        continue;
      }
      if (typeof e !== 'object' || e === null) continue;
      for (const [type, value] of Object.entries(e)) {
        const list = (v: unknown): string | string[] => (Array.isArray(v) ? v.map(String) : String(v));
        switch (type) {
          case 'SPF':
            if (value !== 'NONE') spf.push(list(value));
            break;
          case 'TXT':
            txtGiven = true;
            if (value !== 'NONE') txt.push(list(value));
            break;
          case 'A':
            (d.A ??= []).push(String(value));
            break;
          case 'AAAA':
            (d.AAAA ??= []).push(String(value));
            break;
          case 'PTR':
            (d.PTR ??= []).push(String(value));
            break;
          case 'CNAME':
            d.CNAME = String(value);
            break;
          case 'MX': {
            const [prio, host] = value as [number, string];
            (d.MX ??= []).push({ priority: Number(prio), exchange: String(host) });
            break;
          }
        }
      }
    }
    const records = txtGiven ? txt : spf;
    if (records.length > 0) d.TXT = records;
    zone[name] = d;
  }
  return zone;
}

let dns: TestDnsServer;
let resolver: Resolver;
let spfCheck: Check;
let memo: SpfMemo;

before(async () => {
  dns = await startDnsServer({ ttl: 300 });
  // A short deadline: the suite's TIMEOUT names are never answered.
  resolver = new Resolver({ servers: [dns.address], timeoutMs: 500 });
  memo = new SpfMemo({ size: 10_000, maxTtlMs: 300_000, cached: resolver.cached });
  const checks = createAuthChecks({ hostname: 'mx.mailgate.test', auth: authConfig({ spf_helo: false }) }, { dns: resolver }, { spfMemo: memo });
  spfCheck = checks.find((c) => c.name === 'spf') as Check;
});

after(async () => {
  await dns.close();
});

const spfFacts = (facts: FactSet): Record<string, unknown> => Object.fromEntries([...facts.entries()].filter(([k]) => k.startsWith('spf.')));

/** Cases whose second run came from the memo, and second runs whose facts differed from the first. */
const memoStats = { cases: 0, hits: 0, differing: [] as string[] };

async function runSuite(file: string): Promise<CaseOutcome[]> {
  const outcomes: CaseOutcome[] = [];
  for (const scenario of loadYamlDocuments<Scenario>(suitePath('spf', file))) {
    dns.zone = zoneFromSpfSuite(scenario.zonedata ?? {});
    resolver.clearCache();
    for (const [name, t] of Object.entries(scenario.tests)) {
      const mailfrom = t.mailfrom ?? '';
      const envelope = {
        'client.ip': t.host,
        'helo.name': t.helo,
        'mail.from': mailfrom,
        'mail.null_sender': mailfrom === '',
      };
      const out = await runCheck(spfCheck, 'mail', envelope);
      const hits = memo.hits;
      const again = await runCheck(spfCheck, 'mail', envelope);
      memoStats.cases++;
      if (memo.hits > hits) memoStats.hits++;
      if (JSON.stringify(spfFacts(again.facts)) !== JSON.stringify(spfFacts(out.facts))) memoStats.differing.push(`${scenario.description} / ${name}`);
      const got = String(out.facts.get('spf.result'));
      const expected = Array.isArray(t.result) ? t.result : [t.result];
      outcomes.push({ id: `${scenario.description} / ${name}`, ok: expected.includes(got), detail: `expected ${expected.join(',')} got ${got}` });
    }
  }
  return outcomes;
}

test('SPF RFC 7208 suite', async () => {
  judge('spf_rfc7208', 'SPF RFC 7208', await runSuite('rfc7208-tests.yml'), loadKnownFailures());
});

test('SPF RFC 4408 suite', async () => {
  judge('spf_rfc4408', 'SPF RFC 4408', await runSuite('rfc4408-tests.yml'), loadKnownFailures());
});

test('SPF memo: a remembered evaluation gives the facts of a fresh one', () => {
  console.log(`SPF memo: ${memoStats.hits} of ${memoStats.cases} second runs remembered`);
  assert.deepEqual(memoStats.differing, []);
  // Most cases read no macro and no failing name: if almost none is remembered, the memo is broken.
  assert.ok(memoStats.hits > memoStats.cases / 3, `only ${memoStats.hits} of ${memoStats.cases} remembered`);
});
