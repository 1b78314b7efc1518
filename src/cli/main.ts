// The `mailgate` command: serve, config check, rules …, quarantine …, --help, --version.
// Every command has a man-page style --help; errors name the file, line and key.
import { readFileSync } from 'node:fs';
import cluster from 'node:cluster';
import { availableParallelism } from 'node:os';
import { loadConfig } from '../config/load.ts';
import { locateConfig } from '../config/locate.ts';
import { runConfigDump } from './config-dump.ts';
import { configWarnings, formatWarning } from '../config/warnings.ts';
import { createLogOutput } from '../log/destination.ts';
import { checkConfig } from '../config/check-config.ts';
import type { Config } from '../config/schema.ts';
import { SourceErrors } from '../config/yaml-source.ts';
import type { Gateway } from '../gateway.ts';

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const HELP_MAIN = `NAME
    mailgate - inbound mail security gateway (before-queue SMTP filter)

SYNOPSIS
    mailgate serve [--config FILE]
    mailgate config check|dump [FILE]
    mailgate rules check|test|diff ...
    mailgate quarantine list|show|release|delete|purge ...
    mailgate doctor [--config FILE] [--rcpt ADDRESS]
    mailgate --version | --help

DESCRIPTION
    mailgate answers SMTP for your domains in front of your existing MTA. Every
    message passes connection and envelope policy, sender authentication and the
    rules in the rules directory; clean mail is relayed to the backend MTA, which
    answers the client itself, so mailgate never accepts what it cannot deliver
    and never sends a bounce.

COMMANDS
    serve            Run the gateway (see 'mailgate serve --help').
    config check     Validate a configuration file and print problems with line numbers.
    config dump      Print the effective configuration (-a: with every default), like postconf.
    rules            Check, test and compare rules directories ('mailgate rules --help').
    quarantine       List, show, release and delete quarantined messages ('mailgate quarantine --help').
    doctor           Probe the backend MTA for dangerous parser differences ('mailgate doctor --help').

ENVIRONMENT
    MAILGATE_CONFIG     Config file when --config is not given; without it the first of
                        ./mailgate.yaml and /etc/mailgate/mailgate.yaml that exists.
    MAILGATE_REDIS_URL  Overrides the 'redis' key.
    MAILGATE_LOG_LEVEL  Overrides 'log.level'.

EXIT STATUS
    0 on success, 1 on a configuration or usage error, 2 on a runtime failure.

SEE ALSO
    README.md (configuration reference), docs/rules.md, docs/auth.md
`;

const HELP_SERVE = `NAME
    mailgate serve - run the SMTP gateway

SYNOPSIS
    mailgate serve [--config FILE] [--check]

OPTIONS
    -c, --config FILE   Configuration file (default: $MAILGATE_CONFIG, else ./mailgate.yaml,
                        else /etc/mailgate/mailgate.yaml).
    --check             Load everything (config, rules, TLS files), then exit without serving.
    -h, --help          This text.

SIGNALS
    SIGHUP    Reload: re-read the config file (domains, limits, header stripping), TLS
              certificates and rules. A config with errors is refused and the running
              one stays in force (the error is logged).
    SIGTERM   Graceful stop: stop accepting connections, answer idle clients 421, let
              transactions in flight finish within smtp.shutdown_grace_s, exit 0.
    SIGINT    Same as SIGTERM.
    SIGUSR1   Reopen log.file (after logrotate moved it); nothing with logs on stdout.

LOGS
    JSON lines on stdout (pino). One line with msg "message" per DATA transaction:
    qid, ip, helo, from, rcpts, size, action, score, rules, reason, backend, reply,
    duration_ms.
`;

const HELP_CONFIG = `NAME
    mailgate config check - validate a configuration file

SYNOPSIS
    mailgate config check [FILE]
    mailgate config dump [-a|--all] [FILE]   (see 'mailgate config dump --help')

DESCRIPTION
    Parses and validates FILE (default: $MAILGATE_CONFIG, else ./mailgate.yaml, else
    /etc/mailgate/mailgate.yaml). Every
    problem is printed as FILE:LINE: KEY: MESSAGE; unknown keys are errors. Exit 0 if
    the file is valid, 1 otherwise.
`;

function takeOpt(args: string[], ...names: string[]): string | undefined {
  for (const n of names) {
    const i = args.indexOf(n);
    if (i >= 0) {
      const v = args[i + 1];
      if (v === undefined || v.startsWith('-')) usage(`${n} needs a value`);
      args.splice(i, 2);
      return v;
    }
  }
  return undefined;
}

function takeFlag(args: string[], ...names: string[]): boolean {
  let found = false;
  for (const n of names) {
    const i = args.indexOf(n);
    if (i >= 0) {
      args.splice(i, 1);
      found = true;
    }
  }
  return found;
}

function usage(msg: string): never {
  process.stderr.write(`mailgate: ${msg}\nTry 'mailgate --help'.\n`);
  process.exit(1);
}

function defaultConfigPath(): string {
  try {
    return locateConfig();
  } catch (err) {
    if (err instanceof SourceErrors) {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
}

function loadOrExit(file: string) {
  try {
    return loadConfig(file);
  } catch (err) {
    if (err instanceof SourceErrors) {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
}

async function serve(args: string[]): Promise<void> {
  if (takeFlag(args, '-h', '--help')) return void process.stdout.write(HELP_SERVE);
  const file = takeOpt(args, '-c', '--config') ?? defaultConfigPath();
  const checkOnly = takeFlag(args, '--check');
  if (args.length > 0) usage(`serve: unexpected argument ${args[0]}`);
  const loaded = loadOrExit(file);
  const config = loaded.config;
  const workers = config.workers === 'auto' ? availableParallelism() : config.workers;
  if (checkOnly) {
    if (!reportFindings(loaded.file, config)) process.exit(1);
    // Build what `serve` builds (checks, rules), without listening, so every file is validated.
    const [{ buildChecks, closeChecks, knownFacts, knownSections }, { loadPolicy }, { default: pino }] = await Promise.all([
      import('../checks/catalogue.ts'),
      import('../rules/load-policy.ts'),
      import('pino'),
    ]);
    const logger = pino({ level: 'silent' });
    try {
      const checks = await buildChecks(config, { logger, now: Date.now });
      const handle = await loadPolicy(config, checks, logger, { facts: knownFacts(checks.flatMap((c) => c.facts)), sections: knownSections(checks) });
      handle.close();
      await closeChecks(checks);
    } catch (err) {
      process.stderr.write(`${(err as Error).message}\n`);
      process.exit(1);
    }
    process.stdout.write(`${loaded.file}: OK\n`);
    return;
  }
  if (workers > 1 && cluster.isPrimary) {
    // Workers share the listening sockets (node:cluster); the primary only supervises them and
    // passes signals on. The admin server runs in worker 1 (metrics are per worker).
    for (let i = 0; i < workers; i++) cluster.fork({ MAILGATE_WORKER: String(i + 1) });
    if (config.admin !== false) await startPrimaryAdmin(config.admin, workers);
    let stopping = false;
    cluster.on('exit', (w, code) => {
      if (!stopping) {
        process.stderr.write(`mailgate: worker ${w.process.pid} exited (${code}); restarting\n`);
        cluster.fork({ MAILGATE_WORKER: 'restart' });
      } else if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
    });
    const forward = (sig: NodeJS.Signals) => {
      if (sig !== 'SIGHUP' && sig !== 'SIGUSR1') stopping = true;
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill(sig);
    };
    process.on('SIGTERM', () => forward('SIGTERM'));
    process.on('SIGINT', () => forward('SIGINT'));
    process.on('SIGHUP', () => forward('SIGHUP'));
    process.on('SIGUSR1', () => forward('SIGUSR1'));
    return;
  }
  // With several workers the primary serves the admin endpoints (metrics summed over workers).
  const isWorker = cluster.isWorker;
  let gw: Gateway;
  try {
    // Imported here so --help, --version and config check start fast.
    const { createGateway } = await import('../gateway.ts');
    const out = createLogOutput(config.log);
    // SIGUSR1 (a listener replaces Node's inspector activation): reopen log.file after logrotate.
    process.on('SIGUSR1', () => out.reopen());
    gw = await createGateway({ config, admin: !isWorker, logger: out.logger });
  } catch (err) {
    if (err instanceof SourceErrors) {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    }
    process.stderr.write(`mailgate: cannot start: ${(err as Error).message}\n`);
    process.exit(2);
  }
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    gw.stop().then(
      () => process.exit(0),
      () => process.exit(2),
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('SIGHUP', () => {
    let next;
    try {
      next = loadConfig(file).config;
    } catch (err) {
      gw.runtime.logger.error({ err: (err as Error).message }, 'config reload refused; keeping the running configuration');
      return;
    }
    gw.reload(next).catch((err: Error) => gw.runtime.logger.error({ err: err.message }, 'reload failed'));
  });
}

/** Admin HTTP of the cluster primary: /metrics aggregated over workers, /healthz, /readyz. */
async function startPrimaryAdmin(cfg: { host: string; port: number }, expected: number): Promise<void> {
  const [{ default: http }, { AggregatorRegistry }] = await Promise.all([import('node:http'), import('prom-client')]);
  const agg = new AggregatorRegistry();
  let listening = 0;
  cluster.on('listening', () => listening++);
  cluster.on('exit', () => (listening = Math.max(0, listening - 1)));
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (url === '/metrics') {
      agg.clusterMetrics().then(
        (m) => res.writeHead(200, { 'content-type': agg.contentType }).end(m),
        (e: Error) => res.writeHead(500).end(`${e.message}\n`),
      );
    } else if (url === '/healthz') res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}\n');
    else if (url === '/readyz') {
      // A worker only listens once its backend, rules and checks are set up.
      const ok = listening >= expected;
      res
        .writeHead(ok ? 200 : 503, { 'content-type': 'application/json' })
        .end(JSON.stringify({ ready: ok, workers_listening: listening, workers: expected }) + '\n');
    } else res.writeHead(404).end('not found: try /metrics, /healthz or /readyz\n');
  });
  await new Promise<void>((resolve) => server.listen(cfg.port, cfg.host, () => resolve()));
}

/** Prints checkConfig's errors and warnings to stderr; false when there are errors. */
function reportFindings(file: string, config: Config): boolean {
  const { errors, warnings } = checkConfig(file, config);
  for (const p of [...errors, ...warnings]) process.stderr.write(`${p.message}\n`);
  return errors.length === 0;
}

function configCommand(args: string[]): void {
  const sub = args.shift();
  if (sub === undefined || sub === '-h' || sub === '--help') return void process.stdout.write(HELP_CONFIG);
  if (sub === 'dump') return void (process.exitCode = runConfigDump(args, defaultConfigPath));
  if (sub !== 'check') usage(`config: unknown subcommand ${sub}`);
  if (takeFlag(args, '-h', '--help')) return void process.stdout.write(HELP_CONFIG);
  const file = args[0] ?? defaultConfigPath();
  const loaded = loadOrExit(file);
  for (const w of configWarnings(loaded.file, loaded.config)) process.stderr.write(`${formatWarning(w)}\n`);
  if (!reportFindings(loaded.file, loaded.config)) process.exit(1);
  const milter = loaded.config.milter ? `, milter ${loaded.config.milter.listen}` : '';
  process.stdout.write(`${loaded.file}: OK (${loaded.config.domains.length} domains, ${loaded.config.listen.length} listeners${milter})\n`);
}

async function quarantineCommand(args: string[]): Promise<void> {
  // Lives in src/cli/quarantine.ts; loaded lazily so `serve` does not pay for it.
  const { runQuarantineCommand, UsageError } = await import('./quarantine.ts');
  try {
    process.exitCode = await runQuarantineCommand(args, (f) => loadOrExit(f ?? defaultConfigPath()).config, {
      out: (s) => void process.stdout.write(s),
      err: (s) => void process.stderr.write(s),
      stdin: async () => {
        const chunks: Buffer[] = [];
        for await (const c of process.stdin) chunks.push(c as Buffer);
        return Buffer.concat(chunks).toString('utf8');
      },
    });
  } catch (err) {
    if (err instanceof UsageError) usage(`quarantine: ${err.message}`);
    throw err;
  }
}

async function rulesCommand(args: string[]): Promise<void> {
  // The rules CLI lives with the rules engine; loaded lazily so `serve` does not pay for it.
  // A literal specifier, so `npm run build` rewrites it to dist/cli/rules.js.
  const { runRulesCommand } = await import('./rules.ts');
  process.exitCode = await runRulesCommand(args);
}

export async function main(argv: string[]): Promise<void> {
  const args = [...argv];
  const cmd = args.shift();
  switch (cmd) {
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(HELP_MAIN);
      return;
    case '-V':
    case '--version':
      process.stdout.write(`mailgate ${VERSION}\n`);
      return;
    case 'serve':
      return serve(args);
    case 'config':
      return configCommand(args);
    case 'quarantine':
      return quarantineCommand(args);
    case 'rules':
      return rulesCommand(args);
    case 'doctor': {
      const { runDoctor } = await import('./doctor.ts');
      process.exitCode = await runDoctor(args, { out: (t) => void process.stdout.write(t), err: (t) => void process.stderr.write(t) });
      return;
    }
    default:
      usage(`unknown command ${cmd}`);
  }
}

await main(process.argv.slice(2));
