// The stdout log destination (no log.file) batches lines into fewer writes: every line still
// arrives, in order, within a fraction of a second, and none is lost when the process exits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';

const destination = new URL('../../src/log/destination.ts', import.meta.url).href;

/**
 * Runs `body` in a child process with `out` = createLogOutput({ level: 'info' }); returns its
 * stdout lines with their arrival times. The child reports on stderr the largest single write
 * to stdout it made (fs.write / fs.writeSync wrapped before the logger is loaded).
 */
function child(body: string, writes?: { max: number }): Promise<Array<{ msg: string; n?: number; atMs: number }>> {
  const src = [
    `import fs from 'node:fs';`,
    `let max = 0;`,
    `const len = (d) => (typeof d === 'string' ? Buffer.byteLength(d) : d.length);`,
    `for (const name of ['write', 'writeSync']) { const orig = fs[name]; fs[name] = function (fd, d, ...rest) { if (fd === 1) max = Math.max(max, len(d)); return orig.call(this, fd, d, ...rest); }; }`,
    `process.on('exit', () => process.stderr.write('max-write ' + max + '\\n'));`,
    `const { createLogOutput } = await import(${JSON.stringify(destination)});`,
    `const out = createLogOutput({ level: 'info' });`,
    body,
  ].join('\n');
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--input-type=module', '-e', src], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    p.stderr.setEncoding('utf8');
    p.stderr.on('data', (d: string) => (err += d));
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
    p.on('close', () => {
      const m = /max-write (\d+)/.exec(err);
      if (!m) reject(new Error(`child failed: ${err}`));
      else {
        if (writes) writes.max = Number(m[1]);
        resolve(lines);
      }
    });
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

test('stdout log: no write is larger than PIPE_BUF (4096 bytes), so lines of several worker processes never interleave', async () => {
  const writes = { max: 0 };
  // 3,000 lines of ~700 bytes as fast as possible: batches form, and must stay within 4096 bytes.
  const lines = await child(
    `const pad = 'x'.repeat(600);\nfor (let n = 0; n < 3000; n++) out.logger.info({ n, pad }, 'line');\nsetTimeout(() => process.exit(0), 300);`,
    writes,
  );
  assert.equal(lines.length, 3000);
  assert.ok(writes.max > 700, `lines were written (${writes.max})`);
  assert.ok(writes.max <= 4096, `largest write ${writes.max} bytes`);
});
