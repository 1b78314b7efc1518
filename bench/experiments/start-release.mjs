// What-if: one memory-reducing ("last-resort") full GC 3 s after the process starts (serving by then),
// with bytecode flushing off for it. Gives back the young generation start-up grew (≈ 30 MiB
// of idle RSS) — but the first ~1,000 messages after it cost ≈ 1.4 s more CPU while V8 regrows
// the young generation (bench/HISTORY.md), so `serve` does not do it.
import v8 from 'node:v8';
import vm from 'node:vm';
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');
setTimeout(() => {
  v8.setFlagsFromString('--no-flush-bytecode');
  gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  v8.setFlagsFromString('--flush-bytecode');
}, 3000).unref();
