// The watchdog of `npm test` (test/helpers/run-watchdog.ts) on real processes: a stand-in for
// Node's runner whose test file blocks its own event loop (timers never fire there, so
// --test-timeout cannot end it) gets that file killed, with the process tree printed, and goes
// on; a run past its total limit is killed whole.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { watchRun } from '../helpers/run-watchdog.ts';

/** A stand-in runner: runs `file` (a script) as `node -e <file> stuck.test.ts`, reports how it ended. */
function fakeRunner(file: string) {
  const runner = `
    const { spawn } = require('node:child_process');
    const c = spawn(process.execPath, ['-e', ${JSON.stringify(file)}, 'stuck.test.ts'], { stdio: 'inherit' });
    c.on('exit', (code, sig) => { console.log('file ended: ' + sig); process.exit(0); });`;
  return spawn(process.execPath, ['-e', runner], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
}

/** Running (a zombie waiting for a PID 1 that does not reap is not). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

test('watchdog: a test file that blocks its event loop is killed with what it started, the runner goes on', async () => {
  // The file starts a server-like child (a sleep), prints its pid, then spins forever.
  const file = `const s = require('node:child_process').spawn('sleep', ['300'], { stdio: 'ignore' }); console.log('grandchild ' + s.pid); for (;;) {}`;
  const child = fakeRunner(file);
  const lines: string[] = [];
  const dog = watchRun(child, { stallMs: 600, totalMs: 60_000, checkMs: 50, write: (l) => lines.push(l) });
  let out = '';
  child.stdout?.on('data', (b: Buffer) => {
    out += b.toString();
    dog.touch();
  });
  const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  dog.stop();
  assert.equal(code, 0, 'the runner itself was not killed');
  assert.match(out, /file ended: SIGKILL/);
  assert.equal(dog.overTime, false);
  assert.ok(
    lines.some((l) => /no output for 1 s; the processes under the test runner:/.test(l)),
    lines.join('\n'),
  );
  assert.ok(
    lines.some((l) => /killing the stuck test file's process \d+ .*stuck\.test\.ts/.test(l)),
    lines.join('\n'),
  );
  assert.ok(
    lines.some((l) => /sleep 300/.test(l)),
    'the tree shows what the file started',
  );
  const grandchild = Number(/grandchild (\d+)/.exec(out)?.[1]);
  assert.ok(grandchild > 0);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(alive(grandchild), false, 'the file’s own child went with it');
});

test('watchdog: a run that outputs steadily is left alone; past its total limit it is killed whole', async () => {
  // Prints every 20 ms (never stalls) and never ends on its own.
  const child = fakeRunner(`setInterval(() => console.log('tick'), 20)`);
  const lines: string[] = [];
  const dog = watchRun(child, { stallMs: 400, totalMs: 1000, checkMs: 50, write: (l) => lines.push(l) });
  let ticks = 0;
  child.stdout?.on('data', (b: Buffer) => {
    ticks += b.toString().split('tick').length - 1;
    dog.touch();
  });
  const t0 = Date.now();
  const sig = await new Promise<NodeJS.Signals | null>((r) => child.on('exit', (_c, s) => r(s)));
  dog.stop();
  assert.equal(sig, 'SIGKILL');
  assert.equal(dog.overTime, true);
  assert.ok(Date.now() - t0 >= 950, 'not before its limit');
  assert.ok(ticks > 10);
  assert.ok(!lines.some((l) => /killing the stuck/.test(l)), 'steady output is not a stall');
  assert.ok(
    lines.some((l) => /the run passed its limit of 1 s: killing it/.test(l)),
    lines.join('\n'),
  );
});
