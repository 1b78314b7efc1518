// Plugs the `ratelimits:`, `concurrency:` and `greylist:` sections into the rules loader (schemas,
// merging across files, condition compiling with located errors) and builds the three checks from
// the compiled sections. compileLimitSections does the same without the loader (tests, bench).
import { z } from 'zod';
import type { Check } from '../pipeline/check.ts';
import type { FactSpec } from '../pipeline/facts.ts';
import { stageIndex } from '../pipeline/stages.ts';
import type { SectionSpec } from '../rules/loader.ts';
import { concurrencyFacts, createConcurrencyCheck } from './concurrency.ts';
import { concurrencySectionSchema, resolveConcurrency, type ConcurrencyEntry, type ConcurrencySpec } from './concurrency-config.ts';
import { createGreylistCheck, greylistFacts } from './greylist.ts';
import { greylistSectionSchema, resolveGreylist, type GreylistSection, type GreylistSpec } from './greylist-config.ts';
import { createRateLimitChecks, rateLimitFacts, type LimitCheckContext } from './rate-limit.ts';
import {
  mergeByName,
  rateLimitsSectionSchema,
  resolveRateLimits,
  type ConditionLike,
  type RateLimitEntry,
  type RateLimitSpec,
  type Report,
} from './rate-limit-config.ts';

/** The compiled sections (each absent when no rules file has it). */
export interface LimitSections {
  ratelimits?: RateLimitSpec[] | undefined;
  concurrency?: ConcurrencySpec[] | undefined;
  greylist?: GreylistSpec | undefined;
}

interface CompileEnv {
  report: Report;
  /** Compiles a rules-language condition; undefined after reporting a problem. */
  compileCondition?: ((raw: unknown, path: PropertyKey[]) => ConditionLike | undefined) | undefined;
}

export function compileRateLimits(list: readonly RateLimitEntry[], env: CompileEnv): RateLimitSpec[] {
  const specs = resolveRateLimits(mergeByName(list), env.report);
  return specs.flatMap((spec) => {
    const w = spec.whenAt;
    if (!w) return [spec];
    if (!env.compileCondition) {
      env.report(w.path, `limit ${spec.name}: "when" conditions need the rules engine`);
      return [];
    }
    const when = env.compileCondition(w.raw, w.path);
    if (!when) return [];
    if (stageIndex(when.stage) > stageIndex(spec.stage)) {
      env.report(w.path, `limit ${spec.name}: "when" reads facts known only at ${when.stage}, after the limit counts (${spec.stage})`);
      return [];
    }
    return [{ ...spec, when }];
  });
}

export function compileConcurrency(list: readonly ConcurrencyEntry[], env: CompileEnv): ConcurrencySpec[] {
  return resolveConcurrency(mergeByName(list), env.report);
}

export function compileGreylist(section: GreylistSection, env: CompileEnv): GreylistSpec {
  const spec = resolveGreylist(section);
  if (spec.skipRaw === undefined) return spec;
  if (!env.compileCondition) {
    env.report(['skip'], '"skip" conditions need the rules engine');
    return spec;
  }
  const skip = env.compileCondition(spec.skipRaw, ['skip']);
  return skip ? { ...spec, skip } : spec;
}

// Sections for loadRules(dir, facts, limitSectionSpecs). Lists are concatenated across files and
// entries joined by name (a local.d/ entry patches a shipped one); greylist keys are merged.

export const rateLimitsSectionSpec: SectionSpec<RateLimitEntry[], RateLimitSpec[]> = {
  key: 'ratelimits',
  schema: rateLimitsSectionSchema,
  merge: 'concat',
  compile: (value, ctx) => compileRateLimits(value, { report: (p, m) => ctx.error(p, m), compileCondition: (r, p) => ctx.compileCondition(r, p) }),
};

export const concurrencySectionSpec: SectionSpec<ConcurrencyEntry[], ConcurrencySpec[]> = {
  key: 'concurrency',
  schema: concurrencySectionSchema,
  merge: 'concat',
  compile: (value, ctx) => compileConcurrency(value, { report: (p, m) => ctx.error(p, m) }),
};

export const greylistSectionSpec: SectionSpec<GreylistSection, GreylistSpec> = {
  key: 'greylist',
  schema: greylistSectionSchema,
  merge: 'merge',
  compile: (value, ctx) => compileGreylist(value, { report: (p, m) => ctx.error(p, m), compileCondition: (r, p) => ctx.compileCondition(r, p) }),
};

export const limitSectionSpecs = [rateLimitsSectionSpec, concurrencySectionSpec, greylistSectionSpec] as const;

/** Every fact the limit checks can set; static, so rules validate before the sections are read. */
export function limitFacts(): FactSpec[] {
  return [...concurrencyFacts(), ...rateLimitFacts(), ...greylistFacts()];
}

/** Builds the checks of the compiled sections (none for an absent or empty section). */
export function createLimitChecks(sections: LimitSections, ctx: LimitCheckContext): { checks: Check[]; facts: FactSpec[] } {
  const checks = [
    ...createConcurrencyCheck(sections.concurrency, ctx).checks,
    ...createRateLimitChecks(sections.ratelimits, ctx).checks,
    ...createGreylistCheck(sections.greylist, ctx).checks,
  ];
  return { checks, facts: limitFacts() };
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
    for (const i of r.error.issues) problems.push(`${section}${i.path.map((x) => (typeof x === 'number' ? `[${x}]` : `.${String(x)}`)).join('')}: ${i.message}`);
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
