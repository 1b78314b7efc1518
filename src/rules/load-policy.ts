// Bridge between the gateway and the rules engine: loads `config.rules` into a Policy, hot
// reloads it, and offers the capture hook. Until the engine lands this accepts everything.
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import type { Check } from '../pipeline/check.ts';
import type { FactSet } from '../pipeline/facts.ts';
import { emptyVerdict, type Policy, type Verdict } from './verdict.ts';

export interface PolicyHandle {
  policy: Policy;
  reload(): Promise<void>;
  close(): void;
  capture?: (facts: FactSet, verdict: Verdict, action: string) => void;
}

export const acceptAllPolicy: Policy = {
  evaluate(stage, _facts, previous) {
    const v = previous ? { ...previous, fired: [...previous.fired], addHeaders: [...previous.addHeaders] } : emptyVerdict();
    v.action = stage === 'data' ? 'accept' : 'continue';
    return v;
  },
};

export async function loadPolicy(
  _config: Config,
  _checks: readonly Check[],
  _logger: Logger,
  _onChange: (p: Policy) => void,
): Promise<PolicyHandle> {
  return { policy: acceptAllPolicy, reload: async () => undefined, close: () => undefined };
}
