// Crash safety with a real SIGKILL: a child process quarantines 3 MB messages in a loop and says
// ACK after each put() (the 250 a client would get); it is killed mid-write at varying moments.
// After a restart (reconcile), every ACKed entry is listed with exactly its bytes, nothing listed
// is partial, and no temp file is mistaken for an entry.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QuarantineStore } from '../../src/delivery/quarantine/store.ts';
import { quarantineSchema } from '../../src/config/quarantine-schema.ts';
import { messageFor } from '../helpers/quarantine-writer.ts';

async function runAndKill(dir: string, prefix: string, acksBeforeKill: number, extraDelayMs: number): Promise<string[]> {
  const child = spawn(process.execPath, ['test/helpers/quarantine-writer.ts', dir, prefix], { stdio: ['ignore', 'pipe', 'inherit'] });
  const acked: string[] = [];
  let buf = '';
  await new Promise<void>((resolve) => {
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.startsWith('ACK ')) acked.push(line.slice(4));
        if (acked.length === acksBeforeKill) {
          setTimeout(() => child.kill('SIGKILL'), extraDelayMs);
        }
      }
    });
    child.on('exit', () => resolve());
  });
  assert.equal(child.signalCode, 'SIGKILL');
  return acked;
}

test('SIGKILL during large quarantine writes: nothing acknowledged is lost, nothing partial is listed', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-qcrash-'));
  try {
    const acked: string[] = [];
    // Kill right after an ACK, and a little and a lot into the next write.
    const rounds = [
      { prefix: 'A', acks: 2, delay: 0 },
      { prefix: 'B', acks: 2, delay: 15 },
      { prefix: 'C', acks: 3, delay: 40 },
      { prefix: 'D', acks: 1, delay: 90 },
    ];
    for (const r of rounds) acked.push(...(await runAndKill(dir, r.prefix, r.acks, r.delay)));
    const store = new QuarantineStore({ config: quarantineSchema.parse({ dir }) });
    try {
      // What `serve` does at start.
      await store.reconcile();
      const listed = (await store.list({ limit: 1000 })).rows;
      const ids = new Set(listed.map((r) => r.id));
      for (const id of acked) assert.ok(ids.has(id), `acknowledged ${id} is listed`);
      for (const row of listed) {
        const bytes = await store.bytes(row);
        const want = messageFor(row.id);
        assert.equal(bytes.length, want.size, `${row.id}: complete`);
        assert.equal(createHash('sha256').update(bytes).digest('hex'), want.sha256, `${row.id}: exact bytes`);
        assert.equal(row.size, want.size);
      }
      assert.ok(listed.length >= acked.length && listed.length <= acked.length + rounds.length, `${listed.length} listed, ${acked.length} acked`);
      // Partial leftovers exist on disk but were never listed (young ones are kept for a while
      // in case another process is still writing them).
      const day = readdirSync(dir).find((d) => /^\d{4}-/.test(d)) as string;
      const files = readdirSync(join(dir, day));
      const partial = files.filter((f) => f.endsWith('.tmp') || (f.endsWith('.eml') && !files.includes(f.replace(/\.eml$/, '.json'))));
      for (const f of partial) assert.ok(!ids.has(f.replace(/^\./, '').split('.')[0] as string), `${f} not listed`);
      process.stdout.write(`# acked ${acked.length}, listed ${listed.length}, partial files left ${partial.length}\n`);
    } finally {
      await store.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
