// Every fact the backscatter checks set (batv.* at RCPT, backscatter.* at end of DATA), in one
// list for the rules registry, so shipped rules validate where no gateway runs (`rules check`).
import type { FactSpec } from '../../pipeline/facts.ts';
import { batvFacts } from './batv-check.ts';
import { backscatterFacts } from './backscatter-check.ts';

export const backscatterFactSpecs: readonly FactSpec[] = [...batvFacts, ...backscatterFacts];
