// Rate limits (the `ratelimits:` section): at each stage, every limit that applies to the event is
// checked and charged in one store call (one Redis round trip), and the outcome becomes
// `ratelimit.<stage>.*` facts; rules/50-ratelimits.yaml turns them into 4xx/5xx replies.
import type { Logger } from 'pino';
import { metrics } from '../../metrics/registry.ts';
import type { Check, CheckInput, CheckOutput } from '../../pipeline/check.ts';
import type { FactSpec } from '../../pipeline/facts.ts';
import { STAGES, type Stage } from '../../pipeline/stages.ts';
import { StoreUnavailableError, type RateLimitRequest, type SharedStore } from '../../store/shared-store.ts';
import { humanDuration, keyPartValue } from './durations-rates-keys.ts';
import { getSection } from '../../rules/loader.ts';
import type { RulesAware } from '../../rules/rules-aware.ts';
import { LIMIT_ACTIONS, keyNeeds, type LimitAction, type RateLimitSpec } from './rate-limit-section.ts';
import { rateLimitsSectionSpec } from './section-loading.ts';

export interface LimitCheckContext {
  store: SharedStore;
  now: () => number;
  logger: Logger;
  /** Check timeout; the store's own command timeout is shorter. Default 2000 ms. */
  timeoutMs?: number;
}

/** The fact name of `field` for the rate limits counted at `stage`. */
export const rlFact = (stage: Stage, field: RateLimitField): string => `ratelimit.${stage}.${field}`;

export const RATE_LIMIT_FIELDS = ['exceeded', 'action', 'retry_after_s', 'retry_after', 'text', 'strikes', 'unavailable'] as const;
export type RateLimitField = (typeof RATE_LIMIT_FIELDS)[number];

/** Facts of every stage, declared whether or not limits exist there, so shipped rules validate. */
export function rateLimitFacts(): FactSpec[] {
  return STAGES.flatMap((stage): FactSpec[] => [
    { name: rlFact(stage, 'exceeded'), stage, type: 'string[]', description: `Names of the rate limits counted at ${stage} that this event exceeded` },
    {
      name: rlFact(stage, 'action'),
      stage,
      type: 'string',
      values: ['', ...LIMIT_ACTIONS],
      description: `Strongest action asked for by the exceeded limits at ${stage}: tempfail, reject (escalated or configured), score (facts only), "" if none`,
    },
    { name: rlFact(stage, 'retry_after_s'), stage, type: 'number', description: `Seconds until a retry can pass the limits exceeded at ${stage} (0 if none)` },
    { name: rlFact(stage, 'retry_after'), stage, type: 'string', description: `The retry hint in words, e.g. "5 minutes" ("" if none)` },
    { name: rlFact(stage, 'text'), stage, type: 'string', description: `Reply text for the exceeded limits at ${stage}, with the retry hint ("" if none)` },
    {
      name: rlFact(stage, 'strikes'),
      stage,
      type: 'number',
      description: `Denied attempts in a row on the most struck exceeded limit at ${stage} (escalation)`,
    },
    {
      name: rlFact(stage, 'unavailable'),
      stage,
      type: 'boolean',
      description: `The shared store could not be reached and fail_mode is fail_closed (action is then tempfail)`,
    },
  ]);
}

function needsOf(limits: readonly RateLimitSpec[]): string[] {
  const out = new Set<string>();
  for (const l of limits) {
    for (const f of l.when?.facts ?? []) out.add(f);
    for (const f of keyNeeds(l.key)) out.add(f);
  }
  return [...out];
}

const ACTION_RANK: Record<LimitAction | '', number> = { '': 0, score: 1, tempfail: 2, reject: 3 };

/**
 * The rate-limit check. Its limits come from the rules' `ratelimits:` section through
 * onRulesLoaded (hot reload), or from `initial` (tests, embedding). With no limits it runs at no
 * stage; the facts are declared either way so that shipped rules validate.
 */
export function createRateLimitCheck(ctx: LimitCheckContext, initial?: readonly RateLimitSpec[]): Check & RulesAware {
  let byStage = groupByStage(initial ?? []);
  let stages: Stage[] = STAGES.filter((s) => byStage.has(s));
  let needs = needsOf(initial ?? []);
  return {
    name: 'ratelimit',
    rulesSections: [rateLimitsSectionSpec],
    onRulesLoaded(loaded) {
      const limits = getSection(loaded, rateLimitsSectionSpec) ?? [];
      byStage = groupByStage(limits);
      stages = STAGES.filter((s) => byStage.has(s));
      needs = needsOf(limits);
    },
    get stages() {
      return stages;
    },
    // What the limits' conditions and keys read: a limit keyed on dmarc_domain counts after DMARC.
    get needs() {
      return needs;
    },
    facts: rateLimitFacts(),
    timeoutMs: ctx.timeoutMs ?? 2000,
    // Store outages are handled inside (fail_open/fail_closed); a throw here is a bug.
    onFailure: ctx.store.failMode === 'fail_closed' ? 'tempfail' : 'continue',
    run: (input, out) => runLimits(byStage.get(input.stage) ?? [], input, out, ctx),
  };
}

function groupByStage(limits: readonly RateLimitSpec[]): Map<Stage, RateLimitSpec[]> {
  const m = new Map<Stage, RateLimitSpec[]>();
  for (const spec of limits) m.set(spec.stage, [...(m.get(spec.stage) ?? []), spec]);
  return m;
}

async function runLimits(limits: readonly RateLimitSpec[], input: CheckInput, out: CheckOutput, ctx: LimitCheckContext): Promise<void> {
  const stage = input.stage;
  const f = input.facts;
  // Connection limits at helo count once per connection, not at every (E)HELO.
  if (stage === 'helo' && f.has(rlFact(stage, 'action'))) return;
  const nullSender = f.get('mail.from') === '' || f.get('mail.null_sender') === true;
  const requests: RateLimitRequest[] = [];
  const used: RateLimitSpec[] = [];
  for (const spec of limits) {
    if (spec.when && !spec.when.test(f)) continue;
    if (spec.nullSender === 'exclude' && nullSender) continue;
    if (spec.nullSender === 'only' && !nullSender) continue;
    const parts: string[] = [];
    for (const k of spec.key) {
      const v = keyPartValue(k, { facts: f, recipient: input.recipient, prefix4: spec.prefix4, prefix6: spec.prefix6 });
      if (v === undefined) break;
      parts.push(v);
    }
    if (parts.length !== spec.key.length) continue;
    if (spec.nullSender === 'separate' && nullSender) parts.push('<>');
    let cost = 1;
    if (spec.count === 'recipients') {
      const n = f.get('rcpt.count');
      cost = typeof n === 'number' ? n : Array.isArray(f.get('rcpt.addresses')) ? (f.get('rcpt.addresses') as unknown[]).length : 1;
      if (cost <= 0) continue;
    }
    requests.push({
      key: ctx.store.key('rl', spec.name, parts.join('|')),
      rate: spec.rate,
      burst: spec.burst,
      cost,
      escalation: spec.escalation,
      independent: spec.action === 'score',
    });
    used.push(spec);
  }
  const set = (field: RateLimitField, v: string | number | boolean | string[]) => out.facts.set(rlFact(stage, field), v);
  const clear = () => {
    set('exceeded', []);
    set('action', '');
    set('retry_after_s', 0);
    set('retry_after', '');
    set('text', '');
    set('strikes', 0);
    set('unavailable', false);
  };
  clear();
  if (requests.length === 0) return;

  let results;
  try {
    ({ results } = await ctx.store.rateLimit(requests, ctx.now()));
  } catch (err) {
    if (!(err instanceof StoreUnavailableError)) throw err;
    // Only fail_closed gets here (fail_open falls back to the in-process store).
    ctx.logger.warn({ err: err.message, stage }, 'rate limits: shared store unavailable (fail_closed)');
    set('unavailable', true);
    if (used.some((s) => s.action !== 'score')) {
      set('action', 'tempfail');
      set('retry_after_s', 60);
      set('retry_after', humanDuration(60_000));
      set('text', 'Rate limiting temporarily unavailable, try again later');
    }
    return;
  }

  const exceeded: string[] = [];
  let action: LimitAction | '' = '';
  let lead: { spec: RateLimitSpec; escalated: boolean } | undefined;
  let retryMs = 0;
  let strikes = 0;
  for (const [i, r] of results.entries()) {
    const spec = used[i];
    if (!spec || r.allowed) continue;
    exceeded.push(spec.name);
    metrics.rateLimitExceeded.inc({ limit: spec.name });
    let a: LimitAction = spec.action;
    if (a === 'tempfail' && r.level === 'reject') a = 'reject';
    if (a !== 'score') retryMs = Math.max(retryMs, r.retryAfterMs);
    strikes = Math.max(strikes, r.strikes);
    if (ACTION_RANK[a] > ACTION_RANK[action]) {
      action = a;
      lead = { spec, escalated: r.level !== 'normal' };
    }
  }
  if (exceeded.length === 0) return;
  if (action === 'score') retryMs = Math.max(...results.map((r) => r.retryAfterMs));
  const retryS = Math.ceil(retryMs / 1000);
  const human = humanDuration(retryMs);
  set('exceeded', exceeded);
  set('action', action);
  set('retry_after_s', retryS);
  set('retry_after', human);
  set('strikes', strikes);
  set('text', replyText(lead, action, exceeded, human, retryS));
}

function replyText(
  lead: { spec: RateLimitSpec; escalated: boolean } | undefined,
  action: LimitAction | '',
  exceeded: readonly string[],
  human: string,
  retryS: number,
): string {
  const names = exceeded.join(', ');
  if (lead?.spec.message) {
    return lead.spec.message.replaceAll('{limit}', lead.spec.name).replaceAll('{retry_after_s}', String(retryS)).replaceAll('{retry_after}', human);
  }
  if (action === 'reject') {
    return lead?.escalated ? `Rate limit exceeded (${names}) and retried too often; message refused` : `Rate limit exceeded (${names}); message refused`;
  }
  if (lead?.escalated) return `Rate limit exceeded (${names}) and retried too soon; try again in ${human}`;
  return `Rate limit exceeded (${names}); try again in ${human}`;
}
