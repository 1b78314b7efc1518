// The RFC 7489 DMARC evaluation cases (../shared/conformance/dmarc) run through mailgate's DMARC
// evaluation (src/checks/auth-dmarc.ts) and resolver against the test DNS server. The cases give
// SPF/DKIM outcomes directly, so this drives the DMARC step itself, not a whole message.
import { after, before, test } from 'node:test';
import { checkDmarc } from '../../src/checks/auth/dmarc.ts';
import { DnsScope, Resolver } from '../../src/dns/resolver.ts';
import { startDnsServer, type TestDnsServer, type Zone } from '../helpers/dns-server.ts';
import { judge, loadKnownFailures, loadYaml, suitePath, type CaseOutcome } from './harness.ts';

interface DmarcCase {
  id: string;
  header_from: string;
  spf: { result: string; domain: string };
  dkim: Array<{ result: string; domain: string }>;
  dns: Record<string, string[] | 'TIMEOUT'>;
  expect: { result: string; policy?: string; pct?: number };
}

let dns: TestDnsServer;
let resolver: Resolver;

before(async () => {
  dns = await startDnsServer();
  resolver = new Resolver({ servers: [dns.address], timeoutMs: 1000 });
});
after(async () => {
  await dns.close();
});

test('DMARC RFC 7489 cases', async () => {
  const suite = loadYaml<{ cases: DmarcCase[] }>(suitePath('dmarc', 'rfc7489-cases.yaml'));
  const outcomes: CaseOutcome[] = [];
  for (const c of suite.cases) {
    const zone: Zone = {};
    for (const [name, value] of Object.entries(c.dns ?? {})) zone[name] = value === 'TIMEOUT' ? { timeout: true } : { TXT: value };
    dns.zone = zone;
    resolver.clearCache();
    const scope = new DnsScope(resolver);
    const got = await checkDmarc({
      headerFrom: [c.header_from],
      fromFields: 1,
      spf: c.spf,
      dkim: c.dkim,
      resolver: scope.resolve,
    });
    const problems: string[] = [];
    if (got.result !== c.expect.result) problems.push(`result ${got.result} (expected ${c.expect.result})`);
    if (c.expect.policy !== undefined && got.policy !== c.expect.policy) problems.push(`policy "${got.policy}" (expected ${c.expect.policy})`);
    if (c.expect.pct !== undefined && got.pct !== c.expect.pct) problems.push(`pct ${got.pct} (expected ${c.expect.pct})`);
    outcomes.push({ id: c.id, ok: problems.length === 0, detail: problems.join(', ') });
  }
  judge('dmarc_rfc7489', 'DMARC RFC 7489 cases', outcomes, loadKnownFailures());
});
