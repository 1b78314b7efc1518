// Runs a fast-check property bounded for `npm test` (a few seconds per parser) or long for
// `npm run fuzz` (MAILGATE_FUZZ_SECONDS per property), and records how many inputs were tried so
// docs/reliability.md can quote the executions per parser. A counterexample fails the test with
// its seed and path, so it can be replayed and turned into a regression case.
import assert from 'node:assert/strict';
import { appendFileSync } from 'node:fs';
import fc from 'fast-check';

const SECONDS = Number(process.env.MAILGATE_FUZZ_SECONDS ?? 0);
/** Bounded default: this many runs or 3 s, whichever comes first. */
const RUNS = Number(process.env.MAILGATE_FUZZ_RUNS ?? 2000);

export function fuzzSettings(): fc.Parameters<unknown> {
  if (SECONDS > 0) return { numRuns: Number.MAX_SAFE_INTEGER, interruptAfterTimeLimit: SECONDS * 1000, markInterruptAsFailure: false };
  return { numRuns: RUNS, interruptAfterTimeLimit: 3000, markInterruptAsFailure: false };
}

/** Checks `prop`; appends `{parser, runs}` to $MAILGATE_FUZZ_REPORT when set. */
export function runFuzz<T extends [unknown, ...unknown[]]>(parser: string, prop: fc.IPropertyWithHooks<T> | fc.IProperty<T>): number {
  const out = fc.check(prop as fc.IProperty<T>, fuzzSettings() as fc.Parameters<T>);
  if (out.failed) {
    assert.fail(
      `${parser}: counterexample ${fc.stringify(out.counterexample)} (seed ${out.seed}, path ${out.counterexamplePath}): ${String(out.errorInstance)}`,
    );
  }
  if (process.env.MAILGATE_FUZZ_REPORT) appendFileSync(process.env.MAILGATE_FUZZ_REPORT, JSON.stringify({ parser, runs: out.numRuns }) + '\n');
  return out.numRuns;
}

/** runFuzz for async properties (a property that talks to a real server). */
export async function runFuzzAsync<T extends [unknown, ...unknown[]]>(parser: string, prop: fc.IAsyncProperty<T>, maxRuns = RUNS): Promise<number> {
  const settings = SECONDS > 0 ? fuzzSettings() : { ...fuzzSettings(), numRuns: Math.min(RUNS, maxRuns), interruptAfterTimeLimit: 5000 };
  const out = await fc.check(prop, settings as fc.Parameters<T>);
  if (out.failed) {
    assert.fail(
      `${parser}: counterexample ${fc.stringify(out.counterexample)} (seed ${out.seed}, path ${out.counterexamplePath}): ${String(out.errorInstance)}`,
    );
  }
  if (process.env.MAILGATE_FUZZ_REPORT) appendFileSync(process.env.MAILGATE_FUZZ_REPORT, JSON.stringify({ parser, runs: out.numRuns }) + '\n');
  return out.numRuns;
}
