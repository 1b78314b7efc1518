// Diagnostics for the memory rows (BENCH_MEMDUMP=1, loaded by preload.cjs into mailgate and
// Haraka alike): at each settle point (SIGWINCH, after preload's GC) appends where the RSS is —
// /proc/self/smaps by mapping kind, V8's heap spaces and code statistics, process.memoryUsage() —
// to BENCH_MEM_DIR/<pid>-attrib.jsonl. Changes nothing that is measured except on those signals.
'use strict';
const v8 = require('node:v8');
const { appendFileSync, readFileSync } = require('node:fs');
const MB = (x) => +(x / 1048576).toFixed(2);
const bigAnon = [];
function smapsByKind() {
  const kinds = {};
  let kind = '';
  let cur = null;
  bigAnon.length = 0;
  for (const l of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(l);
    if (m) {
      const path = m[4];
      const perm = m[3];
      if (path === '[heap]') kind = 'malloc-brk';
      else if (path === '[stack]') kind = 'stack';
      else if (/\/node$/.test(path)) kind = perm.includes('x') ? 'node-binary-text' : 'node-binary-data';
      else if (path.startsWith('/')) kind = perm.includes('x') ? 'lib-text' : 'lib-data';
      else if (path.startsWith('[')) kind = 'vdso';
      else kind = perm.includes('x') ? 'anon-exec' : 'anon';
      cur = { kind, start: m[1], size: (Number.parseInt(m[2], 16) - Number.parseInt(m[1], 16)) / 1048576, perm };
    } else if (l.startsWith('Rss:')) {
      const rss = Number(l.split(/\s+/)[1]) / 1024;
      kinds[kind] = (kinds[kind] ?? 0) + rss;
      if (cur && kind.startsWith('anon') && rss >= 0.5) bigAnon.push([cur.start, +cur.size.toFixed(2), +rss.toFixed(2), cur.perm]);
    }
  }
  for (const k of Object.keys(kinds)) kinds[k] = +kinds[k].toFixed(2);
  return kinds;
}
function rollup() {
  const o = {};
  for (const l of readFileSync('/proc/self/smaps_rollup', 'utf8').split('\n')) {
    const m = /^(\w+):\s+(\d+) kB/.exec(l);
    if (m && ['Rss', 'Anonymous', 'Private_Clean', 'Private_Dirty', 'Shared_Clean'].includes(m[1])) o[m[1]] = +(Number(m[2]) / 1024).toFixed(2);
  }
  return o;
}
process.on('SIGWINCH', () => {
  setTimeout(() => {
    const spaces = Object.fromEntries(v8.getHeapSpaceStatistics().map((s) => [s.space_name, { used: MB(s.space_used_size), phys: MB(s.physical_space_size) }]));
    const h = v8.getHeapStatistics();
    const c = v8.getHeapCodeStatistics();
    const mu = process.memoryUsage();
    const line = {
      t: Date.now(),
      argv: process.argv.slice(1, 3).join(' '),
      rollup: rollup(),
      maps: smapsByKind(),
      bigAnon,
      spaces,
      heap: { total_physical: MB(h.total_physical_size), used: MB(h.used_heap_size), malloced: MB(h.malloced_memory), peak_malloced: MB(h.peak_malloced_memory), external: MB(h.external_memory) },
      code: { code_and_metadata: MB(c.code_and_metadata_size), bytecode_and_metadata: MB(c.bytecode_and_metadata_size), external_script_source: MB(c.external_script_source_size), cpu_profiler_metadata: MB(c.cpu_profiler_metadata_size) },
      mu: { rss: MB(mu.rss), heapTotal: MB(mu.heapTotal), heapUsed: MB(mu.heapUsed), external: MB(mu.external), arrayBuffers: MB(mu.arrayBuffers) },
    };
    appendFileSync(`${process.env.BENCH_MEM_DIR}/${process.pid}-attrib.jsonl`, `${JSON.stringify(line)}\n`);
  }, 300);
});
