// What every connection shares: the current config, checks, policy and where mail goes. Fields are
// replaced wholesale on reload (config or rules), never mutated in place, so a transaction in
// flight keeps a consistent view within one stage. Built by src/gateway.ts; read by the core.
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import type { Check } from './check.ts';
import type { FactSet, FactValue } from './facts.ts';
import type { Policy, Verdict } from './verdict.ts';
import type { Stage } from './stages.ts';
import type { Backend, QuarantineSink } from './delivery.ts';
import type { Tracer } from '../trace/tracer.ts';

export interface Runtime {
  config: Config;
  logger: Logger;
  /** Accepted recipient domains as A-labels, lower case. */
  domains: Set<string>;
  checks: Check[];
  policy: Policy;
  /** Where accepted mail goes (the backend MTA, a Maildir, or the milter's MTA itself). */
  backend: Backend;
  /** Where held mail goes; absent when the front holds mail itself (milter → Postfix HOLD). */
  quarantine: QuarantineSink | undefined;
  /** Temp files of messages larger than limits.memory_spool_bytes. */
  spoolDir: string;
  /** Header fields removed from every delivered message (besides what checks ask). */
  stripHeaders: Array<(name: string, value: string) => boolean>;
  /** Records each finished transaction's inputs and verdict (rules diff replay). */
  capture?: (facts: FactSet, verdict: Verdict, action: string, id?: string) => void;
  /** Facts that win over what checks find (`rules test --fact`). */
  overrides?: ReadonlyMap<string, FactValue>;
  /** Sees every stage's verdict (rules test records the steps with it). */
  onStage?: (stage: Stage, verdict: Verdict, facts: FactSet, recipient?: string) => void;
  /** OpenTelemetry spans per message, stage and check (absent or the no-op tracer: off). */
  tracer?: Tracer;
  draining: boolean;
}
