// Diagnostics, not a what-if: on every SIGWINCH (the bench's settle points, after preload.cjs's
// GC) appends V8's heap spaces and /proc/self/smaps totals to BENCH_MEM_DIR/<pid>-spaces.jsonl.
import v8 from 'node:v8';
import { appendFileSync, readFileSync } from 'node:fs';
const MB = (x) => +(x / 1048576).toFixed(1);
process.on('SIGWINCH', () => {
  setTimeout(() => {
    const spaces = Object.fromEntries(v8.getHeapSpaceStatistics().filter((s) => s.physical_space_size > 0).map((s) => [s.space_name, [MB(s.space_used_size), MB(s.physical_space_size)]]));
    const maps = {};
    let name = '';
    // anonymous mappings by shape: V8 heap pages are 256 KiB; glibc thread arenas are 64 MiB
    // aligned reservations (rw-p head, then ---p); the rest (large objects, code range, stacks)
    for (const l of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
      const m = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(l);
      if (m) {
        const a = Number.parseInt(m[1], 16);
        const size = Number.parseInt(m[2], 16) - a;
        name = m[4].includes('/node') ? 'node-binary' : m[4] || (size === 262144 ? 'anon-256k' : a % 67108864 === 0 && m[3] === 'rw-p' ? 'anon-arena' : 'anon-other');
      } else if (l.startsWith('Rss:')) maps[name] = (maps[name] ?? 0) + Number(l.split(/\s+/)[1]) / 1024;
    }
    for (const k of Object.keys(maps)) maps[k] = +maps[k].toFixed(1);
    const line = { t: Date.now(), rss: MB(process.memoryUsage().rss), spaces, maps: Object.fromEntries(Object.entries(maps).filter(([, v]) => v > 0.5)), malloced: MB(v8.getHeapStatistics().malloced_memory), external: MB(process.memoryUsage().external) };
    appendFileSync(`${process.env.BENCH_MEM_DIR}/${process.pid}-spaces.jsonl`, `${JSON.stringify(line)}\n`);
  }, 600);
});
// RSS every 2 s, no GC forced: what V8's own memory reducer gives back while idle
setInterval(() => {
  appendFileSync(`${process.env.BENCH_MEM_DIR}/${process.pid}-rss.txt`, `${Date.now()} ${MB(process.memoryUsage().rss)} new ${MB(v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').physical_space_size)}\n`);
}, 2000).unref();
