// Hot reload: rules and list files reload on change (debounced) and on request (SIGHUP); a broken
// edit keeps the previous rules in force, counts the error and says why.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { FactSet } from '../../src/pipeline/facts.ts';
import { LiveRules } from '../../src/rules/watcher.ts';
import { knownFacts } from '../../src/checks/catalogue.ts';
import { metrics } from '../../src/metrics/registry.ts';
import { SourceErrors } from '../../src/config/yaml-source.ts';
import { makeRulesDir, writeRules } from '../helpers/rules-dir.ts';

const facts = knownFacts();

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`timed out waiting for ${what}`);
}

async function counter(c: { get(): Promise<{ values: Array<{ value: number }> }> }): Promise<number> {
  return (await c.get()).values[0]?.value ?? 0;
}

const rule = (score: number) => `rules:\n  - name: A\n    description: d\n    when: { client.ip: { in_list: lists/block.txt } }\n    score: ${score}\n`;
const blocked = (live: LiveRules, ip: string) => live.evaluate('connect', new FactSet([['client.ip', ip]])).fired.length > 0;

function logCapture() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { logger, lines };
}

test('reload: an edited rule takes effect; a broken edit keeps the old rules and counts the error', async () => {
  const dir = makeRulesDir({ '10-a.yaml': rule(1), 'lists/block.txt': '192.0.2.1\n' });
  const { logger, lines } = logCapture();
  const live = new LiveRules({ dir, facts, logger, debounceMs: 50, pollMs: 200 });
  try {
    assert.equal(live.current.rules[0]?.score, 1);
    assert.equal(await counter(metrics.rulesLoaded), 1);

    writeRules(dir, { '10-a.yaml': rule(5) });
    await until('the new score', () => live.current.rules[0]?.score === 5);

    const errorsBefore = await counter(metrics.rulesReloadErrors);
    writeRules(dir, { '10-a.yaml': `${rule(7)}    bogus: true\n` });
    await until('the reload error', async () => (await counter(metrics.rulesReloadErrors)) > errorsBefore);
    assert.equal(live.current.rules[0]?.score, 5, 'old rules stay in force');
    assert.equal(await counter(metrics.rulesLastReloadSuccess), 0);
    const err = lines.find((l) => l.msg === 'rules reload failed; keeping the previous rules');
    assert.ok(err, 'the failure is logged');
    assert.match(String((err.problems as string[])[0]), /10-a.yaml:6: rules\[0\].bogus: unknown key "bogus"/);
    assert.ok(blocked(live, '192.0.2.1'), 'still evaluating with the old rules');

    writeRules(dir, { '10-a.yaml': rule(7) });
    await until('the fixed rules', () => live.current.rules[0]?.score === 7);
    assert.equal(await counter(metrics.rulesLastReloadSuccess), 1);
  } finally {
    live.close();
  }
});

test('reload: a list file edit (even by rename, as editors save) takes effect; a broken list keeps the old one', async () => {
  const dir = makeRulesDir({ '10-a.yaml': rule(1), 'lists/block.txt': '192.0.2.1\n' });
  const live = new LiveRules({ dir, facts, debounceMs: 50, pollMs: 200 });
  try {
    assert.equal(blocked(live, '198.51.100.9'), false);
    writeFileSync(join(dir, 'lists/block.txt.tmp'), '192.0.2.1\n198.51.100.0/24\n');
    renameSync(join(dir, 'lists/block.txt.tmp'), join(dir, 'lists/block.txt'));
    await until('the appended entry', () => blocked(live, '198.51.100.9'));

    writeRules(dir, { 'lists/block.txt': '192.0.2.1\n198.51.100.0/24\nnot-an-address\n' });
    const r = live.reload('test');
    assert.equal(r.ok, false);
    assert.match(r.ok ? '' : r.error, /block.txt:3: "not-an-address" is not an IP address or CIDR block/);
    assert.ok(blocked(live, '198.51.100.9'), 'the previous list stays in force');
  } finally {
    live.close();
  }
});

test('reload: list files outside the rules directory are watched too', async () => {
  const outside = mkdtempSync(join(tmpdir(), 'mailgate-lists-'));
  writeFileSync(join(outside, 'ips.txt'), '192.0.2.1\n');
  const dir = makeRulesDir({
    '10-a.yaml': `rules:\n  - { name: A, description: d, when: { client.ip: { in_list: ${join(outside, 'ips.txt')} } }, score: 1 }\n`,
  });
  const live = new LiveRules({ dir, facts, debounceMs: 50, pollMs: 0 });
  try {
    assert.equal(blocked(live, '203.0.113.5'), false);
    writeFileSync(join(outside, 'ips.txt'), '192.0.2.1\n203.0.113.5\n');
    await until('the outside list change', () => blocked(live, '203.0.113.5'));
  } finally {
    live.close();
  }
});

test('reload: a new broken file is noticed again once it is fixed; unrelated files do not reload', async () => {
  const dir = makeRulesDir({ '10-a.yaml': rule(1), 'lists/block.txt': '192.0.2.1\n' });
  const { logger, lines } = logCapture();
  const live = new LiveRules({ dir, facts, logger, debounceMs: 50, pollMs: 100 });
  try {
    const loads = () => lines.filter((l) => l.msg === 'rules loaded').length;
    writeRules(dir, { '.10-a.yaml.swp': 'editor state', 'notes.md': 'x' });
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(loads(), 0, 'no reload for files that are not rules');
    writeRules(dir, { '20-new.yaml': 'rules:\n  - name: NEW\n' });
    await until('the failed reload', () => lines.some((l) => l.msg === 'rules reload failed; keeping the previous rules'));
    writeRules(dir, { '20-new.yaml': 'rules:\n  - { name: NEW, description: d, when: { tls: true }, score: 1 }\n' });
    await until('the fixed new file', () => live.current.rules.length === 2);
  } finally {
    live.close();
  }
});

test('reload: on request (SIGHUP), and the policy object stays the same for callers', () => {
  const dir = makeRulesDir({ '10-a.yaml': rule(1), 'lists/block.txt': '192.0.2.1\n' });
  const live = new LiveRules({ dir, facts, watch: false });
  writeRules(dir, { '10-a.yaml': rule(2) });
  assert.equal(live.current.rules[0]?.score, 1, 'not watching');
  assert.deepEqual(live.reload('SIGHUP'), { ok: true, rules: 1 });
  assert.equal(live.evaluate('connect', new FactSet([['client.ip', '192.0.2.1']])).score, 2);
  live.close();
});

test('reload: invalid rules at start refuse to start', () => {
  const dir = makeRulesDir({ '10-a.yaml': 'rules:\n  - name: A\n' });
  assert.throws(() => new LiveRules({ dir, facts, watch: false }), SourceErrors);
});

test('reload: RulesAware hooks see each good load only', () => {
  const dir = makeRulesDir({ '10-a.yaml': rule(1), 'lists/block.txt': '' });
  const seen: number[] = [];
  const live = new LiveRules({ dir, facts, watch: false, onReload: (l) => seen.push(l.rules[0]?.score ?? -1) });
  writeRules(dir, { '10-a.yaml': 'rules: [' });
  live.reload();
  writeRules(dir, { '10-a.yaml': rule(3) });
  live.reload();
  assert.deepEqual(seen, [1, 3]);
  live.close();
});
