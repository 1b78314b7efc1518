// Builds a running gateway from a config and injected dependencies: listeners, checks, policy,
// backend, quarantine, admin HTTP. One factory so tests start the real thing on port 0 and
// `mailgate serve` starts the same code; reload() and stop() implement SIGHUP and SIGTERM.
import pino, { type Logger } from 'pino';
import type { Config } from './config/schema.ts';
import { Listener, ConnCounters } from './fronts/smtp/listener.ts';
import type { ClientSession } from './fronts/smtp/session.ts';
import { backendFromConfig, type Backend } from './delivery/backend.ts';
import { QuarantineStore } from './delivery/quarantine/store.ts';
import { scheduleDigests } from './delivery/quarantine/digest.ts';
import { normalizeDomain } from './net/address.ts';
import type { Runtime } from './pipeline/runtime.ts';
import type { Deps } from './pipeline/deps.ts';
import type { Check } from './pipeline/check.ts';
import type { Policy } from './pipeline/verdict.ts';
// The admin server (Hono, mailparser for the console) is imported only when the config enables it.
import type { AdminServer, ReadinessProbe } from './admin/server.ts';
import { buildChecks, closeChecks, knownFacts, knownSections } from './checks/catalogue.ts';
import { planProblems } from './pipeline/check-order.ts';
import { coreFacts } from './pipeline/core-facts.ts';
import { STAGES } from './pipeline/stages.ts';
import { loadPolicy, type PolicyHandle } from './rules/load-policy.ts';
import { replies } from './pipeline/reply.ts';
import { createResolver } from './dns/resolver.ts';
import { buildTransactionStrip } from './message/strip-headers.ts';
import { startGatewayOutbound } from './fronts/outbound/outbound-listener.ts';
import { createMilterFront } from './fronts/milter/milter-front.ts';
import { passThroughBackend } from './delivery/pass-through.ts';
import { prepareSpoolDir, defaultSpoolDir } from './message/spool-dir.ts';
import { createTracer } from './trace/create-tracer.ts';

export interface GatewayOptions {
  config: Config;
  logger?: Logger;
  /** Overrides for I/O dependencies (tests): clock, DNS, store. */
  deps?: Partial<Deps>;
  /** Extra checks appended to the configured ones (tests, embedding). */
  extraChecks?: Check[];
  /** Use this policy instead of loading `config.rules`. */
  policy?: Policy;
  /** Start the admin HTTP server (default: as configured). */
  admin?: boolean;
}

export interface Gateway {
  readonly runtime: Runtime;
  /** The quarantine store (index, files, release), shared with the admin API and digests. */
  readonly quarantine: QuarantineStore;
  /** Bound SMTP ports, in `config.listen` order (useful with port 0). */
  readonly ports: number[];
  readonly adminPort: number | undefined;
  /** Bound milter port (`milter.listen` inet; 0 for a unix socket; undefined without `milter:`). */
  readonly milterPort: number | undefined;
  /** Applies a new config's live-changeable parts (domains, limits, TLS certificates, rules). */
  reload(config?: Config): Promise<void>;
  /** Stops accepting, lets transactions in flight finish within `graceMs`, closes everything. */
  stop(graceMs?: number): Promise<void>;
}

type SessionMap = Map<string, { session: ClientSession; conn: { send(c: number, d: string): void; close(): void } }>;

/** The header fields removed from every delivered message: our own fields and smtp.strip_headers (issue 14, item 4). */
export function buildStripHeaders(config: Config): Array<(name: string, value: string) => boolean> {
  return [
    buildTransactionStrip({ authservIds: [config.hostname, ...(config.auth.authserv_id ? [config.auth.authserv_id] : [])], globs: config.smtp.strip_headers }),
  ];
}

async function waitReady(probe: { check(): Promise<{ ok: boolean }> }, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (
      await probe.check().then(
        (r) => r.ok,
        () => false,
      )
    )
      return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

function makeBackend(config: Config): Backend {
  // Milter only (no SMTP listeners): the MTA delivers; nothing relays through the gateway.
  return backendFromConfig(config) ?? passThroughBackend('none (milter only: the MTA delivers)');
}

export async function createGateway(opts: GatewayOptions): Promise<Gateway> {
  const config = opts.config;
  const logger = opts.logger ?? pino({ level: config.log.level, base: { svc: 'mailgate' } });
  // Checks that follow SIGHUP reloads read the config in force through deps.config.
  let current = config;
  const deps: Deps = { logger, now: Date.now, config: () => current, ...opts.deps };
  // One resolver (one cache, one concurrency bound) for every check.
  deps.dns ??= createResolver(config.dns);
  const checks = [...(await buildChecks(config, deps)), ...(opts.extraChecks ?? [])];
  let policyHandle: PolicyHandle | undefined;
  let policy: Policy;
  if (opts.policy) policy = opts.policy;
  else {
    policyHandle = await loadPolicy(config, checks, logger, { facts: knownFacts(checks.flatMap((c) => c.facts)), sections: knownSections(checks) });
    policy = policyHandle.policy;
  }
  // Checks run in the order their declared needs give; a need nothing can satisfy, or a cycle,
  // stops the start here with the reason (never a check that silently sees no facts).
  const problems = planProblems(checks, coreFacts, STAGES);
  if (problems.length > 0) {
    policyHandle?.close();
    await closeChecks(checks);
    throw new Error(`checks cannot be ordered: ${problems.join('; ')}`);
  }
  const quarantine = new QuarantineStore({ config: config.quarantine, logger });
  // Tracing off: the no-op tracer, and @opentelemetry/* is never imported (docs/operations.md "Tracing").
  const tracer = await createTracer(config.tracing, (err) => logger.warn({ err, endpoint: config.tracing.endpoint }, 'tracing export failed'));
  const runtime: Runtime = {
    config,
    logger,
    domains: new Set(config.domains.map(normalizeDomain)),
    checks,
    policy,
    backend: makeBackend(config),
    quarantine,
    spoolDir: prepareSpoolDir(config.spool_dir ?? defaultSpoolDir(config.quarantine.dir)).path,
    stripHeaders: buildStripHeaders(config),
    tracer,
    draining: false,
  };
  if (policyHandle?.capture) runtime.capture = policyHandle.capture;
  // Reconcile the quarantine index with its files, then expire periodically (docs/quarantine.md).
  await quarantine.start();
  const stopDigests = scheduleDigests({ store: quarantine, backend: runtime.backend, config, logger });
  // Give shared state (Redis) a moment to connect before the first client arrives, so a fresh
  // gateway does not answer its first connections "unavailable". Bounded: a Redis that is down
  // at start is handled like any outage (fail_open / fail_closed).
  await Promise.all(checks.map((c) => (c.readiness ? waitReady(c.readiness, 3000) : undefined)));
  const sessions: SessionMap = new Map();
  const counters = new ConnCounters();
  const listeners = config.listen.map((l) => new Listener(runtime, l, sessions as never, counters));
  const ports: number[] = [];
  for (const l of listeners) ports.push(await l.listen());
  // Backscatter: the listener for mail leaving the site (BATV signing), when configured.
  const outbound = await startGatewayOutbound(runtime, deps, checks);
  const milter = config.milter ? createMilterFront(runtime, config.milter) : undefined;
  const milterPort = milter ? await milter.listen() : undefined;
  if (milter) logger.info({ milter: milter.description, port: milterPort }, 'mailgate milter listening');
  logger.info({ ports, backend: runtime.backend.description, domains: config.domains }, 'mailgate listening');

  const probes: ReadinessProbe[] = [{ name: 'backend', check: () => runtime.backend.probe() }, ...checks.flatMap((c) => (c.readiness ? [c.readiness] : []))];
  let admin: AdminServer | undefined;
  if ((opts.admin ?? true) && config.admin !== false) {
    const { startAdmin } = await import('./admin/server.ts');
    admin = await startAdmin(config.admin, runtime, probes, quarantine);
  }

  const gw: Gateway = {
    runtime,
    quarantine,
    ports,
    adminPort: admin?.port,
    milterPort,
    async reload(next?: Config) {
      if (next) {
        runtime.config = next;
        current = next;
        runtime.domains = new Set(next.domains.map(normalizeDomain));
        runtime.stripHeaders = buildStripHeaders(next);
      }
      for (const l of listeners) {
        try {
          l.reloadTls();
        } catch (err) {
          logger.error({ err: (err as Error).message }, 'TLS certificate reload failed; keeping the old one');
        }
      }
      await policyHandle?.reload();
      logger.info('configuration reloaded');
    },
    async stop(graceMs = config.smtp.shutdown_grace_s * 1000) {
      runtime.draining = true;
      // net.Server.close() resolves only once every connection is gone: stop accepting now, but
      // do not wait for it before idle clients are told 421 and closed below.
      const listenersClosed = Promise.all(listeners.map((l) => l.close()));
      // The milter front stops accepting now too and drains its own transactions within graceMs.
      const milterClosed = milter?.close(graceMs);
      const r = replies.shuttingDown();
      const closeIdle = () => {
        for (const { session, conn } of sessions.values()) {
          if (!session.busy && !session.closed) {
            conn.send(r.code, `${r.enhanced} ${r.text}`);
            conn.close();
          }
        }
      };
      closeIdle();
      // After the reply that ended the transaction (the 250 for DATA is sent once onData's
      // promise settles, after the session went idle), not before it.
      for (const { session } of sessions.values()) session.onIdle = () => setImmediate(closeIdle);
      const deadline = Date.now() + graceMs;
      while ([...sessions.values()].some((e) => e.session.busy) && Date.now() < deadline) {
        await new Promise((res) => setTimeout(res, 50));
      }
      for (const { conn } of sessions.values()) conn.close();
      await listenersClosed;
      await outbound?.close();
      await milterClosed;
      runtime.backend.close();
      policyHandle?.close();
      await closeChecks(checks);
      await admin?.close();
      stopDigests();
      await quarantine.close();
      // The spans of the last transactions are exported before the process goes.
      await tracer.shutdown().catch((err: Error) => logger.warn({ err: err.message }, 'tracing flush failed'));
      logger.info('mailgate stopped');
    },
  };
  return gw;
}
