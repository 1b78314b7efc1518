// The loader: errors name file, line and key and say what was expected; local.d overrides;
// sections other modules register (merging across files, located errors, conditions).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { z } from 'zod';
import { FactSet } from '../../src/pipeline/facts.ts';
import { getSection, loadRules, type AnySectionSpec, type SectionSpec } from '../../src/rules/loader.ts';
import { knownFacts } from '../../src/checks/catalogue.ts';
import type { CompiledCondition } from '../../src/rules/condition.ts';
import { SourceErrors } from '../../src/config/yaml-source.ts';
import { makeRulesDir } from '../helpers/rules-dir.ts';

const facts = knownFacts();

function errorsOf(files: Record<string, string>, sections: AnySectionSpec[] = []): string[] {
  const dir = makeRulesDir(files);
  try {
    loadRules(dir, facts, sections);
  } catch (err) {
    assert.ok(err instanceof SourceErrors, String(err));
    return err.problems.map((p) => p.message.replace(`${dir}/`, ''));
  }
  assert.fail('expected the rules to be refused');
}

const ok = (extra = '') => `rules:\n  - name: A\n    description: d\n    when: { client.ip: 192.0.2.1 }\n    score: 1\n${extra}`;

interface Case {
  desc: string;
  files: Record<string, string>;
  expected: string[];
}

const cases: Case[] = [
  {
    desc: 'YAML syntax error',
    files: { '10-a.yaml': '# comment\nrules:\n  - name: A\n    description: "unclosed\n' },
    expected: ['10-a.yaml:4: YAML syntax error: Missing closing "quote'],
  },
  {
    desc: 'misspelt key, with the keys allowed',
    files: { '10-a.yaml': 'rules:\n  - name: A\n    description: d\n    when: { tls: false }\n    scroe: 3\n' },
    expected: [
      '10-a.yaml:5: rules[0].scroe: unknown key "scroe" (expected one of: name, description, when, score, action, reply, add_header, tag_subject, stage, priority, enabled)',
    ],
  },
  {
    desc: 'wrong type',
    files: { '10-a.yaml': 'rules:\n  - name: A\n    description: d\n    when: { tls: false }\n    score: high\n' },
    expected: ['10-a.yaml:5: rules[0].score: expected number, received string'],
  },
  {
    desc: 'unknown action',
    files: { '10-a.yaml': 'rules:\n  - name: A\n    description: d\n    when: { tls: false }\n    action: bounce\n' },
    expected: ['10-a.yaml:5: rules[0].action: expected one of accept, reject, tempfail, quarantine, discard'],
  },
  {
    desc: 'missing description, when and effect',
    files: { '10-a.yaml': 'rules:\n  - name: A\n' },
    expected: [
      '10-a.yaml:2: rules[0].description: rule A needs a description (it is shown in rules test and the log)',
      '10-a.yaml:2: rules[0].when: rule A needs a "when" condition',
      '10-a.yaml:2: rules[0].name: rule A has no effect: give it a score, an action, add_header or tag_subject',
    ],
  },
  {
    desc: 'bad rule name',
    files: { '10-a.yaml': 'rules:\n  - name: "my rule"\n    description: d\n    when: { tls: false }\n    score: 1\n' },
    expected: ['10-a.yaml:2: rules[0].name: expected a rule name: a letter, then letters, digits or _ (at most 64)'],
  },
  {
    desc: 'unknown fact deep in a condition, with the line of the fact',
    files: { '10-a.yaml': 'rules:\n  - name: A\n    description: d\n    when:\n      any:\n        - tls: false\n        - mail.frm: x@y\n    score: 1\n' },
    expected: ['10-a.yaml:7: rules[0].when.any[1].mail.frm: unknown fact "mail.frm"; did you mean "mail.from"? (or a keyword: all, any, not)'],
  },
  {
    desc: 'reply with a code of the wrong class',
    files: {
      '10-a.yaml': 'rules:\n  - name: A\n    description: d\n    when: { tls: false }\n    action: reject\n    reply: { code: 451, enhanced: 4.7.1 }\n',
    },
    expected: [
      '10-a.yaml:6: rules[0].reply.code: reject needs a 5xx code, got 451',
      '10-a.yaml:6: rules[0].reply.enhanced: reject needs an enhanced code starting with 5., got 4.7.1',
    ],
  },
  {
    desc: 'reply without reject or tempfail',
    files: { '10-a.yaml': 'rules:\n  - name: A\n    description: d\n    when: { tls: false }\n    score: 1\n    reply: { text: hi }\n' },
    expected: ['10-a.yaml:6: rules[0].reply: a reply goes with action reject or tempfail'],
  },
  {
    desc: 'unknown fact in a reply template',
    files: { '10-a.yaml': 'rules:\n  - name: A\n    description: d\n    when: { tls: false }\n    action: reject\n    reply: { text: "bye {client.ipp}" }\n' },
    expected: ['10-a.yaml:6: rules[0].reply.text: unknown fact "{client.ipp}" in "bye {client.ipp}"'],
  },
  {
    desc: 'duplicate rule name outside local.d',
    files: { '10-a.yaml': ok(), '20-b.yaml': ok() },
    expected: ['20-b.yaml:2: rules[0].name: rule A is already defined at ' /* dir-specific path follows */],
  },
  {
    desc: 'unknown top-level section',
    files: { '10-a.yaml': 'rulez: []\n' },
    expected: ['10-a.yaml:1: rulez: unknown section "rulez" (expected one of: rules, actions, settings)'],
  },
  {
    desc: 'bad threshold',
    files: { '00-a.yaml': 'actions:\n  reject: lots\n' },
    expected: ['00-a.yaml:2: actions.reject: expected a score (number), null or false (off), or {score, reply}'],
  },
  {
    desc: 'rules is not a list',
    files: { '10-a.yaml': 'rules:\n  name: A\n' },
    expected: ['10-a.yaml:2: rules: expected a list of rules (each item starting with "- name: ...")'],
  },
  {
    desc: 'problems in several files are all reported, in file order',
    files: { '10-a.yaml': 'rules:\n  - { name: A, description: d, when: { tls: 1 }, score: 1 }\n', '20-b.yaml': 'actions: { quarantine: x }\n' },
    expected: [
      '10-a.yaml:2: rules[0].when.tls: tls is true or false; got 1',
      '20-b.yaml:1: actions.quarantine: expected a score (number), null or false (off), or {score, reply}',
    ],
  },
];

for (const c of cases) {
  test(`loader error: ${c.desc}`, () => {
    const got = errorsOf(c.files);
    assert.equal(got.length, c.expected.length, got.join('\n'));
    c.expected.forEach((e, i) => assert.ok(got[i]?.startsWith(e), `expected "${got[i]}" to start with "${e}"`));
  });
}

test('loader: local.d patches a shipped rule key by key, disables one, adds one', () => {
  const dir = makeRulesDir({
    '10-a.yaml': `rules:
  - name: A
    description: shipped A
    when: { client.ip: 192.0.2.1 }
    score: 1
  - name: B
    description: shipped B
    when: { tls: false }
    score: 2
`,
    'local.d/50-mine.yaml': `rules:
  - name: A
    score: 4
  - name: B
    enabled: false
  - name: C
    description: mine
    when: { mail.from_domain: spam.example }
    action: reject
`,
  });
  const loaded = loadRules(dir, facts);
  assert.deepEqual(
    loaded.rules.map((r) => [r.name, r.score, r.description]),
    [
      ['A', 4, 'shipped A'],
      ['C', 0, 'mine'],
    ],
  );
  assert.deepEqual(loaded.disabled, ['B']);
  assert.equal(loaded.rules[0]?.source, '10-a.yaml:2, local.d/50-mine.yaml:2');
});

test('loader: local.d can replace a condition and change thresholds key by key', () => {
  const dir = makeRulesDir({
    '00-actions.yaml': 'actions: { reject: 15, quarantine: 8 }\n',
    '10-a.yaml': ok(),
    'local.d/a.yaml': 'actions: { quarantine: 6 }\nrules:\n  - name: A\n    when: { client.ip: 198.51.100.1 }\n',
  });
  const loaded = loadRules(dir, facts);
  assert.deepEqual(
    loaded.policy.thresholds.actions.map((t) => [t.action, t.score]),
    [
      ['reject', 15],
      ['quarantine', 6],
    ],
  );
  assert.equal(loaded.rules[0]?.condition.test(new FactSet([['client.ip', '198.51.100.1']])), true);
  assert.equal(loaded.rules[0]?.condition.test(new FactSet([['client.ip', '192.0.2.1']])), false);
});

test('loader: an incomplete new rule in local.d is reported there', () => {
  const got = errorsOf({ '10-a.yaml': ok(), 'local.d/x.yaml': 'rules:\n  - name: NEW\n    score: 1\n' });
  assert.deepEqual(got, [
    'local.d/x.yaml:2: rules[0].description: rule NEW needs a description (it is shown in rules test and the log)',
    'local.d/x.yaml:2: rules[0].when: rule NEW needs a "when" condition',
  ]);
});

test('loader: files load in name order, YAML only, empty files are fine', () => {
  const dir = makeRulesDir({
    '20-b.yaml': 'rules:\n  - { name: B, description: d, when: { tls: true }, score: 1 }\n',
    '10-a.yml': 'rules:\n  - { name: A, description: d, when: { tls: true }, score: 1 }\n',
    '05-empty.yaml': '# nothing yet\n',
    'notes.txt': 'not rules',
    '.hidden.yaml': 'garbage: [',
  });
  const loaded = loadRules(dir, facts);
  assert.deepEqual(
    loaded.rules.map((r) => r.name),
    ['A', 'B'],
  );
  assert.deepEqual(
    loaded.files.map((f) => f.slice(dir.length + 1)),
    ['05-empty.yaml', '10-a.yml', '20-b.yaml'],
  );
});

test('loader: a missing directory is an error', () => {
  assert.throws(
    () => loadRules('/nonexistent/rules', facts),
    (e: unknown) => e instanceof SourceErrors && /cannot read rules directory/.test(e.message),
  );
});

// A section another module registers: a list of named entries with an optional condition.
interface Limit {
  name: string;
  when?: unknown;
}
const limitsSpec: SectionSpec<Limit[], Array<{ name: string; when?: CompiledCondition }>> = {
  key: 'limits',
  schema: z.array(z.strictObject({ name: z.string(), when: z.unknown().optional() })),
  compile(value, ctx) {
    return value.map((l, i) => {
      if (l.when === undefined) return { name: l.name };
      const when = ctx.compileCondition(l.when, [i, 'when']);
      if (when && when.stage === 'data') ctx.error([i, 'when'], `limit ${l.name} cannot wait for data`);
      return when ? { name: l.name, when } : { name: l.name };
    });
  },
};

test('sections: lists from several files are concatenated and compiled', () => {
  const dir = makeRulesDir({
    '50-a.yaml': 'limits:\n  - name: one\n    when: { client.ip: { cidr: 10.0.0.0/8 } }\n',
    'local.d/50-b.yaml': 'limits:\n  - name: two\n',
  });
  const loaded = loadRules(dir, facts, [limitsSpec]);
  const limits = getSection(loaded, limitsSpec);
  assert.deepEqual(
    limits?.map((l) => l.name),
    ['one', 'two'],
  );
  assert.equal(limits?.[0]?.when?.test(new FactSet([['client.ip', '10.1.2.3']])), true);
});

test('sections: errors point into the file the entry came from', () => {
  const files = { '50-a.yaml': 'limits:\n  - name: one\n' };
  assert.deepEqual(
    errorsOf(
      {
        ...files,
        'local.d/50-b.yaml': '# mine\nlimits:\n  - name: two\n    when: { mesage.size: 1 }\n  - name: three\n    when: { message.size: { gt: 1 } }\n',
      },
      [limitsSpec],
    ),
    [
      'local.d/50-b.yaml:4: limits[0].when.mesage.size: unknown fact "mesage.size"; did you mean "message.size"? (or a keyword: all, any, not)',
      'local.d/50-b.yaml:6: limits[1].when: limit three cannot wait for data',
    ],
  );
  // Schema problems stop the section before its conditions are compiled.
  assert.deepEqual(errorsOf({ ...files, 'local.d/50-b.yaml': 'limits:\n  - nam: four\n' }, [limitsSpec]), [
    'local.d/50-b.yaml:2: limits[0].name: required (expected string)',
    'local.d/50-b.yaml:2: limits[0].nam: unknown key "nam"',
  ]);
});

test('sections: maps merge key by key across files; the section is absent when no file has it', () => {
  const spec: SectionSpec<{ enabled: boolean; level: number }> = {
    key: 'thing',
    schema: z.strictObject({ enabled: z.boolean().default(false), level: z.number().default(1) }),
  };
  const dir = makeRulesDir({ '10-a.yaml': 'thing: { enabled: false, level: 3 }\n', 'local.d/a.yaml': 'thing: { enabled: true }\n' });
  assert.deepEqual(getSection(loadRules(dir, facts, [spec]), spec), { enabled: true, level: 3 });
  assert.equal(getSection(loadRules(makeRulesDir({ 'a.yaml': ok() }), facts, [spec]), spec), undefined);
});

test('the shipped rules directory is valid against every registered fact and section', async () => {
  const { knownSections } = await import('../../src/checks/catalogue.ts');
  const loaded = loadRules(join(import.meta.dirname, '..', '..', 'rules'), facts, knownSections());
  assert.ok(loaded.rules.length > 20);
  const names = loaded.rules.map((r) => r.name);
  for (const r of ['DMARC_REJECT', 'DMARC_QUARANTINE', 'DMARC_NONE_FAIL', 'DMARC_TEMPERROR', 'CLIENT_BLOCKED', 'PREGREET']) assert.ok(names.includes(r), r);
  // DNSBLs are off by default.
  assert.equal((loaded.sections.get('dnsbl') as { enabled: boolean }).enabled, false);
});
