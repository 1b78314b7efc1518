// deploy/haproxy/haproxy.cfg, the example in docs/operations.md: HAProxy accepts it, and it sends
// the PROXY protocol v2 and health-checks /readyz on the admin port.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..', '..');
const file = join(root, 'deploy', 'haproxy', 'haproxy.cfg');
const HAPROXY = ['/usr/sbin/haproxy', '/usr/bin/haproxy'].find((p) => existsSync(p));

test('haproxy -c accepts deploy/haproxy/haproxy.cfg', { skip: HAPROXY ? false : 'haproxy is missing (apt-get install -y haproxy)' }, () => {
  const r = spawnSync(HAPROXY as string, ['-c', '-f', file], { encoding: 'utf8' });
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
});

const cases: Array<{ desc: string; re: RegExp }> = [
  { desc: 'TCP mode', re: /^\s*mode tcp$/m },
  { desc: 'PROXY v2 to every server', re: /^\s*default-server send-proxy-v2\b/m },
  { desc: 'health check on /readyz', re: /^\s*option httpchk GET \/readyz$/m },
  { desc: 'check on the admin port', re: /\bcheck port 9025\b/ },
  { desc: 'client timeout above idle_timeout_s (300 s)', re: /^\s*timeout client 3[1-9]\ds$/m },
];
const text = readFileSync(file, 'utf8');
for (const c of cases) test(`haproxy example: ${c.desc}`, () => assert.match(text, c.re));
