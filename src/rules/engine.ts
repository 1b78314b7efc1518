// The rules engine: evaluates, at each SMTP stage, exactly the rules whose inferred stage it is,
// adds their scores, keeps the strongest direct action, and at end of data applies the score
// thresholds. Pure and synchronous: the pipeline gathers facts, this only decides.
import type { FactSet } from '../pipeline/facts.ts';
import type { Stage } from '../pipeline/stages.ts';
import { replies } from '../smtp/reply.ts';
import type { CompiledCondition } from './condition.ts';
import type { Template } from './template.ts';
import type { Action, Decision, FiredRule, Policy, ReplySpec, Verdict } from './verdict.ts';
import { emptyVerdict } from './verdict.ts';

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

function stronger(a: Decision & { order: number }, b: Decision & { order: number }): boolean {
  if (a.priority !== b.priority) return a.priority > b.priority;
  if (ACTION_RANK[a.action] !== ACTION_RANK[b.action]) return ACTION_RANK[a.action] < ACTION_RANK[b.action];
  return a.order < b.order;
}

const STAGE_TEXT: Record<Stage, { reject: string; tempfail: string }> = {
  connect: { reject: 'Service unavailable: connection refused by policy', tempfail: 'Service temporarily unavailable, try again later' },
  helo: { reject: 'HELO/EHLO rejected by policy', tempfail: 'HELO/EHLO temporarily refused, try again later' },
  mail: { reject: 'Sender rejected by policy', tempfail: 'Sender temporarily refused by policy, try again later' },
  rcpt: { reject: 'Recipient rejected by policy', tempfail: 'Recipient temporarily refused by policy, try again later' },
  data: { reject: replies.rejected().text, tempfail: replies.tempfailed().text },
};

/**
 * Default reply of a reject/tempfail at `stage`. At connect RFC 5321 §3.1 has the server answer
 * 554 instead of the greeting; a temporary refusal there is 421 (the server closes).
 */
export function defaultReply(action: 'reject' | 'tempfail', stage: Stage): Required<ReplySpec> {
  const base = action === 'reject' ? replies.rejected(STAGE_TEXT[stage].reject) : replies.tempfailed(STAGE_TEXT[stage].tempfail);
  let code = base.code;
  let enhanced = base.enhanced;
  if (stage === 'connect') {
    code = action === 'reject' ? 554 : 421;
    enhanced = action === 'reject' ? '5.7.1' : '4.7.0';
  }
  return { code, enhanced, text: base.text };
}

function renderReply(r: CompiledReply | undefined, action: 'reject' | 'tempfail', stage: Stage, facts: FactSet, score: number): ReplySpec {
  const d = defaultReply(action, stage);
  return {
    code: r?.code ?? d.code,
    enhanced: r?.enhanced ?? d.enhanced,
    text: r?.text ? r.text.render(facts, { score }) : d.text,
  };
}

function addHeader(v: Verdict, name: string, value: string): void {
  if (!v.addHeaders.some((h) => h.name.toLowerCase() === name.toLowerCase() && h.value === value)) v.addHeaders.push({ name, value });
}

export interface PolicyHooks {
  /** Called for each rule that fires (metrics). */
  onFire?: (rule: CompiledRule, stage: Stage) => void;
}

export class RulesPolicy implements Policy {
  readonly rules: readonly CompiledRule[];
  readonly thresholds: Thresholds;
  readonly #byStage: Record<Stage, CompiledRule[]>;
  readonly #byName = new Map<string, CompiledRule>();
  hooks: PolicyHooks = {};

  constructor(rules: readonly CompiledRule[], thresholds: Thresholds) {
    this.rules = [...rules].sort((a, b) => a.order - b.order);
    this.thresholds = thresholds;
    this.#byStage = { connect: [], helo: [], mail: [], rcpt: [], data: [] };
    for (const r of this.rules) {
      this.#byStage[r.stage].push(r);
      this.#byName.set(r.name, r);
    }
  }

  /** The rules evaluated at `stage`, in load order. */
  rulesAt(stage: Stage): readonly CompiledRule[] {
    return this.#byStage[stage];
  }

  rule(name: string): CompiledRule | undefined {
    return this.#byName.get(name);
  }

  /** Every fact some rule reads: the pipeline can skip costly facts nobody uses (body text). */
  readsFact(name: string): boolean {
    return this.rules.some((r) => r.facts.has(name));
  }

  evaluate(stage: Stage, facts: FactSet, previous?: Verdict): Verdict {
    const prev = previous ?? emptyVerdict();
    // A transaction refused earlier has nothing left to decide.
    if (prev.action === 'reject' || prev.action === 'tempfail') return { ...prev };
    const v: Verdict = {
      ...prev,
      action: 'continue',
      fired: [...prev.fired],
      addHeaders: [...prev.addHeaders],
      stage,
    };
    delete v.reply;
    delete v.threshold;
    let best = prev.decided ? { ...prev.decided, order: this.#byName.get(prev.decided.rule)?.order ?? -1 } : undefined;

    if (prev.decided?.action !== 'accept') {
      for (const rule of this.#byStage[stage]) {
        if (!rule.condition.test(facts)) continue;
        v.score += rule.score;
        const fired: FiredRule = { rule: rule.name, score: rule.score, stage, source: rule.source, description: rule.description };
        if (rule.action) fired.action = rule.action;
        v.fired.push(fired);
        for (const h of rule.addHeaders) addHeader(v, h.name, h.value.render(facts, { score: v.score }));
        if (rule.tagSubject !== undefined && v.tagSubject === undefined) v.tagSubject = rule.tagSubject;
        this.hooks.onFire?.(rule, stage);
        if (rule.action) {
          const cand = { action: rule.action, rule: rule.name, stage, priority: rule.priority, order: rule.order };
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
      v.reply = renderReply(this.#byName.get(d.rule)?.reply, d.action, stage, facts, v.score);
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
        if (t.action === 'reject' || t.action === 'tempfail') v.reply = renderReply(t.reply, t.action, stage, facts, v.score);
      } else v.action = 'accept';
    }
    const tag = this.thresholds.tag;
    if (tag && (v.action === 'accept' || v.action === 'quarantine') && d?.action !== 'accept' && v.score >= tag.score) {
      for (const h of tag.addHeaders) addHeader(v, h.name, h.value.render(facts, { score: v.score }));
      if (tag.tagSubject !== undefined && v.tagSubject === undefined) v.tagSubject = tag.tagSubject;
    }
    return v;
  }
}

/**
 * Joins the per-recipient verdicts of the accepted recipients into the verdict the data stage
 * starts from. A rule that fired at rcpt counts once (its score once) however many recipients
 * it fired for; `accept` carries over only if every accepted recipient was accepted by a rule;
 * `quarantine`/`discard` carry over if any recipient got one.
 */
export function mergeRecipientVerdicts(tx: Verdict, perRecipient: readonly Verdict[]): Verdict {
  if (perRecipient.length === 0) return { ...tx, fired: [...tx.fired], addHeaders: [...tx.addHeaders] };
  const out: Verdict = { ...tx, fired: [...tx.fired], addHeaders: [...tx.addHeaders], action: 'continue' };
  const seen = new Set(tx.fired.map((f) => `${f.stage}\0${f.rule}`));
  let added = 0;
  for (const r of perRecipient) {
    for (const f of r.fired.slice(tx.fired.length)) {
      const key = `${f.stage}\0${f.rule}`;
      if (seen.has(key)) continue;
      seen.add(key);
      out.fired.push(f);
      added += f.score;
    }
    for (const h of r.addHeaders) addHeader(out, h.name, h.value);
    if (out.tagSubject === undefined && r.tagSubject !== undefined) out.tagSubject = r.tagSubject;
  }
  out.score = Math.round((tx.score + added) * 1000) / 1000;
  const decisions = perRecipient.map((r) => r.decided);
  const allAccepted = decisions.every((d) => d?.action === 'accept');
  let best: Decision | undefined = tx.decided?.action === 'accept' ? undefined : tx.decided;
  for (const d of decisions) {
    if (!d || d.action === 'accept' || d.action === 'reject' || d.action === 'tempfail') continue;
    if (!best || d.priority > best.priority || (d.priority === best.priority && ACTION_RANK[d.action] < ACTION_RANK[best.action])) best = d;
  }
  if (allAccepted) best = decisions[0];
  if (best) out.decided = best;
  else delete out.decided;
  out.action = out.decided ? out.decided.action : 'continue';
  return out;
}
