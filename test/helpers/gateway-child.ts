// mailgate started as a child process (`mailgate serve`), and the wait until it listens. One
// helper for the tests that need a real process (signals, SIGKILL, 2,000 sockets): a CI host under
// load once took more than the 10 s the tests had each allowed, and the failure then read
// "ECONNREFUSED" with the child's stderr thrown away. Here the wait is long, ends at once when the
// child exits, and every failure carries what the child printed.
import net from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');
/** How long a start may take before the test fails; generous, since a healthy start ends early. */
export const START_TIMEOUT_MS = Number(process.env.MAILGATE_TEST_START_TIMEOUT_MS ?? 60_000);

export interface GatewayChild {
  child: ChildProcess;
  /** stdout and stderr so far, interleaved (the last 64 KiB). */
  output(): string;
  /** Resolves with the exit code (null when killed by a signal). */
  exited: Promise<number | null>;
}

/** `mailgate serve --config cfg` from the source tree; output is kept for failure messages. */
export function spawnGateway(cfg: string): GatewayChild {
  const child = spawn(process.execPath, [join(ROOT, 'src/cli/main.ts'), 'serve', '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT });
  let out = '';
  const keep = (d: Buffer) => {
    out += d.toString('utf8');
    if (out.length > 65_536) out = out.slice(-65_536);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, output: () => out, exited };
}

/** Whether something accepts a TCP connection on 127.0.0.1:port. */
export function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

/**
 * Waits until every port accepts connections. Throws, with the child's output, when the child
 * exits first or the ports are still closed after `ms`.
 */
export async function waitListening(gw: GatewayChild, ports: number[], ms = START_TIMEOUT_MS): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    if (gw.child.exitCode !== null || gw.child.signalCode !== null) {
      throw new Error(`mailgate exited (${gw.child.exitCode ?? gw.child.signalCode}) before listening on ${ports.join(', ')}:\n${gw.output()}`);
    }
    const up = await Promise.all(ports.map(listening));
    if (up.every(Boolean)) return;
    if (Date.now() - t0 > ms) {
      throw new Error(`mailgate not listening on ${ports.join(', ')} after ${ms} ms:\n${gw.output()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Picks `count` free ports, writes the config for them and starts mailgate on them. A port found
 * free can be taken again before the child binds it (an outgoing connection's local port, say);
 * on EADDRINUSE it starts over with new ports, twice at most.
 */
export async function startGatewayOnFreePorts(count: number, writeConfig: (ports: number[]) => string): Promise<{ gw: GatewayChild; ports: number[] }> {
  for (let attempt = 1; ; attempt++) {
    const ports: number[] = [];
    for (let i = 0; i < count; i++) ports.push(await closedPort(ports));
    const gw = spawnGateway(writeConfig(ports));
    try {
      await waitListening(gw, ports);
      return { gw, ports };
    } catch (e) {
      gw.child.kill('SIGKILL');
      await gw.exited;
      if (attempt < 3 && gw.output().includes('EADDRINUSE')) continue;
      throw e;
    }
  }
}

/** A port nothing listens on now, other than those in `not`. */
async function closedPort(not: number[]): Promise<number> {
  for (;;) {
    const s = net.createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    const port = (s.address() as net.AddressInfo).port;
    await new Promise<void>((r) => s.close(() => r()));
    if (!not.includes(port)) return port;
  }
}
