// The connection-level checks (rDNS, HELO sanity, DNSBL/DNSWL) and the early-talker fact, in one
// place for the gateway's check list and the rules fact registry.
import type { Check } from '../../pipeline/check.ts';
import type { FactSpec } from '../../pipeline/facts.ts';
import type { DnsLookup } from '../../pipeline/deps.ts';
import { createDnsblCheck, dnsblFacts } from './dnsbl.ts';
import { createFcrdnsCheck, fcrdnsFacts } from './fcrdns.ts';
import { createHeloCheck, heloFacts } from './helo-sanity.ts';
import { pregreetFacts } from './pregreet.ts';

export { dnsblSection } from './dnsbl.ts';

/** Every fact the connection checks (and the SMTP front's pregreet test) can set. */
export const connectionFacts: readonly FactSpec[] = [...fcrdnsFacts, ...heloFacts, ...dnsblFacts, ...pregreetFacts];

export interface ConnectionCheckOptions {
  dns?: DnsLookup | undefined;
  /** Our host name and domains, for helo.is_our_name (read at each HELO: config reloads). */
  ourNames: () => readonly string[];
}

/**
 * The checks to add to the gateway's list. The DNSBL check reads the `dnsbl:` section of the
 * rules files (it is RulesAware), so it must get the rules through onRulesLoaded.
 */
export function createConnectionChecks(opts: ConnectionCheckOptions): Check[] {
  return [createFcrdnsCheck({ dns: opts.dns }), createHeloCheck({ ourNames: opts.ourNames }), createDnsblCheck({ dns: opts.dns })];
}
