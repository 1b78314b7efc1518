// Diagnostics, not a what-if: every GC of the process (Node's 'gc' performance entries) as one JSON
// line {t, ms, kind} in BENCH_MEM_DIR/<pid>.gc.jsonl, t = wall-clock end in epoch ms, so slow
// messages in the mailgate log (time, duration_ms) can be matched to the GCs that ran during them:
// `node bench/gc-latency.ts LOG GCFILE`.
import { appendFileSync, readFileSync } from 'node:fs';
import { PerformanceObserver, constants } from 'node:perf_hooks';
const file = `${process.env.BENCH_MEM_DIR ?? '/tmp'}/${process.pid}.gc.jsonl`;
const kinds = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'scavenge',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'mark-compact',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak-callbacks',
};
const obs = new PerformanceObserver((list) => {
  let out = '';
  for (const e of list.getEntries()) {
    const end = performance.timeOrigin + e.startTime + e.duration;
    out += `${JSON.stringify({ t: Math.round(end * 10) / 10, ms: Math.round(e.duration * 100) / 100, kind: kinds[e.detail?.kind] ?? String(e.detail?.kind), flags: e.detail?.flags })}\n`;
  }
  appendFileSync(file, out);
});
obs.observe({ entryTypes: ['gc'] });
// Every 10 ms: event-loop lag, the main thread's CPU and the whole process's CPU (GC and JIT
// helper threads included) in that slice, and the machine's busy ticks, as {t, kind: 'tick', …}:
// a slow message with main ≈ wall was busy here, with main ≪ wall it waited for the CPU.
const machine = () => {
  const f = readFileSync('/proc/stat', 'latin1');
  const a = f.slice(4, f.indexOf('\n')).trim().split(/\s+/).map(Number);
  const idle = (a[3] ?? 0) + (a[4] ?? 0);
  return { busy: a.reduce((s, x) => s + x, 0) - idle, idle };
};
let last = { t: performance.now(), main: process.threadCpuUsage(), proc: process.cpuUsage(), m: machine() };
let ticks = '';
setInterval(() => {
  const now = { t: performance.now(), main: process.threadCpuUsage(), proc: process.cpuUsage(), m: machine() };
  const us = (a, b) => (b.user + b.system - a.user - a.system) / 1000;
  ticks += `${JSON.stringify({ t: Math.round((performance.timeOrigin + now.t) * 10) / 10, kind: 'tick', wall: Math.round((now.t - last.t) * 10) / 10, main: Math.round(us(last.main, now.main) * 10) / 10, proc: Math.round(us(last.proc, now.proc) * 10) / 10, busy: now.m.busy - last.m.busy, idle: now.m.idle - last.m.idle })}\n`;
  last = now;
  if (ticks.length > 16384) {
    appendFileSync(file, ticks);
    ticks = '';
  }
}, 10).unref();
process.on('exit', () => appendFileSync(file, ticks));
