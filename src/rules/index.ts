// The rules engine's public surface for the rest of mailgate: loading and live reload, the
// condition language for other modules' settings, explanation, capture and offline runs.
export { loadRules, getSection, LOCAL_DIR, type LoadedRules, type SectionSpec, type SectionContext } from './loader.ts';
export { LiveRules, type LiveRulesOptions, type ReloadResult } from './watcher.ts';
export { compileCondition, type CompiledCondition, type ConditionOptions } from './condition.ts';
export { RulesPolicy, type CompiledRule } from './engine.ts';
export { explainLine, statusHeaderValue, verdictLogFields, formatFired, decidedBy, STATUS_HEADER } from './explain.ts';
export { Capture, readCapture, type CaptureEntry, type CaptureOptions } from './capture.ts';
export { isRulesAware, type RulesAware } from './rules-aware.ts';
export { emptyVerdict, ACTIONS, type Action, type Policy, type Verdict, type FiredRule, type Decision } from '../pipeline/verdict.ts';
