// src/config/warnings.ts: `workers: N` without Redis splits the per-process limits; `config check`
// prints the warning with file, line and key and still exits 0.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseConfig } from '../../src/config/load.ts';
import { configWarnings, formatWarning } from '../../src/config/warnings.ts';

const BASE = 'hostname: mx.example.test\ndomains: [example.test]\nbackend: { maildir: var/d }\nadmin: false\n';

const cases: Array<{ desc: string; text: string; cores?: number; expected: string[] }> = [
  { desc: 'one worker, no Redis: fine', text: BASE, expected: [] },
  { desc: 'workers: 1 explicitly', text: `${BASE}workers: 1\n`, expected: [] },
  {
    desc: 'workers: 4 without Redis',
    text: `${BASE}workers: 4\n`,
    expected: [
      `f.yaml:5: workers: warning: 4 worker processes without 'redis': rate limits, concurrency limits and greylisting are kept per process, so a client can get up to 4x each limit; set 'redis' to share them (docs/operations.md "Scaling out")`,
    ],
  },
  { desc: 'workers: 4 with Redis', text: `${BASE}workers: 4\nredis: redis://127.0.0.1:6379\n`, expected: [] },
  { desc: 'workers: auto on one core', text: `${BASE}workers: auto\n`, cores: 1, expected: [] },
  {
    desc: 'workers: auto on 8 cores',
    text: `workers: auto\n${BASE}`,
    cores: 8,
    expected: [
      `f.yaml:1: workers: warning: 8 worker processes without 'redis': rate limits, concurrency limits and greylisting are kept per process, so a client can get up to 8x each limit; set 'redis' to share them (docs/operations.md "Scaling out")`,
    ],
  },
];

for (const c of cases) {
  test(`configWarnings: ${c.desc}`, () => {
    const { config } = parseConfig('f.yaml', c.text, {});
    assert.deepEqual(configWarnings('f.yaml', config, { text: c.text, cores: c.cores ?? 2 }).map(formatWarning), c.expected);
  });
}

test('mailgate config check prints the warning on stderr and exits 0', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-warn-'));
  const f = join(dir, 'mailgate.yaml');
  writeFileSync(f, `${BASE}workers: 3\n`);
  const cli = resolve(import.meta.dirname, '..', '..', 'bin', 'mailgate.js');
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.MAILGATE_REDIS_URL;
  const r = spawnSync(process.execPath, [cli, 'config', 'check', f], { encoding: 'utf8', env });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /: OK \(/);
  assert.ok(r.stderr.includes(`${f}:5: workers: warning: 3 worker processes without 'redis'`), r.stderr);
});
