// `npm test`: the one test command. Installs the Debian packages the tests use (as root; otherwise
// prints the exact apt-get line), starts ONE private Postfix for the run (never /etc/postfix),
// type-checks, runs every test/**/*.test.ts with Node's runner, and tears Postfix down.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startPostfix, type PostfixInstance } from './helpers/postfix.ts';
import { watchRun } from './helpers/run-watchdog.ts';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * The watchdog's limits. The longest silence of a healthy run is one file's slowest hook plus its
 * slowest test, each bounded by --test-timeout (2 min); the whole run takes 7–9 min on this machine.
 */
const STALL_MS = 6 * 60_000;
const TOTAL_MS = 50 * 60_000;

/**
 * What the tests run, as Debian package → a file it installs (to see whether it is there) and who
 * needs it. Add a line when a test starts a new kind of server; nothing else is installed.
 */
export const DEBIAN_PACKAGES: ReadonlyArray<{ pkg: string; probe: string; why: string }> = [
  { pkg: 'postfix', probe: '/usr/sbin/postfix', why: 'the backend MTA of the e2e tests (a private instance per run)' },
  { pkg: 'redis-server', probe: '/usr/bin/redis-server', why: 'shared rate limits, greylisting, Redis topologies' },
  { pkg: 'openssl', probe: '/usr/bin/openssl', why: 'throwaway TLS certificates' },
  { pkg: 'haproxy', probe: '/usr/sbin/haproxy', why: 'test/e2e/scale-out-haproxy.test.ts' },
  { pkg: 'prometheus', probe: '/usr/bin/promtool', why: 'promtool check/test rules of deploy/prometheus' },
  { pkg: 'docker-compose', probe: '/usr/bin/docker-compose', why: '`docker-compose config` of docker-compose.yml (no container engine needed)' },
  { pkg: 'systemd', probe: '/usr/bin/systemd-analyze', why: '`systemd-analyze verify` of deploy/systemd/mailgate.service' },
  { pkg: 'clamav-daemon', probe: '/usr/sbin/clamd', why: 'antivirus check tests (a private clamd)' },
  { pkg: 'clamav-testfiles', probe: '/usr/share/clamav-testfiles', why: 'EICAR-style samples for the antivirus tests' },
  // Used by tests of branches merged into main (test/helpers/scanners.ts, postgres.ts, the console test).
  { pkg: 'rspamd', probe: '/usr/bin/rspamd', why: 'content scanner tests (a private Rspamd)' },
  { pkg: 'spamassassin', probe: '/usr/bin/spamassassin', why: 'content scanner tests (SpamAssassin rules)' },
  { pkg: 'spamd', probe: '/usr/sbin/spamd', why: 'content scanner tests (a private spamd)' },
  { pkg: 'postgresql', probe: '/usr/lib/postgresql', why: 'shared quarantine index tests (a private PostgreSQL)' },
  { pkg: 'chromium', probe: '/usr/bin/chromium', why: 'quarantine console browser test' },
];

/** Packages of the table whose probe file is missing. */
export function missingPackages(exists: (p: string) => boolean = existsSync): string[] {
  return DEBIAN_PACKAGES.filter((p) => !exists(p.probe)).map((p) => p.pkg);
}

/** The exact command a non-root user must run. */
export function aptLine(pkgs: readonly string[]): string {
  return `sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${pkgs.join(' ')}`;
}

function fail(msg: string): never {
  process.stderr.write(`npm test: ${msg}\n`);
  process.exit(1);
}

function ensurePackages(): void {
  const missing = missingPackages();
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0) fail(`missing Debian packages: ${missing.join(' ')}\nInstall them with:\n  ${aptLine(missing)}`);
  process.stdout.write(`npm test: installing ${missing.join(' ')}\n`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  // "No configuration": the package must not write or start a system Postfix; tests run their own.
  spawnSync('debconf-set-selections', { input: 'postfix postfix/main_mailer_type select No configuration\n', env, stdio: ['pipe', 'inherit', 'inherit'] });
  const steps: string[][] = [
    ['apt-get', 'update', '-qq'],
    ['apt-get', 'install', '-y', '-qq', '--no-install-recommends', ...missing],
  ];
  for (const cmd of steps) {
    const r = spawnSync(cmd[0] as string, cmd.slice(1), { env, stdio: 'inherit' });
    if (r.status !== 0) fail(`'${cmd.join(' ')}' failed (exit ${r.status ?? r.signal})`);
  }
  const still = missingPackages();
  if (still.length > 0) fail(`still missing after apt-get install: ${still.join(' ')}`);
}

/** The shared conformance suites sit beside the repository; without them a wall of failures would follow. */
function ensureConformance(): void {
  const dir = resolve(repoRoot, '..', 'shared', 'conformance');
  if (!existsSync(dir)) fail(`the conformance suites are missing: expected ${dir} (../shared/conformance beside the repository; see README "Test")`);
}

async function main(): Promise<number> {
  const files = process.argv.slice(2);
  process.stdout.write(`npm test: node ${process.version} (${process.execPath})\n`);
  ensurePackages();
  // Explicit files may not need the suites; the whole run does (conformance and smuggling tests).
  if (files.length === 0) ensureConformance();
  if (process.getuid?.() !== 0)
    fail('the private Postfix backend needs root (its master process runs as root and drops to the postfix user): run it as root, e.g. sudo npm test');

  const tsc = spawnSync(join(repoRoot, 'node_modules', '.bin', 'tsc'), ['-p', '.'], { cwd: repoRoot, stdio: 'inherit' });
  if (tsc.status !== 0) fail('type check (tsc -p .) failed');
  // The linter and formatter (Biome: `biome ci` checks both, changes nothing; `npm run format`
  // fixes the formatting) and the layering rule (no upward import, no cycle: scripts/check-layers.ts).
  const lint = spawnSync(join(repoRoot, 'node_modules', '.bin', 'biome'), ['ci', '--colors=off'], { cwd: repoRoot, stdio: 'inherit' });
  if (lint.status !== 0) fail('lint or formatting (biome ci) failed: npm run format fixes the formatting');
  const layers = spawnSync(process.execPath, [join(repoRoot, 'scripts', 'check-layers.ts')], { cwd: repoRoot, stdio: 'inherit' });
  if (layers.status !== 0) fail('layering check (scripts/check-layers.ts) failed');

  let pf: PostfixInstance | undefined;
  try {
    pf = await startPostfix();
  } catch (err) {
    fail(`cannot start the private Postfix: ${(err as Error).message}`);
  }
  process.stdout.write(`npm test: private Postfix on 127.0.0.1:${pf.port} (config ${pf.confDir}, Maildirs ${pf.mailBase})\n`);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    MAILGATE_TEST_BACKEND_PORT: String(pf.port),
    MAIL_BASE: pf.mailBase,
    // postqueue/postsuper in tests read MAIL_CONFIG, so they look at this instance, not /etc/postfix.
    MAIL_CONFIG: pf.confDir,
  };
  // The glob is expanded by Node's runner: test/unit, test/e2e and test/conformance all match.
  // Not --test-force-exit: under Node 24.9 it ended a file part-way through its tests now and then
  // (35 tests of test/unit/found-units.test.ts never ran, and nothing failed). A file that does not
  // end is the watchdog's (test/helpers/run-watchdog.ts).
  const args = ['--test', '--test-concurrency=1', '--test-timeout=120000', ...(files.length > 0 ? files : ['test/**/*.test.ts'])];
  // Detached: the runner leads its own process group, which the watchdog can kill as one.
  const child = spawn(process.execPath, args, { cwd: repoRoot, env, stdio: ['inherit', 'pipe', 'pipe'], detached: true });
  const dog = watchRun(child, { stallMs: STALL_MS, totalMs: TOTAL_MS, write: (l) => process.stderr.write(`${l}\n`) });
  child.stdout?.on('data', (b: Buffer) => {
    dog.touch();
    process.stdout.write(b);
  });
  child.stderr?.on('data', (b: Buffer) => {
    dog.touch();
    process.stderr.write(b);
  });
  const forward = (sig: NodeJS.Signals) => child.kill(sig);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  let code = await new Promise<number>((r) => child.on('exit', (c, s) => r(c ?? (s ? 128 : 1))));
  // The last of the output, unless something the runner started still holds the pipes.
  const drained = (s: Readable | null) => new Promise<void>((r) => (s && !s.readableEnded ? s.once('end', () => r()) : r()));
  let grace: NodeJS.Timeout | undefined;
  await Promise.race([Promise.all([drained(child.stdout), drained(child.stderr)]), new Promise((r) => (grace = setTimeout(r, 2000)))]);
  clearTimeout(grace);
  dog.stop();
  if (dog.overTime) code = 124;
  try {
    pf.destroy();
  } catch (err) {
    process.stderr.write(`npm test: stopping the private Postfix: ${(err as Error).message}\n`);
  }
  return code;
}

if (import.meta.main) process.exit(await main());
