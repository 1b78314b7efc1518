// Runs the checks of one stage in the order their declared needs give (independent checks
// concurrently), each under its timeout, turning a throw or a timeout into the check's configured
// failure outcome (tempfail by default) — never an accidental pass — then asks the policy.
import type { Check, CheckInput, CheckOutput, ConnectionContext, FailureOutcome, MessageView } from './check.ts';
import type { FactSet, FactValue } from './facts.ts';
import { cachedStageLayers } from './check-order.ts';
import type { Stage } from './stages.ts';
import type { Policy, Verdict } from './verdict.ts';
import { metrics } from '../metrics/registry.ts';
import type { Logger } from 'pino';
import type { Span } from '../trace/span.ts';
import { runWithSpan } from '../trace/active-span.ts';

export interface StageResult {
  verdict: Verdict;
  /** Set when a check failed with outcome tempfail/reject: the reply overrides the policy. */
  failure?: { check: string; outcome: Exclude<FailureOutcome, 'continue'>; error: string };
}

export interface RunStageArgs {
  stage: Stage;
  connection: ConnectionContext;
  checks: readonly Check[];
  policy: Policy;
  facts: FactSet;
  previous?: Verdict;
  recipient?: string;
  message?: MessageView;
  output: CheckOutput;
  logger: Logger;
  /** Aborts all checks (client went away). */
  signal?: AbortSignal;
  /** Or the signal made on demand, when a check first asks for it (the SMTP core). */
  getSignal?: () => AbortSignal;
  defaultTimeoutMs?: number;
  /** Facts that win over what checks find (`rules test --fact`, replays); applied before the rules. */
  overrides?: ReadonlyMap<string, FactValue>;
  /** The stage's span: each check and the rules get a child (tracing off: the no-op span). */
  span?: Span;
}

/**
 * Runs the stage's checks, then the rules. A stage without checks (the relay leg, most stages of
 * most configs) is decided synchronously: no promise to allocate and await.
 */
export function runStage(a: RunStageArgs): StageResult | Promise<StageResult> {
  const layers = cachedStageLayers(a.checks, a.stage);
  return layers.length === 0 ? decide(a, undefined) : runLayers(a, layers);
}

type RunResult = { check: string; outcome: FailureOutcome; error: string } | undefined;

/**
 * Layer by layer; synchronous while every check of a layer finished synchronously (most checks
 * only read facts: a promise and a microtask turn per check otherwise), asynchronous from the first
 * layer with a check that returned a promise.
 */
function runLayers(a: RunStageArgs, layers: readonly (readonly Check[])[]): StageResult | Promise<StageResult> {
  const failure: { f?: StageResult['failure'] } = {};
  for (let i = 0; i < layers.length; i++) {
    const results = (layers[i] as readonly Check[]).map((c) => CheckRun.start(c, a));
    if (results.some(isPromise)) return finishAsync(a, layers, i, Promise.all(results), failure);
    endLayer(a, results as RunResult[], failure);
  }
  return decide(a, failure.f);
}

async function finishAsync(
  a: RunStageArgs,
  layers: readonly (readonly Check[])[],
  from: number,
  pending: Promise<RunResult[]>,
  failure: { f?: StageResult['failure'] },
): Promise<StageResult> {
  endLayer(a, await pending, failure);
  for (let i = from + 1; i < layers.length; i++) {
    endLayer(a, await Promise.all((layers[i] as readonly Check[]).map((c) => CheckRun.start(c, a))), failure);
  }
  return decide(a, failure.f);
}

function endLayer(a: RunStageArgs, results: readonly RunResult[], failure: { f?: StageResult['failure'] }): void {
  for (const r of results) {
    if (r && r.outcome !== 'continue' && (!failure.f || (r.outcome === 'reject' && failure.f.outcome !== 'reject'))) {
      failure.f = { check: r.check, outcome: r.outcome, error: r.error };
    }
  }
  // What checks wrote to their output is a fact from now on: later layers and the rules of
  // this stage see it. Moved, not copied: the output object lives for the whole transaction
  // (its edits accumulate), so facts left in it would be merged again at every later stage.
  a.output.facts.moveInto(a.facts);
}

function isPromise(x: unknown): x is Promise<unknown> {
  return x instanceof Promise;
}

/** The overrides, then the rules of the stage: its verdict. */
function decide(a: RunStageArgs, failure: StageResult['failure']): StageResult {
  if (a.overrides) for (const [k, v] of a.overrides) a.facts.set(k, v);
  const rules = a.span?.child('rules');
  const verdict = a.policy.evaluate(a.stage, a.facts, a.previous);
  if (rules?.recording)
    rules
      .set('mailgate.score', verdict.score)
      .set('mailgate.stage_action', verdict.action)
      .set(
        'mailgate.rules',
        verdict.fired.map((f) => f.rule),
      );
  rules?.end();
  return failure ? { verdict, failure } : { verdict };
}

/** A check that threw or timed out: its configured outcome (tempfail by default), logged and counted. */
function failedRun(check: Check, a: RunStageArgs, err: unknown, timeoutMs: number, span: Span | undefined): RunResult {
  const timedOut = err instanceof CheckTimeout;
  const outcome = check.onFailure ?? 'tempfail';
  const error = timedOut ? `timed out after ${timeoutMs} ms` : (err as Error).message;
  metrics.checkFailures.inc({ check: check.name, reason: timedOut ? 'timeout' : 'error' });
  a.facts.set(`check.${check.name}.error`, error);
  a.logger.warn({ check: check.name, stage: a.stage, err: error, outcome }, 'check failed');
  span?.fail(error).set('mailgate.check_outcome', outcome);
  return { check: check.name, outcome, error };
}

/** Pre-resolved histogram children per check name (a label lookup per observation otherwise). */
const durations = new Map<string, { observe(v: number): void }>();
function durationOf(name: string): { observe(v: number): void } {
  let h = durations.get(name);
  if (!h) durations.set(name, (h = metrics.checkDuration.labels({ check: name })));
  return h;
}

/**
 * One run of one check: the check's input (what it sees of this object is CheckInput) and the
 * run's bookkeeping in private fields — one object per run, no closures; the AbortSignal is made
 * only when the check reads it (most never do: no controller and no listener on the transaction's
 * signal otherwise).
 */
class CheckRun implements CheckInput {
  readonly stage: Stage;
  readonly connection: ConnectionContext;
  readonly facts: FactSet;
  recipient?: string;
  message?: MessageView;
  readonly #span: Span | undefined;
  readonly #a: RunStageArgs;
  readonly #check: Check;
  readonly #start = performance.now();
  #ac: AbortController | undefined;
  #outer: AbortSignal | undefined;
  #timer: NodeJS.Timeout | undefined;
  #onAbort: (() => void) | undefined;

  private constructor(a: RunStageArgs, check: Check) {
    this.stage = a.stage;
    this.connection = a.connection;
    this.facts = a.facts;
    if (a.recipient !== undefined) this.recipient = a.recipient;
    if (a.message !== undefined) this.message = a.message;
    this.#span = a.span?.child(check.name);
    this.#a = a;
    this.#check = check;
  }

  /**
   * One check under its timeout: its failure outcome, or undefined; a promise only if the check
   * returned one. Run at once: a check that finishes synchronously needs no timer (none could fire).
   */
  static start(check: Check, a: RunStageArgs): RunResult | Promise<RunResult> {
    const run = new CheckRun(a, check);
    const span = run.#span;
    let ran: unknown;
    try {
      ran = span?.recording ? runWithSpan(span, () => check.run(run, a.output)) : check.run(run, a.output);
    } catch (err) {
      return run.#done(err, true);
    }
    if (ran === null || typeof ran !== 'object' || typeof (ran as PromiseLike<unknown>).then !== 'function') return run.#done(undefined, false);
    return Promise.race([ran as PromiseLike<unknown>, run.#deadline()]).then(
      () => run.#done(undefined, false),
      (err: unknown) => run.#done(err, true),
    );
  }

  get signal(): AbortSignal {
    if (!this.#ac) {
      const ac = new AbortController();
      const outer = this.#a.signal ?? this.#a.getSignal?.();
      this.#ac = ac;
      this.#outer = outer;
      if (outer?.aborted) ac.abort(outer.reason);
      else if (outer) outer.addEventListener('abort', (this.#onAbort = () => ac.abort(outer.reason)), { once: true });
    }
    return this.#ac.signal;
  }

  get #timeoutMs(): number {
    return this.#check.timeoutMs ?? this.#a.defaultTimeoutMs ?? 30_000;
  }

  /** Rejects when the check's time is up (and aborts its signal). */
  #deadline(): Promise<never> {
    const ms = this.#timeoutMs;
    return new Promise<never>((_, reject) => {
      this.#timer = setTimeout(() => {
        void this.signal;
        this.#ac?.abort(new Error('timeout'));
        reject(new CheckTimeout(ms));
      }, ms);
    });
  }

  /** The run is over: timer and listener gone, span ended, duration observed; the failure, if any. */
  #done(err: unknown, failed: boolean): RunResult {
    clearTimeout(this.#timer);
    if (this.#onAbort) this.#outer?.removeEventListener('abort', this.#onAbort);
    const r = failed ? failedRun(this.#check, this.#a, err, this.#timeoutMs, this.#span) : undefined;
    this.#span?.end();
    durationOf(this.#check.name).observe((performance.now() - this.#start) / 1000);
    return r;
  }
}

class CheckTimeout extends Error {
  constructor(ms: number) {
    super(`timed out after ${ms} ms`);
  }
}
