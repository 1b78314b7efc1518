// What-if: one memory-reducing GC (bytecode kept) once the event loop has been quiet for 2 s after
// any activity. Gives back the young generation and the pages V8 pools (≈ 13 MiB after the bench's
// warm-up with MAILGATE_SEMI_SPACE_MIB=4), which otherwise only its memory reducer releases, ~10 s
// later. Measured: idle 109.0 vs Haraka 114.9 MiB, +75% CPU per message (bench/HISTORY.md).
import v8 from 'node:v8';
import vm from 'node:vm';
import { performance } from 'node:perf_hooks';
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');
let prev = performance.eventLoopUtilization();
let quiet = 0;
let busy = false;
setInterval(() => {
  const now = performance.eventLoopUtilization();
  const u = performance.eventLoopUtilization(now, prev).utilization;
  prev = now;
  if (u >= 0.02) {
    busy = true;
    quiet = 0;
  } else quiet++;
  if (busy && quiet >= 4) {
    v8.setFlagsFromString('--no-flush-bytecode');
    gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
    v8.setFlagsFromString('--flush-bytecode');
    busy = false;
    prev = performance.eventLoopUtilization();
  }
}, 500).unref();
