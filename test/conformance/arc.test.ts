// The ValiMail ARC validation suite (../shared/conformance/arc, 171 tests) run through mailgate's
// DKIM/ARC/DMARC check and resolver against the test DNS server; `arc.result` must equal each
// test's expected chain validation status (cv). The signing suite is not run: it assumes a
// standardised header format (alphabetical tags, no folding) that no signer is required to
// produce, so its b= values can not be compared; our sealing is checked by validating it instead
// (test/auth-check.test.ts).
import { after, before, test } from 'node:test';
import { createAuthChecks } from '../../src/checks/auth/auth-checks.ts';
import { Resolver } from '../../src/dns/resolver.ts';
import type { Check } from '../../src/pipeline/check.ts';
import { startDnsServer, type TestDnsServer, type Zone } from '../helpers/dns-server.ts';
import { authConfig, judge, loadKnownFailures, loadYamlDocuments, messageView, runCheck, suitePath, toCrlf, type CaseOutcome } from './harness.ts';

interface Scenario {
  description: string;
  tests: Record<string, { description?: string; message: string; cv: string | null }>;
  'txt-records'?: Record<string, string>;
}

let dns: TestDnsServer;
let resolver: Resolver;
let check: Check;

before(async () => {
  dns = await startDnsServer();
  resolver = new Resolver({ servers: [dns.address], timeoutMs: 1000 });
  // The suite's signatures carry fixed t= timestamps from 2017.
  check = createAuthChecks({ hostname: 'mx.mailgate.test', auth: authConfig() }, { dns: resolver }, { now: () => Date.UTC(2017, 6, 1) }).find(
    (c) => c.name === 'dkim-arc-dmarc',
  ) as Check;
});
after(async () => {
  await dns.close();
});

test('ARC validation suite', async () => {
  const outcomes: CaseOutcome[] = [];
  for (const scenario of loadYamlDocuments<Scenario>(suitePath('arc', 'arc-draft-validation-tests.yml'))) {
    const zone: Zone = {};
    for (const [name, value] of Object.entries(scenario['txt-records'] ?? {})) zone[name] = { TXT: [String(value)] };
    dns.zone = zone;
    resolver.clearCache();
    for (const [id, t] of Object.entries(scenario.tests)) {
      // An empty cv (3 tests) is to be treated as a failure (suite README).
      const want = (t.cv ?? '').trim().toLowerCase() || 'fail';
      const out = await runCheck(
        check,
        'data',
        { 'mail.from': '', 'client.ip': '192.0.2.1', 'spf.result': 'none', 'spf.domain': '' },
        messageView(toCrlf(t.message ?? '')),
      );
      const got = String(out.facts.get('arc.result'));
      outcomes.push({ id: `${scenario.description} / ${id}`, ok: got === want, detail: `expected ${want} got ${got}` });
    }
  }
  judge('arc_validation', 'ARC validation', outcomes, loadKnownFailures());
});
