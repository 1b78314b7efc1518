// The `concurrency:` section of rules files: limits on connections open at the same time, shared by
// every mailgate instance using the same store (the per-instance `limits.max_connections_per_ip`
// of mailgate.yaml stays as the first, local line of defence).
import { z } from 'zod';
import { durationSchema } from './durations-rates-keys.ts';
import { LIMIT_NAME, type ConditionLike, type MergedEntry, type Report } from './rate-limit-section.ts';

export const concurrencyEntrySchema = z.strictObject({
  name: z.string().regex(LIMIT_NAME, 'expected a limit name: lowercase letter, then lowercase letters, digits or _ (at most 48)'),
  description: z.string().min(1).optional(),
  /** Connections counted per client address or per client network. */
  key: z.enum(['client_ip', 'client_net']).optional(),
  /** Most connections open at once, across all instances. */
  max: z.number().int().min(1).max(100_000).optional(),
  /**
   * A slot not refreshed for this long is freed (an instance that crashed). Live connections are
   * refreshed every third of it. Default 5m.
   */
  lease: durationSchema.optional(),
  /** tempfail: 421 at connect (rules/50-ratelimits.yaml); score: facts only. */
  action: z.enum(['tempfail', 'score']).optional(),
  /** Counts only connections for which this condition (rules language, connect facts) holds. */
  when: z.unknown().optional(),
  ipv4_prefix: z.number().int().min(8).max(32).optional(),
  ipv6_prefix: z.number().int().min(16).max(128).optional(),
  enabled: z.boolean().optional(),
});
export type ConcurrencyEntry = z.output<typeof concurrencyEntrySchema>;

export const concurrencySectionSchema = z.array(concurrencyEntrySchema);

export interface ConcurrencySpec {
  name: string;
  key: 'client_ip' | 'client_net';
  max: number;
  leaseMs: number;
  action: 'tempfail' | 'score';
  /** The compiled `when` condition, if any. */
  when: ConditionLike | undefined;
  whenAt: { raw: unknown; path: PropertyKey[] } | undefined;
  prefix4: number;
  prefix6: number;
}

/** Checks merged entries for completeness; bad ones are reported and left out. */
export function resolveConcurrency(merged: ReadonlyArray<MergedEntry<ConcurrencyEntry>>, report: Report): ConcurrencySpec[] {
  const out: ConcurrencySpec[] = [];
  for (const { entry: e, index, at } of merged) {
    if (e.enabled === false) continue;
    if (e.max === undefined) {
      report([index, 'name'], `limit ${e.name}: missing "max" (connections open at once)`);
      continue;
    }
    out.push({
      name: e.name,
      key: e.key ?? 'client_ip',
      max: e.max,
      leaseMs: e.lease ?? 300_000,
      action: e.action ?? 'tempfail',
      when: undefined,
      whenAt: e.when === undefined ? undefined : { raw: e.when, path: [at.get('when') ?? index, 'when'] },
      prefix4: e.ipv4_prefix ?? 24,
      prefix6: e.ipv6_prefix ?? 64,
    });
  }
  return out;
}
