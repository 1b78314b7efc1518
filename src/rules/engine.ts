// The rules engine: evaluates, at each SMTP stage, exactly the rules whose inferred stage it is,
// adds their scores, keeps the strongest direct action, and at end of data applies the score
// thresholds. Pure and synchronous: the pipeline gathers facts, this only decides.
import { FactSet } from '../pipeline/facts.ts';
import type { Stage } from '../pipeline/stages.ts';
import type { CompiledCondition } from './condition.ts';
import type { Template } from './template.ts';
import type { Action, Decision, FiredRule, Policy, ReplySpec, Verdict } from '../pipeline/verdict.ts';
import { emptyVerdict } from '../pipeline/verdict.ts';
import { STATUS_HEADER, statusHeaderValue } from './explain.ts';

export interface CompiledReply {
  code?: number;
  enhanced?: string;
  text?: Template;
}

export interface CompiledRule {
  name: string;
  description: string;
  /** The stage the rule is evaluated at (inferred, or a later one the rule asked for). */
  stage: Stage;
  /** The stage inferred from the facts the rule reads. */
  inferredStage: Stage;
  score: number;
  action?: Action;
  reply?: CompiledReply;
  addHeaders: Array<{ name: string; value: Template }>;
  tagSubject?: string;
  priority: number;
  /** Position in load order (file name order, then position in the file). */
  order: number;
  /** `file:line` relative to the rules directory, plus `local.d` patches. */
  source: string;
  condition: CompiledCondition;
  /** Every fact the rule reads (condition and templates). */
  facts: ReadonlySet<string>;
}

export interface Threshold {
  action: Exclude<Action, 'accept'>;
  score: number;
  reply?: CompiledReply;
}

export interface TagThreshold {
  score: number;
  addHeaders: Array<{ name: string; value: Template }>;
  tagSubject?: string;
}

export interface Thresholds {
  /** Highest score first. */
  actions: Threshold[];
  tag?: TagThreshold;
}

/** Which direct action wins among equal priorities: an explicit accept (allow list) first. */
const ACTION_RANK: Record<Action, number> = { accept: 0, reject: 1, tempfail: 2, discard: 3, quarantine: 4 };

function stronger(a: Ranked, b: Ranked): boolean {
  if (a.priority !== b.priority) return a.priority > b.priority;
  if (ACTION_RANK[a.action] !== ACTION_RANK[b.action]) return ACTION_RANK[a.action] < ACTION_RANK[b.action];
  return a.order < b.order;
}

/** What a rule's `reply:` says; the defaults for what it leaves out come from the one reply mapper. */
function renderReply(r: CompiledReply | undefined, facts: FactSet, score: number): ReplySpec {
  const out: ReplySpec = {};
  if (r?.code !== undefined) out.code = r.code;
  if (r?.enhanced !== undefined) out.enhanced = r.enhanced;
  if (r?.text) out.text = r.text.render(facts, { score });
  return out;
}

function addHeader(v: Verdict, name: string, value: string): void {
  if (!v.addHeaders.some((h) => h.name.toLowerCase() === name.toLowerCase() && h.value === value)) v.addHeaders.push({ name, value });
}

export interface PolicyHooks {
  /** Called for each rule that fires (metrics). */
  onFire?: (rule: CompiledRule, stage: Stage) => void;
}

export interface EngineSettings {
  /** Header added to delivered messages (accept, quarantine) explaining the verdict; "" = none. */
  statusHeader: string;
}

type Ranked = Decision & { order: number };

export class RulesPolicy implements Policy {
  readonly rules: readonly CompiledRule[];
  readonly thresholds: Thresholds;
  readonly settings: EngineSettings;
  readonly #byStage: Record<Stage, CompiledRule[]>;
  readonly #byName = new Map<string, CompiledRule>();
  readonly #reads = new Set<string>();
  /**
   * Per stage, when `assumeProduced` was told which facts the gateway can set: the rules still to
   * evaluate, and the facts whose absence lets the others be skipped (see `assumeProduced`).
   */
  #lean: Record<Stage, { rules: CompiledRule[]; absent: string[] }> | undefined;
  hooks: PolicyHooks = {};

  constructor(rules: readonly CompiledRule[], thresholds: Thresholds, settings: EngineSettings = { statusHeader: STATUS_HEADER }) {
    this.rules = [...rules].sort((a, b) => a.order - b.order);
    this.thresholds = thresholds;
    this.settings = settings;
    this.#byStage = { connect: [], helo: [], mail: [], rcpt: [], data: [] };
    for (const r of this.rules) {
      this.#byStage[r.stage].push(r);
      this.#byName.set(r.name, r);
      for (const f of r.facts) this.#reads.add(f);
    }
  }

  /** The rules evaluated at `stage`, in load order. */
  rulesAt(stage: Stage): readonly CompiledRule[] {
    return this.#byStage[stage];
  }

  rule(name: string): CompiledRule | undefined {
    return this.#byName.get(name);
  }

  readsFact(name: string): boolean {
    return this.#reads.has(name);
  }

  /**
   * Tells the engine which facts the running gateway can set (its core's and its enabled checks').
   * A rule that reads only other facts, and whose condition is false over none of them, cannot
   * fire: at each stage such rules are set aside once here, and skipped while none of the facts
   * they read is present. The check is made for each evaluation, so a fact that turns up after
   * all (an override, a milter macro) makes that stage evaluate every rule, as without this call.
   * Exact because a condition reads only its `facts` (a `header.*` name also reads
   * `message.headers`, which is added here).
   */
  assumeProduced(produced: (fact: string) => boolean): void {
    const empty = new FactSet();
    const lean = {} as Record<Stage, { rules: CompiledRule[]; absent: string[] }>;
    for (const stage of Object.keys(this.#byStage) as Stage[]) {
      const rules: CompiledRule[] = [];
      const absent = new Set<string>();
      for (const r of this.#byStage[stage]) {
        const reads = [...r.condition.facts];
        if (reads.some((f) => f.startsWith('header.'))) reads.push('message.headers');
        if (reads.length === 0 || reads.some(produced) || r.condition.test(empty)) rules.push(r);
        else for (const f of reads) absent.add(f);
      }
      lean[stage] = { rules, absent: [...absent] };
    }
    this.#lean = lean;
  }

  /** The rules `#run` must evaluate at `stage` over `facts` (all of them, or the lean list). */
  #toEvaluate(stage: Stage, facts: FactSet): readonly CompiledRule[] {
    const lean = this.#lean?.[stage];
    if (!lean) return this.#byStage[stage];
    for (const f of lean.absent) if (facts.has(f)) return this.#byStage[stage];
    return lean.rules;
  }

  /**
   * Evaluates the rules of `stage` on top of `previous` (the verdict of the stage before).
   * At rcpt, call it once per recipient with the verdict of the previous accepted recipient (or
   * of mail): each recipient is judged on its own, and what the accepted ones add is merged.
   * Evaluating a stage again (a second EHLO) replaces that stage's earlier results.
   */
  evaluate(stage: Stage, facts: FactSet, previous?: Verdict): Verdict {
    const prev = previous ?? emptyVerdict();
    // A transaction refused earlier has nothing left to decide, unless the refused stage itself
    // is evaluated again (a new EHLO after a refused one): then it starts over from before it.
    const refused = prev.action === 'reject' || prev.action === 'tempfail';
    if (refused && (stage === 'rcpt' || prev.stage !== stage)) return { ...prev };
    if (stage === 'rcpt') return this.#recipient(facts, prev);
    // (#run copies what it keeps of `base`: recipients is not among it.)
    let base = prev;
    if (base.fired.some((f) => f.stage === stage)) base = this.#without(base, stage);
    return this.#run(stage, facts, base);
  }

  #rank(d: Decision): Ranked {
    return { ...d, order: this.#byName.get(d.rule)?.order ?? -1 };
  }

  /** `prev` minus what `stage` contributed (used when a stage is evaluated again). */
  #without(prev: Verdict, stage: Stage): Verdict {
    const fired = prev.fired.filter((f) => f.stage !== stage);
    const removed = prev.fired.filter((f) => f.stage === stage).reduce((n, f) => n + f.score, 0);
    const v: Verdict = { ...prev, fired, score: Math.round((prev.score - removed) * 1000) / 1000, addHeaders: [...prev.addHeaders] };
    delete v.decided;
    let best: Ranked | undefined;
    for (const f of fired) {
      if (!f.action) continue;
      const cand = this.#rank({ action: f.action, rule: f.rule, stage: f.stage, priority: this.#byName.get(f.rule)?.priority ?? 0 });
      if (!best || stronger(cand, best)) best = cand;
    }
    if (best) v.decided = { action: best.action, rule: best.rule, stage: best.stage, priority: best.priority };
    return v;
  }

  #recipient(facts: FactSet, prev: Verdict): Verdict {
    const acc = prev.recipients;
    const base = acc?.base ?? prev;
    const own = this.#run('rcpt', facts, base);
    // A refused recipient contributes nothing to the message.
    if (own.action === 'reject' || own.action === 'tempfail') return own;
    const ownAccepted = own.decided?.action === 'accept';
    const ownOther = own.decided && own.decided.action !== 'accept' ? own.decided : undefined;
    if (!acc) {
      own.recipients = { base, count: 1, allAccepted: ownAccepted };
      if (ownOther) own.recipients.decided = ownOther;
      return own;
    }
    const out: Verdict = { ...prev, fired: [...prev.fired], addHeaders: [...prev.addHeaders], stage: 'rcpt' };
    const seen = new Set(prev.fired.map((f) => `${f.stage}\0${f.rule}`));
    let added = 0;
    for (const f of own.fired.slice(base.fired.length)) {
      const key = `${f.stage}\0${f.rule}`;
      if (seen.has(key)) continue;
      seen.add(key);
      out.fired.push(f);
      added += f.score;
    }
    out.score = Math.round((prev.score + added) * 1000) / 1000;
    for (const h of own.addHeaders) addHeader(out, h.name, h.value);
    if (out.tagSubject === undefined && own.tagSubject !== undefined) out.tagSubject = own.tagSubject;
    let decided = acc.decided;
    if (ownOther && (!decided || stronger(this.#rank(ownOther), this.#rank(decided)))) decided = ownOther;
    const allAccepted = acc.allAccepted && ownAccepted;
    out.recipients = { base, count: acc.count + 1, allAccepted };
    if (decided) out.recipients.decided = decided;
    const final = allAccepted ? own.decided : decided;
    if (final) out.decided = final;
    else delete out.decided;
    out.action = out.decided ? out.decided.action : 'continue';
    return out;
  }

  #run(stage: Stage, facts: FactSet, prev: Verdict): Verdict {
    // `prev` minus its reply, threshold and recipients, built field by field: a spread followed by
    // `delete` turns the object into a slow dictionary-mode one, every stage.
    const v: Verdict = { action: 'continue', score: prev.score, fired: [...prev.fired], addHeaders: [...prev.addHeaders], stage };
    if (Object.hasOwn(prev, 'tagSubject')) v.tagSubject = prev.tagSubject as string;
    if (Object.hasOwn(prev, 'decided')) v.decided = prev.decided as Decision;
    if (Object.hasOwn(prev, 'required')) v.required = prev.required as number;
    let best: Ranked | undefined = prev.decided ? this.#rank(prev.decided) : undefined;

    if (prev.decided?.action !== 'accept') {
      for (const rule of this.#toEvaluate(stage, facts)) {
        if (!rule.condition.test(facts)) continue;
        v.score += rule.score;
        const fired: FiredRule = { rule: rule.name, score: rule.score, stage, source: rule.source, description: rule.description };
        if (rule.action) fired.action = rule.action;
        v.fired.push(fired);
        for (const h of rule.addHeaders) addHeader(v, h.name, h.value.render(facts, { score: v.score }));
        if (rule.tagSubject !== undefined && v.tagSubject === undefined) v.tagSubject = rule.tagSubject;
        this.hooks.onFire?.(rule, stage);
        if (rule.action) {
          const cand: Ranked = { action: rule.action, rule: rule.name, stage, priority: rule.priority, order: rule.order };
          if (!best || stronger(cand, best)) best = cand;
        }
      }
    }
    v.score = Math.round(v.score * 1000) / 1000;
    if (best) v.decided = { action: best.action, rule: best.rule, stage: best.stage, priority: best.priority };
    const req = this.thresholds.actions.find((t) => t.action === 'reject');
    if (req) v.required = req.score;

    const d = v.decided;
    if (d && (d.action === 'reject' || d.action === 'tempfail')) {
      v.action = d.action;
      v.reply = renderReply(this.#byName.get(d.rule)?.reply, facts, v.score);
      return v;
    }
    if (stage !== 'data') {
      v.action = d ? d.action : 'continue';
      return v;
    }
    // End of data: a rule's decision, else the highest threshold reached, else accept.
    if (d) v.action = d.action;
    else {
      const t = this.thresholds.actions.find((x) => v.score >= x.score);
      if (t) {
        v.action = t.action;
        v.threshold = { action: t.action, score: t.score };
        if (t.action === 'reject' || t.action === 'tempfail') v.reply = renderReply(t.reply, facts, v.score);
      } else v.action = 'accept';
    }
    const delivered = v.action === 'accept' || v.action === 'quarantine';
    const tag = this.thresholds.tag;
    if (tag && delivered && d?.action !== 'accept' && v.score >= tag.score) {
      for (const h of tag.addHeaders) addHeader(v, h.name, h.value.render(facts, { score: v.score }));
      if (tag.tagSubject !== undefined && v.tagSubject === undefined) v.tagSubject = tag.tagSubject;
    }
    if (delivered && this.settings.statusHeader) v.addHeaders.push({ name: this.settings.statusHeader, value: statusHeaderValue(v) });
    return v;
  }
}
