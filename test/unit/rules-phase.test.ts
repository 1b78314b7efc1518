// Phase inference: a rule fires at the latest stage among the facts it reads (conditions and
// templates), never earlier than an explicit `stage:`, and the engine evaluates at each stage
// exactly the rules of that stage.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FactSet } from '../../src/pipeline/facts.ts';
import type { Stage } from '../../src/pipeline/stages.ts';
import { loadRules } from '../../src/rules/loader.ts';
import { knownFacts } from '../../src/checks/catalogue.ts';
import { SourceErrors } from '../../src/config/yaml-source.ts';
import { makeRulesDir } from '../helpers/rules-dir.ts';

const facts = knownFacts();

interface Case {
  desc: string;
  rule: string;
  expected: Stage;
}

const cases: Case[] = [
  { desc: 'client IP → connect', rule: 'when: { client.ip: { cidr: 192.0.2.0/24 } }', expected: 'connect' },
  { desc: 'DNSBL score → connect', rule: 'when: { dnsbl.score: { gte: 3 } }', expected: 'connect' },
  { desc: 'HELO → helo', rule: 'when: { helo.name: { glob: "*.example" } }', expected: 'helo' },
  { desc: 'IP and HELO → helo', rule: 'when: { client.ip: 192.0.2.1, helo.fqdn: false }', expected: 'helo' },
  { desc: 'sender → mail', rule: 'when: { mail.from_domain: example.com }', expected: 'mail' },
  { desc: 'SPF → mail', rule: 'when: { spf.result: fail }', expected: 'mail' },
  { desc: 'TLS → mail', rule: 'when: { tls: false }', expected: 'mail' },
  { desc: 'recipient → rcpt', rule: 'when: { rcpt.address: { glob: "trap-*@*" } }', expected: 'rcpt' },
  { desc: 'sender and recipient → rcpt', rule: 'when: { mail.null_sender: true, rcpt.domain: example.test }', expected: 'rcpt' },
  { desc: 'recipient count → data', rule: 'when: { rcpt.count: { gt: 50 } }', expected: 'data' },
  { desc: 'DMARC → data', rule: 'when: { dmarc.result: fail }', expected: 'data' },
  { desc: 'header → data', rule: 'when: { header.X-Mailer: { exists: true } }', expected: 'data' },
  { desc: 'latest fact inside any/not counts', rule: 'when: { any: [ { client.ip: 192.0.2.1 }, { not: { message.subject: x } } ] }', expected: 'data' },
  {
    desc: 'a fact read only by the reply text counts',
    rule: 'when: { client.ip: 192.0.2.1 }\n    action: reject\n    reply: { text: "no mail from {mail.from}" }',
    expected: 'mail',
  },
  { desc: 'explicit later stage', rule: 'when: { client.ip: 192.0.2.1 }\n    stage: data', expected: 'data' },
];

for (const c of cases) {
  test(`phase: ${c.desc}`, () => {
    const score = c.rule.includes('action:') ? '' : '\n    score: 1';
    const dir = makeRulesDir({ 'r.yaml': `rules:\n  - name: R\n    description: d\n    ${c.rule}${score}\n` });
    const loaded = loadRules(dir, facts);
    assert.equal(loaded.rules[0]?.stage, c.expected);
  });
}

test('phase: a stage earlier than the facts allow is an error naming the fact', () => {
  const dir = makeRulesDir({ 'r.yaml': 'rules:\n  - name: R\n    description: d\n    when: { dmarc.result: fail }\n    stage: mail\n    score: 1\n' });
  assert.throws(
    () => loadRules(dir, facts),
    (e: unknown) =>
      e instanceof SourceErrors && /r.yaml:5: rules\[0\].stage: rule R reads dmarc.result, known only at data; it cannot fire at mail/.test(e.message),
  );
});

test('phase: a data rule cannot read the per-recipient facts', () => {
  const dir = makeRulesDir({ 'r.yaml': 'rules:\n  - name: R\n    description: d\n    when: { rcpt.address: a@b, message.size: { gt: 1 } }\n    score: 1\n' });
  assert.throws(
    () => loadRules(dir, facts),
    (e: unknown) => e instanceof SourceErrors && /r.yaml:4: rules\[0\].when: rule R fires at data .* reads rcpt.address.*use rcpt.addresses/.test(e.message),
  );
});

test('phase: each stage evaluates exactly its own rules', () => {
  const dir = makeRulesDir({
    'r.yaml': `rules:
  - { name: AT_CONNECT, description: d, when: { client.ip: { cidr: 0.0.0.0/0 } }, score: 1 }
  - { name: AT_HELO, description: d, when: { helo.name: { exists: true } }, score: 1 }
  - { name: AT_MAIL, description: d, when: { mail.from: { exists: true } }, score: 1 }
  - { name: AT_RCPT, description: d, when: { rcpt.address: { exists: true } }, score: 1 }
  - { name: AT_DATA, description: d, when: { message.size: { gte: 0 } }, score: 1 }
`,
  });
  const { policy } = loadRules(dir, facts);
  // Every fact is present from the start: only the stage decides which rule runs.
  const all = new FactSet([
    ['client.ip', '192.0.2.1'],
    ['helo.name', 'h.example'],
    ['mail.from', 'a@b.example'],
    ['rcpt.address', 'c@d.example'],
    ['message.size', 10],
  ]);
  let v = policy.evaluate('connect', all);
  assert.deepEqual(
    v.fired.map((f) => f.rule),
    ['AT_CONNECT'],
  );
  for (const [stage, rule] of [
    ['helo', 'AT_HELO'],
    ['mail', 'AT_MAIL'],
    ['rcpt', 'AT_RCPT'],
    ['data', 'AT_DATA'],
  ] as const) {
    const before = v.fired.length;
    v = policy.evaluate(stage, all, v);
    assert.deepEqual(
      v.fired.slice(before).map((f) => [f.rule, f.stage]),
      [[rule, stage]],
    );
  }
  assert.equal(v.score, 5);
});
