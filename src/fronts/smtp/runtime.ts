// What every client session shares: the current config, checks, policy and backend. Fields are
// replaced wholesale on reload (config or rules), never mutated in place, so a session in flight
// keeps a consistent view within one stage.
import type { Logger } from 'pino';
import type { Config } from '../../config/schema.ts';
import type { Check } from '../../pipeline/check.ts';
import type { FactSet } from '../../pipeline/facts.ts';
import type { Policy, Verdict } from '../../pipeline/verdict.ts';
import type { Backend } from '../../delivery/backend.ts';
import type { QuarantineStore } from '../../store/quarantine.ts';

export interface Runtime {
  config: Config;
  logger: Logger;
  /** Accepted recipient domains as A-labels, lower case. */
  domains: Set<string>;
  checks: Check[];
  policy: Policy;
  backend: Backend;
  quarantine: QuarantineStore;
  /** Temp files of messages larger than limits.memory_spool_bytes. */
  spoolDir: string;
  /** Header fields removed from every relayed message (besides what checks ask). */
  stripHeaders: Array<(name: string, value: string) => boolean>;
  /** Records each finished transaction's inputs and verdict (rules diff replay). */
  capture?: (facts: FactSet, verdict: Verdict, action: string, id?: string) => void;
  draining: boolean;
}
