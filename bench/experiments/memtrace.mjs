// Diagnostics, not a what-if: process.memoryUsage() every 50 ms (no GC forced) into
// BENCH_MEM_DIR/<pid>-trace.txt — where a large message's RSS growth sits (heap vs external).
import { appendFileSync } from 'node:fs';
const MB = (x) => (x / 1048576).toFixed(1);
let last = '';
setInterval(() => {
  const m = process.memoryUsage();
  const line = `rss ${MB(m.rss)} heapTotal ${MB(m.heapTotal)} heapUsed ${MB(m.heapUsed)} external ${MB(m.external)} arrayBuffers ${MB(m.arrayBuffers)}`;
  if (line !== last) appendFileSync(`${process.env.BENCH_MEM_DIR}/${process.pid}-trace.txt`, `${Date.now()} ${line}\n`);
  last = line;
}, 50).unref();
