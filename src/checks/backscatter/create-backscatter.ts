// Assembles the backscatter protection from config: the BATV check (rcpt), the heuristics check
// (data) sharing one outbound Message-ID record (the outbound listener in src/fronts/outbound/
// writes to the same record). The entry point for the check catalogue.
import type { BackscatterConfig } from '../../config/backscatter-schema.ts';
import type { Check } from '../../pipeline/check.ts';
import type { SharedStore } from '../../store/shared-store.ts';
import { createBatvCheck } from './batv-check.ts';
import { createBackscatterCheck } from './backscatter-check.ts';
import type { DsnLimits } from './dsn-parse.ts';
import { createOutboundRecord, type OutboundRecord } from './outbound-record.ts';

export interface BackscatterDeps {
  config: () => BackscatterConfig;
  /** mailgate.yaml `domains`, lower-case. */
  domains: () => ReadonlySet<string>;
  store?: SharedStore | undefined;
  now: () => number;
  /** The MIME walk's limits (content.mime), applied by the DSN parser too. */
  walkLimits?: () => DsnLimits;
  /** Share an existing record (e.g. the one the outbound listener writes). */
  record?: OutboundRecord;
}

export interface BackscatterChecks {
  checks: [Check, Check & { readonly record: OutboundRecord }];
  record: OutboundRecord;
}

export function createBackscatterChecks(d: BackscatterDeps): BackscatterChecks {
  const cfg = d.config();
  const record = d.record ?? createOutboundRecord(d.store, cfg.record.ttl, cfg.record.max_entries);
  const batv = createBatvCheck({ config: d.config, now: d.now });
  const heuristics = createBackscatterCheck({
    config: d.config,
    domains: d.domains,
    record,
    store: d.store,
    now: d.now,
    ...(d.walkLimits ? { walkLimits: d.walkLimits } : {}),
  });
  return { checks: [batv, heuristics], record };
}
