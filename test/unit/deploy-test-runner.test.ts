// test/run.ts (`npm test`): which Debian packages it would install, and the line it prints for a
// non-root user. The full behaviour (private Postfix, env for the tests) is exercised by every run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { aptLine, DEBIAN_PACKAGES, missingPackages } from '../run.ts';

const cases: Array<{ desc: string; present: string[]; expected: string[] }> = [
  { desc: 'everything installed', present: DEBIAN_PACKAGES.map((p) => p.probe), expected: [] },
  { desc: 'nothing installed', present: [], expected: DEBIAN_PACKAGES.map((p) => p.pkg) },
  {
    desc: 'only postfix missing',
    present: DEBIAN_PACKAGES.filter((p) => p.pkg !== 'postfix').map((p) => p.probe),
    expected: ['postfix'],
  },
];

for (const c of cases) {
  test(`missingPackages: ${c.desc}`, () => {
    const set = new Set(c.present);
    assert.deepEqual(
      missingPackages((p) => set.has(p)),
      c.expected,
    );
  });
}

test('aptLine is the exact command, non-interactive', () => {
  assert.equal(aptLine(['postfix', 'haproxy']), 'sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postfix haproxy');
});

test('npm test runs test/run.ts; .ci/run runs exactly npm ci && npm test', () => {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { scripts: Record<string, string> };
  assert.equal(pkg.scripts.test, 'node test/run.ts');
  const ci = readFileSync(new URL('../../.ci/run', import.meta.url), 'utf8');
  assert.match(ci, /^npm ci && npm test$/m);
  assert.doesNotMatch(ci, /setup-postfix|\/etc\/postfix/);
});

test('the runner keeps the glob every engineer adds test files under', () => {
  const src = readFileSync(new URL('../run.ts', import.meta.url), 'utf8');
  assert.ok(src.includes("'test/**/*.test.ts'"));
  assert.ok(src.includes("'--test-concurrency=1'"));
});
