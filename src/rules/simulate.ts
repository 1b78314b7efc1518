// Runs a whole transaction through a Policy offline — connect, helo, mail, each recipient, data —
// the way the SMTP session does. Used by `mailgate rules test`, `rules diff` (replaying captured
// facts against current and proposed rules) and the corpus tests.
import { FactSet } from '../pipeline/facts.ts';
import { STAGES, stageIndex, type Stage } from '../pipeline/stages.ts';
import { emptyVerdict, type Policy, type Verdict } from '../pipeline/verdict.ts';

export interface SimulationInput {
  /** Every fact known (connection, envelope and message facts). */
  facts: FactSet;
  /** Recipients to check one by one at rcpt; default: the `rcpt.addresses` fact. */
  recipients?: readonly string[];
  /** Last stage the facts cover (a capture of a refused MAIL has no data facts); default data. */
  lastStage?: Stage;
}

export interface StageStep {
  stage: Stage;
  recipient?: string;
  verdict: Verdict;
}

export interface SimulationResult {
  /** The final action, or `incomplete` when the rules let the message past `lastStage`. */
  action: Verdict['action'] | 'incomplete';
  verdict: Verdict;
  /** The stage the outcome was decided at (where a refusal happened, or data). */
  stage: Stage;
  steps: StageStep[];
  recipients: Array<{ address: string; action: Verdict['action'] }>;
}

function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at >= 0 ? address.slice(at + 1).toLowerCase() : '';
}

function refused(v: Verdict): boolean {
  return v.action === 'reject' || v.action === 'tempfail';
}

export function simulate(policy: Policy, input: SimulationInput): SimulationResult {
  const last = stageIndex(input.lastStage ?? 'data');
  const steps: StageStep[] = [];
  const recipients: SimulationResult['recipients'] = [];
  let v = emptyVerdict();
  for (const stage of STAGES.slice(0, 3)) {
    if (stageIndex(stage) > last) return { action: 'incomplete', verdict: v, stage, steps, recipients };
    v = policy.evaluate(stage, input.facts, v);
    steps.push({ stage, verdict: v });
    if (refused(v)) return { action: v.action, verdict: v, stage, steps, recipients };
  }
  if (stageIndex('rcpt') > last) return { action: 'incomplete', verdict: v, stage: 'rcpt', steps, recipients };
  const given = input.recipients ?? input.facts.get('rcpt.addresses');
  const list = Array.isArray(given) ? (given as readonly unknown[]).filter((x): x is string => typeof x === 'string') : [];
  const accepted: string[] = [];
  let lastRefusal: Verdict | undefined;
  for (const address of list) {
    const f = new FactSet(input.facts);
    f.set('rcpt.address', address);
    f.set('rcpt.domain', domainOf(address));
    const rv = policy.evaluate('rcpt', f, v);
    steps.push({ stage: 'rcpt', recipient: address, verdict: rv });
    recipients.push({ address, action: refused(rv) ? rv.action : 'continue' });
    if (refused(rv)) lastRefusal = rv;
    else {
      accepted.push(address);
      v = rv;
    }
  }
  if (list.length > 0 && accepted.length === 0 && lastRefusal) {
    return { action: lastRefusal.action, verdict: lastRefusal, stage: 'rcpt', steps, recipients };
  }
  if (stageIndex('data') > last) return { action: 'incomplete', verdict: v, stage: 'data', steps, recipients };
  const f = new FactSet(input.facts);
  f.delete('rcpt.address');
  f.delete('rcpt.domain');
  if (list.length > 0) {
    f.set('rcpt.addresses', accepted);
    f.set('rcpt.count', accepted.length);
  }
  v = policy.evaluate('data', f, v);
  steps.push({ stage: 'data', verdict: v });
  return { action: v.action === 'continue' ? 'accept' : v.action, verdict: v, stage: 'data', steps, recipients };
}
