// Label sets of our own metrics (counter.ts, histogram.ts): the lookup key of a label set and the
// check prom-client makes, with its wording.
import { inspect } from 'node:util';

export type Labels<L extends string> = Partial<Record<L, string | number>>;

/** The label values in `names` order; a missing label is not the empty value (prom-client prints `x=""` only for the latter). */
export function labelKey<L extends string>(names: readonly L[], labels: Labels<L>): string {
  let key = '';
  for (const n of names) key += labels[n] === undefined ? '\u0001' : `${labels[n]}\u0000`;
  return key;
}

/** Throws, as prom-client does, for a label the metric was not declared with. */
export function checkLabelNames(names: readonly string[], labels: object): void {
  for (const k in labels) {
    if (!names.includes(k)) throw new Error(`Added label "${k}" is not included in initial labelset: ${inspect(names)}`);
  }
}
