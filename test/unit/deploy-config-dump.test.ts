// `mailgate config dump`: postconf -n style (only what the file/env sets) and -a (every default),
// flattened keys, resolved paths, masked passwords; errors name file and line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { dumpConfig, flatten, formatValue } from '../../src/cli/config-dump.ts';
import { SourceErrors } from '../../src/config/yaml-source.ts';

const dir = mkdtempSync(join(tmpdir(), 'mg-dump-'));
const BASE = 'hostname: mx.example.test\ndomains: [example.test, example.org]\nbackend: { host: 127.0.0.1, port: 10025 }\n';

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

const cases: Array<{ desc: string; text: string; all?: boolean; env?: Record<string, string>; has: string[]; hasNot: string[] }> = [
  {
    desc: '-n: only what the file sets',
    text: BASE + 'limits: { max_recipients: 50 }\n',
    has: ['hostname = mx.example.test', 'domains = [example.test, example.org]', 'backend.port = 10025', 'limits.max_recipients = 50'],
    hasNot: ['limits.max_errors', 'smtp.banner', 'listen[0]'],
  },
  {
    desc: '-a: defaults too',
    text: BASE,
    all: true,
    has: [
      'limits.max_errors = 10',
      'smtp.banner = mailgate',
      'listen[0].port = 25',
      'listen[0].proxy_protocol = false',
      'workers = 1',
      'checks.disabled = []',
      'dns.servers =',
      'redis =',
      'log.file =',
    ],
    hasNot: [],
  },
  {
    desc: '-a: a set optional key is not also shown unset',
    text: BASE + 'dns: { servers: ["127.0.0.1:5353"] }\n',
    all: true,
    env: { MAILGATE_REDIS_URL: 'redis://127.0.0.1:6379' },
    has: ['dns.servers = [127.0.0.1:5353]', 'redis = redis://127.0.0.1:6379   # from $MAILGATE_REDIS_URL'],
    hasNot: ['dns.servers =\n', 'redis =\n'],
  },
  {
    desc: 'lists of objects are indexed; relative paths resolved against the file',
    text: BASE + 'listen:\n  - { host: 127.0.0.1, port: 2525 }\n  - { host: 127.0.0.1, port: 2465, tls: { key: k.pem, cert: c.pem } }\nrules: my-rules\n',
    has: ['listen[1].port = 2465', `listen[1].tls.key = ${resolve(dir, 'k.pem')}`, `rules = ${resolve(dir, 'my-rules')}`],
    hasNot: ['listen[1].tls.implicit'],
  },
  {
    desc: 'environment overrides are shown and marked; passwords masked',
    text: BASE,
    env: { MAILGATE_REDIS_URL: 'redis://:s3cret@redis.example:6379/0', MAILGATE_LOG_LEVEL: 'debug' },
    has: ['redis = redis://:***@redis.example:6379/0   # from $MAILGATE_REDIS_URL', 'log.level = debug   # from $MAILGATE_LOG_LEVEL'],
    hasNot: ['s3cret'],
  },
  {
    desc: 'a whole section set to false',
    text: BASE + 'admin: false\ncapture: false\n',
    has: ['admin = false', 'capture = false'],
    hasNot: ['admin.port'],
  },
];

for (const [i, c] of cases.entries()) {
  test(`config dump: ${c.desc}`, () => {
    const out = dumpConfig(file(`c${i}.yaml`, c.text), { all: c.all ?? false, env: c.env ?? {} });
    const lines = out.split('\n');
    for (const h of c.has) assert.ok(lines.includes(h), `missing "${h}" in:\n${out}`);
    for (const h of c.hasNot) assert.ok(!out.includes(h), `unexpected "${h}" in:\n${out}`);
    const keys = lines.filter((l) => l !== '').map((l) => l.slice(0, l.indexOf(' =')));
    assert.deepEqual(keys, [...keys].sort(), 'sorted by key');
  });
}

test('config dump: an invalid file is FILE:LINE: KEY: problem', () => {
  const f = file('bad.yaml', BASE + 'limits:\n  max_recipents: 5\n');
  assert.throws(
    () => dumpConfig(f, { env: {} }),
    (e: unknown) => e instanceof SourceErrors && e.message.includes(`${f}:5: limits`),
  );
});

const valueCases: Array<{ key: string; value: unknown; expected: string }> = [
  { key: 'a', value: '', expected: '""' },
  { key: 'a', value: ['x', 1], expected: '[x, 1]' },
  { key: 'redis.password', value: 'pw', expected: '***' },
  { key: 'redis.sentinel_password', value: 'pw', expected: '***' },
  { key: 'a', value: 'line1\nline2', expected: 'line1\\nline2' },
  { key: 'a', value: {}, expected: '{}' },
];
for (const c of valueCases) {
  test(`formatValue ${c.key}=${JSON.stringify(c.value)}`, () => assert.equal(formatValue(c.key, c.value), c.expected));
}

test('flatten: nested objects and lists', () => {
  assert.deepEqual(flatten({ a: { b: 1, c: [1, 2] }, l: [{ x: 1 }], e: {} }), [
    ['a.b', 1],
    ['a.c', [1, 2]],
    ['l[0].x', 1],
    ['e', {}],
  ]);
});

test('mailgate config dump from the CLI (default search, -a)', () => {
  const f = file('mailgate.yaml', BASE);
  const cli = resolve(import.meta.dirname, '..', '..', 'bin', 'mailgate.js');
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.MAILGATE_CONFIG;
  const r = spawnSync(process.execPath, [cli, 'config', 'dump'], { cwd: dir, encoding: 'utf8', env });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'backend.host = 127.0.0.1\nbackend.port = 10025\ndomains = [example.test, example.org]\nhostname = mx.example.test\n');
  const a = spawnSync(process.execPath, [cli, 'config', 'dump', '--all', f], { encoding: 'utf8', env });
  assert.equal(a.status, 0, a.stderr);
  assert.match(a.stdout, /^limits\.max_message_bytes = 52428800$/m);
  const bad = spawnSync(process.execPath, [cli, 'config', 'dump', '--bogus'], { cwd: dir, encoding: 'utf8', env });
  assert.equal(bad.status, 1);
});
