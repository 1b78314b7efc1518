// Shared concurrency limits (the `concurrency:` section): at connect each limit takes a slot for the
// connection in the store; the slot is given back at the connection's disconnect step or, if this
// instance dies, when its lease runs out. Facts: `concurrency.*`.
import { metrics } from '../../metrics/registry.ts';
import type { Check, CheckInput, CheckOutput } from '../../pipeline/check.ts';
import type { FactSpec } from '../../pipeline/facts.ts';
import { StoreUnavailableError, type ConcurrencyLease } from '../../store/shared-store.ts';
import type { Stage } from '../../pipeline/stages.ts';
import { getSection } from '../../rules/loader.ts';
import type { RulesAware } from '../../rules/rules-aware.ts';
import type { ConcurrencySpec } from './concurrency-section.ts';
import { concurrencySectionSpec } from './section-loading.ts';
import { keyPartValue } from './durations-rates-keys.ts';
import type { LimitCheckContext } from './rate-limit.ts';

export function concurrencyFacts(): FactSpec[] {
  return [
    { name: 'concurrency.exceeded', stage: 'connect', type: 'string[]', description: 'Names of the shared concurrency limits this connection is over' },
    {
      name: 'concurrency.action',
      stage: 'connect',
      type: 'string',
      values: ['', 'tempfail', 'score'],
      description: 'tempfail when a tempfail limit is exceeded (or the store is down with fail_closed), score for score-only limits, "" otherwise',
    },
    { name: 'concurrency.count', stage: 'connect', type: 'number', description: 'Connections open on the fullest limit, including this one if admitted' },
    { name: 'concurrency.text', stage: 'connect', type: 'string', description: 'Reply text when refused ("" otherwise)' },
    { name: 'concurrency.unavailable', stage: 'connect', type: 'boolean', description: 'The shared store could not be reached and fail_mode is fail_closed' },
  ];
}

/** Slots a connection holds, kept in its notes under this key until its disconnect step. */
const NOTE = 'concurrency.leases';

/**
 * The shared concurrency check. Its limits come from the rules' `concurrency:` section through
 * onRulesLoaded (hot reload), or from `initial`. Slots are given back at the connection's
 * disconnect step (or, if this instance dies, when their leases run out).
 */
export function createConcurrencyCheck(ctx: LimitCheckContext, initial?: readonly ConcurrencySpec[]): Check & RulesAware {
  let limits: readonly ConcurrencySpec[] = initial ?? [];
  return {
    name: 'concurrency',
    rulesSections: [concurrencySectionSpec],
    onRulesLoaded(loaded) {
      limits = getSection(loaded, concurrencySectionSpec) ?? [];
    },
    get stages(): Stage[] {
      return limits.length > 0 ? ['connect'] : [];
    },
    facts: concurrencyFacts(),
    timeoutMs: ctx.timeoutMs ?? 2000,
    onFailure: ctx.store.failMode === 'fail_closed' ? 'tempfail' : 'continue',
    run: (input, out) => runConcurrency(limits, input, out, ctx),
    async disconnect(connection) {
      const leases = connection.notes.get(NOTE) as ConcurrencyLease[] | undefined;
      if (!leases) return;
      connection.notes.delete(NOTE);
      await Promise.all(leases.map((l) => ctx.store.releaseSlot(l).catch(() => undefined)));
    },
  };
}

async function runConcurrency(limits: readonly ConcurrencySpec[], input: CheckInput, out: CheckOutput, ctx: LimitCheckContext): Promise<void> {
  const f = input.facts;
  const set = (name: string, v: string | number | boolean | string[]) => out.facts.set(`concurrency.${name}`, v);
  set('exceeded', []);
  set('action', '');
  set('count', 0);
  set('text', '');
  set('unavailable', false);
  const now = ctx.now();
  const work = limits.flatMap((spec) => {
    if (spec.when && !spec.when.test(f)) return [];
    const v = keyPartValue(spec.key, { facts: f, prefix4: spec.prefix4, prefix6: spec.prefix6 });
    return v === undefined ? [] : [{ spec, key: ctx.store.key('cc', spec.name, v) }];
  });
  if (work.length === 0) return;
  // Issued together: with Redis they leave in one write (auto-pipelining), one round trip.
  const settled = await Promise.allSettled(work.map((w) => ctx.store.acquireSlot(w.key, w.spec.max, w.spec.leaseMs, now)));
  const leases: ConcurrencyLease[] = [];
  const exceeded: string[] = [];
  let refuse = false;
  let unavailable = false;
  let count = 0;
  for (const [i, s] of settled.entries()) {
    const w = work[i];
    if (!w) continue;
    if (s.status === 'rejected') {
      if (!(s.reason instanceof StoreUnavailableError)) throw s.reason;
      unavailable = true;
      continue;
    }
    count = Math.max(count, s.value.count);
    if (s.value.lease) leases.push(s.value.lease);
    else {
      exceeded.push(w.spec.name);
      metrics.concurrencyExceeded.inc({ limit: w.spec.name });
      if (w.spec.action === 'tempfail') refuse = true;
    }
  }
  if (unavailable) {
    ctx.logger.warn('concurrency: shared store unavailable (fail_closed)');
    set('unavailable', true);
    if (limits.some((l) => l.action === 'tempfail')) refuse = true;
  }
  if (refuse) {
    // The connection will be refused: give back what it took.
    await Promise.all(leases.map((l) => ctx.store.releaseSlot(l).catch(() => undefined)));
  } else if (leases.length > 0) {
    const notes = input.connection.notes;
    const prev = notes.get(NOTE) as ConcurrencyLease[] | undefined;
    if (prev) prev.push(...leases);
    else notes.set(NOTE, leases);
  }
  set('count', count);
  if (exceeded.length === 0 && !unavailable) return;
  set('exceeded', exceeded);
  set('action', refuse ? 'tempfail' : exceeded.length > 0 ? 'score' : '');
  if (refuse) {
    set(
      'text',
      unavailable && exceeded.length === 0
        ? 'Connection limits temporarily unavailable, try again later'
        : `Too many connections from your network (${exceeded.join(', ')}), try again later`,
    );
  }
}
