// Explainability: the same account of a verdict for the log line, the `X-Mailgate-Status` header
// (in the spirit of SpamAssassin's X-Spam-Status) and `mailgate rules test`: which rules fired
// with their scores and stages, the total, the threshold, the action and what decided it.
import type { FiredRule, Verdict } from '../pipeline/verdict.ts';
import { formatScore } from './template.ts';

export const STATUS_HEADER = 'X-Mailgate-Status';

function signed(n: number): string {
  return n > 0 ? `+${formatScore(n)}` : formatScore(n);
}

/** `SPF_FAIL(+3)` or, with the stage, `SPF_FAIL(+3)@mail`. */
export function formatFired(f: FiredRule, withStage = false): string {
  return `${f.rule}(${signed(f.score)})${withStage ? `@${f.stage}` : ''}`;
}

/** What decided the action: a rule (`rule DMARC_REJECT@data`), a threshold, or the default. */
export function decidedBy(v: Verdict): string {
  if (v.decided) return `rule ${v.decided.rule}@${v.decided.stage}`;
  if (v.threshold) return `score >= ${formatScore(v.threshold.score)} (${v.threshold.action} threshold)`;
  return 'default';
}

/** Fields for the structured log line of a message (pino merges them into the JSON). */
export interface VerdictLogFields {
  action: string;
  score: number;
  required?: number;
  rules: string[];
  decided_by: string;
}

export function verdictLogFields(v: Verdict, action: string = v.action): VerdictLogFields {
  const out: VerdictLogFields = { action, score: v.score, rules: v.fired.map((f) => formatFired(f, true)), decided_by: decidedBy(v) };
  if (v.required !== undefined) out.required = v.required;
  return out;
}

/** One line: `reject score=3 required=15 decided_by=rule DMARC_REJECT@data rules=SPF_FAIL(+3)@mail,...`. */
export function explainLine(v: Verdict, action: string = v.action): string {
  const parts = [action, `score=${formatScore(v.score)}`];
  if (v.required !== undefined) parts.push(`required=${formatScore(v.required)}`);
  parts.push(`decided_by=${decidedBy(v).replaceAll(' ', '_')}`);
  parts.push(`rules=${v.fired.map((f) => formatFired(f, true)).join(',') || 'none'}`);
  return parts.join(' ');
}

/**
 * Value of the status header: `quarantine score=9.5 required=15 tests=DMARC_QUARANTINE(+5),
 * SPF_SOFTFAIL(+4.5) decided=DMARC_QUARANTINE`. Rule names are restricted to [A-Za-z0-9_], so the
 * value is plain ASCII; the header writer folds it.
 */
export function statusHeaderValue(v: Verdict, action: string = v.action): string {
  const parts = [action, `score=${formatScore(v.score)}`];
  if (v.required !== undefined) parts.push(`required=${formatScore(v.required)}`);
  parts.push(`tests=${v.fired.map((f) => formatFired(f)).join(', ') || 'none'}`);
  if (v.decided) parts.push(`decided=${v.decided.rule}`);
  return parts.join(' ');
}
