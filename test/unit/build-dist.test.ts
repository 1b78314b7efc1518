// `npm run build` (scripts/build.ts) and the launcher's choice between dist/ and src/
// (bin/source-hash.js): dist/ runs only when it was built from exactly the sources on disk, and a
// source the build cannot translate (a non-literal relative import) fails the build.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { appendFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chooseEntry, sourceHash } from '../../bin/source-hash.js';

const root = resolve(import.meta.dirname, '..', '..');

/** A minimal checkout: src/ with two files, and optionally a dist/ stamped with a hash. */
function tree(opts: { dist?: 'fresh' | 'other-hash' | 'no-main' }): string {
  const dir = mkdtempSync(join(tmpdir(), 'mg-dist-'));
  mkdirSync(join(dir, 'src', 'cli'), { recursive: true });
  writeFileSync(join(dir, 'src', 'cli', 'main.ts'), 'export const a: number = 1;\n');
  writeFileSync(join(dir, 'src', 'x.lua'), 'return 1\n');
  if (opts.dist) {
    mkdirSync(join(dir, 'dist', 'cli'), { recursive: true });
    if (opts.dist !== 'no-main') writeFileSync(join(dir, 'dist', 'cli', 'main.js'), 'export const a = 1;\n');
    writeFileSync(join(dir, 'dist', 'BUILD_HASH'), `${opts.dist === 'other-hash' ? 'f'.repeat(64) : sourceHash(dir)}\n`);
  }
  return dir;
}

const cases: Array<{ desc: string; dist?: 'fresh' | 'other-hash' | 'no-main'; edit?: (dir: string) => void; expected: { dist: boolean; stale: boolean } }> = [
  { desc: 'no dist/: src/', expected: { dist: false, stale: false } },
  { desc: 'dist/ built from these sources: dist/', dist: 'fresh', expected: { dist: true, stale: false } },
  { desc: 'dist/ from other sources: src/, stale', dist: 'other-hash', expected: { dist: false, stale: true } },
  {
    desc: 'a source edited after the build: src/, stale',
    dist: 'fresh',
    edit: (d) => appendFileSync(join(d, 'src', 'cli', 'main.ts'), '// edit\n'),
    expected: { dist: false, stale: true },
  },
  {
    desc: 'a non-TypeScript source edited: src/, stale',
    dist: 'fresh',
    edit: (d) => writeFileSync(join(d, 'src', 'x.lua'), 'return 2\n'),
    expected: { dist: false, stale: true },
  },
  {
    desc: 'a source file added: src/, stale',
    dist: 'fresh',
    edit: (d) => writeFileSync(join(d, 'src', 'new.ts'), '\n'),
    expected: { dist: false, stale: true },
  },
  {
    desc: 'a file renamed (same bytes): src/, stale',
    dist: 'fresh',
    edit: (d) => cpSync(join(d, 'src', 'x.lua'), join(d, 'src', 'y.lua')),
    expected: { dist: false, stale: true },
  },
  { desc: 'stamp without dist/cli/main.js: src/', dist: 'no-main', expected: { dist: false, stale: true } },
];

for (const c of cases) {
  test(`chooseEntry: ${c.desc}`, () => {
    const dir = tree(c.dist ? { dist: c.dist } : {});
    try {
      c.edit?.(dir);
      const r = chooseEntry(dir);
      assert.deepEqual({ dist: r.dist, stale: r.stale }, c.expected);
      assert.equal(r.entry, r.dist ? join(dir, 'dist', 'cli', 'main.js') : join(dir, 'src', 'cli', 'main.ts'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('npm run build refuses a relative import it cannot rewrite, and leaves dist/ as it was', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-build-bad-'));
  try {
    for (const p of ['bin', 'scripts', 'package.json']) cpSync(join(root, p), join(dir, p), { recursive: true });
    mkdirSync(join(dir, 'src', 'cli'), { recursive: true });
    writeFileSync(join(dir, 'src', 'cli', 'main.ts'), "const p = './x.ts';\nexport const m = import(p);\nexport const q: string = './other.ts';\n");
    const b = spawnSync(process.execPath, [join(dir, 'scripts', 'build.ts')], { cwd: dir, encoding: 'utf8' });
    assert.equal(b.status, 1);
    assert.match(b.stderr, /cli\/main\.ts: specifier '\.\/x\.ts' not rewritten/);
    assert.throws(() => readFileSync(join(dir, 'dist', 'BUILD_HASH')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('npm run build, then the mailgate command runs dist/ until a source changes', { timeout: 120_000 }, () => {
  // a copy of the checkout (the real dist/ is left alone: other tests may be running the launcher)
  const dir = mkdtempSync(join(tmpdir(), 'mg-build-'));
  try {
    for (const p of ['src', 'bin', 'scripts', 'package.json', 'rules']) cpSync(join(root, p), join(dir, p), { recursive: true });
    symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
    const b = spawnSync(process.execPath, [join(dir, 'scripts', 'build.ts')], { cwd: dir, encoding: 'utf8' });
    assert.equal(b.status, 0, b.stderr);
    assert.equal(readFileSync(join(dir, 'dist', 'BUILD_HASH'), 'utf8').trim(), sourceHash(dir));
    // the Lua scripts the Redis store reads next to its module
    assert.ok(readFileSync(join(dir, 'dist', 'store', 'lua', 'rate-limit-n.lua'), 'utf8').length > 0);
    // types are blanked, not removed: a stack trace of dist/ names the line of src/
    const lines = (f: string): number => readFileSync(f, 'utf8').split('\n').length;
    assert.equal(lines(join(dir, 'dist', 'gateway.js')), lines(join(dir, 'src', 'gateway.ts')));
    assert.doesNotMatch(readFileSync(join(dir, 'dist', 'gateway.js'), 'utf8'), /from '\.[^']*\.ts'/);
    // which tree ran: the built entry says so (dist/ is not part of the hash, so it stays fresh)
    appendFileSync(join(dir, 'dist', 'cli', 'main.js'), "\nprocess.stderr.write('ran dist/cli/main.js\\n');\n");
    const ran = (): { out: string; err: string; dist: boolean } => {
      const r = spawnSync(process.execPath, [join(dir, 'bin', 'mailgate.js'), 'config', 'check', join(dir, 'cfg.yaml')], { cwd: dir, encoding: 'utf8' });
      return { out: r.stdout, err: r.stderr, dist: r.stderr.includes('ran dist/cli/main.js') };
    };
    writeFileSync(join(dir, 'cfg.yaml'), 'hostname: mx.example.test\ndomains: [example.test]\nbackend: { maildir: var/d }\nadmin: false\n');
    const fresh = ran();
    assert.match(fresh.out, /cfg\.yaml: OK/, fresh.err.slice(-2000));
    assert.ok(fresh.dist, 'a fresh build runs dist/');
    assert.doesNotMatch(fresh.err, /running src/);
    appendFileSync(join(dir, 'src', 'config', 'load.ts'), '// edited after the build\n');
    const stale = ran();
    assert.match(stale.out, /cfg\.yaml: OK/);
    assert.ok(!stale.dist, 'a stale build is not run');
    assert.match(stale.err, /mailgate: dist\/ was built from other sources or another Node \(run 'npm run build'\); running src\//);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
