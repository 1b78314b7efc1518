// `npm run build`: compiles src/ to plain JavaScript in dist/ (tsc, with source maps) and copies the
// non-TypeScript files (the Redis Lua scripts), then stamps dist/BUILD_HASH with the sources'
// fingerprint. The `mailgate` launcher runs dist/ when the stamp matches src/, which saves Node's
// TypeScript stripping at start (≈ 30 MiB of resident memory, docs/operations.md "Memory").
// Without a build, or with a stale one, everything runs from src/ as before.
// `--if-possible` (npm's prepare step): say why and exit 0 when TypeScript is not installed.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { sourceHash } from '../bin/source-hash.js';

const root = join(import.meta.dirname, '..');
const dist = join(root, 'dist');
const ifPossible = process.argv.includes('--if-possible');
const tsc = join(root, 'node_modules', '.bin', 'tsc');

if (!existsSync(tsc)) {
  process.stderr.write(`build: ${tsc} is missing (dev dependencies not installed); mailgate runs from src/\n`);
  process.exit(ifPossible ? 0 : 1);
}
// the hash is taken before compiling: an edit made while tsc runs leaves the stamp stale, not wrong
const hash = sourceHash(root);
rmSync(dist, { recursive: true, force: true });
// Type errors do not stop the emit (tsc emits anyway); `npm test` is where types are checked.
const r = spawnSync(tsc, ['-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
if (!existsSync(join(dist, 'cli', 'main.js'))) {
  process.stderr.write(`build: tsc wrote no dist/cli/main.js (exit ${r.status}); mailgate runs from src/\n`);
  rmSync(dist, { recursive: true, force: true });
  process.exit(ifPossible ? 0 : 1);
}

function copyAssets(dir: string): void {
  for (const e of readdirSync(join(root, 'src', dir), { withFileTypes: true })) {
    const rel = join(dir, e.name);
    if (e.isDirectory()) copyAssets(rel);
    else if (!e.name.endsWith('.ts')) {
      mkdirSync(dirname(join(dist, rel)), { recursive: true });
      cpSync(join(root, 'src', rel), join(dist, rel));
    }
  }
}
copyAssets('');
writeFileSync(join(dist, 'BUILD_HASH'), `${hash}\n`);
process.stdout.write(`build: dist/ from src/ (${hash.slice(0, 12)})\n`);
