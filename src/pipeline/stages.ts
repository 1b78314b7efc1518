// The SMTP stages a message flows through, in order. Checks declare the stages they run at and
// the rules engine infers the earliest stage at which a rule can fire from the facts it reads.
export const STAGES = ['connect', 'helo', 'mail', 'rcpt', 'data'] as const;
export type Stage = (typeof STAGES)[number];

/** Position of a stage in the flow; a fact known at stage i is known at every later stage. */
export function stageIndex(stage: Stage): number {
  return STAGES.indexOf(stage);
}

export function isStage(value: string): value is Stage {
  return (STAGES as readonly string[]).includes(value);
}
