// The openspf RFC 7208 and RFC 4408 SPF suites (../shared/conformance/spf), run through mailgate's
// SPF check and resolver against the test DNS server on loopback, which serves each scenario's
// zone data. Every case passes or is listed in test/conformance/known-failures.yaml.
import { after, before, test } from 'node:test';
import { createAuthChecks } from '../../src/checks/auth/auth-checks.ts';
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

before(async () => {
  dns = await startDnsServer({ ttl: 300 });
  // A short deadline: the suite's TIMEOUT names are never answered.
  resolver = new Resolver({ servers: [dns.address], timeoutMs: 500 });
  const checks = createAuthChecks({ hostname: 'mx.mailgate.test', auth: authConfig({ spf_helo: false }) }, { dns: resolver });
  spfCheck = checks.find((c) => c.name === 'spf') as Check;
});

after(async () => {
  await dns.close();
});

async function runSuite(file: string): Promise<CaseOutcome[]> {
  const outcomes: CaseOutcome[] = [];
  for (const scenario of loadYamlDocuments<Scenario>(suitePath('spf', file))) {
    dns.zone = zoneFromSpfSuite(scenario.zonedata ?? {});
    resolver.clearCache();
    for (const [name, t] of Object.entries(scenario.tests)) {
      const mailfrom = t.mailfrom ?? '';
      const out = await runCheck(spfCheck, 'mail', {
        'client.ip': t.host,
        'helo.name': t.helo,
        'mail.from': mailfrom,
        'mail.null_sender': mailfrom === '',
      });
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
