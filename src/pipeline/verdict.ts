// What the rules engine decides for a stage: an action with an optional SMTP reply, the score, and
// the rules that fired (for the log line, the X-Mailgate-Status header and `rules test`).
import type { Stage } from './stages.ts';
import type { FactSet } from './facts.ts';

export const ACTIONS = ['accept', 'reject', 'tempfail', 'quarantine', 'discard'] as const;
export type Action = (typeof ACTIONS)[number];

export interface ReplySpec {
  code?: number;
  enhanced?: string;
  text?: string;
}

export interface FiredRule {
  rule: string;
  score: number;
  stage: Stage;
  /** File and line the rule is defined at, for explainability. */
  source?: string;
  action?: Action;
  /** The rule's description, for `rules test` and the log. */
  description?: string;
}

/** A direct action decided by a rule; carried from stage to stage until end of data. */
export interface Decision {
  action: Action;
  rule: string;
  stage: Stage;
  priority: number;
}

export interface Verdict {
  /**
   * `continue` = no decision yet (only before end of data); at data the engine always decides.
   * Before data the pipeline acts only on `reject` and `tempfail` (refusing the command of that
   * stage; at rcpt only that recipient). Any other action before data is a rule's decision that
   * takes effect at end of data (`decided` says which rule); `accept` also means no later rule
   * is evaluated.
   */
  action: Action | 'continue';
  reply?: ReplySpec;
  score: number;
  fired: FiredRule[];
  /** Headers rules asked to add (add_header), in order. */
  addHeaders: Array<{ name: string; value: string }>;
  /** Prefix for the Subject (tag_subject), if any rule asked for it. */
  tagSubject?: string;
  /**
   * The direct action a rule decided (the strongest so far). `reject`/`tempfail` end the
   * transaction at the stage they fire; `accept` skips every later rule; `quarantine`/`discard`
   * are applied at end of data unless a stronger decision comes later.
   */
  decided?: Decision;
  /** At data, when no rule decided: the score threshold that set the action. */
  threshold?: { action: Action; score: number };
  /** The reject threshold in force, for the status header (`required=`). */
  required?: number;
  /** The stage this verdict was made at. */
  stage?: Stage;
  /**
   * Bookkeeping while recipients are checked: the verdict before the first RCPT (each recipient
   * is judged from it) and what the accepted recipients so far add up to. Dropped at data.
   */
  recipients?: RecipientState;
}

export interface RecipientState {
  base: Verdict;
  count: number;
  /** Every accepted recipient so far was accepted by a rule (allow-listed). */
  allAccepted: boolean;
  /** Strongest quarantine/discard decision among base and recipients. */
  decided?: Decision;
}

/** The rules engine seen from the pipeline. Implementations must be pure and synchronous-fast. */
export interface Policy {
  /**
   * Evaluates the rules whose inferred stage is `stage` (and, at data, the score thresholds).
   * `previous` carries score and fired rules from earlier stages of the same transaction.
   */
  evaluate(stage: Stage, facts: FactSet, previous?: Verdict): Verdict;
  /** Whether some rule reads `fact`, so the pipeline can skip costly facts nobody uses. */
  readsFact?(fact: string): boolean;
}

export function emptyVerdict(): Verdict {
  return { action: 'continue', score: 0, fired: [], addHeaders: [] };
}
