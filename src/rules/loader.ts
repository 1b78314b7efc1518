// Loads a rules directory: `*.yaml` in name order, then `local.d/*.yaml` (the postmaster's
// overrides, which survive upgrades of the shipped files). Everything is validated before the
// result is returned; every problem is a SourceError naming file, line and key.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import type { z } from 'zod';
import type { FactSpec } from '../pipeline/facts.ts';
import { stageIndex, type Stage } from '../pipeline/stages.ts';
import { formatPath, lineOf, SourceError, SourceErrors, type YamlSource } from '../config/yaml-source.ts';
import { ConditionCompiler, type CompiledCondition } from './condition.ts';
import { createFactLookup, type FactLookup } from './fact-lookup.ts';
import { ListRegistry } from './lists.ts';
import { parseYamlLocated, validateLocated, type Locator } from './located.ts';
import { RulesPolicy, type CompiledReply, type CompiledRule, type Threshold, type Thresholds } from './engine.ts';
import { actionsSchema, RULE_KEYS, ruleSchema, settingsSchema, type ActionsInput, type RuleInput, type RulesSettings } from './schema.ts';
import { compileTemplate, type Template } from './template.ts';
import type { Action } from '../pipeline/verdict.ts';

/** The overrides directory inside a rules directory. */
export const LOCAL_DIR = 'local.d';
/** Facts known only while one recipient is checked; a data-stage rule cannot read them. */
const PER_RECIPIENT_FACTS = ['rcpt.address', 'rcpt.domain'];

/** Context handed to a section's `compile` hook, so its errors point into the right file. */
export interface SectionContext {
  /** Compiles a condition found at `path` (relative to the section's value). */
  compileCondition(raw: unknown, path: PropertyKey[]): CompiledCondition | undefined;
  /** Compiles a `{fact}` template found at `path`. */
  compileTemplate(text: string, path: PropertyKey[]): Template;
  /** Records a problem at `path` (relative to the section's value). */
  error(path: PropertyKey[], message: string): void;
  readonly facts: FactLookup;
  readonly lists: ListRegistry;
  /** Absolute rules directory. */
  readonly dir: string;
}

/**
 * A top-level section other modules own (e.g. `ratelimits:`, `greylist:`, `dnsbl:`). Occurrences
 * in several files are combined first (`merge`: top-level keys of later files replace earlier
 * ones; `concat`: lists are appended; `replace`: the last file wins; `auto`, the default: concat
 * when every occurrence is a list, else merge), then the result is validated with `schema` and,
 * if given, passed through `compile`.
 */
/**
 * A section spec of any type: the loader holds sections of different owners side by side, each
 * validated by its own schema and read back typed through getSection.
 */
// biome-ignore lint/suspicious/noExplicitAny: heterogeneous sections, each typed by its own spec
export type AnySectionSpec = SectionSpec<any, any>;

export interface SectionSpec<T = unknown, C = T> {
  key: string;
  schema: z.ZodType<T>;
  merge?: 'auto' | 'merge' | 'concat' | 'replace';
  compile?: (value: T, ctx: SectionContext) => C;
}

export interface LoadedRules {
  /** Absolute rules directory. */
  dir: string;
  policy: RulesPolicy;
  rules: readonly CompiledRule[];
  /** Compiled value of each registered section present in some file, by key. */
  sections: ReadonlyMap<string, unknown>;
  /** Absolute paths of the YAML files read, in load order. */
  files: string[];
  /** Absolute paths of the list files the rules and sections use. */
  listFiles: string[];
  /** Rules that are switched off with `enabled: false`. */
  disabled: string[];
  /** The `settings:` section with its defaults. */
  settings: RulesSettings;
}

/** The typed value of a section (undefined when no file has it). */
export function getSection<T, C>(loaded: LoadedRules, spec: SectionSpec<T, C>): C | undefined {
  return loaded.sections.get(spec.key) as C | undefined;
}

interface RuleFile {
  abs: string;
  /** Path as shown in errors (the directory as given, joined with the name). */
  shown: string;
  /** Path relative to the rules directory, for rule sources. */
  rel: string;
  local: boolean;
}

function yamlNames(dir: string): string[] {
  return readdirSync(dir)
    .filter((n) => /\.ya?ml$/.test(n) && !n.startsWith('.'))
    .filter((n) => statSync(join(dir, n)).isFile())
    .sort();
}

/** The files of a rules directory in load order. */
export function listRuleFiles(dir: string): RuleFile[] {
  const abs = resolve(dir);
  const out: RuleFile[] = yamlNames(abs).map((n) => ({ abs: join(abs, n), shown: join(dir, n), rel: n, local: false }));
  const localAbs = join(abs, LOCAL_DIR);
  let hasLocal = false;
  try {
    hasLocal = statSync(localAbs).isDirectory();
  } catch {
    hasLocal = false;
  }
  if (hasLocal) {
    for (const n of yamlNames(localAbs)) {
      out.push({ abs: join(localAbs, n), shown: join(dir, LOCAL_DIR, n), rel: join(LOCAL_DIR, n), local: true });
    }
  }
  return out;
}

interface Origin {
  src: YamlSource;
  file: RuleFile;
  /** Path of the definition inside its file, e.g. ['rules', 3]. */
  base: PropertyKey[];
}

interface Draft {
  name: string;
  fields: Map<string, { value: unknown; at: Origin }>;
  defs: Origin[];
  order: number;
}

function locator(at: Origin): Locator {
  return (path) => {
    const full = [...at.base, ...path];
    return { file: at.src.file, line: lineOf(at.src, full), key: formatPath(full) };
  };
}

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

class Loader {
  readonly problems: SourceError[] = [];
  readonly lookup: FactLookup;
  readonly lists: ListRegistry;
  readonly dir: string;
  readonly #compilers = new Map<YamlSource, ConditionCompiler>();

  constructor(dir: string, lookup: FactLookup) {
    this.dir = resolve(dir);
    this.lookup = lookup;
    this.lists = new ListRegistry(this.dir, dir);
  }

  error(at: Origin, path: PropertyKey[], message: string): void {
    const l = locator(at)(path);
    this.problems.push(new SourceError(l.file, l.line, l.key, message));
  }

  compiler(src: YamlSource): ConditionCompiler {
    let c = this.#compilers.get(src);
    if (!c) {
      c = new ConditionCompiler({ facts: this.lookup, lists: this.lists, src });
      this.#compilers.set(src, c);
    }
    return c;
  }

  allProblems(): SourceError[] {
    return [...this.problems, ...[...this.#compilers.values()].flatMap((c) => c.problems)];
  }

  template(at: Origin, path: PropertyKey[], text: string): Template {
    return compileTemplate(text, this.lookup, (m) => this.error(at, path, m));
  }

  checkReply(at: Origin, path: PropertyKey[], action: Action | undefined, reply: RuleInput['reply']): CompiledReply | undefined {
    if (!reply) return undefined;
    if (action !== 'reject' && action !== 'tempfail') {
      this.error(at, path, `a reply goes with action reject or tempfail${action ? `, not ${action}` : ''}`);
      return undefined;
    }
    const cls = action === 'reject' ? 5 : 4;
    if (reply.code !== undefined && Math.floor(reply.code / 100) !== cls) {
      this.error(at, [...path, 'code'], `${action} needs a ${cls}xx code, got ${reply.code}`);
    }
    if (reply.enhanced !== undefined && Number(reply.enhanced[0]) !== cls) {
      this.error(at, [...path, 'enhanced'], `${action} needs an enhanced code starting with ${cls}., got ${reply.enhanced}`);
    }
    const out: CompiledReply = {};
    if (reply.code !== undefined) out.code = reply.code;
    if (reply.enhanced !== undefined) out.enhanced = reply.enhanced;
    if (reply.text !== undefined) out.text = this.template(at, [...path, 'text'], reply.text);
    return out;
  }
}

interface Occurrence {
  value: unknown;
  at: Origin;
}

function combine(
  loader: Loader,
  spec: SectionSpec<unknown, unknown>,
  occs: Occurrence[],
): { value: unknown; origin: (path: readonly PropertyKey[]) => { at: Origin; path: PropertyKey[] } } | undefined {
  let mode = spec.merge ?? 'auto';
  if (mode === 'auto') mode = occs.every((o) => Array.isArray(o.value)) ? 'concat' : 'merge';
  const last = occs[occs.length - 1] as Occurrence;
  if (mode === 'replace') return { value: last.value, origin: (p) => ({ at: last.at, path: [...p] }) };
  if (mode === 'concat') {
    const value: unknown[] = [];
    const idx: Array<[Origin, number]> = [];
    for (const o of occs) {
      if (!Array.isArray(o.value)) {
        loader.error(o.at, [], `expected a list`);
        return undefined;
      }
      o.value.forEach((v, i) => {
        value.push(v);
        idx.push([o.at, i]);
      });
    }
    return {
      value,
      origin: (p) => {
        const hit = typeof p[0] === 'number' ? idx[p[0]] : undefined;
        return hit ? { at: hit[0], path: [hit[1], ...p.slice(1)] } : { at: last.at, path: [...p] };
      },
    };
  }
  const value: Record<string, unknown> = {};
  const from = new Map<string, Origin>();
  for (const o of occs) {
    if (o.value === null || o.value === undefined) continue;
    if (!isMap(o.value)) {
      loader.error(o.at, [], `expected a map of settings`);
      return undefined;
    }
    for (const [k, v] of Object.entries(o.value)) {
      value[k] = v;
      from.set(k, o.at);
    }
  }
  return { value, origin: (p) => ({ at: (typeof p[0] === 'string' ? from.get(p[0]) : undefined) ?? last.at, path: [...p] }) };
}

const actionsSection: SectionSpec<ActionsInput, Thresholds> = {
  key: 'actions',
  schema: actionsSchema,
  compile(value, ctx) {
    const actions: Threshold[] = [];
    for (const action of ['reject', 'tempfail', 'quarantine', 'discard'] as const) {
      const t = value[action];
      if (!t || t.score === null) continue;
      const th: Threshold = { action, score: t.score };
      if (t.reply) {
        const cls = action === 'reject' ? 5 : action === 'tempfail' ? 4 : 0;
        if (cls === 0) ctx.error([action, 'reply'], `a reply goes with reject or tempfail`);
        else {
          if (t.reply.code !== undefined && Math.floor(t.reply.code / 100) !== cls) ctx.error([action, 'reply', 'code'], `${action} needs a ${cls}xx code`);
          if (t.reply.enhanced !== undefined && Number(t.reply.enhanced[0]) !== cls)
            ctx.error([action, 'reply', 'enhanced'], `${action} needs an enhanced code starting with ${cls}.`);
          th.reply = {};
          if (t.reply.code !== undefined) th.reply.code = t.reply.code;
          if (t.reply.enhanced !== undefined) th.reply.enhanced = t.reply.enhanced;
          if (t.reply.text !== undefined) th.reply.text = ctx.compileTemplate(t.reply.text, [action, 'reply', 'text']);
        }
      }
      actions.push(th);
    }
    // Highest threshold first; on a tie the more severe action (in the order above) wins.
    actions.sort((a, b) => b.score - a.score);
    const out: Thresholds = { actions };
    const tag = value.tag;
    if (tag && tag.score !== null) {
      out.tag = {
        score: tag.score,
        addHeaders: Object.entries(tag.add_header ?? {}).map(([name, v]) => ({ name, value: ctx.compileTemplate(v, ['tag', 'add_header', name]) })),
      };
      if (tag.tag_subject !== undefined) out.tag.tagSubject = tag.tag_subject;
      if (!tag.add_header && tag.tag_subject === undefined) ctx.error(['tag'], 'tag needs add_header and/or tag_subject');
    }
    return out;
  },
};

/**
 * Loads and validates the rules directory `dir` against the facts checks declare. Throws
 * SourceErrors listing every problem found (all files are checked, not just the first bad one).
 */
export function loadRules(dir: string, factSpecs: readonly FactSpec[] | FactLookup, sections: readonly AnySectionSpec[] = []): LoadedRules {
  const lookup = Array.isArray(factSpecs) ? createFactLookup(factSpecs as readonly FactSpec[]) : (factSpecs as FactLookup);
  const loader = new Loader(dir, lookup);
  const specs = new Map<string, SectionSpec<unknown, unknown>>([
    ['actions', actionsSection as SectionSpec<unknown, unknown>],
    ['settings', { key: 'settings', schema: settingsSchema }],
  ]);
  for (const s of sections) {
    if (s.key === 'rules' || specs.has(s.key)) throw new Error(`rules section "${s.key}" registered twice or reserved`);
    specs.set(s.key, s);
  }
  const topKeys = ['rules', ...specs.keys()];

  let files: RuleFile[];
  try {
    files = listRuleFiles(dir);
  } catch (err) {
    throw new SourceErrors([new SourceError(dir, 0, '', `cannot read rules directory: ${(err as Error).message}`)]);
  }

  const occurrences = new Map<string, Occurrence[]>();
  const drafts = new Map<string, Draft>();
  let order = 0;
  for (const file of files) {
    let src: YamlSource;
    try {
      src = parseYamlLocated(file.shown, readFileSync(file.abs, 'utf8'));
    } catch (err) {
      if (err instanceof SourceErrors) loader.problems.push(...err.problems);
      else loader.problems.push(new SourceError(file.shown, 0, '', `cannot read: ${(err as Error).message}`));
      continue;
    }
    const top: unknown = src.doc.toJS();
    if (top === null || top === undefined) continue;
    const fileAt: Origin = { src, file, base: [] };
    if (!isMap(top)) {
      loader.error(fileAt, [], `expected a map with ${topKeys.join(', ')}`);
      continue;
    }
    for (const [key, value] of Object.entries(top)) {
      if (key === 'rules') continue;
      if (!specs.has(key)) {
        loader.error(fileAt, [key], `unknown section "${key}" (expected one of: ${topKeys.join(', ')})`);
        continue;
      }
      const list = occurrences.get(key) ?? [];
      list.push({ value, at: { src, file, base: [key] } });
      occurrences.set(key, list);
    }
    const rules = top.rules;
    if (rules === undefined || rules === null) continue;
    if (!Array.isArray(rules)) {
      loader.error(fileAt, ['rules'], 'expected a list of rules (each item starting with "- name: ...")');
      continue;
    }
    rules.forEach((item, i) => {
      const at: Origin = { src, file, base: ['rules', i] };
      if (!isMap(item)) {
        loader.error(at, [], 'expected a rule (a map with name, description, when and an effect)');
        return;
      }
      const r = validateLocated(item, ruleSchema, locator(at), loader.problems, RULE_KEYS);
      if (!r) return;
      const existing = drafts.get(r.name);
      if (existing && !file.local) {
        const first = existing.defs[0] as Origin;
        loader.error(
          at,
          ['name'],
          `rule ${r.name} is already defined at ${first.src.file}:${lineOf(first.src, first.base)} (to change a shipped rule, redefine it in ${LOCAL_DIR}/)`,
        );
        return;
      }
      const draft: Draft = existing ?? { name: r.name, fields: new Map(), defs: [], order: order++ };
      draft.defs.push(at);
      for (const k of Object.keys(item)) draft.fields.set(k, { value: item[k], at });
      drafts.set(r.name, draft);
    });
  }

  // Sections (including actions), each validated once after combining its occurrences.
  const compiledSections = new Map<string, unknown>();
  let thresholds: Thresholds = { actions: [] };
  let settings: RulesSettings = settingsSchema.parse({});
  for (const [key, spec] of specs) {
    const occs = occurrences.get(key);
    if (!occs) continue;
    const combined = combine(loader, spec, occs);
    if (!combined) continue;
    const loc: Locator = (p) => {
      const o = combined.origin(p);
      return locator(o.at)(o.path);
    };
    const before = loader.problems.length;
    const value = validateLocated(combined.value, spec.schema, loc, loader.problems);
    if (value === undefined && loader.problems.length > before) continue;
    const ctx: SectionContext = {
      facts: lookup,
      lists: loader.lists,
      dir: loader.dir,
      compileCondition(raw, path) {
        const o = combined.origin(path);
        const c = loader.compiler(o.at.src);
        const n = c.problems.length;
        const out = c.compile(raw, [...o.at.base, ...o.path]);
        return c.problems.length > n ? undefined : out;
      },
      compileTemplate(text, path) {
        const o = combined.origin(path);
        return loader.template(o.at, o.path, text);
      },
      error(path, message) {
        const o = combined.origin(path);
        loader.error(o.at, o.path, message);
      },
    };
    const compiled = spec.compile ? spec.compile(value, ctx) : value;
    if (key === 'actions') thresholds = compiled as Thresholds;
    else if (key === 'settings') settings = compiled as RulesSettings;
    else compiledSections.set(key, compiled);
  }

  // Rules: merged definitions, checked for completeness, then compiled.
  const compiled: CompiledRule[] = [];
  const disabled: string[] = [];
  for (const d of drafts.values()) {
    const get = <K extends keyof RuleInput>(k: K): RuleInput[K] => d.fields.get(k)?.value as RuleInput[K];
    const atOf = (k: string): Origin => d.fields.get(k)?.at ?? (d.defs[d.defs.length - 1] as Origin);
    const last = d.defs[d.defs.length - 1] as Origin;
    if (get('enabled') === false) {
      disabled.push(d.name);
      continue;
    }
    let ok = true;
    if (get('description') === undefined) {
      loader.error(last, ['description'], `rule ${d.name} needs a description (it is shown in rules test and the log)`);
      ok = false;
    }
    const when = d.fields.get('when');
    if (!when || when.value === undefined || when.value === null) {
      loader.error(last, ['when'], `rule ${d.name} needs a "when" condition`);
      ok = false;
    }
    const action = get('action');
    const score = get('score');
    if (score === undefined && action === undefined && get('add_header') === undefined && get('tag_subject') === undefined) {
      loader.error(last, ['name'], `rule ${d.name} has no effect: give it a score, an action, add_header or tag_subject`);
      ok = false;
    }
    if (!ok || !when) continue;

    const cc = loader.compiler(when.at.src);
    const before = cc.problems.length;
    const condition = cc.compile(when.value, [...when.at.base, 'when']);
    if (cc.problems.length > before) continue;

    const reply = loader.checkReply(atOf('reply'), ['reply'], action, get('reply'));
    const addAt = atOf('add_header');
    const addHeaders = Object.entries(get('add_header') ?? {}).map(([name, v]) => ({ name, value: loader.template(addAt, ['add_header', name], v) }));

    const facts = new Set(condition.facts);
    for (const t of [reply?.text, ...addHeaders.map((h) => h.value)]) for (const f of t?.facts ?? []) facts.add(f);
    let inferred: Stage = condition.stage;
    let why = [...condition.facts].find((f) => lookup.get(f)?.stage === inferred);
    for (const f of facts) {
      const s = lookup.get(f)?.stage;
      if (s && stageIndex(s) > stageIndex(inferred)) {
        inferred = s;
        why = f;
      }
    }
    let stage = inferred;
    const wanted = get('stage');
    if (wanted !== undefined) {
      if (stageIndex(wanted) < stageIndex(inferred)) {
        loader.error(atOf('stage'), ['stage'], `rule ${d.name} reads ${why ?? 'facts'}, known only at ${inferred}; it cannot fire at ${wanted}`);
        continue;
      }
      stage = wanted;
    }
    if (stageIndex(stage) > stageIndex('rcpt')) {
      const per = [...facts].filter((f) => PER_RECIPIENT_FACTS.includes(f));
      if (per.length > 0) {
        loader.error(
          when.at,
          ['when'],
          `rule ${d.name} fires at ${stage} (it reads ${why}) but also reads ${per.join(', ')}, which exists only while each RCPT is checked; use rcpt.addresses`,
        );
        continue;
      }
    }
    const first = d.defs[0] as Origin;
    const sources = d.defs.map((o) => `${o.file.rel}:${lineOf(o.src, o.base)}`);
    const rule: CompiledRule = {
      name: d.name,
      description: get('description') ?? '',
      stage,
      inferredStage: inferred,
      score: score ?? 0,
      addHeaders,
      priority: get('priority') ?? 0,
      order: d.order,
      source: sources.join(', ') || `${first.file.rel}`,
      condition,
      facts,
    };
    if (action !== undefined) rule.action = action;
    if (reply) rule.reply = reply;
    const tag = get('tag_subject');
    if (tag !== undefined) rule.tagSubject = tag;
    compiled.push(rule);
  }

  const problems = loader.allProblems();
  if (problems.length > 0) {
    problems.sort((a, b) => (a.file === b.file ? a.line - b.line : files.findIndex((f) => f.shown === a.file) - files.findIndex((f) => f.shown === b.file)));
    throw new SourceErrors(problems);
  }
  return {
    dir: loader.dir,
    policy: new RulesPolicy(compiled, thresholds, { statusHeader: settings.status_header || '' }),
    rules: compiled,
    sections: compiledSections,
    files: files.map((f) => f.abs),
    listFiles: loader.lists.files(),
    disabled,
    settings,
  };
}

/** Path of `abs` relative to the rules directory, for messages. */
export function relToRules(loaded: LoadedRules, abs: string): string {
  return relative(loaded.dir, abs) || abs;
}
