// The Haraka anchor: a pinned Haraka from npm in bench/work/haraka (outside the project's
// dependencies), configured relay-only — rcpt_to.in_host_list + queue/smtp_forward to the sink —
// or, with `auth`, plus bench/haraka-plugins/bench_mailauth.js (SPF, DKIM, ARC, DMARC by mailauth).
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { startService, freePort, waitSmtp } from './service.ts';
import type { BenchContext, Gateway } from './types.ts';

export const HARAKA_VERSION = '3.3.4';

function harakaDir(ctx: BenchContext): string {
  return join(ctx.dirs.work, 'haraka');
}

/** Installs Haraka@HARAKA_VERSION into bench/work/haraka unless that version is already there. */
export function ensureHaraka(ctx: BenchContext): string {
  const dir = harakaDir(ctx);
  const pkg = join(dir, 'node_modules', 'Haraka', 'package.json');
  const have = existsSync(pkg) ? (JSON.parse(readFileSync(pkg, 'utf8')) as { version?: string }).version : undefined;
  if (have !== HARAKA_VERSION) {
    ctx.log(`installing Haraka ${HARAKA_VERSION} into ${dir} (npm)`);
    mkdirSync(dir, { recursive: true });
    if (!existsSync(join(dir, 'package.json'))) writeFileSync(join(dir, 'package.json'), '{ "name": "haraka-bench", "private": true }\n');
    execFileSync('npm', ['install', '--no-fund', '--no-audit', '--save-exact', `Haraka@${HARAKA_VERSION}`], {
      cwd: dir,
      stdio: ['ignore', 'inherit', 'inherit'],
      timeout: 600_000,
    });
  }
  return dir;
}

/**
 * Starts Haraka relay-only on a free port. nodes = 0: one process, no cluster (like mailgate with
 * `workers: 1`); nodes = N: cluster master + N workers.
 */
export async function startHaraka(ctx: BenchContext, nodes: number, tag = '', auth = false): Promise<Gateway> {
  const dir = ensureHaraka(ctx);
  // one instance directory per configuration: rows of one interleaved run are alive together
  const inst = join(dir, auth ? 'inst-auth' : 'inst');
  const bin = join(dir, 'node_modules', 'Haraka', 'bin', 'haraka');
  if (!existsSync(join(inst, 'config'))) execFileSync(process.execPath, [bin, '-i', inst], { cwd: dir, stdio: 'ignore' });
  const port = await freePort();
  const c = join(inst, 'config');
  const w = (f: string, s: string): void => writeFileSync(join(c, f), s);
  w('smtp.ini', `listen=127.0.0.1:${port}\ninactivity_timeout=300\nnodes=${nodes}\nforce_shutdown_timeout=5\n`);
  w('host_list', 'example.test\n');
  w('me', 'haraka.bench.test\n');
  w('log.ini', '[main]\nlevel=warn\ntimestamps=true\nformat=default\n');
  w('smtp_forward.ini', `host=127.0.0.1\nport=${ctx.sink.port}\n`);
  if (auth) {
    mkdirSync(join(inst, 'plugins'), { recursive: true });
    copyFileSync(join(ctx.dirs.bench, 'haraka-plugins', 'bench_mailauth.js'), join(inst, 'plugins', 'bench_mailauth.js'));
  }
  w('plugins', `rcpt_to.in_host_list\n${auth ? 'bench_mailauth\n' : ''}queue/smtp_forward\n`);
  // the same message size limit as mailgate's default (Haraka's own default is 25 MiB)
  const conn = readFileSync(join(dir, 'node_modules', 'Haraka', 'config', 'connection.ini'), 'utf8');
  w('connection.ini', conn.replace(/^bytes=\d+$/m, 'bytes=52428800'));
  const pin = ctx.opts.pinGateway;
  const svc = startService(`haraka${tag}`, pin ? 'taskset' : process.execPath, pin ? ['-c', pin, process.execPath, bin, '-c', inst] : [bin, '-c', inst], {
    cwd: dir,
    logDir: ctx.dirs.logs,
    env: {
      ...process.env,
      NODE_OPTIONS: `--require ${join(ctx.dirs.bench, 'lib', 'preload.cjs')}`,
      BENCH_DNS_PORT: String(ctx.dns.port),
      BENCH_MEM_DIR: ctx.dirs.logs,
      BENCH_MAILAUTH: createRequire(join(ctx.mailgateRoot, 'package.json')).resolve('mailauth'),
    },
  });
  await waitSmtp(port, 30_000, svc);
  await new Promise((r) => setTimeout(r, 1500)); // cluster workers finish starting
  return {
    name: 'haraka',
    port,
    pid: svc.pid,
    workers: nodes,
    stop: () => svc.stop(),
    logTail: () => svc.logTail(),
  };
}

export function harakaVersion(ctx: BenchContext): string | null {
  try {
    const pkg = join(harakaDir(ctx), 'node_modules', 'Haraka', 'package.json');
    return (JSON.parse(readFileSync(pkg, 'utf8')) as { version?: string }).version ?? null;
  } catch {
    return null;
  }
}
