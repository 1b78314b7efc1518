// Starts mailgate for a bench row: the shipped example config (mailgate.example.yaml) with only
// what the bench must change — loopback ports, the sink as backend, no admin HTTP, DNS pointed
// at the bench's stub, connection caps raised (all load comes from one IP), and `workers`.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { parse, stringify } from 'yaml';
import { startService, freePort, waitSmtp, waitTcp } from './service.ts';
import { tree } from './procfs.ts';
import type { BenchContext, Gateway } from './types.ts';

export interface MailgateOptions {
  workers: number;
  /** Tag for the log file name. */
  tag: string;
  /** Extra config keys merged over the bench config (other rows: redis, rules, ...). */
  overrides?: Record<string, unknown>;
  /** bench/experiments/NAME.{mjs,yaml} for this start only (on top of --experiment ones). */
  experiments?: string[];
  /** Write a V8 CPU profile per process into this directory (node --cpu-prof). */
  cpuProfDir?: string;
  /** A milter-only gateway on this port (`listen: []`, `milter:`, no backend): Postfix delivers. */
  milterPort?: number;
}

/** The source tree mailgate runs from: the working tree, or an exported revision (--rev, --compare-rev). */
export function mailgateRoot(ctx: BenchContext, rev: string | undefined): string {
  if (!rev) return ctx.dirs.root;
  const sha = execFileSync('git', ['rev-parse', rev], { cwd: ctx.dirs.root, encoding: 'utf8' }).trim();
  // outside the repository: tsconfig's bench/**/*.ts must not pick up an old src/
  const dir = join(tmpdir(), 'mailgate-bench', `rev-${sha.slice(0, 12)}`);
  if (!existsSync(join(dir, 'src', 'cli', 'main.ts'))) {
    mkdirSync(dir, { recursive: true });
    // git archive | tar: a read-only export, the repository and its working tree are untouched
    execFileSync('bash', ['-c', `git archive ${sha} | tar -x -C ${JSON.stringify(dir)}`], { cwd: ctx.dirs.root });
    symlinkSync(join(ctx.dirs.root, 'node_modules'), join(dir, 'node_modules'));
  }
  return dir;
}

const built = new Set<string>();

/**
 * `npm run build` in that tree once per bench run, when the tree has it (dist/ is what the
 * `mailgate` command runs when it is fresh): the working tree and --rev exports are measured the
 * way they are deployed. Older revisions without a build step run from src/ as they always did.
 */
function buildOnce(ctx: BenchContext, root: string): void {
  if (built.has(root) || !existsSync(join(root, 'scripts', 'build.ts'))) return;
  built.add(root);
  execFileSync(process.execPath, [join(root, 'scripts', 'build.ts')], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  ctx.log(`built ${join(root, 'dist')}`);
}

/** The command mailgate is started with: the launcher (bin/mailgate.js) as an operator runs it. */
function entryOf(root: string): string {
  const launcher = join(root, 'bin', 'mailgate.js');
  return existsSync(launcher) ? launcher : join(root, 'src', 'cli', 'main.ts');
}

export function mailgateAvailable(root: string): string | null {
  return existsSync(join(root, 'src', 'cli', 'main.ts')) ? null : `no ${join(root, 'src/cli/main.ts')} yet`;
}

/** Config keys from bench/experiments/NAME.yaml for each experiment (top-level merge). */
function experimentConfig(ctx: BenchContext, names: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const e of names) {
    const f = join(ctx.dirs.bench, 'experiments', `${e}.yaml`);
    if (existsSync(f)) Object.assign(out, parse(readFileSync(f, 'utf8')) as Record<string, unknown>);
  }
  return out;
}

export function benchConfig(ctx: BenchContext, root: string, port: number, o: MailgateOptions): Record<string, unknown> {
  const example = join(root, 'mailgate.example.yaml');
  const base = existsSync(example) ? (parse(readFileSync(example, 'utf8')) as Record<string, unknown>) : {};
  const limits = { ...((base.limits as Record<string, unknown> | undefined) ?? {}) };
  // every bench client is 127.0.0.1: the per-IP cap would refuse the 20 sessions and the 1,000
  // idle connections; the total cap must exceed 1,000 for the idle-connection row.
  limits.max_connections = 5000;
  limits.max_connections_per_ip = 5000;
  const front =
    o.milterPort !== undefined
      ? { listen: [], milter: { listen: `inet:${o.milterPort}@127.0.0.1` } }
      : {
          listen: [{ host: '127.0.0.1', port }],
          backend: { host: '127.0.0.1', port: ctx.sink.port, ...((o.overrides?.backend as Record<string, unknown> | undefined) ?? {}) },
        };
  const cfg: Record<string, unknown> = {
    ...base,
    hostname: 'mailgate.bench.test',
    domains: ['example.test'],
    rules: join(root, 'rules'),
    quarantine: { dir: join(ctx.dirs.work, 'quarantine') },
    admin: false,
    dns: { servers: [`127.0.0.1:${ctx.dns.port}`], timeout_ms: 2000 },
    limits,
    workers: o.workers,
    ...experimentConfig(ctx, [...ctx.opts.experiments, ...(o.experiments ?? [])]),
    ...o.overrides,
    ...front,
  };
  if (o.milterPort !== undefined) delete cfg.backend;
  return cfg;
}

function gatewayEnv(ctx: BenchContext, experiments: readonly string[]): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    // cluster workers inherit NODE_OPTIONS (and --cpu-prof through execArgv)
    NODE_OPTIONS: [
      `--require ${join(ctx.dirs.bench, 'lib', 'preload.cjs')}`,
      ...experiments
        .filter((e) => existsSync(join(ctx.dirs.bench, 'experiments', `${e}.mjs`)))
        .map((e) => `--import ${join(ctx.dirs.bench, 'experiments', `${e}.mjs`)}`),
    ].join(' '),
    BENCH_DNS_PORT: String(ctx.dns.port),
    BENCH_MEM_DIR: ctx.dirs.logs,
  };
  // E.env: KEY=VALUE lines for this gateway's environment (glibc malloc tunables, for one)
  for (const e of experiments) {
    const f = join(ctx.dirs.bench, 'experiments', `${e}.env`);
    if (!existsSync(f)) continue;
    for (const line of readFileSync(f, 'utf8').split('\n')) {
      const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
      if (m) env[m[1] as string] = m[2] as string;
    }
  }
  // the config file decides, not the caller's environment
  for (const k of Object.keys(env)) if (k.startsWith('MAILGATE_')) delete env[k];
  return env;
}

export async function startMailgate(ctx: BenchContext, root: string, o: MailgateOptions): Promise<Gateway> {
  const port = o.milterPort ?? (await freePort());
  const cfgFile = join(ctx.dirs.work, `mailgate-${o.tag}.yaml`);
  writeFileSync(cfgFile, `# written by bench/lib/mailgate.ts\n${stringify(benchConfig(ctx, root, port, o))}`);
  const experiments = [...ctx.opts.experiments, ...(o.experiments ?? [])];
  // E.flags: Node/V8 options on the command line (cluster workers inherit execArgv; some, like
  // --trace-gc, are not allowed in NODE_OPTIONS)
  const nodeArgs: string[] = experiments
    .filter((e) => existsSync(join(ctx.dirs.bench, 'experiments', `${e}.flags`)))
    .flatMap((e) =>
      readFileSync(join(ctx.dirs.bench, 'experiments', `${e}.flags`), 'utf8')
        .replace(/#.*$/gm, '')
        .trim()
        .split(/\s+/)
        .filter(Boolean),
    );
  if (o.cpuProfDir) {
    mkdirSync(o.cpuProfDir, { recursive: true });
    nodeArgs.push('--cpu-prof', '--cpu-prof-dir', o.cpuProfDir);
  }
  buildOnce(ctx, root);
  const argv = [...nodeArgs, entryOf(root), 'serve', '--config', cfgFile];
  const pin = ctx.opts.pinGateway;
  const svc = startService(`mailgate-${o.tag}`, pin ? 'taskset' : process.execPath, pin ? ['-c', pin, process.execPath, ...argv] : argv, {
    cwd: root,
    logDir: ctx.dirs.logs,
    env: gatewayEnv(ctx, experiments),
  });
  if (o.milterPort !== undefined) await waitTcp(port, 30_000, svc);
  else await waitSmtp(port, 30_000, svc);
  if (o.workers > 1) {
    // the primary forks workers; wait until they all listen
    const end = Date.now() + 20_000;
    while (tree(svc.pid).length < o.workers + 1 && Date.now() < end) await new Promise((r) => setTimeout(r, 200));
    await new Promise((r) => setTimeout(r, 1000));
  }
  return {
    name: 'mailgate',
    port,
    pid: svc.pid,
    workers: o.workers,
    stop: () => svc.stop(),
    logTail: () => svc.logTail(),
  };
}

/** Worker processes actually running under a mailgate started with `workers: n` (0 = single process). */
export function workerCount(g: Gateway): number {
  return tree(g.pid).length - 1;
}
