// deploy/systemd/mailgate.service: systemd accepts it (systemd-analyze verify, with /opt/mailgate
// pointed at this checkout), and it has the keys the operator guide promises.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..', '..');
const unitText = readFileSync(join(root, 'deploy', 'systemd', 'mailgate.service'), 'utf8');

/** [section] → key → values (a key may repeat); comments and blank lines skipped. */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const out = new Map<string, Map<string, string[]>>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    if (line.startsWith('[') && line.endsWith(']')) {
      section = line.slice(1, -1);
      out.set(section, new Map());
      continue;
    }
    const eq = line.indexOf('=');
    assert.ok(eq > 0, `not key=value: ${line}`);
    const m = out.get(section) as Map<string, string[]>;
    const k = line.slice(0, eq);
    m.set(k, [...(m.get(k) ?? []), line.slice(eq + 1)]);
  }
  return out;
}

const unit = parseUnit(unitText);
const svc = unit.get('Service') as Map<string, string[]>;
const one = (k: string) => svc.get(k)?.join(' ');

const cases: Array<{ key: string; expected: string | RegExp }> = [
  { key: 'Type', expected: /^(simple|notify)$/ },
  { key: 'ExecReload', expected: '/bin/kill -HUP $MAINPID' },
  { key: 'AmbientCapabilities', expected: 'CAP_NET_BIND_SERVICE' },
  { key: 'CapabilityBoundingSet', expected: 'CAP_NET_BIND_SERVICE' },
  { key: 'ProtectSystem', expected: 'strict' },
  { key: 'PrivateTmp', expected: 'yes' },
  { key: 'NoNewPrivileges', expected: 'yes' },
  { key: 'StateDirectory', expected: /\bmailgate\/spool\b.*\bmailgate\/quarantine\b/ },
  { key: 'ReadWritePaths', expected: '/var/lib/mailgate' },
  { key: 'User', expected: 'mailgate' },
  { key: 'KillSignal', expected: 'SIGTERM' },
  { key: 'ExecStart', expected: /bin\/mailgate\.js serve --config \/etc\/mailgate\/mailgate\.yaml$/ },
  { key: 'Environment', expected: /TMPDIR=\/var\/lib\/mailgate\/spool/ },
];
for (const c of cases) {
  test(`[Service] ${c.key}`, () => {
    const v = one(c.key);
    assert.ok(v !== undefined, `${c.key} missing`);
    if (typeof c.expected === 'string') assert.equal(v, c.expected);
    else assert.match(v, c.expected);
  });
}

test('stop timeout is longer than the default smtp.shutdown_grace_s (30 s)', () => {
  assert.ok(Number(one('TimeoutStopSec')) > 30);
});

test('no MemoryDenyWriteExecute (V8 JIT needs W+X pages)', () => {
  assert.ok(!svc.has('MemoryDenyWriteExecute') || one('MemoryDenyWriteExecute') === 'no');
});

const analyze = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((p) => existsSync(p));
test('systemd-analyze verify accepts the unit', { skip: analyze ? false : 'systemd-analyze is missing (apt-get install -y systemd)' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-unit-'));
  try {
    // verify checks that ExecStart's binary exists: point /opt/mailgate at this checkout.
    const f = join(dir, 'mailgate.service');
    writeFileSync(f, unitText.replaceAll('/opt/mailgate', root));
    const r = spawnSync(analyze as string, ['verify', f], { encoding: 'utf8' });
    // Unknown keys are only warnings (exit 0): any output is a failure too.
    assert.equal(r.status, 0, r.stderr);
    assert.equal(`${r.stdout}${r.stderr}`.trim(), '');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
