// Corpus tests of the shipped policy (Rspamd's functional-test idea): each .eml in
// test/fixtures/rules/corpus with its envelope sidecar (.json: ip, helo, from, to, facts the
// network checks would have produced, and `expect`) goes through the shipped rules/ offline;
// the fired rules and the action must be the expected ones. They document the policy too.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadRules } from '../../src/rules/loader.ts';
import { knownFacts, knownSections } from '../../src/checks/catalogue.ts';
import { offlineChecks, readSidecar, runOffline, type Envelope } from '../../src/cli/offline-transaction.ts';
import { offlineConfig } from '../helpers/offline-config.ts';

const root = join(import.meta.dirname, '..', '..');
const corpus = join(root, 'test/fixtures/rules/corpus');
const config = offlineConfig;
const shipped = loadRules(join(root, 'rules'), knownFacts(), knownSections());

interface Expect {
  action: string;
  stage: string;
  rules: string[];
  reply?: string;
  header?: string;
  score?: number;
}

for (const name of readdirSync(corpus)
  .filter((n) => n.endsWith('.eml'))
  .sort()) {
  test(`shipped policy: ${name}`, async () => {
    const path = join(corpus, name);
    const env = readSidecar(path) as Envelope & { expect: Expect };
    // Through the transaction core with the offline checks, as `mailgate rules test` runs it.
    const { checks, close } = await offlineChecks(config, shipped, false);
    const r = await runOffline({ policy: shipped.policy, checks, config, envelope: env, message: readFileSync(path) }).finally(close);
    const e = env.expect;
    assert.deepEqual(
      r.verdict.fired.map((f) => f.rule),
      e.rules,
    );
    assert.equal(r.action, e.action);
    assert.equal(r.stage, e.stage);
    if (e.reply) assert.equal(r.reply?.toString(), e.reply);
    if (e.header)
      assert.ok(
        r.verdict.addHeaders.some((h) => `${h.name}: ${h.value}` === e.header),
        JSON.stringify(r.verdict.addHeaders),
      );
    if (e.score !== undefined) assert.equal(r.verdict.score, e.score);
  });
}
