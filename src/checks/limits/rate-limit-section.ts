// The `ratelimits:` section of rules files: a list of named limits. Entries with the same name in a
// later file (e.g. local.d/) patch the earlier one key by key; `enabled: false` switches one off.
// docs/ratelimit.md explains every key; rules/50-ratelimits.yaml shows them.
import { z } from 'zod';
import { STAGES, stageIndex, type Stage } from '../../pipeline/stages.ts';
import type { FactSet } from '../../pipeline/facts.ts';
import type { Escalation, Rate } from '../../store/shared-store.ts';
import { durationSchema, KEY_PART_STAGE, keySchema, rateSchema, type KeyPart } from './durations-rates-keys.ts';

/** Limit names are metric labels and fact values: short, lowercase. */
export const LIMIT_NAME = /^[a-z][a-z0-9_]{0,47}$/;

export const PHASES = ['connection', 'message', 'recipient'] as const;
export type Phase = (typeof PHASES)[number];

/** Stages a phase may count at: its first stage is the default unless the key needs a later one. */
export const PHASE_STAGES: Record<Phase, readonly Stage[]> = {
  connection: ['connect', 'helo'],
  message: ['mail', 'data'],
  recipient: ['rcpt'],
};

export const LIMIT_ACTIONS = ['tempfail', 'reject', 'score'] as const;
export type LimitAction = (typeof LIMIT_ACTIONS)[number];

export const escalationSchema = z.union([
  z.literal(false),
  z.strictObject({
    /** Denied attempts in a row after which the key is blocked (0 = never block). */
    after: z.number().int().min(0).max(1000).default(3),
    /** First block; doubles with each further denied attempt. */
    block: durationSchema.default(300_000),
    /** Longest block. */
    max_block: durationSchema.default(3_600_000),
    /** Denied attempts in a row from which the limit answers 5xx instead of 4xx (0 = never). */
    reject_after: z.number().int().min(0).max(100_000).default(0),
    /** Strikes are forgotten this long after the last denied attempt (default: max_block). */
    window: durationSchema.optional(),
  }),
]);

/** One entry as written: every key but `name` optional, so local.d/ can patch a shipped limit. */
export const rateLimitEntrySchema = z.strictObject({
  name: z.string().regex(LIMIT_NAME, 'expected a limit name: lowercase letter, then lowercase letters, digits or _ (at most 48)'),
  description: z.string().min(1).optional(),
  /** What is counted: one key part or a list (combined key). */
  key: keySchema.optional(),
  /** `100/1m`: the steady rate. */
  rate: rateSchema.optional(),
  /** Events allowed at once (bucket size); default: the rate's count. */
  burst: z.number().int().min(1).max(1_000_000).optional(),
  /** connection (once per connection), message (once per transaction), recipient (each RCPT). */
  phase: z.enum(PHASES).optional(),
  /** Count later than the phase's first stage: e.g. a message limit at `data` instead of `mail`. */
  stage: z.enum(STAGES).optional(),
  /** message phase: count each message once (messages) or as its number of recipients (recipients, at data). */
  count: z.enum(['messages', 'recipients']).optional(),
  /** Bounces (MAIL FROM:<>): counted with the rest (include), not counted (exclude), only them (only), or in their own bucket (separate). */
  null_sender: z.enum(['include', 'exclude', 'only', 'separate']).optional(),
  /** What exceeding it leads to, through the rules in 50-ratelimits.yaml: 4xx, 5xx, or only facts (score in your own rules). */
  action: z.enum(LIMIT_ACTIONS).optional(),
  /** Reply text; `{limit}`, `{retry_after}` (e.g. "5 minutes") and `{retry_after_s}` are replaced. */
  message: z.string().min(1).max(300).optional(),
  /** Stampede control; `false` = off. */
  escalate: escalationSchema.optional(),
  /** Counts only events for which this condition (rules language) holds. */
  when: z.unknown().optional(),
  /** Networks only: IPv4 and IPv6 prefix lengths of `client_net` (default 24 and 64). */
  ipv4_prefix: z.number().int().min(8).max(32).optional(),
  ipv6_prefix: z.number().int().min(16).max(128).optional(),
  enabled: z.boolean().optional(),
});
export type RateLimitEntry = z.output<typeof rateLimitEntrySchema>;

/** The `ratelimits:` section. */
export const rateLimitsSectionSchema = z.array(rateLimitEntrySchema);

/** A compiled rules-language condition (the rules engine's CompiledCondition fits). */
export interface ConditionLike {
  test(facts: FactSet): boolean;
  readonly stage: Stage;
  /** The facts the condition reads: the check must run after the checks that produce them. */
  readonly facts?: ReadonlySet<string>;
}

/** Facts a limit key reads besides the envelope (a limit keyed on dmarc_domain runs after DMARC). */
export function keyNeeds(key: readonly string[]): string[] {
  return key.includes('dmarc_domain') ? ['dmarc.result', 'dmarc.domain'] : [];
}

/** A limit ready to run. */
export interface RateLimitSpec {
  name: string;
  description: string;
  key: KeyPart[];
  rate: Rate;
  burst: number;
  phase: Phase;
  stage: Stage;
  count: 'messages' | 'recipients';
  nullSender: 'include' | 'exclude' | 'only' | 'separate';
  action: LimitAction;
  message: string | undefined;
  escalation: Escalation;
  /** The compiled `when` condition, if any. */
  when: ConditionLike | undefined;
  /** The condition as written and its path in the section, until compiled. */
  whenAt: { raw: unknown; path: PropertyKey[] } | undefined;
  prefix4: number;
  prefix6: number;
}

export const DEFAULT_ESCALATION: Escalation = {
  after: 3,
  blockMs: 300_000,
  maxBlockMs: 3_600_000,
  rejectAfter: 0,
  windowMs: 3_600_000,
};

/** An entry after joining same-name entries, remembering where each key came from. */
export interface MergedEntry<E> {
  entry: E;
  /** Key → index (in the concatenated list) of the entry that set it, for located errors. */
  at: Map<string, number>;
  /** Index of the last entry of that name. */
  index: number;
}

/** Joins entries in load order (the rules loader concatenates files): same name = patch, key by key. */
export function mergeByName<E extends { name: string }>(list: readonly E[]): Array<MergedEntry<E>> {
  const byName = new Map<string, MergedEntry<E>>();
  list.forEach((e, i) => {
    const prev = byName.get(e.name);
    const m: MergedEntry<E> = prev ? { entry: { ...prev.entry, ...e }, at: new Map(prev.at), index: i } : { entry: e, at: new Map(), index: i };
    for (const k of Object.keys(e)) m.at.set(k, i);
    byName.set(e.name, m);
  });
  return [...byName.values()];
}

/** Reports a problem at `path` relative to the section's value (e.g. [3, 'rate']). */
export type Report = (path: PropertyKey[], message: string) => void;

/**
 * Checks merged entries for completeness and consistency. Bad entries are reported and left out;
 * `enabled: false` ones are left out silently.
 */
export function resolveRateLimits(merged: ReadonlyArray<MergedEntry<RateLimitEntry>>, report: Report): RateLimitSpec[] {
  const out: RateLimitSpec[] = [];
  for (const { entry: e, at, index } of merged) {
    if (e.enabled === false) continue;
    let ok = true;
    const bad = (field: string, m: string) => {
      ok = false;
      report([at.get(field) ?? index, field], `limit ${e.name}: ${m}`);
    };
    if (!e.key) bad('name', 'missing "key" (e.g. key: client_ip, or key: [client_net, sender_domain])');
    if (!e.rate) bad('name', 'missing "rate" (e.g. rate: 100/1m)');
    if (!e.phase) bad('name', 'missing "phase" (connection, message or recipient)');
    if (!e.key || !e.rate || !e.phase) continue;
    const phase = e.phase;
    const count = e.count ?? 'messages';
    if (count === 'recipients' && phase !== 'message') bad('count', '"count: recipients" applies to the message phase');
    const keyStage = e.key.reduce<Stage>((s, k) => (stageIndex(KEY_PART_STAGE[k]) > stageIndex(s) ? KEY_PART_STAGE[k] : s), 'connect');
    if ((e.key.includes('recipient') || e.key.includes('recipient_domain')) && phase !== 'recipient') {
      bad('key', 'recipient and recipient_domain keys need phase: recipient (one event per RCPT)');
    }
    if (e.key.includes('dmarc_domain') && phase !== 'message') bad('key', 'the dmarc_domain key needs phase: message (it is known at data)');
    const allowed = PHASE_STAGES[phase];
    let stage: Stage = allowed[0] ?? 'connect';
    if (stageIndex(keyStage) > stageIndex(stage)) stage = keyStage;
    if (count === 'recipients') stage = 'data';
    if (e.stage) {
      if (stageIndex(e.stage) < stageIndex(stage)) bad('stage', `stage ${e.stage} is too early: the key or count is known at ${stage}`);
      else stage = e.stage;
    }
    if (!allowed.includes(stage)) bad(e.stage ? 'stage' : 'phase', `a ${phase} limit counts at ${allowed.join(' or ')}, not ${stage}`);
    if (e.null_sender && e.null_sender !== 'include' && stageIndex(stage) < stageIndex('mail')) {
      bad('null_sender', `null_sender: ${e.null_sender} needs the sender, known from the mail stage on`);
    }
    let escalation = DEFAULT_ESCALATION;
    if (e.escalate === false) escalation = { after: 0, blockMs: 0, maxBlockMs: 0, rejectAfter: 0, windowMs: 3_600_000 };
    else if (e.escalate) {
      const x = e.escalate;
      if (x.max_block < x.block) bad('escalate', 'escalate.max_block is shorter than escalate.block');
      escalation = {
        after: x.after,
        blockMs: x.block,
        maxBlockMs: x.max_block,
        rejectAfter: x.reject_after,
        // Strikes must outlive the longest block, or a block could be forgotten while in force.
        windowMs: Math.max(x.window ?? x.max_block, x.max_block),
      };
    }
    if (!ok) continue;
    out.push({
      name: e.name,
      description: e.description ?? `${e.key.join('+')} ${phase} limit`,
      key: e.key,
      rate: e.rate,
      burst: e.burst ?? e.rate.count,
      phase,
      stage,
      count,
      nullSender: e.null_sender ?? 'include',
      action: e.action ?? 'tempfail',
      message: e.message,
      escalation,
      when: undefined,
      whenAt: e.when === undefined ? undefined : { raw: e.when, path: [at.get('when') ?? index, 'when'] },
      prefix4: e.ipv4_prefix ?? 24,
      prefix6: e.ipv6_prefix ?? 64,
    });
  }
  return out;
}
