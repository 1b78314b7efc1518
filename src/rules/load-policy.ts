// Bridge between the gateway and the rules engine: loads `config.rules` into a live Policy that
// hot-reloads (file changes, SIGHUP via reload()), tells RulesAware checks about each load, and
// records each verdict's inputs for `mailgate rules diff`.
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import type { Check } from '../pipeline/check.ts';
import type { FactSet } from '../pipeline/facts.ts';
import { emptyVerdict, type Policy, type Verdict } from '../pipeline/verdict.ts';
import { LiveRules } from './watcher.ts';
import type { FactSpec } from '../pipeline/facts.ts';
import type { AnySectionSpec } from './loader.ts';
import { isRulesAware, type RulesAware } from './rules-aware.ts';
import { Capture } from './capture.ts';
import { coreFacts, milterFacts } from '../pipeline/core-facts.ts';
import { createFactLookup } from './fact-lookup.ts';

export interface PolicyHandle {
  policy: Policy;
  reload(): Promise<void>;
  close(): void;
  /** Records a finished transaction's facts and verdict; `id` (the queue id) labels it in `rules diff`. */
  capture?: (facts: FactSet, verdict: Verdict, action: string, id?: string) => void;
}

export const acceptAllPolicy: Policy = {
  evaluate(stage, _facts, previous) {
    const v = previous ? { ...previous, fired: [...previous.fired], addHeaders: [...previous.addHeaders] } : emptyVerdict();
    v.action = stage === 'data' ? 'accept' : 'continue';
    return v;
  },
};

/** Capture settings from mailgate.yaml's `capture:` key. */
export interface CaptureSettings {
  enabled: boolean;
  /** Default: capture.jsonl next to the quarantine directory (var/capture.jsonl). */
  file?: string;
  max_entries?: number;
  exclude?: string[];
}

function captureSettings(config: Config): CaptureSettings {
  const c = config.capture;
  if (c === false) return { enabled: false };
  if (!c) return { enabled: true };
  const out: CaptureSettings = { enabled: c.enabled, max_entries: c.max_entries, exclude: c.exclude };
  if (c.file) out.file = c.file;
  return out;
}

/**
 * Loads the rules (throws SourceErrors when they are invalid, so the gateway refuses to start)
 * and returns the live policy. `onChange` is not needed: the returned policy always evaluates
 * with the rules in force.
 */
export interface PolicyInputs {
  /** Every fact rules may read (the catalogue's, src/checks/catalogue.ts). */
  facts: readonly FactSpec[];
  /** Every rules-file section the checks own. */
  sections: readonly AnySectionSpec[];
}

/**
 * Which facts a gateway running `checks` can set: the core's and the milter front's, each check's
 * own and its `check.<name>.error`. `header.<Name>` facts come from `message.headers`.
 */
export function producedBy(checks: readonly Check[]): (fact: string) => boolean {
  // The lookup matches `*` families (`ratelimit.*.exceeded`) the way rules validation does.
  const specs = new Map<string, FactSpec>();
  for (const f of [...coreFacts, ...milterFacts, ...checks.flatMap((c) => c.facts)]) if (!specs.has(f.name)) specs.set(f.name, f);
  const lookup = createFactLookup(specs.values());
  const errors = new Set(checks.map((c) => `check.${c.name}.error`));
  return (fact) => fact.startsWith('header.') || errors.has(fact) || lookup.get(fact) !== undefined;
}

export async function loadPolicy(config: Config, checks: readonly Check[], logger: Logger, known: PolicyInputs): Promise<PolicyHandle> {
  const aware = checks.filter((c): c is Check & RulesAware => isRulesAware(c));
  const live = new LiveRules({
    dir: config.rules,
    produced: producedBy(checks),
    facts: [...known.facts],
    sections: [...known.sections],
    logger: logger.child({ component: 'rules' }),
    onReload: (loaded) => {
      for (const c of aware) {
        try {
          c.onRulesLoaded(loaded);
        } catch (err) {
          logger.error({ err: (err as Error).message }, 'a check rejected the new rules');
        }
      }
    },
  });
  logger.info({ dir: live.current.dir, rules: live.current.rules.length, files: live.current.files.length }, 'rules loaded');
  const cs = captureSettings(config);
  let capture: Capture | undefined;
  if (cs.enabled) {
    // Worker processes (workers > 1) each keep their own file; `rules diff` reads them all.
    const worker = process.env.MAILGATE_WORKER;
    const base = cs.file ?? join(dirname(config.quarantine.dir), 'capture.jsonl');
    const file = worker ? base.replace(/(\.jsonl)?$/, `-w${worker}.jsonl`) : base;
    const opts: ConstructorParameters<typeof Capture>[0] = { file };
    if (cs.max_entries !== undefined) opts.maxEntries = cs.max_entries;
    if (cs.exclude !== undefined) opts.exclude = cs.exclude;
    try {
      capture = new Capture(opts);
    } catch (err) {
      logger.warn({ err: (err as Error).message, file: opts.file }, 'verdict capture disabled: cannot create its file');
    }
  }
  const handle: PolicyHandle = {
    policy: live,
    reload: async () => {
      live.reload('SIGHUP');
    },
    close: () => {
      live.close();
      void capture?.close();
    },
  };
  if (capture) {
    const cap = capture;
    handle.capture = (facts, verdict, action, id) => cap.record(facts, verdict, action, id);
  }
  return handle;
}
