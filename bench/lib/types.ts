// The shapes every bench row producer shares: what it gets (BenchContext) and what it returns
// (rows of four kinds). A producer is one entry in bench/run.ts's list; bench/ratelimit.ts and
// later rows plug in the same way.
import type { Corpus } from './corpus.ts';
import type { DnsStub } from './dns-stub.ts';
import type { Sink } from './postfix.ts';
import type { LatencyResult } from './latency.ts';

export interface BenchOptions {
  /** Fewer runs and shorter runs: for iterating, not for the record. */
  quick: boolean;
  /** Runs per throughput row (median reported). */
  runs: number;
  /** Target length of one throughput run, in seconds (message count is derived from a warm-up). */
  seconds: number;
  /** Session counts for throughput rows. */
  sessions: number[];
  /** Producer ids to run (empty = all default ones). */
  only: string[];
  /** Write a V8 CPU profile of the mailgate processes into bench/work/prof/. */
  profile: boolean;
  /** bench/experiments/NAME.mjs files loaded into mailgate with --import (what-if measurements). */
  experiments: string[];
  /** Idle connections held for the memory row. */
  idleConns: number;
  /** Size of the large message, bytes. */
  bigBytes: number;
  /** --pin-load CPUS: smtp-source and smtp-sink run only on these CPUs (taskset). */
  pinLoad?: string;
  /** --pin-gateway CPUS: mailgate and Haraka run only on these CPUs (taskset). */
  pinGateway?: string;
  /** --compare-rev REV: mailgate at that revision is measured too (throughput and memory rows). */
  compareRev?: string;
}

export interface BenchDirs {
  root: string; // the repository
  bench: string; // bench/
  work: string; // bench/work/ (gitignored scratch: logs, corpus, Haraka, configs)
  logs: string;
  results: string; // bench/results/
}

export interface BenchContext {
  readonly opts: BenchOptions;
  readonly dirs: BenchDirs;
  readonly corpus: Corpus;
  /** The smtp-sink every row delivers to (shared, counting). */
  readonly sink: Sink;
  readonly dns: DnsStub;
  /** Where mailgate runs from: the working tree, or a `--rev` export under bench/work/. */
  readonly mailgateRoot: string;
  /** Rows produced so far in this run (a producer may use earlier ones, e.g. the limit). */
  readonly rows: readonly Row[];
  log(msg: string): void;
}

export interface RunSample {
  msgs: number;
  wallS: number;
  msgPerS: number;
  /** CPU seconds of the measured process tree during the run. */
  cpuS: number | null;
  /** CPU seconds of smtp-sink and of smtp-source during the run. */
  sinkCpuS: number;
  sourceCpuS: number;
  /** Whole-machine busy % (2 cores = 100%) during the run: noise check. */
  machineBusyPct: number;
  /** The part of machineBusyPct not used by the target, the sink and smtp-source: other tenants. */
  otherBusyPct: number;
  /** Messages that reached the sink during the run (should equal msgs). */
  delivered: number;
  problems: string[];
}

export interface ThroughputRow {
  kind: 'throughput';
  id: string; // e.g. "mailgate-s20"
  target: string; // "limit" | "mailgate" | "haraka" | ...
  label: string;
  sessions: number;
  workers: number | null;
  msgPerS: number | null; // median of runs
  cpuPer1kS: number | null; // CPU seconds per 1,000 messages of the measured process tree (median)
  peakRssMiB: number | null; // VmHWM summed over the tree at the end of the row
  runs: RunSample[];
  ok: boolean;
  notes: string[];
}

export interface LatencyRow {
  kind: 'latency';
  id: string;
  target: string;
  label: string;
  rate: number; // messages started per second
  through: LatencyFigures; // via the gateway
  direct: LatencyFigures; // straight to the sink, same rate, same run
  addedP50Ms: number | null;
  addedP99Ms: number | null;
  /** How busy the machine was during the `through` measurement, and how much of it was others. */
  machine?: { busyPct: number; othersPct: number };
  ok: boolean;
  notes: string[];
}

/** The latency client's figures as stored in a row (latency.ts's result without rate and error). */
export type LatencyFigures = Omit<LatencyResult, 'rate' | 'firstError'>;

export interface MemoryRow {
  kind: 'memory';
  id: string;
  target: string;
  label: string;
  /** What was done: "idle-conns" (N connections after EHLO) or "big-message". */
  test: 'idle-conns' | 'big-message';
  baselineMiB: number;
  /** idle-conns: RSS while holding them; big-message: peak RSS while relaying. */
  loadedMiB: number;
  growthMiB: number;
  /** idle-conns: KiB per connection; big-message: message size in MB. */
  per: number | null;
  detail: Record<string, number | string | null>;
  ok: boolean;
  notes: string[];
}

export interface SkippedRow {
  kind: 'skipped';
  id: string;
  label: string;
  reason: string;
}

export type Row = ThroughputRow | LatencyRow | MemoryRow | SkippedRow;

export interface RowProducer {
  /** Selected with --only ID. */
  id: string;
  describe: string;
  /** Not run unless named in --only. */
  optIn?: boolean;
  run(ctx: BenchContext): Promise<Row[]>;
  /**
   * A throughput target: run.ts runs all selected ones together, their runs interleaved
   * (bench/rows/throughput.ts), instead of calling run() for each.
   */
  interleave?: TargetSpec;
}

/** Something SMTP that relays to the sink: the sink itself (limit row), mailgate or Haraka. */
export interface Target {
  name: string;
  port: number;
  /** Root pid of the process tree to measure (the sink's for the limit row). */
  pid: number;
  /** Worker processes asked for (null for the sink). */
  workers: number | null;
  /** More process trees whose CPU and peak RSS count for this target (a milter beside Postfix). */
  extraPids?: number[];
}

/** A started gateway. */
export interface Gateway extends Target {
  stop(): Promise<void>;
  logTail(): string;
}

/** A thing to push smtp-source load through; one per producer id (limit, mailgate, ...). */
export interface TargetSpec {
  id: string;
  target: string;
  label: string;
  /** Also measure added latency at half load (fresh start, after the throughput runs). */
  latency: boolean;
  /** Why it cannot run here, or null. */
  missing(ctx: BenchContext): string | null;
  start(ctx: BenchContext, tag: string, profile: boolean): Promise<Gateway>;
  /** Worker processes the started gateway must have (skipped otherwise). */
  workers?: number;
  /** Only at these session counts (default: every one of --sessions). */
  sessions?: number[];
}
