// The one catalogue of checks: every check family with the facts it can set, the rules-file
// sections it owns and how it is created from the config. It feeds the gateway (which checks
// run), the CLI (`rules check|test|diff` validate against the same facts and sections) and rule
// validation. A new check is one file plus one entry here (README: "Adding a check").
import type { Config } from '../config/schema.ts';
import type { Check } from '../pipeline/check.ts';
import type { Deps } from '../pipeline/deps.ts';
import type { FactSpec } from '../pipeline/facts.ts';
import { coreFacts, milterFacts } from '../pipeline/core-facts.ts';
import type { AnySectionSpec } from '../rules/loader.ts';
import { isRulesAware } from '../rules/rules-aware.ts';
import { authFacts } from './auth/auth-facts.ts';
import { createLimitChecks, createStoreFromConfig, limitFacts, limitSectionSpecs } from './limits/limit-checks.ts';
import { connectionFacts, createConnectionChecks, dnsblSection } from './connection/connection-checks.ts';
import { bodyFacts } from './content/body-text.ts';
import { createWalkBodyTextCheck } from './content/body-text-walk.ts';
import { contentFacts, createContentChecks } from './content/content-checks.ts';
import { loadSniffer } from './content/file-sniff.ts';
import { createBackscatterChecks } from './backscatter/create-backscatter.ts';
import { backscatterFactSpecs } from './backscatter/backscatter-facts.ts';
import type { SharedStore } from '../store/shared-store.ts';
import { normalizeDomain } from '../net/address.ts';

/** One family of checks: what it declares statically, and how the gateway creates it. */
export interface CatalogueEntry {
  /** The names of the checks it creates (for `checks.disabled`). */
  readonly names: readonly string[];
  readonly facts: readonly FactSpec[];
  readonly sections: readonly AnySectionSpec[];
  /**
   * Not created at all, nor its modules loaded, when every one of its names (with configNames) is
   * in `checks.disabled`. Families without it are created and their disabled checks closed (the
   * limits family closes the shared store it owns that way).
   */
  readonly skipWhenDisabled?: true;
  /** Names of checks the config adds to this family (HTTP hooks: hook-<name>). */
  readonly configNames?: (config: Config) => readonly string[];
  /** `deps.store` is always set here; `owned.store` says whether buildChecks created it. */
  create(config: Config, deps: Deps, owned: { store: boolean }): Check[] | Promise<Check[]>;
}

export const catalogue: readonly CatalogueEntry[] = [
  // SPF at MAIL FROM; DKIM, ARC and DMARC at end of DATA (docs/auth.md).
  // mailauth (with joi and tldts under it) is imported here, only when one of them runs.
  {
    names: ['spf', 'dkim-arc-dmarc'],
    facts: authFacts,
    sections: [],
    skipWhenDisabled: true,
    create: async (config, deps) => (await import('./auth/auth-checks.ts')).createAuthChecks(config, deps),
  },
  // FCrDNS at connect, HELO sanity at HELO, DNSBL/DNSWL at connect (the `dnsbl:` section, off by default).
  {
    names: ['fcrdns', 'helo-sanity', 'dnsbl'],
    facts: connectionFacts,
    sections: [dnsblSection],
    create: (config, deps) => createConnectionChecks({ dns: deps.dns, ourNames: () => [config.hostname, ...config.domains] }),
  },
  // Shared concurrency limit at connect, rate limits at every stage, greylisting at end of DATA;
  // settings from the rules files (docs/ratelimit.md). The ratelimit check carries the shared
  // store's /readyz probe and closes the store when buildChecks created it.
  {
    names: ['concurrency', 'ratelimit', 'greylist'],
    facts: limitFacts(),
    sections: limitSectionSpecs as unknown as AnySectionSpec[],
    create: (_config, deps, owned) => createLimitChecks({ store: deps.store as SharedStore, now: deps.now, logger: deps.logger, ownsStore: owned.store }),
  },
  // Backscatter: BATV at RCPT for bounces, DSN/auto-reply heuristics at end of DATA (docs/backscatter.md).
  {
    names: ['batv', 'backscatter'],
    facts: backscatterFactSpecs,
    sections: [],
    create: (config, deps) => {
      const current = deps.config ?? (() => config);
      return createBackscatterChecks({
        config: () => current().backscatter,
        domains: () => new Set(current().domains.map(normalizeDomain)),
        // The DSN parser applies the MIME walk's limits too (never looser than its own).
        walkLimits: () => ({ maxParts: current().content.mime.max_parts, maxDepth: current().content.mime.max_depth }),
        store: deps.store,
        now: deps.now,
      }).checks;
    },
  },
  // Content: one streaming MIME walk per message shared by attachments, URLs, body text and the
  // scanners (clamd, Rspamd, spamd, HTTP hooks), which need its facts (docs/content.md).
  {
    names: ['mime-walk', 'attachments', 'urls', 'antivirus', 'rspamd', 'spamassassin'],
    facts: contentFacts,
    sections: [],
    skipWhenDisabled: true,
    configNames: (config) => config.content.hooks.map((h) => `hook-${h.name}`),
    create: async (config, deps) => {
      await loadSniffer();
      return createContentChecks(config.content, deps.dns ? { dns: deps.dns } : {});
    },
  },
  // Body text for body rules, from the shared walk, only computed when a rule reads it.
  { names: ['body-text'], facts: bodyFacts, sections: [], create: () => [createWalkBodyTextCheck()] },
];

/** Every fact mailgate knows (the core's and every check family's) plus `extra`, one per name. */
export function knownFacts(extra: Iterable<FactSpec> = []): FactSpec[] {
  const byName = new Map<string, FactSpec>();
  for (const list of [coreFacts, milterFacts, ...catalogue.map((e) => e.facts), [...extra]]) {
    for (const f of list) if (!byName.has(f.name)) byName.set(f.name, f);
  }
  return [...byName.values()];
}

/** The rules-file sections of every check family, plus those the given (extra) checks declare. */
export function knownSections(checks: Iterable<unknown> = []): AnySectionSpec[] {
  const byKey = new Map<string, AnySectionSpec>();
  for (const e of catalogue) for (const s of e.sections) byKey.set(s.key, s);
  for (const c of checks) {
    if (!isRulesAware(c)) continue;
    for (const s of c.rulesSections ?? []) if (!byKey.has(s.key)) byKey.set(s.key, s);
  }
  return [...byKey.values()];
}

/** The checks the config enables, created with the injected dependencies. */
export async function buildChecks(config: Config, deps: Deps): Promise<Check[]> {
  // One shared store for every check that keeps state (limits, greylisting, bounce rates): from
  // deps (tests) or from mailgate.yaml's `redis`/`redis_options` keys (else in process).
  const owned = { store: deps.store === undefined };
  const withStore: Deps = { ...deps, store: deps.store ?? createStoreFromConfig(config, deps) };
  const disabled = new Set(config.checks.disabled);
  const checks: Check[] = [];
  for (const e of catalogue) {
    const names = [...e.names, ...(e.configNames?.(config) ?? [])];
    if (e.skipWhenDisabled && names.every((n) => disabled.has(n))) continue;
    checks.push(...(await e.create(config, withStore, owned)));
  }
  // Names the config creates on its own (HTTP hooks: hook-<name>) count as known too.
  const known = new Set([...catalogue.flatMap((e) => [...e.names, ...(e.configNames?.(config) ?? [])]), ...checks.map((c) => c.name)]);
  const unknown = [...disabled].filter((n) => !known.has(n));
  if (unknown.length > 0) {
    for (const c of checks) await c.close?.();
    throw new Error(`checks.disabled: unknown check ${unknown.map((n) => `"${n}"`).join(', ')} (known: ${[...known].join(', ')})`);
  }
  const kept: Check[] = [];
  for (const c of checks) {
    if (disabled.has(c.name)) await c.close?.();
    else kept.push(c);
  }
  return kept;
}

/** Releases resources checks hold (connections, timers) on shutdown. */
export async function closeChecks(checks: readonly Check[]): Promise<void> {
  for (const c of checks) await c.close?.();
}
