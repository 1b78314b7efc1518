// Greylisting (the `greylist:` section, off by default): the first delivery attempt of a (client
// network, sender, recipient) triplet is deferred; a retry after the delay passes and is remembered.
// All recipients' triplets go to the store in one pipelined round trip. The outcome becomes
// `greylist.*` facts; rules/50-ratelimits.yaml turns `greylist.action: tempfail` into a 451.
import { createHash } from 'node:crypto';
import { metrics } from '../../metrics/registry.ts';
import type { Check, CheckInput, CheckOutput } from '../../pipeline/check.ts';
import type { FactSpec } from '../../pipeline/facts.ts';
import { StoreUnavailableError, type GreylistRequest } from '../../store/shared-store.ts';
import type { Stage } from '../../pipeline/stages.ts';
import { getSection } from '../../rules/loader.ts';
import type { RulesAware } from '../../rules/rules-aware.ts';
import type { GreylistSpec } from './greylist-section.ts';
import { greylistSectionSpec } from './section-loading.ts';
import { humanDuration } from './durations-rates-keys.ts';
import { networkOf } from '../../net/ip.ts';
import type { LimitCheckContext } from './rate-limit.ts';

export const GREYLIST_RESULTS = ['new', 'early', 'passed', 'allowed', 'skipped', 'unavailable'] as const;
export type GreylistFactResult = (typeof GREYLIST_RESULTS)[number];

/** The greylist facts (end of DATA). */
export function greylistFacts(): FactSpec[] {
  const stage = 'data';
  return [
    {
      name: 'greylist.result',
      stage,
      type: 'string',
      values: GREYLIST_RESULTS,
      description:
        'new (first attempt, deferred), early (retried before the delay), passed (retried in time, or passed before), allowed (network auto-allowed), skipped (skip condition), unavailable (store down)',
    },
    {
      name: 'greylist.action',
      stage,
      type: 'string',
      values: ['', 'tempfail'],
      description: 'tempfail when the message must be deferred (new/early, or unavailable with fail_closed)',
    },
    { name: 'greylist.retry_after_s', stage, type: 'number', description: 'Seconds until a retry can pass (0 if not deferred)' },
    { name: 'greylist.retry_after', stage, type: 'string', description: 'The retry hint in words, e.g. "5 minutes" ("" if not deferred)' },
    { name: 'greylist.text', stage, type: 'string', description: 'Reply text for a deferral ("" if not deferred)' },
  ];
}

/**
 * The greylisting check. Its settings come from the rules' `greylist:` section through
 * onRulesLoaded (hot reload), or from `initial`. Off (runs at no stage) unless `enabled: true`.
 */
export function createGreylistCheck(ctx: LimitCheckContext, initial?: GreylistSpec): Check & RulesAware {
  let spec = initial;
  return {
    name: 'greylist',
    rulesSections: [greylistSectionSpec],
    onRulesLoaded(loaded) {
      spec = getSection(loaded, greylistSectionSpec);
    },
    get stages(): Stage[] {
      return spec?.enabled ? ['data'] : [];
    },
    // The skip condition reads DKIM/DMARC facts of the same stage: greylisting runs after them.
    get needs(): string[] {
      return spec?.enabled ? [...(spec.skip?.facts ?? [])] : [];
    },
    facts: greylistFacts(),
    timeoutMs: ctx.timeoutMs ?? 2000,
    onFailure: ctx.store.failMode === 'fail_closed' ? 'tempfail' : 'continue',
    run: (input, out) => (spec?.enabled ? runGreylist(spec, input, out, ctx) : undefined),
  };
}

async function runGreylist(spec: GreylistSpec, input: CheckInput, out: CheckOutput, ctx: LimitCheckContext): Promise<void> {
  const f = input.facts;
  const set = (name: string, v: string | number) => out.facts.set(`greylist.${name}`, v);
  const finish = (result: GreylistFactResult, count: number, retryMs = 0, defer = false) => {
    metrics.greylistTotal.inc({ result }, Math.max(1, count));
    set('result', result);
    set('action', defer ? 'tempfail' : '');
    set('retry_after_s', defer ? Math.ceil(retryMs / 1000) : 0);
    set('retry_after', defer ? humanDuration(retryMs) : '');
    set('text', defer ? expand(spec.message, retryMs) : '');
  };

  const recipients = recipientsOf(input);
  const ip = f.get('client.ip');
  const net = typeof ip === 'string' ? networkOf(ip, spec.prefix4, spec.prefix6) : undefined;
  if (recipients.length === 0 || net === undefined || spec.skip?.test(f)) {
    finish('skipped', recipients.length);
    return;
  }
  const from = f.get('mail.from');
  const sender = normalizeSender(typeof from === 'string' ? from : '');
  const requests: GreylistRequest[] = recipients.map((rcpt) => ({
    tripletKey: ctx.store.key('gl', 't', digest(`${net}|${sender}|${rcpt.toLowerCase()}`)),
    networkKey: ctx.store.key('gl', 'n', net),
  }));
  let results;
  try {
    results = await ctx.store.greylist(requests, spec.params, ctx.now());
  } catch (err) {
    if (!(err instanceof StoreUnavailableError)) throw err;
    const closed = ctx.store.failMode === 'fail_closed';
    ctx.logger.warn({ err: err.message }, `greylist: shared store unavailable (${closed ? 'deferring' : 'skipping'})`);
    finish('unavailable', recipients.length, 60_000, closed);
    if (closed) set('text', 'Greylisting temporarily unavailable, try again later');
    return;
  }
  for (const r of results) metrics.greylistTotal.inc({ result: r.result });
  const deferred = results.filter((r) => r.result === 'new' || r.result === 'early');
  // The message's outcome is the strongest over its recipients: any deferral defers it.
  const result: GreylistFactResult = deferred.some((r) => r.result === 'new')
    ? 'new'
    : deferred.length > 0
      ? 'early'
      : results.every((r) => r.result === 'allowed')
        ? 'allowed'
        : 'passed';
  const retryMs = Math.max(0, ...deferred.map((r) => r.retryAfterMs));
  set('result', result);
  set('action', deferred.length > 0 ? 'tempfail' : '');
  set('retry_after_s', deferred.length > 0 ? Math.ceil(retryMs / 1000) : 0);
  set('retry_after', deferred.length > 0 ? humanDuration(retryMs) : '');
  set('text', deferred.length > 0 ? expand(spec.message, retryMs) : '');
}

function recipientsOf(input: CheckInput): string[] {
  const list = input.facts.get('rcpt.addresses');
  return Array.isArray(list) ? [...new Set((list as unknown[]).filter((x): x is string => typeof x === 'string'))] : [];
}

function expand(message: string, retryMs: number): string {
  return message.replaceAll('{retry_after_s}', String(Math.ceil(retryMs / 1000))).replaceAll('{retry_after}', humanDuration(retryMs));
}

function digest(s: string): string {
  return createHash('sha256').update(s).digest('base64url').slice(0, 22);
}

/**
 * The sender as greylisting keys it, like Postgrey: lower-cased, BATV (`prvs=...=`) and SRS
 * hash/timestamp removed, `+extension` dropped and numbers replaced by `#`, so that VERP
 * mailing-list senders that change with every message map to one triplet. Null sender: `<>`.
 */
export function normalizeSender(addr: string): string {
  if (addr === '') return '<>';
  const s = addr.toLowerCase();
  const at = s.lastIndexOf('@');
  if (at < 0) return s;
  let user = s.slice(0, at);
  const domain = s.slice(at + 1);
  user = user.replace(/^(?:prvs|msprvs\d*|btv1)=[^=]*=/, '');
  user = user.replace(/^srs0[=+-][^=]*=[^=]*=/, 'srs0=');
  user = user.replace(/\+.*$/, '');
  user = user.replace(/\b\d+\b/g, '#');
  return `${user}@${domain}`;
}
