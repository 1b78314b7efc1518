// The `ratelimits:`, `concurrency:` and `greylist:` sections as the rules loader sees them:
// schemas, merging across files (a local.d/ entry patches a shipped one by name), and compiling
// with located errors, including the rules-language conditions (`when:`, `skip:`).
import { stageIndex } from '../../pipeline/stages.ts';
import type { SectionSpec } from '../../rules/loader.ts';
import { concurrencySectionSchema, resolveConcurrency, type ConcurrencyEntry, type ConcurrencySpec } from './concurrency-section.ts';
import { greylistSectionSchema, resolveGreylist, type GreylistSection, type GreylistSpec } from './greylist-section.ts';
import {
  mergeByName,
  rateLimitsSectionSchema,
  resolveRateLimits,
  type ConditionLike,
  type RateLimitEntry,
  type RateLimitSpec,
  type Report,
} from './rate-limit-section.ts';

/** The compiled sections (each absent when no rules file has it). */
export interface LimitSections {
  ratelimits?: RateLimitSpec[] | undefined;
  concurrency?: ConcurrencySpec[] | undefined;
  greylist?: GreylistSpec | undefined;
}

export interface CompileEnv {
  report: Report;
  /** Compiles a rules-language condition; undefined after reporting a problem. */
  compileCondition?: ((raw: unknown, path: PropertyKey[]) => ConditionLike | undefined) | undefined;
}

/**
 * Compiles a limit's `when` condition; `tooLate(stage)` returns why the condition's stage is too
 * late for the limit (or undefined). The spec is dropped (after a report) when it cannot be used.
 */
function withWhen<S extends { name: string; whenAt?: { raw: unknown; path: PropertyKey[] } | undefined }>(
  spec: S,
  env: CompileEnv,
  tooLate: (stage: ConditionLike['stage']) => string | undefined,
): Array<S & { when?: ConditionLike }> {
  const w = spec.whenAt;
  if (!w) return [spec];
  if (!env.compileCondition) {
    env.report(w.path, `limit ${spec.name}: "when" conditions need the rules engine`);
    return [];
  }
  const when = env.compileCondition(w.raw, w.path);
  if (!when) return [];
  const why = tooLate(when.stage);
  if (why) {
    env.report(w.path, `limit ${spec.name}: "when" reads facts known only at ${when.stage}${why}`);
    return [];
  }
  return [{ ...spec, when }];
}

export function compileRateLimits(list: readonly RateLimitEntry[], env: CompileEnv): RateLimitSpec[] {
  return resolveRateLimits(mergeByName(list), env.report).flatMap((spec) =>
    withWhen(spec, env, (stage) => (stageIndex(stage) > stageIndex(spec.stage) ? `, after the limit counts (${spec.stage})` : undefined)),
  );
}

export function compileConcurrency(list: readonly ConcurrencyEntry[], env: CompileEnv): ConcurrencySpec[] {
  return resolveConcurrency(mergeByName(list), env.report).flatMap((spec) =>
    withWhen(spec, env, (stage) => (stage !== 'connect' ? '; connections are counted at connect' : undefined)),
  );
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
  compile: (value, ctx) => compileConcurrency(value, { report: (p, m) => ctx.error(p, m), compileCondition: (r, p) => ctx.compileCondition(r, p) }),
};

export const greylistSectionSpec: SectionSpec<GreylistSection, GreylistSpec> = {
  key: 'greylist',
  schema: greylistSectionSchema,
  merge: 'merge',
  compile: (value, ctx) => compileGreylist(value, { report: (p, m) => ctx.error(p, m), compileCondition: (r, p) => ctx.compileCondition(r, p) }),
};
