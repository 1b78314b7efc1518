// The engine's lean path (`RulesPolicy.assumeProduced`): rules that read only facts the gateway
// cannot set are decided once per load. It must give exactly the verdicts evaluating every rule
// gives, on the shipped rules, with every check disabled and with every check on, over random
// fact sets (with and without the facts the lean path assumes absent) and the rules corpus.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FactSet, type FactSpec, type FactValue } from '../../src/pipeline/facts.ts';
import { STAGES } from '../../src/pipeline/stages.ts';
import type { Verdict } from '../../src/pipeline/verdict.ts';
import { loadRules } from '../../src/rules/loader.ts';
import { createFactLookup } from '../../src/rules/fact-lookup.ts';
import { producedBy } from '../../src/rules/load-policy.ts';
import { knownFacts, knownSections } from '../../src/checks/catalogue.ts';
import { offlineChecks, readSidecar, runOffline, type Envelope } from '../../src/cli/offline-transaction.ts';
import type { RulesPolicy } from '../../src/rules/engine.ts';
import { offlineConfig } from '../helpers/offline-config.ts';

const root = join(import.meta.dirname, '..', '..');
const load = () => loadRules(join(root, 'rules'), knownFacts(), knownSections());
const lookup = createFactLookup(knownFacts());

const modes: Array<{ desc: string; produced: (f: string) => boolean }> = [
  { desc: 'every check disabled', produced: producedBy([]) },
  { desc: 'every check on', produced: (f) => f.startsWith('header.') || lookup.get(f) !== undefined },
];

/** A small deterministic PRNG, so a failure can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function valueFor(spec: FactSpec, r: () => number): FactValue {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
  switch (spec.type) {
    case 'string':
      return pick([...(spec.values ?? []), '', 'pass', 'fail', 'example.test', 'spam@example.net', 'x']);
    case 'number':
      return pick([0, 1, 3, 5, 12, 100, 60000]);
    case 'boolean':
      return r() < 0.5;
    case 'ip':
      return pick(['192.0.2.1', '127.0.0.2', '10.0.0.1', '::1', '2001:db8::1']);
    case 'string[]':
      return pick([[], ['a@example.test'], ['x.exe', 'b@example.net']]);
    case 'records': {
      const rec: Record<string, string> = {};
      for (const f of spec.fields ?? []) rec[f] = pick(['pass', 'fail', 'example.test', 'Subject', 'x']);
      return pick([[], [rec]]);
    }
  }
}

test('lean path: the same verdicts as evaluating every rule, on random facts', () => {
  const full = load().policy;
  const reads = new Set<string>(['message.headers']);
  for (const r of full.rules) for (const f of r.facts) reads.add(f);
  const names = [...reads].filter((n) => !n.startsWith('header.'));
  for (const mode of modes) {
    const lean = load().policy as RulesPolicy;
    lean.assumeProduced(mode.produced);
    const r = rng(16);
    for (let i = 0; i < 1500; i++) {
      const facts = new FactSet();
      // Half the runs set only facts the mode produces (the lean path proper), the rest any.
      const only = i % 2 === 0;
      for (const n of names) {
        if (only && !mode.produced(n)) continue;
        const spec = lookup.get(n);
        if (spec && r() < 0.35) facts.set(n, valueFor(spec, r));
      }
      if (r() < 0.3)
        facts.set('message.headers', [
          { name: 'Subject', value: 'hello' },
          { name: 'X-Mailer', value: 'x' },
        ]);
      let a: Verdict | undefined;
      let b: Verdict | undefined;
      for (const stage of STAGES) {
        a = full.evaluate(stage, facts, a);
        b = lean.evaluate(stage, facts, b);
        assert.deepEqual(b, a, `${mode.desc}, run ${i}, ${stage}: ${JSON.stringify(facts.toJSON())}`);
      }
    }
  }
});

test('lean path: with every check disabled, most rules are set aside and none of them can fire', () => {
  const lean = load().policy as RulesPolicy;
  const total = STAGES.reduce((n, s) => n + lean.rulesAt(s).length, 0);
  lean.assumeProduced(producedBy([]));
  // Evaluating over the facts of a plain relay transaction fires what the full engine fires.
  const facts = new FactSet([
    ['client.ip', '192.0.2.1'],
    ['helo.name', 'client.example.net'],
    ['mail.from', 'a@example.net'],
    ['rcpt.addresses', ['b@example.test']],
  ]);
  const full = load().policy;
  let tested = 0;
  for (const r of lean.rules) {
    const t = r.condition.test;
    r.condition.test = (f) => {
      tested++;
      return t(f);
    };
  }
  let a: Verdict | undefined;
  let b: Verdict | undefined;
  for (const stage of STAGES) {
    a = full.evaluate(stage, facts, a);
    b = lean.evaluate(stage, facts, b);
    assert.deepEqual(b, a);
  }
  assert.ok(total > 20, `shipped rules: ${total}`);
  assert.ok(tested < total / 2, `${tested} of ${total} conditions evaluated`);
});

const corpus = join(root, 'test/fixtures/rules/corpus');
const config = offlineConfig;

test('lean path: the rules corpus gives the same verdicts', async () => {
  for (const mode of modes) {
    const full = load();
    const lean = load();
    lean.policy.assumeProduced(mode.produced);
    for (const name of readdirSync(corpus).filter((n) => n.endsWith('.eml'))) {
      const path = join(corpus, name);
      const env = readSidecar(path) as Envelope;
      const run = async (loaded: typeof full) => {
        const { checks, close } = await offlineChecks(config, loaded, false);
        return runOffline({ policy: loaded.policy, checks, config, envelope: env, message: readFileSync(path) }).finally(close);
      };
      const [a, b] = [await run(full), await run(lean)];
      assert.deepEqual(b.verdict, a.verdict, `${mode.desc}: ${name}`);
      assert.equal(b.action, a.action);
    }
  }
});
