// Assembles the backscatter protection from config: the BATV check (rcpt), the heuristics check
// (data) sharing one outbound Message-ID record, and the outbound listener the gateway starts.
// The one entry point for the check catalogue and for src/gateway.ts.
import type { Logger } from 'pino';
import type { Config } from '../../config/schema.ts';
import type { BackscatterConfig } from '../../config/backscatter-schema.ts';
import type { Check } from '../../pipeline/check.ts';
import type { SharedStore } from '../../store/shared-store.ts';
import { createBatvCheck } from './batv-check.ts';
import { createBackscatterCheck } from './backscatter-check.ts';
import { createOutboundRecord, type OutboundRecord } from './outbound-record.ts';
import { startOutboundListener, type OutboundListener } from './outbound-listener.ts';

export interface BackscatterDeps {
  config: () => BackscatterConfig;
  /** mailgate.yaml `domains`, lower-case. */
  domains: () => ReadonlySet<string>;
  store?: SharedStore | undefined;
  now: () => number;
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
  const heuristics = createBackscatterCheck({ config: d.config, domains: d.domains, record, store: d.store, now: d.now });
  return { checks: [batv, heuristics], record };
}

/** The record a running backscatter check writes to, if the gateway runs one. */
function recordOf(checks: readonly Check[]): OutboundRecord | undefined {
  for (const c of checks) {
    const r = (c as { record?: unknown }).record;
    if (c.name === 'backscatter' && r && typeof (r as OutboundRecord).seen === 'function') return r as OutboundRecord;
  }
  return undefined;
}

/**
 * For src/gateway.ts: starts the outbound listener when `backscatter.outbound` is configured,
 * writing to the same record the gateway's backscatter check reads.
 */
export function startGatewayOutbound(
  runtime: { config: Config; domains: ReadonlySet<string>; logger: Logger },
  deps: { now: () => number; store?: SharedStore | undefined },
  checks: readonly Check[],
): Promise<OutboundListener | undefined> {
  const cfg = runtime.config.backscatter;
  if (!cfg.outbound) return Promise.resolve(undefined);
  const record = recordOf(checks) ?? createOutboundRecord(deps.store, cfg.record.ttl, cfg.record.max_entries);
  return startOutboundListener({
    config: () => runtime.config.backscatter,
    domains: () => runtime.domains,
    hostname: runtime.config.hostname,
    record,
    now: deps.now,
    logger: runtime.logger,
  });
}
