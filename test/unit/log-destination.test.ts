// The stdout log destination (no log.file) batches lines into fewer writes: every line still
// arrives, in order, within a fraction of a second, and none is lost when the process exits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';

const destination = new URL('../../src/log/destination.ts', import.meta.url).href;

/** Runs `body` in a child process with `out` = createLogOutput({ level: 'info' }); returns its stdout lines with their arrival times. */
function child(body: string): Promise<Array<{ msg: string; n?: number; atMs: number }>> {
  const src = `import { createLogOutput } from ${JSON.stringify(destination)};\nconst out = createLogOutput({ level: 'info' });\n${body}\n`;
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--input-type=module', '-e', src], { stdio: ['ignore', 'pipe', 'inherit'] });
    const started = performance.now();
    const lines: Array<{ msg: string; n?: number; atMs: number }> = [];
    let buf = '';
    p.stdout.setEncoding('utf8');
    p.stdout.on('data', (d: string) => {
      buf += d;
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        const j = JSON.parse(buf.slice(0, nl)) as { msg: string; n?: number };
        lines.push({ ...j, atMs: performance.now() - started });
        buf = buf.slice(nl + 1);
        nl = buf.indexOf('\n');
      }
    });
    p.on('error', reject);
    p.on('close', () => resolve(lines));
  });
}

test('stdout log: every line arrives, in order, and the last ones are written at process.exit', async () => {
  const lines = await child(`for (let n = 0; n < 2000; n++) out.logger.info({ n }, 'line');\nprocess.exit(0);`);
  assert.equal(lines.length, 2000);
  assert.deepEqual(
    lines.map((l) => l.n),
    Array.from({ length: 2000 }, (_, n) => n),
  );
});

test('stdout log: a line logged while the process goes on is written within the batch delay, not held until exit', async () => {
  // The child logs one line, then stays alive for 1.5 s: the line must arrive well before it ends.
  const lines = await child(
    `out.logger.info('first');\nconst t0 = performance.now();\nsetTimeout(() => out.logger.info({ n: Math.round(performance.now() - t0) }, 'late'), 1500);`,
  );
  assert.deepEqual(
    lines.map((l) => l.msg),
    ['first', 'late'],
  );
  const first = lines[0]?.atMs ?? 0;
  const late = lines[1]?.atMs ?? 0;
  assert.ok(late - first > 1000, `the first line came ${Math.round(late - first)} ms before the last, not with it at exit`);
});
