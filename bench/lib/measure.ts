// The measurements every target shares: throughput with smtp-source (warm-up, then N runs sized
// to last `seconds` each, median), latency at a fixed rate against the sink as baseline, RSS while
// holding idle connections, and RSS growth while relaying one large message.
import { setTimeout as sleep } from 'node:timers/promises';
import { cpus } from 'node:os';
import { runSource } from './postfix.ts';
import { busyPct, cpuSeconds, hwmMiB, machineTicks, rssMiB, tree } from './procfs.ts';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { signalTree } from './service.ts';
import { measureLatency, type LatencyResult } from './latency.ts';
import { SmtpConn, sendFile } from './smtp-client.ts';
import { median, round } from './stats.ts';
import type { BenchContext, LatencyFigures, LatencyRow, MemoryRow, RunSample, Target, ThroughputRow } from './types.ts';

const MAX_MSGS = 30_000;

/** Waits until the sink has seen `want` messages (or a short timeout: a forwarder may lag). */
async function waitDelivered(ctx: BenchContext, want: number, ms = 3000): Promise<number> {
  const end = Date.now() + ms;
  let n = ctx.sink.delivered();
  while (n < want && Date.now() < end) {
    await sleep(50);
    n = ctx.sink.delivered();
  }
  return n;
}

export async function oneRun(ctx: BenchContext, t: Target, sessions: number, msgs: number): Promise<RunSample> {
  const sinkPid = ctx.sink.svc.pid;
  const d0 = ctx.sink.delivered();
  const cpu = (): number => cpuSeconds(t.pid) + (t.extraPids ?? []).reduce((a, p) => a + cpuSeconds(p), 0);
  const c0 = cpu();
  const s0 = cpuSeconds(sinkPid);
  const m0 = machineTicks();
  const timeoutS = Math.max(30, ctx.opts.seconds * 10);
  const r = await runSource({
    port: t.port,
    sessions,
    msgs,
    messageFile: ctx.corpus.smallFile,
    timeoutS,
    ...(ctx.opts.pinLoad ? { pinCpus: ctx.opts.pinLoad } : {}),
  });
  const m1 = machineTicks();
  // a queueing MTA (the Postfix rows) delivers after it accepted: wait for it, CPU included
  const d1 = await waitDelivered(ctx, d0 + msgs, 15_000);
  const c1 = cpu();
  const s1 = cpuSeconds(sinkPid);
  const problems: string[] = [];
  if (r.timedOut) problems.push(`smtp-source killed after ${timeoutS}s`);
  if (r.exitCode !== 0 && !r.timedOut) problems.push(`smtp-source exit ${r.exitCode}`);
  if (r.output) problems.push(`smtp-source: ${r.output.split('\n').slice(0, 3).join(' | ')}`);
  if (d1 - d0 !== msgs) problems.push(`sink received ${d1 - d0} of ${msgs}`);
  const busy = busyPct(m0, m1);
  const labCpu = (t.pid === sinkPid ? 0 : c1 - c0) + (s1 - s0) + (Number.isFinite(r.sourceCpuS) ? r.sourceCpuS : 0);
  const otherPct = Math.max(0, busy - (100 * labCpu) / r.wallS / cpus().length);
  return {
    msgs,
    wallS: round(r.wallS, 3) ?? 0,
    msgPerS: round(msgs / r.wallS, 0) ?? 0,
    cpuS: round(c1 - c0, 2),
    sinkCpuS: round(s1 - s0, 2) ?? 0,
    sourceCpuS: round(r.sourceCpuS, 2) ?? 0,
    machineBusyPct: round(busy, 0) ?? 0,
    otherBusyPct: round(otherPct, 0) ?? 0,
    delivered: d1 - d0,
    problems,
  };
}

export interface ThroughputSpec {
  id: string;
  label: string;
  sessions: number;
}

/** Messages per run so that one run lasts about opts.seconds at `rate`. */
export function runSize(ctx: BenchContext, sessions: number, rate: number): number {
  return Math.max(sessions * 20, 100, Math.min(MAX_MSGS, Math.round((rate * ctx.opts.seconds) / 10) * 10));
}

/** Warm-up, growing until it lasts ≥ 1 s, whose rate sizes the runs. */
export async function sizeRuns(ctx: BenchContext, t: Target, sessions: number, id: string): Promise<{ msgs: number; notes: string[] }> {
  let n = Math.max(50, sessions * 10);
  let warm = await oneRun(ctx, t, sessions, n);
  while (warm.wallS < 1 && n < MAX_MSGS / 4 && warm.problems.length === 0) {
    n = Math.min(MAX_MSGS / 4, Math.ceil(n * Math.min(8, 1.5 / Math.max(warm.wallS, 0.05))));
    warm = await oneRun(ctx, t, sessions, n);
  }
  const msgs = runSize(ctx, sessions, warm.msgPerS);
  ctx.log(`  ${id.padEnd(16)} warm-up ${warm.msgPerS} msg/s → runs of ${msgs} messages`);
  return { msgs, notes: warm.problems.length ? [`warm-up: ${warm.problems.join('; ')}`] : [] };
}

/** The row from its runs: median msg/s, median CPU per 1,000 messages, VmHWM of the tree now. */
export function summarise(t: Target, spec: ThroughputSpec, runs: RunSample[], notes: string[]): ThroughputRow {
  const cpuPer1k = median(runs.map((r) => (r.cpuS === null ? NaN : (r.cpuS / r.msgs) * 1000)));
  return {
    kind: 'throughput',
    id: spec.id,
    target: t.name,
    label: spec.label,
    sessions: spec.sessions,
    workers: t.workers,
    msgPerS: round(median(runs.map((r) => r.msgPerS)), 0),
    cpuPer1kS: round(cpuPer1k, 3),
    peakRssMiB: round(hwmMiB(t.pid) + (t.extraPids ?? []).reduce((a, p) => a + hwmMiB(p), 0), 1),
    runs,
    ok: runs.every((r) => r.problems.length === 0),
    notes,
  };
}

/** Warm-up, then opts.runs runs of one target on its own (rows outside the interleaved group). */
export async function measureThroughput(ctx: BenchContext, t: Target, spec: ThroughputSpec): Promise<ThroughputRow> {
  let { msgs, notes } = await sizeRuns(ctx, t, spec.sessions, spec.id);
  const runs: RunSample[] = [];
  for (let i = 0; i < ctx.opts.runs; i++) {
    await sleep(ctx.opts.quick ? 300 : 1000);
    const r = await oneRun(ctx, t, spec.sessions, msgs);
    ctx.log(`    run ${i + 1}: ${r.msgPerS} msg/s, cpu ${r.cpuS}s${r.problems.length ? `  PROBLEMS: ${r.problems.join('; ')}` : ''}`);
    runs.push(r);
    if (r.wallS < ctx.opts.seconds / 2 || r.wallS > ctx.opts.seconds * 2) msgs = runSize(ctx, spec.sessions, r.msgPerS);
  }
  return summarise(t, spec, runs, notes);
}

function figures(r: LatencyResult): LatencyFigures {
  return {
    sent: r.sent,
    ok: r.ok,
    errors: r.errors,
    skipped: r.skipped,
    p50Ms: round(r.p50Ms, 3),
    p90Ms: round(r.p90Ms, 3),
    p99Ms: round(r.p99Ms, 3),
    maxMs: round(r.maxMs, 3),
    achievedRate: round(r.achievedRate, 0) ?? 0,
  };
}

/**
 * Latency at `rate` msg/s through the target and, in the same run just before, straight to the
 * sink: "added" is the difference of the percentiles.
 */
export async function measureAddedLatency(ctx: BenchContext, t: Target, id: string, label: string, rate: number): Promise<LatencyRow> {
  const seconds = ctx.opts.quick ? 3 : 8;
  const count = Math.max(200, Math.round(rate * seconds));
  const wire = ctx.corpus.smallWire;
  // A short warm-up that is not recorded: the sink's before the direct run, the target's after it,
  // right before its own run. Warmed before the direct run's ~8 s, the target sat idle long enough
  // for V8's memory reducer to shrink its young generation and pause 18–31 ms as traffic resumed
  // (bench/HISTORY.md, 2026-12-02 third round): not the steady state of a gateway at half load.
  await measureLatency({ port: ctx.sink.port, wire, rate, count: Math.min(count, 100) });
  const direct = await measureLatency({ port: ctx.sink.port, wire, rate, count });
  await measureLatency({ port: t.port, wire, rate, count: Math.min(count, 100) });
  await sleep(500);
  const lab = (): number => cpuSeconds(t.pid) + cpuSeconds(ctx.sink.svc.pid) + cpuSeconds(ctx.dns.svc.pid) + cpuSeconds(process.pid);
  const m0 = machineTicks();
  const l0 = lab();
  const w0 = performance.now();
  const through = await measureLatency({ port: t.port, wire, rate, count });
  const wallS = (performance.now() - w0) / 1000;
  const m1 = machineTicks();
  const busy = busyPct(m0, m1);
  const othersPct = Math.max(0, busy - (100 * (lab() - l0)) / wallS / cpus().length);
  const notes: string[] = [];
  for (const [n, r] of [
    ['direct', direct],
    ['through', through],
  ] as const) {
    if (r.errors) notes.push(`${n}: ${r.errors} errors (${r.firstError})`);
    if (r.skipped) notes.push(`${n}: ${r.skipped} not started (too many in flight: overloaded)`);
    if (r.achievedRate < rate * 0.9) notes.push(`${n}: client reached only ${Math.round(r.achievedRate)} msg/s`);
  }
  const sub = (a: number | null, b: number | null): number | null => (a === null || b === null ? null : round(a - b, 3));
  ctx.log(
    `  ${id}: ${rate} msg/s: direct p50 ${round(direct.p50Ms, 2)} p99 ${round(direct.p99Ms, 2)} ms; through ${t.name} p50 ${round(through.p50Ms, 2)} p99 ${round(through.p99Ms, 2)} ms (machine ${round(busy, 0)}% busy, others ${round(othersPct, 0)}%)`,
  );
  return {
    kind: 'latency',
    id,
    target: t.name,
    label,
    rate,
    through: figures(through),
    direct: figures(direct),
    addedP50Ms: sub(through.p50Ms, direct.p50Ms),
    addedP99Ms: sub(through.p99Ms, direct.p99Ms),
    machine: { busyPct: round(busy, 0) ?? 0, othersPct: round(othersPct, 0) ?? 0 },
    ok: notes.length === 0,
    notes,
  };
}

/** JS heap in use (MiB) over the tree, as the preload wrote it after its last forced GC. */
function heapUsedMiB(ctx: BenchContext, pid: number): number | null {
  let sum = 0;
  for (const p of tree(pid)) {
    try {
      sum += (JSON.parse(readFileSync(join(ctx.dirs.logs, `${p}.json`), 'utf8')) as { heapUsed: number }).heapUsed;
    } catch {
      return null;
    }
  }
  return sum / 1048576;
}

/** RSS and JS heap after a full GC in every process of the tree (preload.cjs), median of samples. */
async function settled(ctx: BenchContext, pid: number, samples = 3): Promise<{ rss: number; heap: number | null }> {
  const v: number[] = [];
  const h: number[] = [];
  for (let i = 0; i < samples; i++) {
    signalTree(pid, 'SIGWINCH');
    await sleep(700);
    v.push(rssMiB(pid));
    const x = heapUsedMiB(ctx, pid);
    if (x !== null) h.push(x);
  }
  return { rss: median(v) ?? 0, heap: median(h) };
}
async function settledRss(ctx: BenchContext, pid: number, samples = 3): Promise<number> {
  return (await settled(ctx, pid, samples)).rss;
}

/** Warms the target up with a few messages so baselines include loaded code and pools. */
export async function warmUp(ctx: BenchContext, t: Target, msgs = 200): Promise<void> {
  const d0 = ctx.sink.delivered();
  await runSource({ port: t.port, sessions: 20, msgs, messageFile: ctx.corpus.smallFile, timeoutS: 60 });
  await waitDelivered(ctx, d0 + msgs);
}

/** RSS of the target while it holds `count` connections idle after EHLO. */
export async function measureIdleConns(ctx: BenchContext, t: Target, id: string, label: string, count: number): Promise<MemoryRow> {
  await warmUp(ctx, t);
  await sleep(Number(process.env.BENCH_IDLE_SETTLE_MS ?? 3000)); // V8 and glibc hand freed pages back with a delay
  const base = await settled(ctx, t.pid);
  const baseline = base.rss;
  const conns: SmtpConn[] = [];
  let failed = 0;
  let firstError = '';
  const t0 = performance.now();
  // open in batches of 50 so the accept queue never overflows
  for (let i = 0; i < count; i += 50) {
    const batch = await Promise.allSettled(
      Array.from({ length: Math.min(50, count - i) }, async () => {
        const c = await SmtpConn.open(t.port, 60_000);
        await c.cmd('EHLO idle.example.test', 250);
        return c;
      }),
    );
    for (const b of batch) {
      if (b.status === 'fulfilled') conns.push(b.value);
      else {
        failed++;
        firstError ||= String(b.reason instanceof Error ? b.reason.message : b.reason);
      }
    }
  }
  const openMs = performance.now() - t0;
  await sleep(1000);
  const load = await settled(ctx, t.pid);
  const loaded = load.rss;
  const heapPerConnKiB = load.heap !== null && base.heap !== null ? round(((load.heap - base.heap) * 1024) / count, 1) : null;
  const alive = conns.filter((c) => !c.socket.destroyed).length;
  await Promise.all(conns.map((c) => c.quit()));
  await sleep(2000);
  const after = await settledRss(ctx, t.pid, 1);
  const notes: string[] = [];
  if (failed) notes.push(`${failed} connections failed (${firstError})`);
  if (alive !== count) notes.push(`${alive} of ${count} still open when sampled`);
  ctx.log(
    `  ${id}: baseline ${round(baseline)} MiB, with ${alive} idle connections ${round(loaded)} MiB (${round(((loaded - baseline) * 1024) / count)} KiB each; JS heap ${round(base.heap)} → ${round(load.heap)} MiB, ${heapPerConnKiB} KiB each)`,
  );
  return {
    kind: 'memory',
    id,
    target: t.name,
    label,
    test: 'idle-conns',
    baselineMiB: round(baseline) ?? 0,
    loadedMiB: round(loaded) ?? 0,
    growthMiB: round(loaded - baseline) ?? 0,
    per: round(((loaded - baseline) * 1024) / count, 1),
    detail: {
      connections: count,
      open: alive,
      failed,
      openMs: round(openMs, 0),
      afterCloseMiB: round(after),
      heapBaselineMiB: round(base.heap),
      heapLoadedMiB: round(load.heap),
      heapPerConnKiB,
    },
    ok: notes.length === 0,
    notes,
  };
}

/**
 * RSS growth while the target relays one large message: `repeat` sends on one fresh process, each
 * from a GC-settled baseline, RSS sampled every 20 ms; the median growth is the row's figure.
 * VmHWM growth over the first send is reported too.
 */
export async function measureBigMessage(ctx: BenchContext, t: Target, id: string, label: string, file: string, bytes: number, repeat = 3): Promise<MemoryRow> {
  await warmUp(ctx, t, 100);
  await sleep(2000);
  const notes: string[] = [];
  const sends: { baseline: number; peak: number; seconds: number | null; afterEndMs: number | null; reply: string }[] = [];
  const hwm0 = hwmMiB(t.pid);
  let hwm1 = hwm0;
  for (let i = 0; i < repeat; i++) {
    const baseline = await settledRss(ctx, t.pid);
    const d0 = ctx.sink.delivered();
    let peak = rssMiB(t.pid);
    const timer = setInterval(() => (peak = Math.max(peak, rssMiB(t.pid))), 20);
    let res: Awaited<ReturnType<typeof sendFile>> | null = null;
    let err = '';
    try {
      res = await sendFile(t.port, file);
    } catch (e) {
      err = e instanceof Error ? e.message : String(e);
    } finally {
      clearInterval(timer);
    }
    peak = Math.max(peak, rssMiB(t.pid));
    if (i === 0) hwm1 = hwmMiB(t.pid);
    const delivered = (await waitDelivered(ctx, d0 + 1, 10_000)) - d0;
    if (err) notes.push(`send ${i + 1} failed: ${err}`);
    if (res && res.reply.code !== 250) notes.push(`send ${i + 1}: reply ${res.reply.text}`);
    if (delivered !== 1) notes.push(`send ${i + 1}: sink received ${delivered} messages`);
    sends.push({
      baseline,
      peak,
      seconds: round(res?.seconds ?? null, 2),
      afterEndMs: round(res?.afterEndMs ?? null, 1),
      reply: res?.reply.text.slice(0, 120) ?? err,
    });
    ctx.log(
      `  ${id} send ${i + 1}: baseline ${round(baseline)} MiB, peak ${round(peak)} MiB (+${round(peak - baseline)}), ${round(res?.seconds ?? null, 2)} s, reply ${res?.reply.code ?? err}`,
    );
  }
  const growths = sends.map((x) => x.peak - x.baseline);
  const mid = sends[growths.indexOf(median(growths) ?? growths[0] ?? 0)] ?? sends[0];
  return {
    kind: 'memory',
    id,
    target: t.name,
    label,
    test: 'big-message',
    baselineMiB: round(mid?.baseline) ?? 0,
    loadedMiB: round(mid?.peak) ?? 0,
    growthMiB: round(median(growths)) ?? 0,
    per: round(bytes / 1e6, 1),
    detail: {
      bytes,
      sends: repeat,
      growthsMiB: growths.map((g) => round(g)).join('/'),
      seconds: median(sends.map((x) => x.seconds ?? NaN)),
      secondsEach: sends.map((x) => x.seconds).join('/'),
      afterEndMs: median(sends.map((x) => x.afterEndMs ?? NaN)),
      reply: sends[0]?.reply ?? '',
      hwmGrowthMiB: round(hwm1 - hwm0),
    },
    ok: notes.length === 0,
    notes,
  };
}
