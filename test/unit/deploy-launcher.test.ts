// The `mailgate` command outside npm: the default config search (src/config/locate.ts) and the
// launcher bin/mailgate.js under the machine's older Node (it re-runs itself on the project's Node 24).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { locateConfig } from '../../src/config/locate.ts';
import { SourceErrors } from '../../src/config/yaml-source.ts';

const root = resolve(import.meta.dirname, '..', '..');
const launcher = join(root, 'bin', 'mailgate.js');

const cases: Array<{ desc: string; explicit?: string; env: Record<string, string>; files: string[]; expected: string | RegExp }> = [
  { desc: '--config wins over everything', explicit: '/x/a.yaml', env: { MAILGATE_CONFIG: '/x/b.yaml' }, files: ['/cwd/mailgate.yaml'], expected: '/x/a.yaml' },
  { desc: '$MAILGATE_CONFIG next, even if missing', env: { MAILGATE_CONFIG: '/x/b.yaml' }, files: ['/cwd/mailgate.yaml'], expected: '/x/b.yaml' },
  { desc: 'empty $MAILGATE_CONFIG is unset', env: { MAILGATE_CONFIG: '' }, files: ['/cwd/mailgate.yaml'], expected: './mailgate.yaml' },
  { desc: './mailgate.yaml before /etc', env: {}, files: ['/cwd/mailgate.yaml', '/etc/mailgate/mailgate.yaml'], expected: './mailgate.yaml' },
  { desc: '/etc/mailgate/mailgate.yaml last', env: {}, files: ['/etc/mailgate/mailgate.yaml'], expected: '/etc/mailgate/mailgate.yaml' },
  {
    desc: 'none: one error naming every path tried',
    env: {},
    files: [],
    expected: /no config file: tried \$MAILGATE_CONFIG \(unset\), \.\/mailgate\.yaml, \/etc\/mailgate\/mailgate\.yaml/,
  },
];

for (const c of cases) {
  test(`locateConfig: ${c.desc}`, () => {
    const set = new Set(c.files);
    const run = () => locateConfig(c.explicit, { env: c.env, cwd: '/cwd', exists: (p) => set.has(p) });
    if (c.expected instanceof RegExp) assert.throws(run, (e: unknown) => e instanceof SourceErrors && (c.expected as RegExp).test(e.message));
    else assert.equal(run(), c.expected);
  });
}

/** The machine's own Node when it is older than 24 (Debian's 20 here), else undefined. */
function oldNode(): string | undefined {
  for (const p of ['/usr/bin/node', '/usr/local/bin/node']) {
    if (!existsSync(p)) continue;
    const v = execFileSync(p, ['-p', 'process.versions.node']).toString().trim();
    if (Number(v.split('.')[0]) < 24) return p;
  }
  return undefined;
}

const old = oldNode();

test('launcher under the system Node re-runs on the project Node 24', { skip: old ? false : 'no Node older than 24 on this machine' }, () => {
  const r = spawnSync(old as string, [launcher, '--version'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^mailgate \d+\.\d+\.\d+\n$/);
  // Arguments, stdout/stderr and the exit status pass through: a missing config is exit 1 with the search list.
  const dir = mkdtempSync(join(tmpdir(), 'mg-launch-'));
  try {
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.MAILGATE_CONFIG;
    const r2 = spawnSync(old as string, [launcher, 'config', 'check'], { cwd: dir, encoding: 'utf8', env });
    assert.equal(r2.status, 1);
    assert.match(r2.stderr, /no config file: tried/);
    writeFileSync(join(dir, 'mailgate.yaml'), 'hostname: mx.example.test\ndomains: [example.test]\nbackend: { maildir: var/d }\nadmin: false\n');
    const r3 = spawnSync(old as string, [launcher, 'config', 'check'], { cwd: dir, encoding: 'utf8', env });
    assert.equal(r3.status, 0, r3.stderr);
    assert.match(r3.stdout, /mailgate\.yaml: OK/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('launcher without node_modules says exactly what to install', { skip: old ? false : 'no Node older than 24 on this machine' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-launch-bare-'));
  try {
    mkdirSync(join(dir, 'bin'));
    copyFileSync(launcher, join(dir, 'bin', 'mailgate.js'));
    writeFileSync(join(dir, 'package.json'), '{"type":"module"}\n');
    const r = spawnSync(old as string, [join(dir, 'bin', 'mailgate.js'), '--version'], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /needs Node\.js 24 or newer/);
    assert.ok(r.stderr.includes(`run 'npm ci' in ${dir}/`), r.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('launcher under Node 24 runs the CLI in-process', () => {
  const r = spawnSync(process.execPath, [launcher, '--help'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /MAILGATE_CONFIG/);
  assert.match(r.stdout, /\/etc\/mailgate\/mailgate\.yaml/);
});

// Memory settings the launcher adds before Node starts the CLI (docs/operations.md#memory): two
// glibc malloc arenas, and V8's young generation capped only when MAILGATE_SEMI_SPACE_MIB asks,
// unless the operator chose already. The launcher replaces itself (execve), so the PID a service
// manager sees stays.
const memoryCases: Array<{ desc: string; env: Record<string, string>; semi: string[]; arena: string }> = [
  { desc: "defaults: V8's own young generation, two arenas", env: {}, semi: [], arena: '2' },
  { desc: 'MAILGATE_SEMI_SPACE_MIB=4', env: { MAILGATE_SEMI_SPACE_MIB: '4' }, semi: ['--max-semi-space-size=4'], arena: '2' },
  { desc: "MAILGATE_SEMI_SPACE_MIB=0: V8's own sizing", env: { MAILGATE_SEMI_SPACE_MIB: '0' }, semi: [], arena: '2' },
  { desc: 'a size in NODE_OPTIONS is kept', env: { NODE_OPTIONS: '--max-semi-space-size=8', MAILGATE_SEMI_SPACE_MIB: '4' }, semi: [], arena: '2' },
  { desc: 'MALLOC_ARENA_MAX set is kept', env: { MALLOC_ARENA_MAX: '8', MAILGATE_SEMI_SPACE_MIB: '2' }, semi: ['--max-semi-space-size=2'], arena: '8' },
];

for (const c of memoryCases) {
  test(`launcher memory settings: ${c.desc}`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'mg-launch-mem-'));
    try {
      const out = join(dir, 'seen.json');
      const probe = join(dir, 'probe.mjs');
      writeFileSync(
        probe,
        `import { writeFileSync } from 'node:fs';\nwriteFileSync(${JSON.stringify(out)}, JSON.stringify({ pid: process.pid, execArgv: process.execArgv, arena: process.env.MALLOC_ARENA_MAX ?? null }));\n`,
      );
      const env: NodeJS.ProcessEnv = { ...process.env, ...c.env };
      if (!('MALLOC_ARENA_MAX' in c.env)) delete env.MALLOC_ARENA_MAX;
      if (!('MAILGATE_SEMI_SPACE_MIB' in c.env)) delete env.MAILGATE_SEMI_SPACE_MIB;
      if (!('NODE_OPTIONS' in c.env)) delete env.NODE_OPTIONS;
      const r = spawnSync(process.execPath, ['--import', probe, launcher, '--version'], { encoding: 'utf8', env });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^mailgate \d+\.\d+\.\d+\n$/);
      const seen = JSON.parse(readFileSync(out, 'utf8')) as { pid: number; execArgv: string[]; arena: string | null };
      assert.equal(seen.pid, r.pid, 'same process: the launcher execs itself, it does not spawn a child');
      assert.deepEqual(
        seen.execArgv.filter((a) => a.startsWith('--max-semi-space-size')),
        c.semi,
      );
      assert.equal(seen.arena, c.arena);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
