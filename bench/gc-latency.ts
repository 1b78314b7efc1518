// Which GCs ran while the slowest messages were in the data stage: the mailgate log's message lines
// (time = end, duration_ms = DATA-end → reply) against bench/experiments/gc-timeline.mjs's
// <pid>.gc.jsonl. Usage: node bench/gc-latency.ts MAILGATE_LOG GC_JSONL [top-fraction, default 0.01] [skip]
// (skip: leave out the first messages, e.g. the latency row's 100 warm-up messages)
import { readFileSync } from 'node:fs';

interface Gc {
  t: number;
  ms: number;
  kind: string;
  /** kind 'tick' (10 ms slices): wall ms, main-thread and process CPU ms, machine busy/idle ticks */
  wall?: number;
  main?: number;
  proc?: number;
  busy?: number;
  idle?: number;
}
const [logFile, gcFile, topArg, skipArg] = process.argv.slice(2);
if (!logFile || !gcFile) throw new Error('usage: node bench/gc-latency.ts MAILGATE_LOG GC_JSONL [top-fraction]');
const msgs: { end: number; ms: number; i: number }[] = [];
for (const line of readFileSync(logFile, 'utf8').split('\n')) {
  if (!line.includes('"msg":"message"')) continue;
  const o = JSON.parse(line) as { time: number; duration_ms: number };
  msgs.push({ end: o.time, ms: o.duration_ms, i: msgs.length });
}
msgs.splice(0, Number(skipArg ?? 0));
const all = readFileSync(gcFile, 'utf8')
  .split('\n')
  .filter(Boolean)
  .map((l) => JSON.parse(l) as Gc);
const gcs = all.filter((g) => g.kind !== 'tick');
const ticks = all.filter((g) => g.kind === 'tick');
/** Main-thread CPU, process CPU and machine busy % over the slices that overlap [from, to]. */
const slice = (from: number, to: number): string => {
  let wall = 0;
  let main = 0;
  let proc = 0;
  let busy = 0;
  let idle = 0;
  for (const k of ticks) {
    if (k.t < from || k.t - (k.wall ?? 0) > to) continue;
    wall += k.wall ?? 0;
    main += k.main ?? 0;
    proc += k.proc ?? 0;
    busy += k.busy ?? 0;
    idle += k.idle ?? 0;
  }
  if (!wall) return '';
  return `  [slices ${wall.toFixed(0)} ms: main thread ${((100 * main) / wall).toFixed(0)}%, process ${((100 * proc) / wall).toFixed(0)}%, machine ${busy + idle ? ((100 * busy) / (busy + idle)).toFixed(0) : '?'}%]`;
};
const first = msgs[0]?.end ?? 0;
const last = msgs.at(-1)?.end ?? 0;
const during = gcs.filter((g) => g.t >= first - 1000 && g.t <= last);
const perKind = new Map<string, { n: number; total: number; max: number }>();
for (const g of during) {
  const k = perKind.get(g.kind) ?? { n: 0, total: 0, max: 0 };
  k.n++;
  k.total += g.ms;
  k.max = Math.max(k.max, g.ms);
  perKind.set(g.kind, k);
}
console.log(`${msgs.length} messages over ${((last - first) / 1000).toFixed(1)} s`);
console.log('GCs during traffic, per 1,000 messages:');
for (const [kind, k] of perKind)
  console.log(
    `  ${kind.padEnd(14)} ${((k.n * 1000) / msgs.length).toFixed(1).padStart(6)} GCs, ${((k.total * 1000) / msgs.length).toFixed(1).padStart(7)} ms paused, mean ${(k.total / k.n).toFixed(2)} ms, max ${k.max.toFixed(2)} ms`,
  );
const sorted = [...msgs].sort((a, b) => b.ms - a.ms);
const top = sorted.slice(0, Math.max(1, Math.round(msgs.length * Number(topArg ?? 0.01))));
const p = (q: number): number => [...msgs].sort((a, b) => a.ms - b.ms)[Math.floor(q * (msgs.length - 1))]?.ms ?? 0;
console.log(`server-side duration_ms: p50 ${p(0.5)} p99 ${p(0.99)} max ${sorted[0]?.ms}`);
console.log(`slowest ${top.length} messages and the GC pauses that ended inside them:`);
let withMc = 0;
let withAny = 0;
for (const m of top) {
  const inside = gcs.filter((g) => g.t >= m.end - m.ms && g.t - g.ms <= m.end);
  const paused = inside.reduce((s, g) => s + g.ms, 0);
  if (inside.some((g) => g.kind === 'mark-compact')) withMc++;
  if (inside.length) withAny++;
  console.log(
    `  #${String(m.i).padStart(5)} ${m.ms.toFixed(1).padStart(7)} ms  GC ${paused.toFixed(1).padStart(6)} ms  ${inside.map((g) => `${g.kind} ${g.ms.toFixed(1)}`).join(', ')}${slice(m.end - m.ms, m.end)}`,
  );
}
console.log(`${withMc}/${top.length} overlap a mark-compact, ${withAny}/${top.length} any GC`);
if (ticks.length) console.log(`whole traffic window:${slice(first, last)}`);
