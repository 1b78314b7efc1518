// The list of checks a gateway runs, built from the config. Each check module exports a factory;
// add new checks here. Order does not matter: checks of one stage run concurrently.
import type { Config } from '../config/schema.ts';
import type { Check } from '../pipeline/check.ts';
import type { Deps } from '../pipeline/deps.ts';
import { createAuthChecks } from './auth.ts';

export async function buildChecks(config: Config, deps: Deps): Promise<Check[]> {
  const checks: Check[] = [];
  // SPF at MAIL FROM; DKIM, ARC and DMARC at end of DATA (docs/auth.md).
  checks.push(...createAuthChecks(config, deps));
  return checks;
}

/** Releases resources checks hold (connections, timers) on shutdown. */
export async function closeChecks(checks: readonly Check[]): Promise<void> {
  for (const c of checks) await c.close?.();
}
