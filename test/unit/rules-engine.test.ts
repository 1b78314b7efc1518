// The engine's decisions: thresholds, direct actions and their precedence, allow-listing,
// per-recipient evaluation the way the SMTP session calls it, replies and added headers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FactSet, type FactValue } from '../../src/pipeline/facts.ts';
import { loadRules } from '../../src/rules/loader.ts';
import { knownFacts } from '../../src/checks/catalogue.ts';
import { runOffline } from '../../src/cli/offline-transaction.ts';
import type { Policy } from '../../src/pipeline/verdict.ts';
import { explainLine, statusHeaderValue } from '../../src/rules/explain.ts';
import type { Verdict } from '../../src/pipeline/verdict.ts';
import { makeRulesDir } from '../helpers/rules-dir.ts';

const facts = knownFacts();

function policyOf(
  rules: string,
  actions = 'actions: { reject: 10, quarantine: 5, tag: { score: 3, add_header: { X-Spam: "yes {score}" }, tag_subject: "[SPAM]" } }\n',
) {
  return loadRules(makeRulesDir({ '00-actions.yaml': actions, '10-rules.yaml': `rules:\n${rules}` }), facts).policy;
}

/** One transaction through the core with these facts (nothing computed, nothing sent). */
async function replay(policy: Policy, input: { facts: FactSet; recipients?: string[] }) {
  const f = input.facts.toJSON();
  const str = (k: string) => (typeof f[k] === 'string' ? (f[k] as string) : undefined);
  const to = input.recipients ?? (Array.isArray(f['rcpt.addresses']) ? (f['rcpt.addresses'] as string[]) : []);
  return runOffline({
    policy,
    checks: [],
    envelope: {
      facts: f,
      ip: str('client.ip') ?? '192.0.2.1',
      from: str('mail.from') ?? '',
      to,
      ...(str('helo.name') ? { helo: str('helo.name') as string } : {}),
    },
    message: Buffer.from('Subject: t\r\n\r\nbody\r\n'),
  });
}

function run(rules: string, f: Record<string, FactValue>, recipients?: string[]) {
  const policy = policyOf(rules);
  const input = recipients ? { facts: new FactSet(Object.entries(f)), recipients } : { facts: new FactSet(Object.entries(f)) };
  return replay(policy, input);
}

const msg: Record<string, FactValue> = {
  'client.ip': '192.0.2.1',
  'helo.name': 'mail.example.org',
  'mail.from': 'a@example.org',
  'mail.from_domain': 'example.org',
  'rcpt.addresses': ['bob@example.test'],
  'message.subject': 'hello',
  'message.size': 100,
};

interface Case {
  desc: string;
  rules: string;
  facts?: Record<string, FactValue>;
  action: string;
  stage: string;
  score?: number;
  fired?: string[];
}

const cases: Case[] = [
  { desc: 'no rule fires: accept', rules: '  - { name: X, description: d, when: { tls: true }, score: 50 }\n', action: 'accept', stage: 'data', score: 0 },
  {
    desc: 'score below every threshold: accept',
    rules: '  - { name: A, description: d, when: { mail.from_domain: example.org }, score: 2 }\n',
    action: 'accept',
    stage: 'data',
    score: 2,
  },
  {
    desc: 'scores add up across stages to the quarantine threshold',
    rules:
      '  - { name: A, description: d, when: { client.ip: 192.0.2.1 }, score: 3 }\n  - { name: B, description: d, when: { message.subject: hello }, score: 3 }\n',
    action: 'quarantine',
    stage: 'data',
    score: 6,
  },
  {
    desc: 'highest threshold reached wins',
    rules: '  - { name: A, description: d, when: { client.ip: 192.0.2.1 }, score: 12 }\n',
    action: 'reject',
    stage: 'data',
    score: 12,
  },
  {
    desc: 'negative scores lower the total',
    rules:
      '  - { name: A, description: d, when: { client.ip: 192.0.2.1 }, score: 12 }\n  - { name: W, description: d, when: { helo.name: { in_domain: example.org } }, score: -8 }\n',
    action: 'accept',
    stage: 'data',
    score: 4,
  },
  {
    desc: 'a direct reject at connect stops there',
    rules: '  - { name: BL, description: d, when: { client.ip: 192.0.2.1 }, action: reject }\n',
    action: 'reject',
    stage: 'connect',
    fired: ['BL'],
  },
  {
    desc: 'a direct reject at mail',
    rules: '  - { name: BS, description: d, when: { mail.from_domain: example.org }, action: reject }\n',
    action: 'reject',
    stage: 'mail',
  },
  {
    desc: 'a direct action beats the score',
    rules: '  - { name: Q, description: d, when: { message.subject: hello }, action: quarantine, score: -100 }\n',
    action: 'quarantine',
    stage: 'data',
  },
  {
    desc: 'accept (allow list) wins over reject at the same stage',
    rules:
      '  - { name: BLOCK, description: d, when: { client.ip: 192.0.2.1 }, action: reject }\n  - { name: ALLOW, description: d, when: { client.ip: { cidr: 192.0.2.0/24 } }, action: accept }\n',
    action: 'accept',
    stage: 'data',
    fired: ['BLOCK', 'ALLOW'],
  },
  {
    desc: 'priority beats the action order',
    rules:
      '  - { name: BLOCK, description: d, when: { client.ip: 192.0.2.1 }, action: reject, priority: 10 }\n  - { name: ALLOW, description: d, when: { client.ip: { cidr: 192.0.2.0/24 } }, action: accept }\n',
    action: 'reject',
    stage: 'connect',
  },
  {
    desc: 'accept at connect skips every later rule',
    rules:
      '  - { name: ALLOW, description: d, when: { client.ip: 192.0.2.1 }, action: accept }\n  - { name: LATER, description: d, when: { message.subject: hello }, action: reject }\n',
    action: 'accept',
    stage: 'data',
    fired: ['ALLOW'],
  },
  {
    desc: 'quarantine decided at mail still applies at data',
    rules: '  - { name: Q, description: d, when: { mail.from_domain: example.org }, action: quarantine }\n',
    action: 'quarantine',
    stage: 'data',
  },
  {
    desc: 'a later reject overrides an earlier quarantine',
    rules:
      '  - { name: Q, description: d, when: { mail.from_domain: example.org }, action: quarantine }\n  - { name: R, description: d, when: { message.subject: hello }, action: reject }\n',
    action: 'reject',
    stage: 'data',
  },
];

for (const c of cases) {
  test(`engine: ${c.desc}`, async () => {
    const r = await run(c.rules, { ...msg, ...(c.facts ?? {}) });
    assert.equal(r.action, c.action);
    assert.equal(r.stage, c.stage);
    if (c.score !== undefined) assert.equal(r.verdict.score, c.score);
    if (c.fired)
      assert.deepEqual(
        r.verdict.fired.map((f) => f.rule),
        c.fired,
      );
  });
}

test('engine: default replies per stage (554 at connect, 550 later, 451 for tempfail)', async () => {
  const connect = await run('  - { name: BL, description: d, when: { client.ip: 192.0.2.1 }, action: reject }\n', msg);
  assert.deepEqual([connect.reply?.code, connect.reply?.enhanced], [554, '5.7.1']);
  const mail = await run('  - { name: BS, description: d, when: { mail.from: { exists: true } }, action: reject }\n', msg);
  assert.deepEqual([mail.reply?.code, mail.reply?.text], [550, 'Sender rejected by policy']);
  const temp = await run('  - { name: T, description: d, when: { message.size: { gt: 1 } }, action: tempfail }\n', msg);
  assert.deepEqual([temp.reply?.code, temp.reply?.enhanced], [451, '4.7.1']);
});

test('engine: reply templates interpolate facts and the score, and cannot inject CR/LF', async () => {
  const rules =
    '  - { name: S, description: d, when: { helo.name: { exists: true } }, score: 2.5 }\n  - name: T\n    description: d\n    when: { mail.from: { exists: true } }\n    action: tempfail\n    reply: { code: 421, enhanced: 4.7.0, text: "slow down {helo.name} (score {score}); {{literal}}" }\n';
  const r = await run(rules, { ...msg, 'helo.name': 'evil\r\n250 OK\u00e9' });
  assert.equal(r.reply?.code, 421);
  assert.equal(r.reply?.text, 'slow down evil 250 OK? (score 2.5); {literal}');
});

test('engine: tag threshold adds headers and the subject tag to delivered mail; status header lists the rules', async () => {
  const r = await run('  - { name: A, description: d, when: { client.ip: 192.0.2.1 }, score: 3.5 }\n', msg);
  assert.equal(r.action, 'accept');
  assert.equal(r.verdict.tagSubject, '[SPAM]');
  assert.deepEqual(r.verdict.addHeaders, [
    { name: 'X-Spam', value: 'yes 3.5' },
    { name: 'X-Mailgate-Status', value: 'accept score=3.5 required=10 tests=A(+3.5)' },
  ]);
  assert.equal(statusHeaderValue(r.verdict), 'accept score=3.5 required=10 tests=A(+3.5)');
  assert.match(explainLine(r.verdict), /^accept score=3.5 required=10 decided_by=default rules=A\(\+3.5\)@connect$/);
});

test('engine: rule add_header and tag_subject', async () => {
  const r = await run(
    '  - { name: H, description: d, when: { message.subject: hello }, add_header: { X-Note: "from {mail.from_domain}" }, tag_subject: "[EXT]" }\n',
    msg,
  );
  assert.equal(r.verdict.tagSubject, '[EXT]');
  assert.deepEqual(r.verdict.addHeaders[0], { name: 'X-Note', value: 'from example.org' });
});

test('engine: recipients are judged one by one; a refused one adds nothing', async () => {
  const rules = `  - { name: TRAP, description: d, when: { rcpt.address: { glob: "trap@*" } }, action: reject }
  - { name: EXT, description: d, when: { rcpt.domain: example.test }, score: 2 }
`;
  const r = await run(rules, msg, ['trap@example.test', 'bob@example.test', 'carol@example.test']);
  assert.deepEqual(
    r.recipients.map((x) => x.action),
    ['reject', 'continue', 'continue'],
  );
  assert.equal(r.action, 'accept');
  // EXT fired for two accepted recipients but counts once.
  assert.deepEqual(
    r.verdict.fired.map((f) => f.rule),
    ['EXT'],
  );
  assert.equal(r.verdict.score, 2);
});

test('engine: a per-recipient accept (postmaster) does not allow-list the whole message', async () => {
  const rules = `  - { name: POSTMASTER, description: d, when: { rcpt.address: { glob: "postmaster@*" } }, action: accept }
  - { name: BAD, description: d, when: { message.subject: hello }, action: reject }
`;
  assert.equal((await run(rules, msg, ['postmaster@example.test', 'bob@example.test'])).action, 'reject');
  assert.equal((await run(rules, msg, ['postmaster@example.test'])).action, 'accept');
});

test('engine: evaluating helo again (second EHLO) replaces the first one', async () => {
  const policy = policyOf('  - { name: NOT_FQDN, description: d, when: { helo.name: localhost }, score: 2 }\n');
  const f = new FactSet([
    ['client.ip', '192.0.2.1'],
    ['helo.name', 'localhost'],
  ]);
  let v: Verdict = policy.evaluate('connect', f);
  v = policy.evaluate('helo', f, v);
  v = policy.evaluate('helo', f, v);
  assert.equal(v.score, 2);
  f.set('helo.name', 'mail.example.org');
  v = policy.evaluate('helo', f, v);
  assert.equal(v.score, 0);
  assert.deepEqual(v.fired, []);
});

test('engine: a new EHLO after a refused one is judged afresh; MAIL after a refused HELO stays refused', async () => {
  const policy = policyOf('  - { name: BAD_HELO, description: d, when: { helo.name: localhost }, action: reject }\n');
  const f = new FactSet([
    ['client.ip', '192.0.2.1'],
    ['helo.name', 'localhost'],
  ]);
  const refused = policy.evaluate('helo', f, policy.evaluate('connect', f));
  assert.equal(refused.action, 'reject');
  assert.equal(policy.evaluate('mail', f, refused).action, 'reject');
  f.set('helo.name', 'mail.example.org');
  const again = policy.evaluate('helo', f, refused);
  assert.equal(again.action, 'continue');
  assert.deepEqual(again.fired, []);
});

test('engine: readsFact tells the pipeline which costly facts are needed', async () => {
  const policy = policyOf('  - { name: B, description: d, when: { message.body_text: { regex: x } }, score: 1 }\n');
  assert.equal(policy.readsFact('message.body_text'), true);
  assert.equal(policy.readsFact('message.body_html'), false);
});

test('engine: status header off, and a threshold reply with the score', async () => {
  const dir = makeRulesDir({
    'a.yaml':
      'settings: { status_header: false }\nactions: { reject: { score: 5, reply: { text: "spam score {score}" } } }\nrules:\n  - { name: A, description: d, when: { client.ip: 192.0.2.1 }, score: 7 }\n',
  });
  const policy = loadRules(dir, facts).policy;
  const r = await replay(policy, { facts: new FactSet(Object.entries(msg)) });
  assert.equal(r.action, 'reject');
  assert.deepEqual([r.reply?.code, r.reply?.enhanced, r.reply?.text], [550, '5.7.1', 'spam score 7']);
  assert.deepEqual(r.verdict.threshold, { action: 'reject', score: 5 });
  const ok = await replay(loadRules(makeRulesDir({ 'a.yaml': 'settings: { status_header: false }\n' }), facts).policy, {
    facts: new FactSet(Object.entries(msg)),
  });
  assert.deepEqual(ok.verdict.addHeaders, []);
});
