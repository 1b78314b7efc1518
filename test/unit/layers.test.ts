// The layering rule of README "Architecture", checked by scripts/check-layers.ts: the real tree
// passes, and an upward import or a cycle in a small tree is reported.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const script = join(import.meta.dirname, '..', '..', 'scripts', 'check-layers.ts');
const run = (root?: string) => spawnSync(process.execPath, [script, ...(root ? [root] : [])], { encoding: 'utf8' });

function tree(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'mailgate-layers-'));
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(root, name, '..'), { recursive: true });
    writeFileSync(join(root, name), text);
  }
  return root;
}

test('the source tree has no upward import and no cycle', () => {
  const r = run();
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /layers ok/);
});

const cases: Array<{ desc: string; files: Record<string, string>; expected: RegExp }> = [
  {
    desc: 'a lower layer importing a higher one',
    files: { 'net/a.ts': "import { b } from '../checks/b.ts';\n", 'checks/b.ts': 'export const b = 1;\n' },
    expected: /net may not import checks/,
  },
  {
    desc: 'a type-only upward import',
    files: { 'pipeline/a.ts': "import type { B } from '../fronts/b.ts';\n", 'fronts/b.ts': 'export type B = 1;\n' },
    expected: /pipeline may not import fronts/,
  },
  {
    desc: 'a cycle inside one layer',
    files: { 'rules/a.ts': "import './b.ts';\n", 'rules/b.ts': "import './a.ts';\n" },
    expected: /import cycle: rules\/a\.ts → rules\/b\.ts → rules\/a\.ts/,
  },
  { desc: 'a directory in no layer', files: { 'misc/a.ts': 'export {};\n' }, expected: /src\/misc is not in a layer/ },
];
for (const c of cases) {
  test(`reported: ${c.desc}`, () => {
    const r = run(tree(c.files));
    assert.equal(r.status, 1);
    assert.match(r.stderr, c.expected);
  });
}
