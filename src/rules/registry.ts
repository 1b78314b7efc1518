// Every fact and rules-file section mailgate knows, for validating rules where no gateway runs
// (`mailgate rules check|test|diff`) and as the base list the gateway adds its checks' facts to.
// A new check module adds its facts (and its section, if it has one) here.
import type { FactSpec } from '../pipeline/facts.ts';
import { coreFacts } from '../pipeline/core-facts.ts';
import { authFacts } from '../checks/auth-facts.ts';
import { connectionFacts, dnsblSection } from '../checks/connection.ts';
import { limitFacts, limitSectionSpecs } from '../checks/limit-sections.ts';
import { bodyFacts } from './body-text.ts';
import { backscatterFactSpecs } from '../checks/backscatter/backscatter-facts.ts';
import type { SectionSpec } from './loader.ts';
import { isRulesAware } from './rules-aware.ts';

/** The declared facts plus `extra` (e.g. the facts of the checks a gateway runs), one per name. */
export function knownFacts(extra: Iterable<FactSpec> = []): FactSpec[] {
  const byName = new Map<string, FactSpec>();
  for (const list of [coreFacts, authFacts, connectionFacts, bodyFacts, limitFacts(), backscatterFactSpecs, [...extra]]) {
    for (const f of list) if (!byName.has(f.name)) byName.set(f.name, f);
  }
  return [...byName.values()];
}

/** The sections of rules files other modules own, plus those the given checks declare. */
export function knownSections(checks: Iterable<unknown> = []): SectionSpec<any, any>[] {
  const byKey = new Map<string, SectionSpec<any, any>>([[dnsblSection.key, dnsblSection]]);
  for (const s of limitSectionSpecs) byKey.set(s.key, s as SectionSpec<any, any>);
  for (const c of checks) {
    if (!isRulesAware(c)) continue;
    for (const s of c.rulesSections ?? []) if (!byKey.has(s.key)) byKey.set(s.key, s);
  }
  return [...byKey.values()];
}
