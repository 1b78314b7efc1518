// Prints a results JSON (default bench/results/latest.json) as Markdown tables, for pasting into
// docs/bench.md after a run of record.
// Usage: node bench/results-md.ts [FILE]
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Ratio, TargetCheck } from './lib/report.ts';
import type { LatencyRow, MemoryRow, Row, ThroughputRow } from './lib/types.ts';

const file = process.argv[2] ?? fileURLToPath(new URL('./results/latest.json', import.meta.url));
const j = JSON.parse(readFileSync(file, 'utf8')) as {
  started: string;
  machine: { cpus: number; cpu: string; kernel: string; node: string };
  tools: { postfix: string; haraka: string };
  mailgate: { revision: string; uncommittedChangesInSrc: boolean; from: string };
  rows: Row[];
  ratios: Ratio[];
  targets: TargetCheck[];
};
const out: string[] = [];
const md = (head: string[], rows: (string | number | null)[][]): void => {
  out.push(`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`);
  for (const r of rows) out.push(`| ${r.map((c) => (c === null ? '–' : String(c))).join(' | ')} |`);
  out.push('');
};
const fmt = (n: number | null | undefined): string => (n === null || n === undefined ? '–' : n.toLocaleString('en-US'));

out.push(
  `Run of ${j.started.slice(0, 16).replace('T', ' ')} UTC, mailgate ${j.mailgate.revision}${j.mailgate.uncommittedChangesInSrc ? ' (with uncommitted changes in src/)' : ''}, ` +
    `Node ${j.machine.node}, ${j.machine.cpus} × ${j.machine.cpu}, Postfix ${j.tools.postfix}, Haraka ${j.tools.haraka}.`,
  '',
);
const t = j.rows.filter((r): r is ThroughputRow => r.kind === 'throughput');
md(
  ['row', 'sessions', 'msg/s (median)', 'runs', 'CPU s / 1k msg', 'peak RSS MiB', 'others %'],
  t.map((r) => [
    r.id,
    r.sessions,
    fmt(r.msgPerS),
    r.runs.map((x) => x.msgPerS).join(' / '),
    r.cpuPer1kS,
    r.peakRssMiB,
    r.runs.map((x) => x.otherBusyPct).join(' / '),
  ]),
);
md(
  ['ratio (same run)', 'value'],
  j.ratios.map((r) => [r.name, r.value === null ? null : `${r.value}×`]),
);
const l = j.rows.filter((r): r is LatencyRow => r.kind === 'latency');
md(
  ['latency row', 'rate msg/s', 'direct p50 / p99 ms', 'through p50 / p99 ms', 'added p50 / p99 ms'],
  l.map((r) => [r.id, r.rate, `${r.direct.p50Ms} / ${r.direct.p99Ms}`, `${r.through.p50Ms} / ${r.through.p99Ms}`, `${r.addedP50Ms} / ${r.addedP99Ms}`]),
);
const m = j.rows.filter((r): r is MemoryRow => r.kind === 'memory');
md(
  ['memory row', 'test', 'baseline MiB', 'loaded / peak MiB', 'growth MiB', 'detail'],
  m.map((r) => [
    r.id,
    r.test === 'idle-conns' ? `${r.detail.connections} idle connections` : `${r.per} MB message ×${r.detail.sends}`,
    r.baselineMiB,
    r.loadedMiB,
    r.growthMiB,
    r.test === 'idle-conns'
      ? `${r.per} KiB/conn RSS, ${r.detail.heapPerConnKiB} KiB/conn JS heap`
      : `growths ${r.detail.growthsMiB} MiB, ${r.detail.secondsEach} s`,
  ]),
);
md(
  ['target', 'measured', 'result'],
  j.targets.map((x) => [x.target, x.measured, x.pass === null ? 'n/a' : x.pass ? 'PASS' : 'FAIL']),
);
process.stdout.write(out.join('\n'));
