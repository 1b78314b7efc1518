// The `greylist:` section of rules files. Off unless `enabled: true`; later files (local.d/)
// override earlier ones key by key. Timings default to Postgrey's: 5m delay, 2d retry window,
// 35d for a passed triplet, auto-allow of a network after 5 passed triplets. Greylisting defers
// at end of DATA: skip conditions can use DKIM/DMARC results, and one deferral covers every
// recipient of the message (see docs/ratelimit.md).
import { z } from 'zod';
import type { GreylistParams } from '../../store/shared-store.ts';
import type { ConditionLike } from './rate-limit-section.ts';
import { durationSchema } from './durations-rates-keys.ts';

export const greylistSectionSchema = z.strictObject({
  enabled: z.boolean().optional(),
  /** A retry earlier than this after the first attempt is deferred again. */
  delay: durationSchema.optional(),
  /** After the delay, a retry within this window passes; later it starts over. */
  retry_window: durationSchema.optional(),
  /** How long a passed triplet (and an auto-allowed network) is remembered after its last use. */
  lifetime: durationSchema.optional(),
  /** Passed triplets after which the client's whole network skips greylisting; 0 = off. */
  auto_allow_after: z.number().int().min(0).max(100_000).optional(),
  /** Client network of a triplet: IPv4 and IPv6 prefix lengths (large senders retry from pools). */
  ipv4_prefix: z.number().int().min(8).max(32).optional(),
  ipv6_prefix: z.number().int().min(16).max(128).optional(),
  /** Do not greylist when this condition (rules language) holds. */
  skip: z.unknown().optional(),
  /** Reply text; `{retry_after}` and `{retry_after_s}` are replaced. */
  message: z.string().min(1).max(300).optional(),
});
export type GreylistSection = z.output<typeof greylistSectionSchema>;

export interface GreylistSpec {
  enabled: boolean;
  params: GreylistParams;
  prefix4: number;
  prefix6: number;
  /** The compiled skip condition. */
  skip: ConditionLike | undefined;
  /** The skip condition as written, until compiled. */
  skipRaw: unknown;
  message: string;
}

export const GREYLIST_DEFAULTS: GreylistSpec = {
  enabled: false,
  params: { delayMs: 300_000, retryWindowMs: 2 * 86_400_000, lifetimeMs: 35 * 86_400_000, autoAllowAfter: 5 },
  prefix4: 24,
  prefix6: 64,
  skip: undefined,
  skipRaw: undefined,
  message: 'Greylisted: please try again in {retry_after}',
};

/** Applies the defaults to the (merged) section. */
export function resolveGreylist(m: GreylistSection | undefined): GreylistSpec {
  m ??= {};
  const d = GREYLIST_DEFAULTS;
  return {
    enabled: m.enabled ?? d.enabled,
    params: {
      delayMs: m.delay ?? d.params.delayMs,
      retryWindowMs: m.retry_window ?? d.params.retryWindowMs,
      lifetimeMs: m.lifetime ?? d.params.lifetimeMs,
      autoAllowAfter: m.auto_allow_after ?? d.params.autoAllowAfter,
    },
    prefix4: m.ipv4_prefix ?? d.prefix4,
    prefix6: m.ipv6_prefix ?? d.prefix6,
    skip: undefined,
    skipRaw: m.skip,
    message: m.message ?? d.message,
  };
}
