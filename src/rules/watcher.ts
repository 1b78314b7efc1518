// Live rules: the Policy the gateway holds. Reloads the rules directory (and the list files it
// uses) when they change — fs.watch, debounced, with a stat poll as a safety net — and on demand
// (SIGHUP). A reload that fails keeps the rules in force, logs why and counts the error.
import { watch, statSync, readdirSync, type FSWatcher } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Logger } from 'pino';
import type { FactSet, FactSpec } from '../pipeline/facts.ts';
import type { Stage } from '../pipeline/stages.ts';
import { SourceErrors } from '../config/yaml-source.ts';
import { metrics } from '../metrics/registry.ts';
import { createFactLookup, type FactLookup } from './fact-lookup.ts';
import { LOCAL_DIR, loadRules, type LoadedRules, type AnySectionSpec } from './loader.ts';
import type { Policy, Verdict } from '../pipeline/verdict.ts';

export interface LiveRulesOptions {
  dir: string;
  facts: readonly FactSpec[] | FactLookup;
  sections?: readonly AnySectionSpec[];
  logger?: Logger;
  /** Quiet period after the last change before reloading (editors write in several steps). */
  debounceMs?: number;
  /** Interval of the stat poll that catches changes fs.watch misses; 0 = no poll. */
  pollMs?: number;
  /** Watch files at all (false for one-shot use). */
  watch?: boolean;
  /**
   * Facts the running gateway can set (core, milter and enabled checks' facts): rules that read
   * none of them are set aside at each load instead of evaluated per message (see
   * `RulesPolicy.assumeProduced`). Unset (rules test, rules explain): every rule is evaluated.
   */
  produced?: (fact: string) => boolean;
  /** Called after each successful load (including the first), e.g. to refresh section users. */
  onReload?: (loaded: LoadedRules) => void;
}

export type ReloadResult = { ok: true; rules: number } | { ok: false; error: string };

function stamp(f: string): string {
  try {
    const s = statSync(f);
    return `${f}:${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
  } catch {
    return `${f}:-`;
  }
}

/**
 * A fingerprint of every rules file (loaded or not: a new, still broken file must be noticed
 * when it is fixed) and of the list files the rules in force use.
 */
function fingerprint(dir: string, loaded: LoadedRules | undefined): string {
  const parts: string[] = [];
  for (const d of [dir, join(dir, LOCAL_DIR)]) {
    let names: string[];
    try {
      names = readdirSync(d)
        .filter((n) => /\.ya?ml$/.test(n))
        .sort();
    } catch {
      parts.push(`${d}:-`);
      continue;
    }
    for (const n of names) parts.push(stamp(join(d, n)));
  }
  for (const f of loaded?.listFiles ?? []) parts.push(stamp(f));
  return parts.join('|');
}

export class LiveRules implements Policy {
  readonly #opts: LiveRulesOptions;
  readonly #lookup: FactLookup;
  #current: LoadedRules;
  #print: string;
  /** Fingerprint of the last failed attempt, so the poll does not retry an unchanged bad edit. */
  #failedPrint = '';
  #watchers: FSWatcher[] = [];
  #timer: NodeJS.Timeout | undefined;
  #poll: NodeJS.Timeout | undefined;
  #closed = false;

  /** Loads the rules once; throws SourceErrors when they are invalid (refuse to start). */
  constructor(opts: LiveRulesOptions) {
    this.#opts = opts;
    this.#lookup = Array.isArray(opts.facts) ? createFactLookup(opts.facts as readonly FactSpec[]) : (opts.facts as FactLookup);
    const print = fingerprint(opts.dir, undefined);
    this.#current = this.#load();
    this.#print = fingerprint(opts.dir, this.#current) || print;
    this.#installed(this.#current);
    if (opts.watch !== false) this.#watch();
  }

  get current(): LoadedRules {
    return this.#current;
  }

  evaluate(stage: Stage, facts: FactSet, previous?: Verdict): Verdict {
    return this.#current.policy.evaluate(stage, facts, previous);
  }

  readsFact(fact: string): boolean {
    return this.#current.policy.readsFact(fact);
  }

  #load(): LoadedRules {
    return loadRules(this.#opts.dir, this.#lookup, this.#opts.sections ?? []);
  }

  #installed(loaded: LoadedRules): void {
    loaded.policy.hooks.onFire = (rule) => metrics.ruleHits.inc({ rule: rule.name });
    if (this.#opts.produced) loaded.policy.assumeProduced(this.#opts.produced);
    metrics.rulesLoaded.set(loaded.rules.length);
    metrics.rulesLastReloadSuccess.set(1);
    metrics.rulesLastReloadTime.set(Date.now() / 1000);
    this.#opts.onReload?.(loaded);
  }

  /** Reloads now. On failure the previous rules stay in force. */
  reload(reason = 'request'): ReloadResult {
    const before = fingerprint(this.#opts.dir, this.#current);
    let loaded: LoadedRules;
    try {
      loaded = this.#load();
    } catch (err) {
      const error = err instanceof SourceErrors ? err.message : `${(err as Error).message}`;
      metrics.rulesReloadErrors.inc();
      metrics.rulesLastReloadSuccess.set(0);
      this.#failedPrint = before;
      this.#opts.logger?.error(
        { reason, problems: error.split('\n'), dir: this.#opts.dir, rules_in_force: this.#current.rules.length },
        'rules reload failed; keeping the previous rules',
      );
      return { ok: false, error };
    }
    this.#current = loaded;
    this.#print = fingerprint(this.#opts.dir, loaded);
    this.#failedPrint = '';
    this.#installed(loaded);
    this.#opts.logger?.info(
      { reason, rules: loaded.rules.length, files: loaded.files.length, lists: loaded.listFiles.length, disabled: loaded.disabled },
      'rules loaded',
    );
    if (!this.#closed && this.#opts.watch !== false) this.#watch();
    return { ok: true, rules: loaded.rules.length };
  }

  #schedule(reason: string): void {
    if (this.#closed) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      // Editor swap files and the like change the directory but none of the files in use.
      const now = fingerprint(this.#opts.dir, this.#current);
      if (now === this.#print || now === this.#failedPrint) return;
      this.reload(reason);
    }, this.#opts.debounceMs ?? 300);
    this.#timer.unref();
  }

  #watch(): void {
    for (const w of this.#watchers) w.close();
    this.#watchers = [];
    const dir = this.#opts.dir;
    const onError = (err: Error) => this.#opts.logger?.warn({ err: err.message, dir }, 'rules watcher failed; relying on the poll');
    try {
      // Any change under the directory (rules, local.d, lists) reloads; a reload that finds
      // nothing changed is harmless.
      const w = watch(dir, { recursive: true, persistent: false }, () => this.#schedule('change'));
      w.on('error', onError);
      this.#watchers.push(w);
    } catch (err) {
      onError(err as Error);
    }
    // List files outside the rules directory: watch their directories (editors replace files).
    const outside = new Map<string, Set<string>>();
    for (const f of this.#current.listFiles) {
      if (f.startsWith(`${this.#current.dir}/`)) continue;
      const set = outside.get(dirname(f)) ?? new Set();
      set.add(basename(f));
      outside.set(dirname(f), set);
    }
    for (const [d, names] of outside) {
      try {
        const w = watch(d, { persistent: false }, (_ev, name) => {
          if (name === null || names.has(String(name))) this.#schedule('list change');
        });
        w.on('error', onError);
        this.#watchers.push(w);
      } catch (err) {
        onError(err as Error);
      }
    }
    const pollMs = this.#opts.pollMs ?? 5000;
    if (pollMs > 0 && !this.#poll) {
      this.#poll = setInterval(() => {
        const now = fingerprint(this.#opts.dir, this.#current);
        if (now !== this.#print && now !== this.#failedPrint) this.#schedule('poll');
      }, pollMs);
      this.#poll.unref();
    }
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    clearInterval(this.#poll);
    for (const w of this.#watchers) w.close();
    this.#watchers = [];
  }
}
