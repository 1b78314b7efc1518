// How the checks of a stage are ordered from their declared needs (layers, prefix needs, cycles,
// load-time problems) and how the stage runner executes them: facts flow to later layers, a throw
// or a timeout becomes the check's failure outcome, and overrides win over what checks find.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { planProblems, satisfies, stageLayers } from '../../src/pipeline/check-order.ts';
import { runStage, type RunStageArgs } from '../../src/pipeline/runner.ts';
import { detachedConnection, emptyEdits, type Check, type CheckInput, type CheckOutput } from '../../src/pipeline/check.ts';
import { FactSet, type FactSpec, type FactValue } from '../../src/pipeline/facts.ts';
import { emptyVerdict, type Policy, type Verdict } from '../../src/pipeline/verdict.ts';
import type { Stage } from '../../src/pipeline/stages.ts';
import { coreFacts } from '../../src/pipeline/core-facts.ts';

function spec(name: string, stage: Stage = 'data'): FactSpec {
  return { name, stage, type: 'string', description: name };
}

function check(name: string, stages: Stage[], produces: string[], needs: string[] = [], run: Check['run'] = () => undefined): Check {
  return { name, stages, facts: produces.map((p) => spec(p, stages[0] ?? 'data')), needs, run };
}

const names = (layers: Check[][]) => layers.map((l) => l.map((c) => c.name).sort());

// --- satisfies --------------------------------------------------------------------------------

const satisfiesCases = [
  { desc: 'exact name', input: ['dmarc.result', 'dmarc.result'], expected: true },
  { desc: 'other name', input: ['dmarc.result', 'dmarc.policy'], expected: false },
  { desc: 'prefix.* matches a fact under the prefix', input: ['dmarc.*', 'dmarc.policy'], expected: true },
  { desc: 'prefix.* does not match a longer prefix word', input: ['dmarc.*', 'dmarcx.policy'], expected: false },
  { desc: 'prefix.* does not match the bare prefix', input: ['dmarc.*', 'dmarc'], expected: false },
  { desc: 'an exact need is not a prefix', input: ['dmarc', 'dmarc.result'], expected: false },
];

for (const c of satisfiesCases) {
  test(`satisfies: ${c.desc}`, () => assert.equal(satisfies(c.input[0] as string, c.input[1] as string), c.expected));
}

// --- stageLayers ------------------------------------------------------------------------------

const spf = check('spf', ['mail'], ['spf.result']);
const dkim = check('dkim', ['data'], ['dkim.result', 'dkim.signatures']);
const dmarc = check('dmarc', ['data'], ['dmarc.result', 'dmarc.policy'], ['dkim.result', 'spf.result']);
const arc = check('arc', ['data'], ['arc.result'], ['dkim.*']);
const grey = check('greylist', ['data'], ['greylist.state'], ['dmarc.result']);
const body = check('body', ['data'], ['body.words']);
const helo = check('helo', ['helo'], ['helo.valid'], ['arc.result']);

const layerCases = [
  { desc: 'independent checks share one layer', input: { checks: [dkim, body], stage: 'data' as Stage }, expected: [['body', 'dkim']] },
  { desc: 'a need on another check’s fact orders it after', input: { checks: [dmarc, dkim], stage: 'data' as Stage }, expected: [['dkim'], ['dmarc']] },
  {
    desc: 'a chain gives one layer per step, independent ones in the first',
    input: { checks: [grey, dmarc, body, dkim], stage: 'data' as Stage },
    expected: [['body', 'dkim'], ['dmarc'], ['greylist']],
  },
  {
    desc: 'a prefix.* need waits for the producer of any fact under it',
    input: { checks: [arc, dkim], stage: 'data' as Stage },
    expected: [['dkim'], ['arc']],
  },
  { desc: 'a need produced at another stage does not order within this one', input: { checks: [dmarc, spf], stage: 'data' as Stage }, expected: [['dmarc']] },
  { desc: 'checks of other stages are ignored', input: { checks: [spf, helo, dkim], stage: 'data' as Stage }, expected: [['dkim']] },
  { desc: 'no check at the stage: no layers', input: { checks: [dkim], stage: 'connect' as Stage }, expected: [] },
  { desc: 'one check: one layer', input: { checks: [helo], stage: 'helo' as Stage }, expected: [['helo']] },
  {
    desc: 'a check needing its own fact is not a cycle',
    input: { checks: [check('self', ['data'], ['self.x'], ['self.x']), body], stage: 'data' as Stage },
    expected: [['body', 'self']],
  },
];

for (const c of layerCases) {
  test(`stageLayers: ${c.desc}`, () => assert.deepEqual(names(stageLayers(c.input.checks, c.input.stage)), c.expected));
}

test('stageLayers: a cycle throws naming the checks in it (and the stage)', () => {
  const a = check('alpha', ['data'], ['alpha.x'], ['beta.x']);
  const bb = check('beta', ['data'], ['beta.x'], ['alpha.*']);
  assert.throws(
    () => stageLayers([body, a, bb], 'data'),
    (err: Error) => {
      assert.match(err.message, /alpha/);
      assert.match(err.message, /beta/);
      assert.match(err.message, /data/);
      assert.doesNotMatch(err.message, /body/, 'a check outside the cycle is not blamed');
      return true;
    },
  );
});

test('stageLayers: a cycle at another stage does not matter here', () => {
  const a = check('alpha', ['rcpt'], ['alpha.x'], ['beta.x']);
  const bb = check('beta', ['rcpt'], ['beta.x'], ['alpha.x']);
  assert.deepEqual(names(stageLayers([a, bb, body], 'data')), [['body']]);
});

// --- planProblems -----------------------------------------------------------------------------

const stages: Stage[] = ['connect', 'helo', 'mail', 'rcpt', 'data'];
const planCases = [
  { desc: 'everything satisfied', input: [spf, dkim, dmarc, arc, grey], expected: [] as RegExp[] },
  {
    desc: 'an unknown need is reported with the check and the fact',
    input: [check('needy', ['data'], [], ['nothing.here'])],
    expected: [/needy.*nothing\.here/],
  },
  { desc: 'a need satisfied by an earlier stage’s check is fine', input: [spf, check('late', ['rcpt'], [], ['spf.result'])], expected: [] },
  {
    desc: 'a need satisfied only by a later stage’s check is reported',
    input: [dkim, check('early', ['mail'], [], ['dkim.result'])],
    expected: [/early.*dkim\.result/],
  },
  { desc: 'a need on a core fact is fine', input: [check('c', ['mail'], [], ['client.ip', 'mail.from'])], expected: [] },
  {
    desc: 'a need on a core fact not yet known at that stage is reported',
    input: [check('c', ['mail'], [], ['message.subject'])],
    expected: [/c needs message\.subject/],
  },
  { desc: 'a prefix need on core facts', input: [check('c', ['helo'], [], ['client.*'])], expected: [] },
  { desc: 'a check with no stages (switched off) is ignored', input: [check('off', [], [], ['nothing.here'])], expected: [] },
  {
    desc: 'a producer with no stages does not satisfy a need',
    input: [check('off', [], ['x.y']), check('on', ['data'], [], ['x.y'])],
    expected: [/on needs x\.y/],
  },
  {
    desc: 'a cycle is a problem',
    input: [check('alpha', ['data'], ['alpha.x'], ['beta.x']), check('beta', ['data'], ['beta.x'], ['alpha.x'])],
    expected: [/alpha.*beta|beta.*alpha/],
  },
];

for (const c of planCases) {
  test(`planProblems: ${c.desc}`, () => {
    const problems = planProblems(c.input, coreFacts, stages);
    assert.equal(problems.length, c.expected.length, problems.join('\n'));
    c.expected.forEach((re, i) => assert.match(problems[i] as string, re));
  });
}

// --- runStage ---------------------------------------------------------------------------------

/** A policy that records the facts it saw and returns a fixed verdict. */
function recordingPolicy(seen: Array<Record<string, FactValue>>, previousSeen: Array<Verdict | undefined> = []): Policy {
  return {
    evaluate: (_stage, facts, previous) => {
      seen.push(facts.toJSON());
      previousSeen.push(previous);
      return { ...emptyVerdict(), score: 1 };
    },
  };
}

function args(checks: Check[], over: Partial<RunStageArgs> = {}): RunStageArgs {
  return {
    stage: 'data',
    connection: detachedConnection('t'),
    checks,
    policy: recordingPolicy([]),
    facts: new FactSet(),
    output: { facts: new FactSet(), edits: emptyEdits() },
    logger: pino({ level: 'silent' }),
    ...over,
  };
}

const setFact = (name: string, value: FactValue) => (_i: CheckInput, out: CheckOutput) => out.facts.set(name, value);

test('runStage: a check in a later layer sees the facts of the earlier layer', async () => {
  const saw: Array<FactValue | undefined> = [];
  const producer = check('producer', ['data'], ['p.x'], [], async (_i, out) => {
    await new Promise((r) => setTimeout(r, 20));
    out.facts.set('p.x', 'found');
  });
  const consumer = check('consumer', ['data'], ['c.y'], ['p.x'], (i, out) => {
    saw.push(i.facts.get('p.x'));
    out.facts.set('c.y', `saw ${String(i.facts.get('p.x'))}`);
  });
  const seen: Array<Record<string, FactValue>> = [];
  const a = args([consumer, producer], { policy: recordingPolicy(seen) });
  const res = await runStage(a);
  assert.deepEqual(saw, ['found']);
  assert.equal(seen[0]?.['c.y'], 'saw found', 'the rules see every layer’s facts');
  assert.equal(res.failure, undefined);
  assert.equal(res.verdict.score, 1);
  assert.equal(a.facts.get('p.x'), 'found');
  assert.deepEqual([...a.output.facts.entries()], [], 'facts are moved out of the output, not left to be merged again');
});

test('runStage: checks of one layer run concurrently', async () => {
  let started = 0;
  let release!: () => void;
  const both = new Promise<void>((r) => (release = r));
  const waiter = (name: string) =>
    check(name, ['data'], [`${name}.done`], [], async (_i, out) => {
      if (++started === 2) release();
      // Deadlocks (and times out) if the other check only starts after this one ends.
      await Promise.race([both, new Promise((_, rej) => setTimeout(() => rej(new Error('not concurrent')), 1000))]);
      out.facts.set(`${name}.done`, true);
    });
  const a = args([waiter('one'), waiter('two')]);
  const res = await runStage(a);
  assert.equal(res.failure, undefined, res.failure?.error);
  assert.equal(a.facts.get('one.done'), true);
  assert.equal(a.facts.get('two.done'), true);
});

const failureCases = [
  { desc: 'a throwing check tempfails by default', input: { onFailure: undefined }, expected: { outcome: 'tempfail' as const, failure: true } },
  { desc: 'a throwing check with onFailure reject rejects', input: { onFailure: 'reject' as const }, expected: { outcome: 'reject' as const, failure: true } },
  {
    desc: 'a throwing check with onFailure continue goes on (fact still set)',
    input: { onFailure: 'continue' as const },
    expected: { outcome: undefined, failure: false },
  },
];

for (const c of failureCases) {
  test(`runStage: ${c.desc}`, async () => {
    const boom: Check = {
      ...check('boom', ['data'], ['boom.x'], [], () => {
        throw new Error('resolver exploded');
      }),
      ...(c.input.onFailure ? { onFailure: c.input.onFailure } : {}),
    };
    const ok = check('fine', ['data'], ['fine.x'], [], setFact('fine.x', 'yes'));
    const seen: Array<Record<string, FactValue>> = [];
    const a = args([boom, ok], { policy: recordingPolicy(seen) });
    const res = await runStage(a);
    if (c.expected.failure) assert.deepEqual(res.failure, { check: 'boom', outcome: c.expected.outcome, error: 'resolver exploded' });
    else assert.equal(res.failure, undefined);
    assert.equal(a.facts.get('check.boom.error'), 'resolver exploded');
    assert.equal(seen[0]?.['check.boom.error'], 'resolver exploded', 'rules can see the failure');
    assert.equal(a.facts.get('fine.x'), 'yes', 'the other check still ran');
  });
}

test('runStage: a reject failure wins over a tempfail failure in the same stage', async () => {
  const t: Check = check('t', ['data'], [], [], () => {
    throw new Error('t');
  });
  const r: Check = {
    ...check('r', ['data'], [], [], () => {
      throw new Error('r');
    }),
    onFailure: 'reject',
  };
  const res = await runStage(args([t, r]));
  assert.equal(res.failure?.check, 'r');
  assert.equal(res.failure?.outcome, 'reject');
});

test('runStage: a rejected promise counts like a throw', async () => {
  const c = check('async-boom', ['data'], [], [], async () => Promise.reject(new Error('later')));
  const res = await runStage(args([c]));
  assert.equal(res.failure?.error, 'later');
});

test('runStage: a check that never finishes fails within its timeoutMs, its signal aborted', async () => {
  let signal: AbortSignal | undefined;
  const hang: Check = {
    ...check('hang', ['data'], [], [], (i) => {
      signal = i.signal;
      return new Promise(() => undefined);
    }),
    timeoutMs: 100,
  };
  const started = performance.now();
  const a = args([hang]);
  const res = await runStage(a);
  const took = performance.now() - started;
  assert.ok(took >= 95 && took < 1000, `took ${took} ms`);
  assert.deepEqual(res.failure, { check: 'hang', outcome: 'tempfail', error: 'timed out after 100 ms' });
  assert.equal(a.facts.get('check.hang.error'), 'timed out after 100 ms');
  assert.equal(signal?.aborted, true);
});

test('runStage: defaultTimeoutMs applies to a check without its own', async () => {
  const hang = check('hang', ['data'], [], [], () => new Promise(() => undefined));
  const started = performance.now();
  const res = await runStage(args([hang], { defaultTimeoutMs: 80 }));
  assert.ok(performance.now() - started < 1000);
  assert.equal(res.failure?.error, 'timed out after 80 ms');
});

test('runStage: overrides win over check facts', async () => {
  const c = check('c', ['data'], ['spf.result'], [], setFact('spf.result', 'pass'));
  const seen: Array<Record<string, FactValue>> = [];
  const a = args([c], {
    policy: recordingPolicy(seen),
    overrides: new Map<string, FactValue>([
      ['spf.result', 'fail'],
      ['extra', 3],
    ]),
  });
  await runStage(a);
  assert.equal(seen[0]?.['spf.result'], 'fail');
  assert.equal(seen[0]?.['extra'], 3);
  assert.equal(a.facts.get('spf.result'), 'fail');
});

test('runStage: checks of other stages do not run; the policy gets the previous verdict', async () => {
  let ran = false;
  const other = check('other', ['mail'], [], [], () => {
    ran = true;
  });
  const prevSeen: Array<Verdict | undefined> = [];
  const previous = { ...emptyVerdict(), score: 7 };
  await runStage(args([other], { policy: recordingPolicy([], prevSeen), previous }));
  assert.equal(ran, false);
  assert.equal(prevSeen[0], previous);
});

test('runStage: the check input carries stage, recipient and connection', async () => {
  const inputs: CheckInput[] = [];
  const conn = detachedConnection('conn-1');
  const c = check('c', ['rcpt'], [], [], (i) => {
    inputs.push(i);
  });
  await runStage(args([c], { stage: 'rcpt', recipient: 'bob@example.test', connection: conn }));
  assert.equal(inputs[0]?.stage, 'rcpt');
  assert.equal(inputs[0]?.recipient, 'bob@example.test');
  assert.equal(inputs[0]?.connection, conn);
});

test('runStage: layers of checks that finish synchronously are decided at once (no promise); an async layer after them is awaited', async () => {
  const a1 = check('a1', ['data'], ['a.x'], [], setFact('a.x', 1));
  const b1 = check('b1', ['data'], ['b.x'], ['a.x'], (i, out) => out.facts.set('b.x', Number(i.facts.get('a.x')) + 1));
  const sync = runStage(args([a1, b1]));
  assert.ok(!(sync instanceof Promise), 'decided synchronously');
  const seen: Array<Record<string, FactValue>> = [];
  const c1 = check('c1', ['data'], ['c.x'], ['b.x'], async (i, out) => {
    await new Promise((r) => setTimeout(r, 5));
    out.facts.set('c.x', Number(i.facts.get('b.x')) + 1);
  });
  const d1 = check('d1', ['data'], ['d.x'], ['c.x'], (i, out) => out.facts.set('d.x', Number(i.facts.get('c.x')) + 1));
  const mixed = runStage(args([a1, b1, c1, d1], { policy: recordingPolicy(seen) }));
  assert.ok(mixed instanceof Promise);
  await mixed;
  assert.deepEqual([seen[0]?.['a.x'], seen[0]?.['b.x'], seen[0]?.['c.x'], seen[0]?.['d.x']], [1, 2, 3, 4]);
});

test("runStage: a check sees only its input (stage, connection, facts, recipient, message, signal), none of the run's bookkeeping", async () => {
  let keys: string[] = [];
  let signalOk = false;
  const c = check('peek', ['data'], [], [], (i) => {
    keys = Object.keys(i).sort();
    signalOk = i.signal instanceof AbortSignal;
  });
  await runStage(args([c]));
  assert.deepEqual(keys, ['connection', 'facts', 'message', 'recipient', 'stage']);
  assert.equal(signalOk, true);
});
