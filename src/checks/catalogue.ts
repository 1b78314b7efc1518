// The list of checks a gateway runs, built from the config. Each check module exports a factory;
// add new checks here. Order does not matter: checks of one stage run concurrently.
import type { Config } from '../config/schema.ts';
import type { Check } from '../pipeline/check.ts';
import type { Deps } from '../pipeline/deps.ts';
import { createAuthChecks } from './auth/auth-checks.ts';
import { createLimitChecks, createStoreFromConfig } from './limits/limit-checks.ts';
import { createConnectionChecks } from './connection/connection-checks.ts';
import { createBodyTextCheck } from './content/body-text.ts';

export async function buildChecks(config: Config, deps: Deps): Promise<Check[]> {
  const checks: Check[] = [];
  // SPF at MAIL FROM; DKIM, ARC and DMARC at end of DATA (docs/auth.md).
  checks.push(...createAuthChecks(config, deps));
  // Shared concurrency limit at connect, rate limits at every stage, greylisting at end of DATA;
  // settings from the rules files (docs/ratelimit.md). The store comes from deps (tests) or from
  // the `redis`/`redis_options` keys; the ratelimit check carries its /readyz probe and closes it.
  const store = deps.store ?? createStoreFromConfig(config, deps);
  checks.push(...createLimitChecks({ store, now: deps.now, logger: deps.logger, ownsStore: deps.store === undefined }));
  // FCrDNS at connect, HELO sanity at HELO, DNSBL/DNSWL at connect (the `dnsbl:` section of the
  // rules files, off by default); body text for body rules, only when a rule reads it.
  checks.push(...createConnectionChecks({ dns: deps.dns, ourNames: () => [config.hostname, ...config.domains] }));
  checks.push(createBodyTextCheck());
  const disabled = new Set(config.checks.disabled);
  const known = new Set(checks.map((c) => c.name));
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
