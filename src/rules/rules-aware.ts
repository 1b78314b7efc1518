// How a check learns about the rules in force: a check object may also implement RulesAware, and
// the gateway's policy loader calls `onRulesLoaded` after every successful (re)load — so a check
// reads its own section of the rules files (`dnsbl:`, `ratelimits:`) and reloads with them.
import type { LoadedRules, AnySectionSpec } from './loader.ts';

export interface RulesAware {
  /** Sections this check owns in the rules files, validated by the rules loader. */
  readonly rulesSections?: readonly AnySectionSpec[];
  /** Called with the rules in force, at start and after each successful reload. */
  onRulesLoaded(loaded: LoadedRules): void;
}

export function isRulesAware(x: unknown): x is RulesAware {
  return typeof x === 'object' && x !== null && typeof (x as { onRulesLoaded?: unknown }).onRulesLoaded === 'function';
}
