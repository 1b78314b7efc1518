// `npm run bench`: measures mailgate's relay against the physical limit (smtp-source → smtp-sink)
// and against Haraka on loopback, prints tables, ratios and targets, and writes JSON results.
// Rows come from a list of producers (bench/rows/, bench/ratelimit.ts); see docs/bench.md.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { buildCorpus } from './lib/corpus.ts';
import { startDnsStub } from './lib/dns-stub.ts';
import { findBin, startSink } from './lib/postfix.ts';
import { stopAll } from './lib/service.ts';
import { harakaVersion, HARAKA_VERSION } from './lib/haraka.ts';
import { mailgateRoot } from './lib/mailgate.ts';
import { hostProblems, ratios, render, targets } from './lib/report.ts';
import type { BenchContext, BenchOptions, Row, RowProducer } from './lib/types.ts';
import { compareRevProducer, runInterleaved, throughputProducers, variantProducer } from './rows/throughput.ts';
import { idleRows, bigRows } from './rows/memory.ts';

const HELP = `usage: npm run bench -- [options]     (or: node bench/run.ts [options])

  --only IDS     comma-separated producers to run (default: all but opt-in ones)
  --quick        1 run per row, 2-second runs, 200 idle connections (iterating, not the record)
  --runs N       runs per throughput row (default 3; median reported)
  --seconds S    target length of one throughput run (default 5)
  --sessions L   comma-separated session counts (default 20,1)
  --rev REV      run mailgate from git revision REV (exported with git archive to a temp
                 directory), not the working tree: use --rev HEAD for runs of record, so
                 that other work landing mid-run cannot change the code between rows
  --variant E    also run mailgate with experiment E as target "mailgate+E" in the same
                 interleaved runs (A/B on a noisy machine); repeatable
  --compare-rev REV
                 also run mailgate at REV as target "mailgate-rev" in the same interleaved runs
  --profile      write V8 CPU profiles of mailgate (bench/work/prof/); summarise with
                 node bench/profile-summary.ts DIR
  --experiment E what-if for mailgate: bench/experiments/E.mjs is loaded with --import (a
                 patch, e.g. no-checks), E.yaml is merged into its config (e.g. log-warn),
                 E.flags adds Node options (e.g. semi-space-4); repeatable; results never
                 go to bench/results/latest.json
  --pin-load CPUS
                 run smtp-source and smtp-sink on these CPUs only (taskset -c CPUS), e.g. 1
  --pin-gateway CPUS
                 run mailgate and Haraka on these CPUs only (taskset -c CPUS), e.g. 0
  --out FILE     JSON results file (default: bench/results/latest.json for a full run,
                 bench/work/results/<time>.json with --only/--quick)
  --list         list producers and exit
`;

const here = dirname(fileURLToPath(import.meta.url));

/** bench/ratelimit.ts (added by the rate-limit work) exports runRateLimitBench(ctx): Row[]. */
const rateLimitRows: RowProducer = {
  id: 'ratelimit',
  describe: 'rate limits with Redis (bench/ratelimit.ts: runRateLimitBench)',
  async run(ctx) {
    const file = join(here, 'ratelimit.ts');
    if (!existsSync(file)) return [{ kind: 'skipped', id: 'ratelimit', label: 'rate limits', reason: 'bench/ratelimit.ts not written yet' }];
    const mod = (await import(pathToFileURL(file).href)) as { runRateLimitBench?: (c: BenchContext) => Promise<Row[]> };
    if (typeof mod.runRateLimitBench !== 'function') throw new Error('bench/ratelimit.ts does not export runRateLimitBench(ctx)');
    return mod.runRateLimitBench(ctx);
  },
};

export const producers: RowProducer[] = [...throughputProducers, idleRows, bigRows, rateLimitRows];

function parseArgs(argv: string[]): { opts: BenchOptions; out: string | undefined; rev: string | undefined; list: boolean } {
  const a = [...argv];
  const take = (name: string): string | undefined => {
    const i = a.indexOf(name);
    if (i < 0) return undefined;
    const v = a[i + 1];
    if (v === undefined) throw new Error(`${name} needs a value`);
    a.splice(i, 2);
    return v;
  };
  const flag = (name: string): boolean => {
    const i = a.indexOf(name);
    if (i >= 0) a.splice(i, 1);
    return i >= 0;
  };
  if (flag('--help') || flag('-h')) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  const quick = flag('--quick');
  const list = flag('--list');
  const profile = flag('--profile');
  const only = (take('--only') ?? '').split(',').filter(Boolean);
  const runs = Number(take('--runs') ?? (quick ? 1 : 3));
  const seconds = Number(take('--seconds') ?? (quick ? 2 : 5));
  const sessions = (take('--sessions') ?? '20,1').split(',').map(Number);
  const experiments: string[] = [];
  for (let e = take('--experiment'); e !== undefined; e = take('--experiment')) experiments.push(e);
  for (const e of experiments) {
    if (!['mjs', 'yaml', 'flags', 'env'].some((x) => existsSync(join(here, 'experiments', `${e}.${x}`))))
      throw new Error(`--experiment: no bench/experiments/${e}.mjs or .yaml`);
  }
  for (let v = take('--variant'); v !== undefined; v = take('--variant')) {
    if (!['mjs', 'yaml', 'flags', 'env'].some((x) => existsSync(join(here, 'experiments', `${v}.${x}`))))
      throw new Error(`--variant: no bench/experiments/${v}.mjs or .yaml`);
    producers.splice(producers.findIndex((p) => p.id === 'mailgate') + 1, 0, variantProducer(v));
    if (only.length) only.push(`mailgate+${v}`);
  }
  const compareRev = take('--compare-rev');
  if (compareRev) {
    producers.splice(producers.findIndex((p) => p.id === 'mailgate') + 1, 0, compareRevProducer(compareRev));
    if (only.length) only.push('mailgate-rev');
    // The relay leg at REV too, when the relay row runs: A/B of the front without the checks.
    if (!only.length || only.includes('mailgate-relay')) {
      producers.splice(producers.findIndex((p) => p.id === 'mailgate-relay') + 1, 0, compareRevProducer(compareRev, 'relay'));
      if (only.length) only.push('mailgate-relay-rev');
    }
  }
  const pinLoad = take('--pin-load');
  const pinGateway = take('--pin-gateway');
  const out = take('--out');
  const rev = take('--rev');
  if (a.length) throw new Error(`unknown argument ${a[0]} (try --help)`);
  for (const id of only) if (!producers.some((p) => p.id === id)) throw new Error(`--only: no producer "${id}" (try --list)`);
  if (!(runs >= 1) || !(seconds > 0) || sessions.some((s) => !(s >= 1))) throw new Error('--runs, --seconds and --sessions must be positive');
  return {
    opts: {
      quick,
      runs,
      seconds,
      sessions,
      only,
      profile,
      experiments,
      idleConns: quick ? 200 : 1000,
      bigBytes: 50_000_000,
      ...(pinLoad ? { pinLoad } : {}),
      ...(pinGateway ? { pinGateway } : {}),
      ...(compareRev ? { compareRev } : {}),
    },
    out,
    rev,
    list,
  };
}

function sh(cmd: string, args: string[]): string | null {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

async function main(): Promise<void> {
  const { opts, out, rev, list } = parseArgs(process.argv.slice(2));
  if (list) {
    for (const p of producers) process.stdout.write(`${p.id.padEnd(12)} ${p.describe}${p.optIn ? ' (opt-in)' : ''}\n`);
    return;
  }
  const root = resolve(here, '..');
  const work = join(here, 'work');
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const dirs = { root, bench: here, work, logs: join(work, 'logs', stamp), results: join(here, 'results') };
  mkdirSync(dirs.logs, { recursive: true });
  const log = (m: string): void => void process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${m}\n`);
  findBin('smtp-source');
  findBin('smtp-sink');

  const corpus = await buildCorpus(join(work, 'corpus'));
  const dns = await startDnsStub(dirs.logs, corpus.dkimPublicB64);
  const sink = await startSink(dirs.logs, opts.pinLoad);
  const rows: Row[] = [];
  const base: BenchContext = { opts, dirs, corpus, sink, dns, rows, log, mailgateRoot: root };
  const mgRoot = mailgateRoot(base, rev);
  const c: BenchContext = { ...base, mailgateRoot: mgRoot };
  log(`sink 127.0.0.1:${sink.port}, DNS stub 127.0.0.1:${dns.port}, message ${corpus.smallBytes} bytes, mailgate from ${mgRoot}, logs in ${dirs.logs}`);

  // the revision measured: read before the run (other work may commit while it runs)
  const sha = sh('git', ['-C', root, 'rev-parse', '--short', rev ?? 'HEAD']);
  const dirty = rev ? false : (sh('git', ['-C', root, 'status', '--porcelain', '--', 'src']) ?? '') !== '';
  const selected = producers.filter((p) => (opts.only.length ? opts.only.includes(p.id) : !p.optIn));
  const started = new Date().toISOString();
  // the throughput targets run as one group (interleaved runs), where the first of them is listed
  const group = selected.flatMap((p) => (p.interleave ? [p.interleave] : []));
  const firstInGroup = selected.find((p) => p.interleave);
  for (const p of selected) {
    if (p.interleave && p !== firstInGroup) continue;
    log(`== ${p.interleave ? group.map((g) => g.id).join(', ') : `${p.id}: ${p.describe}`}`);
    try {
      rows.push(...(await (p.interleave ? runInterleaved(c, group) : p.run(c))));
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      log(`${p.id} failed: ${msg}`);
      rows.push({ kind: 'skipped', id: p.id, label: p.describe, reason: `failed: ${msg.split('\n')[0]}` });
    }
  }

  const rs = ratios(rows, opts.sessions);
  const ts = opts.only.length || opts.quick || opts.experiments.length ? targets(rows).filter((t) => t.pass !== null) : targets(rows);
  const text = render(rows, rs, ts);
  process.stdout.write(`\n${text}\n`);

  const full = !opts.only.length && !opts.quick && !opts.experiments.length && !opts.pinLoad && !opts.pinGateway;
  const file = out ?? (full ? join(dirs.results, 'latest.json') : join(work, 'results', `${stamp}.json`));
  mkdirSync(dirname(file), { recursive: true });
  const result = {
    started,
    finished: new Date().toISOString(),
    machine: { cpus: cpus().length, cpu: cpus()[0]?.model ?? null, kernel: release(), node: process.version },
    tools: {
      postfix: sh('dpkg-query', ['-W', '-f=${Version}', 'postfix']),
      haraka: harakaVersion(c) ?? `${HARAKA_VERSION} (not installed)`,
    },
    mailgate: { revision: sha, uncommittedChangesInSrc: dirty, from: mgRoot === root ? 'working tree' : mgRoot },
    options: opts,
    message: { bytes: corpus.smallBytes, file: 'bench/work/corpus/msg-5k.eml (built by bench/lib/corpus.ts)' },
    rows,
    ratios: rs,
    targets: ts,
    /** Why this run's host was not steady (bench/lib/report.ts hostProblems); empty when it was. */
    hostProblems: hostProblems(rows),
  };
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  if (full) writeFileSync(join(dirs.results, 'latest.txt'), `${text}\n`);
  log(`results: ${file}`);
}

let exiting = false;
async function shutdown(code: number): Promise<void> {
  if (exiting) return;
  exiting = true;
  await stopAll();
  process.exit(code);
}
process.on('SIGINT', () => void shutdown(130));
process.on('SIGTERM', () => void shutdown(143));
main().then(
  () => shutdown(0),
  (e: unknown) => {
    process.stderr.write(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    void shutdown(1);
  },
);
