// What-if: a memory-reducing ("last-resort") full GC once the process has been idle for 2 s and
// its heap grew since the last one (the young generation V8 grew under load is given back).
import v8 from 'node:v8';
import vm from 'node:vm';
import { performance } from 'node:perf_hooks';
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');
let prev = performance.eventLoopUtilization();
let quiet = 0;
let trimmedAt = 0;
setInterval(() => {
  const now = performance.eventLoopUtilization();
  const u = performance.eventLoopUtilization(now, prev).utilization;
  prev = now;
  quiet = u < 0.02 ? quiet + 1 : 0;
  const total = process.memoryUsage().heapTotal;
  if (quiet >= 4 && total > trimmedAt + 8 * 1048576) {
    // keep compiled code: a last-resort GC would otherwise force-flush all bytecode
    v8.setFlagsFromString('--no-flush-bytecode');
    gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
    v8.setFlagsFromString('--flush-bytecode');
    trimmedAt = process.memoryUsage().heapTotal;
    prev = performance.eventLoopUtilization();
  }
}, 500).unref();
