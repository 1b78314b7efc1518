// releaseStartupMemory (src/cli/release-memory.ts): after start-up-like allocation (many objects
// that survive scavenges, as compiling modules and rules does) V8's young generation has grown and
// an ordinary full GC leaves it so; the memory-reducing GC must shrink it and keep compiled code.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import v8 from 'node:v8';
import vm from 'node:vm';
import { releaseStartupMemory } from '../../src/cli/release-memory.ts';

const MiB = 1024 * 1024;
const newSpace = (): number => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.physical_space_size ?? 0;

function growYoungGeneration(): void {
  // survivors in every scavenge make V8 grow the semi-spaces toward their maximum
  let keep: object[][] = [];
  for (let r = 0; r < 150; r++) {
    const a: object[] = [];
    for (let i = 0; i < 20_000; i++) a.push({ i, s: `x${i}` });
    keep.push(a);
    if (keep.length > 10) keep.shift();
  }
  keep = [];
}

test('the young generation start-up grew is given back', () => {
  growYoungGeneration();
  v8.setFlagsFromString('--expose-gc');
  (vm.runInNewContext('gc') as () => void)();
  const afterOrdinaryGc = newSpace();
  assert.ok(afterOrdinaryGc >= 8 * MiB, `precondition: an ordinary GC keeps the grown young generation (${(afterOrdinaryGc / MiB).toFixed(1)} MiB)`);
  releaseStartupMemory();
  const after = newSpace();
  assert.ok(after <= 2 * MiB, `young generation after release: ${(after / MiB).toFixed(1)} MiB (was ${(afterOrdinaryGc / MiB).toFixed(1)})`);
});

test('compiled code is kept (a last-resort GC alone would flush all bytecode)', () => {
  const before = v8.getHeapCodeStatistics().bytecode_and_metadata_size;
  releaseStartupMemory();
  const after = v8.getHeapCodeStatistics().bytecode_and_metadata_size;
  assert.ok(after >= before * 0.8, `bytecode ${before} → ${after} bytes`);
});
