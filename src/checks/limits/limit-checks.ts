// Entry point of the limit checks for the gateway: the shared store from mailgate.yaml, the three
// RulesAware checks (concurrency, ratelimit, greylist) that read their sections of the rules files,
// every fact they set, and compileLimitSections for use without the rules loader (tests, bench).
import type { z } from 'zod';
import type { Config } from '../../config/schema.ts';
import type { Check } from '../../pipeline/check.ts';
import type { FactSpec } from '../../pipeline/facts.ts';
import type { RulesAware } from '../../rules/rules-aware.ts';
import { createSharedStore } from '../../store/create-store.ts';
import type { SharedStore } from '../../store/shared-store.ts';
import { concurrencyFacts, createConcurrencyCheck } from './concurrency.ts';
import { concurrencySectionSchema } from './concurrency-section.ts';
import { createGreylistCheck, greylistFacts } from './greylist.ts';
import { greylistSectionSchema } from './greylist-section.ts';
import { createRateLimitCheck, rateLimitFacts, type LimitCheckContext } from './rate-limit.ts';
import { rateLimitsSectionSchema, type ConditionLike } from './rate-limit-section.ts';
import {
  compileConcurrency,
  compileGreylist,
  compileRateLimits,
  concurrencySectionSpec,
  greylistSectionSpec,
  rateLimitsSectionSpec,
  type CompileEnv,
  type LimitSections,
} from './section-loading.ts';

export type { LimitSections };
export const limitSectionSpecs = [rateLimitsSectionSpec, concurrencySectionSpec, greylistSectionSpec] as const;

/** Every fact the limit checks can set; static, so rules validate before the sections are read. */
export function limitFacts(): FactSpec[] {
  return [...concurrencyFacts(), ...rateLimitFacts(), ...greylistFacts()];
}

/** The shared store described by mailgate.yaml's `redis` and `redis_options`. */
export function createStoreFromConfig(
  config: Pick<Config, 'redis' | 'redis_options'>,
  deps: { logger: LimitCheckContext['logger']; now: () => number },
): SharedStore {
  return createSharedStore({ redis: config.redis, options: config.redis_options, logger: deps.logger, now: deps.now });
}

/**
 * The three limit checks. They take their settings from the rules files (onRulesLoaded) unless
 * `sections` is given. The ratelimit check carries the store's /readyz probe and closes the
 * store on shutdown when `ownsStore` is set.
 */
export function createLimitChecks(ctx: LimitCheckContext & { ownsStore?: boolean }, sections: LimitSections = {}): Array<Check & RulesAware> {
  const rl = createRateLimitCheck(ctx, sections.ratelimits);
  const store = ctx.store;
  const withProbe: Check & RulesAware = {
    ...rl,
    // Spread copies the getters' values: keep `stages` and `needs` live (they follow the rules).
    get stages() {
      return rl.stages;
    },
    get needs() {
      return rl.needs;
    },
    readiness: {
      name: store.kind === 'redis' ? 'redis' : 'store',
      async check() {
        const r = await store.readiness();
        const detail = `${r.backend} ${r.state}${r.detail ? ` (${r.detail})` : ''}, ${r.failMode}`;
        return { ok: r.ok, detail };
      },
    },
    close: async () => {
      if (ctx.ownsStore) await store.close();
    },
  };
  return [createConcurrencyCheck(ctx, sections.concurrency), withProbe, createGreylistCheck(ctx, sections.greylist)];
}

/**
 * Validates and compiles raw sections without the rules loader (tests, bench, embedding).
 * Throws an Error listing every problem as `section.path: message`.
 */
export function compileLimitSections(
  raw: { ratelimits?: unknown; concurrency?: unknown; greylist?: unknown },
  compileCondition?: (raw: unknown, path: PropertyKey[]) => ConditionLike,
): LimitSections {
  const problems: string[] = [];
  const env = (section: string): CompileEnv => ({
    report: (p, m) => problems.push(`${section}${p.map((x) => (typeof x === 'number' ? `[${x}]` : `.${String(x)}`)).join('')}: ${m}`),
    compileCondition: compileCondition
      ? (r, p) => {
          try {
            return compileCondition(r, p);
          } catch (err) {
            problems.push(`${section}: ${(err as Error).message}`);
            return undefined;
          }
        }
      : undefined,
  });
  const parse = <T>(section: string, schema: z.ZodType<T>, value: unknown): T | undefined => {
    const r = schema.safeParse(value);
    if (r.success) return r.data;
    for (const i of r.error.issues)
      problems.push(`${section}${i.path.map((x) => (typeof x === 'number' ? `[${x}]` : `.${String(x)}`)).join('')}: ${i.message}`);
    return undefined;
  };
  const out: LimitSections = {};
  if (raw.ratelimits !== undefined) {
    const v = parse('ratelimits', rateLimitsSectionSchema, raw.ratelimits);
    if (v) out.ratelimits = compileRateLimits(v, env('ratelimits'));
  }
  if (raw.concurrency !== undefined) {
    const v = parse('concurrency', concurrencySectionSchema, raw.concurrency);
    if (v) out.concurrency = compileConcurrency(v, env('concurrency'));
  }
  if (raw.greylist !== undefined) {
    const v = parse('greylist', greylistSectionSchema, raw.greylist);
    if (v) out.greylist = compileGreylist(v, env('greylist'));
  }
  if (problems.length > 0) throw new Error(problems.join('\n'));
  return out;
}
