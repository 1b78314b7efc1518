// The shape of a rules file: `rules:` (named rules with a condition and an effect), `actions:`
// (score thresholds), and sections other modules register. Conditions (`when`) are checked by
// condition.ts, which knows the facts; this file only checks the surrounding structure.
import { z } from 'zod';
import { ACTIONS } from '../pipeline/verdict.ts';
import { STAGES } from '../pipeline/stages.ts';

/** Rule names are Rspamd/SpamAssassin-style symbols: they appear in headers and metric labels. */
export const RULE_NAME = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
/** RFC 5322 §3.6.8 field name. */
export const HEADER_NAME = /^[\x21-\x39\x3b-\x7e]{1,76}$/;

export const replySchema = z.strictObject({
  /** Basic reply code (RFC 5321 §4.2): 5xx for reject, 4xx for tempfail. */
  code: z.number().int().min(400).max(599).optional(),
  /** Enhanced status code (RFC 3463), e.g. 5.7.1; its class must match the code's first digit. */
  enhanced: z
    .string()
    .regex(/^[245]\.\d{1,3}\.\d{1,3}$/, 'expected an enhanced status code like 5.7.1')
    .optional(),
  /** Reply text; `{fact.name}` is replaced by the fact's value, `{score}` by the score. */
  text: z.string().min(1).max(400).optional(),
});

export const addHeaderSchema = z.record(
  z.string().regex(HEADER_NAME, 'expected a header field name (printable ASCII, no colon or spaces)'),
  z.string().max(900),
);

/**
 * One entry of `rules:`. Every key is optional here because a rule in `local.d/` may patch only
 * some keys of a shipped rule; the loader checks that the merged rule is complete.
 */
export const ruleSchema = z.strictObject({
  name: z.string().regex(RULE_NAME, 'expected a rule name: a letter, then letters, digits or _ (at most 64)'),
  description: z.string().min(1).optional(),
  /** Conditions; checked by the condition compiler. */
  when: z.unknown().optional(),
  /** Added to the message's score when the rule fires (may be negative). */
  score: z.number().finite().optional(),
  /** A direct action, applied regardless of the score. */
  action: z.enum(ACTIONS).optional(),
  reply: replySchema.optional(),
  add_header: addHeaderSchema.optional(),
  tag_subject: z.string().min(1).max(100).optional(),
  /** Evaluate later than the inferred stage (never earlier). */
  stage: z.enum(STAGES).optional(),
  /** Which direct action wins when several fire: higher first (default 0). */
  priority: z.number().int().min(-1000).max(1000).optional(),
  /** `false` switches a rule off (typically a shipped rule, from local.d/). */
  enabled: z.boolean().optional(),
});
export type RuleInput = z.output<typeof ruleSchema>;
export const RULE_KEYS = Object.keys(ruleSchema.shape);

const offOrScore = (v: unknown) => (typeof v === 'number' ? { score: v } : v === null || v === false ? { score: null } : v);

const thresholdSchema = z.preprocess(
  offOrScore,
  z.strictObject(
    {
      score: z.number().finite().nullable(),
      reply: replySchema.optional(),
    },
    { error: 'expected a score (number), null or false (off), or {score, reply}' },
  ),
);

const tagSchema = z.preprocess(
  offOrScore,
  z.strictObject(
    {
      score: z.number().finite().nullable(),
      add_header: addHeaderSchema.optional(),
      tag_subject: z.string().min(1).max(100).optional(),
    },
    { error: 'expected a score (number), null or false (off), or {score, add_header, tag_subject}' },
  ),
);

/**
 * `actions:` — what the total score leads to at end of data when no rule decided directly. The
 * highest threshold reached wins. `tag` is not an action: it adds a header and/or tags the
 * subject of messages that are still delivered (accept or quarantine).
 */
export const actionsSchema = z.strictObject({
  reject: thresholdSchema.optional(),
  tempfail: thresholdSchema.optional(),
  quarantine: thresholdSchema.optional(),
  discard: thresholdSchema.optional(),
  tag: tagSchema.optional(),
});
export type ActionsInput = z.output<typeof actionsSchema>;

/** `settings:` — engine settings that live with the rules so they reload with them. */
export const settingsSchema = z.strictObject({
  /** Header added to delivered messages explaining the verdict; false for none. */
  status_header: z.union([z.string().regex(HEADER_NAME, 'expected a header field name'), z.literal(false)]).default('X-Mailgate-Status'),
  /** Most bytes of decoded text (and of HTML) kept in message.body_text / message.body_html. */
  body_max_bytes: z.number().int().min(1024).max(16_777_216).default(262_144),
  /** Most bytes of the message read to find its text parts (attachments beyond are not parsed). */
  body_scan_bytes: z.number().int().min(4096).max(268_435_456).default(4_194_304),
});
export type RulesSettings = z.output<typeof settingsSchema>;
