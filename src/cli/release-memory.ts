// Gives the memory start-up used back to the OS once `serve` listens. Loading and compiling ~700
// modules and the rules grows V8's young generation to its maximum (two 16 MiB semi-spaces) and
// leaves freed pages pooled; an ordinary full GC keeps both (RSS stays ≈ 30–40 MiB higher for as
// long as the process is idle). A memory-reducing ("last-resort") GC — what V8 does on a
// low-memory notification — shrinks the young generation and releases the pool. Once only: run
// again each time the gateway goes idle, the young generation V8 regrows under load costs
// 10–15% CPU per message when traffic returns (bench/HISTORY.md).
import v8 from 'node:v8';
import vm from 'node:vm';

type Gc = (options?: { type?: 'major' | 'minor'; execution?: 'sync' | 'async'; flavor?: 'regular' | 'last-resort' }) => void;

/** One memory-reducing full GC, keeping compiled code. Takes 40–130 ms on an idle gateway. */
export function releaseStartupMemory(): void {
  // `gc` exists only in contexts created after --expose-gc; the main context is left as it was.
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as Gc;
  // A last-resort GC also force-flushes all bytecode, and the code compiled at start is exactly
  // the code the first messages run: keep it (bytecode ageing goes on as usual afterwards).
  v8.setFlagsFromString('--no-flush-bytecode');
  try {
    gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  } finally {
    v8.setFlagsFromString('--flush-bytecode');
  }
}
