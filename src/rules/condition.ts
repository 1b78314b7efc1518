// The condition language of rules (`when:`), also used by other modules (greylist exemptions,
// rate-limit scopes): compiled once into a predicate over a FactSet, with the facts it reads and
// the stage it can first be evaluated at. Every problem is reported with file, line and key.
import type { FactRecord, FactSet, FactSpec, FactValue, Scalar } from '../pipeline/facts.ts';
import { STAGES, stageIndex, type Stage } from '../pipeline/stages.ts';
import { formatPath, lineOf, SourceError, SourceErrors, type YamlSource } from '../config/yaml-source.ts';
import { createFactLookup, readFact, suggestFacts, type FactLookup } from './fact-lookup.ts';
import { IpSet, normalizeIp, parseCidr } from '../net/ip.ts';
import { ListRegistry, type ListMatcher } from './lists.ts';
import { compileGlob, parseRegex, type TextPattern } from '../message/text-patterns.ts';

export type Predicate = (facts: FactSet) => boolean;

export interface CompiledCondition {
  test: Predicate;
  /** Fact names the condition reads (including dynamic `header.*` names). */
  readonly facts: ReadonlySet<string>;
  /** Latest stage among the facts read: the earliest stage the condition can be evaluated at. */
  readonly stage: Stage;
  /** Absolute paths of the list files it uses. */
  readonly lists: ReadonlySet<string>;
}

export interface ConditionOptions {
  /** The facts that exist: a lookup or the FactSpecs of every check. */
  facts: FactLookup | readonly FactSpec[];
  /** Where list files are read from; default: a fresh registry relative to `baseDir`. */
  lists?: ListRegistry;
  /** Relative list paths are resolved against it (default: the current directory). */
  baseDir?: string;
  /** The parsed file the condition comes from, so errors name its line. */
  src?: YamlSource;
  /** File name for errors when there is no `src`. */
  file?: string;
  /** Path of the condition inside `src` (e.g. ['greylist', 'skip']). */
  path?: PropertyKey[];
}

/** The operators of a fact matcher, for "expected one of" messages and docs. */
export const OPERATORS = [
  'is',
  'in',
  'not',
  'exists',
  'glob',
  'regex',
  'contains',
  'in_domain',
  'in_list',
  'cidr',
  'gt',
  'gte',
  'lt',
  'lte',
  'count',
  'has',
] as const;

type Kind = 'string' | 'ip' | 'number' | 'boolean' | 'scalar';
type Match = (v: FactValue | undefined) => boolean;
type ElemMatch = (x: Scalar) => boolean;

interface Target {
  /** Fact (or record field) name, for messages. */
  name: string;
  kind: Kind;
  /** A list value: string[] facts; element operators match when any element matches. */
  multi: boolean;
  records: boolean;
  spec?: FactSpec;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a map';
  return `${typeof v} ${JSON.stringify(v)}`;
}

function targetOf(spec: FactSpec): Target {
  switch (spec.type) {
    case 'string':
      return { name: spec.name, kind: 'string', multi: false, records: false, spec };
    case 'ip':
      return { name: spec.name, kind: 'ip', multi: false, records: false, spec };
    case 'number':
      return { name: spec.name, kind: 'number', multi: false, records: false, spec };
    case 'boolean':
      return { name: spec.name, kind: 'boolean', multi: false, records: false, spec };
    case 'string[]':
      return { name: spec.name, kind: 'string', multi: true, records: false, spec };
    case 'records':
      return { name: spec.name, kind: 'scalar', multi: false, records: true, spec };
  }
}

function domainOf(x: string): string {
  const at = x.lastIndexOf('@');
  return (at >= 0 ? x.slice(at + 1) : x).toLowerCase().replace(/\.$/, '');
}

/**
 * Compiles conditions, collecting every problem instead of stopping at the first, so that
 * `mailgate rules check` lists all mistakes of a file in one run.
 */
export class ConditionCompiler {
  readonly problems: SourceError[] = [];
  readonly lookup: FactLookup;
  readonly lists: ListRegistry;
  readonly #src: YamlSource | undefined;
  readonly #file: string;
  #facts = new Set<string>();
  #listPaths = new Set<string>();

  constructor(opts: ConditionOptions) {
    this.lookup = Array.isArray(opts.facts) ? createFactLookup(opts.facts as readonly FactSpec[]) : (opts.facts as FactLookup);
    this.lists = opts.lists ?? new ListRegistry(opts.baseDir ?? process.cwd());
    this.#src = opts.src;
    this.#file = opts.src?.file ?? opts.file ?? '<inline>';
  }

  error(path: readonly PropertyKey[], message: string): void {
    const line = this.#src ? lineOf(this.#src, path) : 0;
    this.problems.push(new SourceError(this.#file, line, formatPath(path), message));
  }

  /** Compiles one condition; the returned sets cover only this condition. */
  compile(raw: unknown, path: PropertyKey[]): CompiledCondition {
    this.#facts = new Set();
    this.#listPaths = new Set();
    const test = this.#condition(raw, path) ?? (() => false);
    const facts = this.#facts;
    let stage: Stage = STAGES[0];
    for (const f of facts) {
      const s = this.lookup.get(f)?.stage;
      if (s && stageIndex(s) > stageIndex(stage)) stage = s;
    }
    return { test, facts, stage, lists: this.#listPaths };
  }

  #condition(raw: unknown, path: PropertyKey[]): Predicate | undefined {
    if (Array.isArray(raw)) return this.#all(raw, path);
    if (!isPlainObject(raw)) {
      this.error(path, `expected a condition (a map of fact names to values, or all/any/not), got ${describe(raw)}`);
      return undefined;
    }
    const keys = Object.keys(raw);
    if (keys.length === 0) {
      this.error(path, 'empty condition: name at least one fact, or use all/any/not');
      return undefined;
    }
    const parts: Predicate[] = [];
    for (const key of keys) {
      const value = raw[key];
      const p = [...path, key];
      let pred: Predicate | undefined;
      if (key === 'all' || key === 'any') {
        if (!Array.isArray(value) || value.length === 0) {
          this.error(p, `expected a non-empty list of conditions, got ${describe(value)}`);
          continue;
        }
        pred = key === 'all' ? this.#all(value, p) : this.#any(value, p);
      } else if (key === 'not') {
        const inner = this.#condition(value, p);
        pred = inner && ((f) => !inner(f));
      } else {
        pred = this.#fact(key, value, p);
      }
      if (pred) parts.push(pred);
    }
    if (parts.length !== keys.length) return undefined;
    if (parts.length === 1) return parts[0];
    return (f) => parts.every((q) => q(f));
  }

  #all(items: unknown[], path: PropertyKey[]): Predicate | undefined {
    if (items.length === 0) {
      this.error(path, 'expected a non-empty list of conditions');
      return undefined;
    }
    const parts = items.map((c, i) => this.#condition(c, [...path, i]));
    if (parts.some((q) => q === undefined)) return undefined;
    const ps = parts as Predicate[];
    return (f) => ps.every((q) => q(f));
  }

  #any(items: unknown[], path: PropertyKey[]): Predicate | undefined {
    const parts = items.map((c, i) => this.#condition(c, [...path, i]));
    if (parts.some((q) => q === undefined)) return undefined;
    const ps = parts as Predicate[];
    return (f) => ps.some((q) => q(f));
  }

  #fact(name: string, raw: unknown, path: PropertyKey[]): Predicate | undefined {
    const spec = this.lookup.get(name);
    if (!spec) {
      const hint = suggestFacts(this.lookup, name);
      const extra = name.startsWith('header.') ? ' (header names are printable ASCII without ":")' : '';
      this.error(
        path,
        `unknown fact "${name}"${extra}${hint.length ? `; did you mean ${hint.map((h) => `"${h}"`).join(' or ')}?` : ''} (or a keyword: all, any, not)`,
      );
      return undefined;
    }
    this.#facts.add(name);
    const m = this.#matcher(targetOf(spec), raw, path);
    if (!m) return undefined;
    return (f) => m(readFact(f, name));
  }

  #matcher(t: Target, raw: unknown, path: PropertyKey[]): Match | undefined {
    if (raw === null || raw === undefined) {
      this.error(path, `expected a value to compare ${t.name} with (use "exists: false" to test that it is absent)`);
      return undefined;
    }
    if (Array.isArray(raw)) return this.#op(t, 'in', raw, path);
    if (!isPlainObject(raw)) return this.#op(t, 'is', raw, path);
    const ops = Object.keys(raw);
    if (ops.length === 0) {
      this.error(path, `empty matcher: expected one of ${OPERATORS.join(', ')}`);
      return undefined;
    }
    const parts = ops.map((op) => this.#op(t, op, raw[op], [...path, op]));
    if (parts.some((q) => q === undefined)) return undefined;
    const ps = parts as Match[];
    return ps.length === 1 ? ps[0] : (v) => ps.every((q) => q(v));
  }

  #op(t: Target, op: string, arg: unknown, path: PropertyKey[]): Match | undefined {
    switch (op) {
      case 'exists':
        if (typeof arg !== 'boolean') {
          this.error(path, `expected true or false, got ${describe(arg)}`);
          return undefined;
        }
        return (v) => (v !== undefined && v !== null) === arg;
      case 'not': {
        const inner = this.#matcher(t, arg, path);
        // A negated matcher still requires the fact to be known: `spf.result: {not: pass}` does
        // not fire when SPF was not checked. Use a condition-level `not:` for plain negation.
        return inner && ((v) => v !== undefined && v !== null && !inner(v));
      }
      case 'count': {
        if (!t.multi && !t.records) {
          this.error(path, `"count" applies to list and record facts; ${t.name} is a single value`);
          return undefined;
        }
        const n = this.#matcher({ name: `${t.name} count`, kind: 'number', multi: false, records: false }, arg, path);
        return n && ((v) => Array.isArray(v) && n(v.length));
      }
      case 'has':
        return this.#has(t, arg, path);
      default:
        break;
    }
    if (t.records) {
      this.error(
        path,
        `${t.name} is a list of records (fields: ${(t.spec?.fields ?? []).join(', ') || 'any'}); match it with "has: {field: value, ...}", "count" or "exists", not "${op}"`,
      );
      return undefined;
    }
    // `contains` on a list fact means "has an element equal to".
    if (op === 'contains' && t.multi) {
      op = 'in';
      if (!Array.isArray(arg)) arg = [arg];
    }
    const e = this.#elem(t, op, arg, path);
    if (!e) return undefined;
    if (t.multi) return (v) => Array.isArray(v) && (v as readonly Scalar[]).some((x) => e(x));
    return (v) => v !== undefined && v !== null && !Array.isArray(v) && e(v as Scalar);
  }

  #has(t: Target, arg: unknown, path: PropertyKey[]): Match | undefined {
    if (!t.records) {
      this.error(path, `"has" applies to record facts; ${t.name} is a ${t.spec?.type ?? t.kind}`);
      return undefined;
    }
    if (!isPlainObject(arg) || Object.keys(arg).length === 0) {
      this.error(path, `expected a map of record fields to values, e.g. {result: pass, domain: example.com}`);
      return undefined;
    }
    const fields = t.spec?.fields;
    const parts: Array<[string, Match]> = [];
    let ok = true;
    for (const [field, sub] of Object.entries(arg)) {
      if (fields && !fields.includes(field)) {
        this.error([...path, field], `${t.name} records have no field "${field}" (fields: ${fields.join(', ')})`);
        ok = false;
        continue;
      }
      const m = this.#matcher({ name: `${t.name}.${field}`, kind: 'scalar', multi: false, records: false }, sub, [...path, field]);
      if (m) parts.push([field, m]);
      else ok = false;
    }
    if (!ok) return undefined;
    return (v) => Array.isArray(v) && (v as readonly FactRecord[]).some((rec) => typeof rec === 'object' && rec !== null && parts.every(([f, m]) => m(rec[f])));
  }

  #notApplicable(t: Target, op: string, path: PropertyKey[], applies: string): undefined {
    this.error(path, `"${op}" does not apply to ${t.spec ? `${t.spec.type} fact ${t.name}` : t.name} (it applies to ${applies})`);
    return undefined;
  }

  #strings(arg: unknown, path: PropertyKey[], what: string): string[] | undefined {
    const list = Array.isArray(arg) ? arg : [arg];
    if (list.length === 0 || !list.every((x) => typeof x === 'string' && x.length > 0)) {
      this.error(path, `expected ${what} or a list of them, got ${describe(arg)}`);
      return undefined;
    }
    return list as string[];
  }

  #checkValues(t: Target, values: readonly unknown[], path: PropertyKey[]): boolean {
    const allowed = t.spec?.values;
    if (!allowed) return true;
    const lower = allowed.map((a) => a.toLowerCase());
    const bad = values.filter((v) => !lower.includes(String(v).toLowerCase()));
    if (bad.length === 0) return true;
    this.error(path, `${bad.map((b) => JSON.stringify(b)).join(', ')} is not a value of ${t.name} (expected one of: ${allowed.join(', ')})`);
    return false;
  }

  #elem(t: Target, op: string, arg: unknown, path: PropertyKey[]): ElemMatch | undefined {
    switch (op) {
      case 'is':
      case 'in': {
        const values = op === 'in' ? arg : [arg];
        if (!Array.isArray(values) || values.length === 0) {
          this.error(path, `expected a non-empty list of values, got ${describe(arg)}`);
          return undefined;
        }
        const bad = values.find((x) => x === null || typeof x === 'object');
        if (bad !== undefined) {
          this.error(path, `expected a value (string, number or true/false), got ${describe(bad)}`);
          return undefined;
        }
        return this.#equals(t, values as Array<string | number | boolean>, path);
      }
      case 'glob':
      case 'regex': {
        if (t.kind !== 'string' && t.kind !== 'ip' && t.kind !== 'scalar') return this.#notApplicable(t, op, path, 'string and ip facts');
        const list = this.#strings(arg, path, op === 'glob' ? 'a glob pattern' : 'a regex');
        if (!list) return undefined;
        const res: TextPattern[] = [];
        for (const [i, s] of list.entries()) {
          try {
            res.push(op === 'glob' ? compileGlob(s) : parseRegex(s));
          } catch (err) {
            this.error(Array.isArray(arg) ? [...path, i] : path, (err as Error).message);
            return undefined;
          }
        }
        return (x) => typeof x === 'string' && res.some((re) => re.test(x));
      }
      case 'contains': {
        if (t.kind !== 'string' && t.kind !== 'scalar') return this.#notApplicable(t, op, path, 'string and list facts');
        const list = this.#strings(arg, path, 'a string');
        if (!list) return undefined;
        const lower = list.map((s) => s.toLowerCase());
        return (x) => typeof x === 'string' && lower.some((s) => x.toLowerCase().includes(s));
      }
      case 'in_domain': {
        if (t.kind !== 'string' && t.kind !== 'scalar') return this.#notApplicable(t, op, path, 'string facts (domains, host names, addresses)');
        const list = this.#strings(arg, path, 'a domain');
        if (!list) return undefined;
        const doms = list.map((d) => d.toLowerCase().replace(/^\.|\.$/g, ''));
        return (x) => {
          if (typeof x !== 'string') return false;
          const d = domainOf(x);
          return doms.some((dom) => d === dom || d.endsWith(`.${dom}`));
        };
      }
      case 'in_list': {
        if (t.kind !== 'string' && t.kind !== 'ip' && t.kind !== 'scalar') return this.#notApplicable(t, op, path, 'string and ip facts');
        const refs = this.#strings(arg, path, 'a list file path');
        if (!refs) return undefined;
        const matchers: ListMatcher[] = [];
        for (const [i, ref] of refs.entries()) {
          const m = this.lists.get(ref, t.kind === 'ip' ? 'ip' : 'string', this.problems);
          if (typeof m === 'string') {
            this.error(Array.isArray(arg) ? [...path, i] : path, m);
            return undefined;
          }
          this.#listPaths.add(m.path);
          matchers.push(m);
        }
        return (x) => typeof x === 'string' && matchers.some((m) => m.match(x));
      }
      case 'cidr': {
        if (t.kind !== 'ip' && t.kind !== 'scalar') return this.#notApplicable(t, op, path, 'ip facts');
        const list = this.#strings(arg, path, 'a CIDR block');
        if (!list) return undefined;
        const set = new IpSet();
        for (const [i, c] of list.entries()) {
          if (!set.add(c)) {
            this.error(Array.isArray(arg) ? [...path, i] : path, `"${c}" is not an IP address or CIDR block (e.g. 192.0.2.0/24)`);
            return undefined;
          }
        }
        return (x) => typeof x === 'string' && set.has(x);
      }
      case 'gt':
      case 'gte':
      case 'lt':
      case 'lte': {
        if (t.kind !== 'number' && t.kind !== 'scalar') return this.#notApplicable(t, op, path, 'number facts');
        if (typeof arg !== 'number' || !Number.isFinite(arg)) {
          this.error(path, `expected a number, got ${describe(arg)}`);
          return undefined;
        }
        const n = arg;
        const cmp = op === 'gt' ? (x: number) => x > n : op === 'gte' ? (x: number) => x >= n : op === 'lt' ? (x: number) => x < n : (x: number) => x <= n;
        return (x) => typeof x === 'number' && cmp(x);
      }
      default:
        this.error(path, `unknown operator "${op}"; expected one of ${OPERATORS.join(', ')}`);
        return undefined;
    }
  }

  #equals(t: Target, values: Array<string | number | boolean>, path: PropertyKey[]): ElemMatch | undefined {
    switch (t.kind) {
      case 'boolean': {
        if (values.length !== 1 || typeof values[0] !== 'boolean') {
          this.error(path, `${t.name} is true or false; got ${values.map((v) => JSON.stringify(v)).join(', ')}`);
          return undefined;
        }
        const want = values[0];
        return (x) => x === want;
      }
      case 'number': {
        if (!values.every((v) => typeof v === 'number')) {
          this.error(path, `${t.name} is a number; got ${values.map((v) => JSON.stringify(v)).join(', ')}`);
          return undefined;
        }
        const set = new Set(values as number[]);
        return (x) => typeof x === 'number' && set.has(x);
      }
      case 'ip': {
        const set = new IpSet();
        for (const v of values) {
          if (typeof v !== 'string' || !parseCidr(v)) {
            this.error(path, `${JSON.stringify(v)} is not an IP address or CIDR block`);
            return undefined;
          }
          set.add(v);
        }
        return (x) => typeof x === 'string' && normalizeIp(x) !== undefined && set.has(x);
      }
      case 'string':
      case 'scalar': {
        if (t.kind === 'string' && !values.every((v) => typeof v === 'string')) {
          this.error(path, `${t.name} is text; got ${values.map((v) => JSON.stringify(v)).join(', ')} (quote it)`);
          return undefined;
        }
        if (!this.#checkValues(t, values, path)) return undefined;
        const set = new Set(values.map((v) => String(v).toLowerCase()));
        return (x) => x !== null && set.has(String(x).toLowerCase());
      }
    }
  }
}

/**
 * Compiles a condition written in the rules language. Throws SourceErrors naming file, line and
 * key for every problem. Other modules use it for their own `when`-style settings.
 */
export function compileCondition(raw: unknown, opts: ConditionOptions): CompiledCondition {
  const c = new ConditionCompiler(opts);
  const out = c.compile(raw, opts.path ?? []);
  if (c.problems.length > 0) throw new SourceErrors(c.problems);
  return out;
}
