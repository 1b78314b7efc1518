// Starts a real mailgate gateway in-process on loopback port 0 for end-to-end tests, by default in
// front of the private Postfix that `npm test` (test/run.ts) starts: MAILGATE_TEST_BACKEND_PORT.
import net from 'node:net';
import pino from 'pino';
import { configSchema, type Config } from '../../src/config/schema.ts';
import { createGateway, type Gateway, type GatewayOptions } from '../../src/gateway.ts';
import { startDnsServer, type TestDnsServer } from './dns-server.ts';

let sharedDns: Promise<TestDnsServer> | undefined;

/**
 * "127.0.0.1:port" of a DNS server on loopback that answers NXDOMAIN for every name. Tests must
 * never fall back to the system resolvers (/etc/resolv.conf points off this machine): every
 * gateway a test starts, in-process or as a child, gets this or a test's own DNS server.
 */
export async function loopbackDns(): Promise<string> {
  sharedDns ??= startDnsServer({ zone: {} }).then((s) => {
    s.unref();
    return s;
  });
  return (await sharedDns).address;
}

export const BACKEND_PORT = Number(process.env.MAILGATE_TEST_BACKEND_PORT ?? 10025);

/** A config for tests: listen on an ephemeral port, relay to the test Postfix, no admin. */
export function testConfig(overrides: Record<string, unknown> = {}): Config {
  return configSchema.parse({
    hostname: 'mx.example.test',
    listen: [{ host: '127.0.0.1', port: 0 }],
    domains: ['example.test'],
    backend: { host: '127.0.0.1', port: BACKEND_PORT, command_timeout_ms: 5000, data_timeout_ms: 10_000, connect_timeout_ms: 2000 },
    admin: false,
    log: { level: process.env.MAILGATE_TEST_LOG ?? 'silent' },
    quarantine: { dir: `/tmp/mailgate-test-quarantine-${process.pid}` },
    spool_dir: `/tmp/mailgate-test-spool-${process.pid}`,
    smtp: { shutdown_grace_s: 5 },
    ...overrides,
  });
}

export interface TestGateway extends Gateway {
  port: number;
}

export async function startGateway(config: Config = testConfig(), opts: Partial<GatewayOptions> = {}): Promise<TestGateway> {
  if (!config.dns.servers) config.dns.servers = [await loopbackDns()];
  const logger = pino({ level: config.log.level });
  const gw = await createGateway({ config, logger, ...opts });
  return Object.assign(gw, { port: gw.ports[0] as number });
}

/** Fails fast with a clear message when the test backend is not running. */
export async function requireBackend(): Promise<void> {
  const ok = await new Promise<boolean>((resolve) => {
    const s = net.connect(BACKEND_PORT, '127.0.0.1', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
  if (!ok) {
    const how = process.env.MAILGATE_TEST_BACKEND_PORT
      ? `MAILGATE_TEST_BACKEND_PORT=${BACKEND_PORT} is set but nothing listens there`
      : 'MAILGATE_TEST_BACKEND_PORT is not set';
    throw new Error(
      `the test backend (Postfix) is not listening on 127.0.0.1:${BACKEND_PORT} (${how}): run tests through 'npm test' or 'npm test -- FILE…', which starts a private Postfix and exports MAILGATE_TEST_BACKEND_PORT, MAIL_BASE and MAIL_CONFIG`,
    );
  }
}

/** A free loopback port with nothing listening (for "backend down"). */
export async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}
