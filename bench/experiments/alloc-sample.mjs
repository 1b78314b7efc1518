// Diagnostics, not a what-if: V8's sampling heap profiler with the objects the GC has already
// collected kept in the profile (so it counts what was allocated, not what is alive), written as
// BENCH_MEM_DIR/<pid>.heapprofile at exit or on SIGUSR2. Summarise with
// `node bench/alloc-summary.ts FILE [messages]`. Interval: ALLOC_SAMPLE_BYTES (default 8192).
import { Session } from 'node:inspector';
import { writeFileSync } from 'node:fs';
const session = new Session();
session.connect();
const interval = Number(process.env.ALLOC_SAMPLE_BYTES ?? 8192);
// ALLOC_SAMPLE_PROMOTED=1: leave out what a scavenge collected, so the profile holds what was
// promoted to the old generation (and what is still alive): the food of the mark-compacts.
const promotedOnly = process.env.ALLOC_SAMPLE_PROMOTED === '1';
session.post('HeapProfiler.startSampling', { samplingInterval: interval, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: !promotedOnly });
const dir = process.env.BENCH_MEM_DIR ?? '/tmp';
let written = false;
function dump() {
  if (written) return;
  written = true;
  session.post('HeapProfiler.stopSampling', (err, res) => {
    if (!err) writeFileSync(`${dir}/${process.pid}.heapprofile`, JSON.stringify(res.profile));
  });
}
process.on('SIGUSR2', dump);
process.on('exit', dump);
