// Starts a throwaway redis-server for tests: loopback, a free port, a temp dir, no persistence.
// It can be killed, paused (SIGSTOP: a hung server) and restarted on the same port, for outage
// tests. With REDIS_URL set, that server is used instead (and outage tests are skipped).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';

export interface TestRedis {
  url: string;
  host: string;
  port: number;
  /** False when REDIS_URL points at a server we do not control. */
  controllable: boolean;
  /** SIGKILL: connections drop at once. */
  kill(): Promise<void>;
  /** Starts it again on the same port (after kill). */
  restart(): Promise<void>;
  /** SIGSTOP / SIGCONT: a server that accepts but never answers. */
  pause(): void;
  resume(): void;
  stop(): Promise<void>;
}

/** A unique key prefix per test, so tests sharing a server never see each other's keys. */
export function uniquePrefix(tag = 't'): string {
  return `mgtest:${tag}:${randomUUID().slice(0, 8)}:`;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves once the server answers PING, or rejects after `timeoutMs`. */
async function waitPing(host: string, port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host, port });
      const done = (v: boolean) => {
        s.destroy();
        resolve(v);
      };
      s.setTimeout(500, () => done(false));
      s.once('error', () => done(false));
      s.once('connect', () => s.write('PING\r\n'));
      s.once('data', (d) => done(d.toString().startsWith('+PONG')));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`redis on ${host}:${port} did not answer within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startRedis(): Promise<TestRedis> {
  const external = process.env.REDIS_URL;
  if (external) {
    const u = new URL(external);
    const noop = async () => {
      throw new Error('REDIS_URL server is not controllable');
    };
    return {
      url: external,
      host: u.hostname,
      port: Number(u.port || 6379),
      controllable: false,
      kill: noop,
      restart: noop,
      pause: () => {
        throw new Error('REDIS_URL server is not controllable');
      },
      resume: () => undefined,
      stop: async () => undefined,
    };
  }
  const dir = mkdtempSync(join(tmpdir(), 'mailgate-redis-'));
  const host = '127.0.0.1';
  let port = 0;
  let child: ChildProcess | undefined;
  let stderr = '';

  const launch = async (): Promise<void> => {
    stderr = '';
    const c = spawn(
      'redis-server',
      ['--port', String(port), '--bind', host, '--dir', dir, '--save', '', '--appendonly', 'no', '--protected-mode', 'yes', '--loglevel', 'warning'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    c.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<never>((_, reject) =>
      c.once('exit', (code) => reject(new Error(`redis-server exited (${code}): ${stderr}`))),
    );
    exited.catch(() => undefined);
    const spawnError = new Promise<never>((_, reject) => c.once('error', reject));
    spawnError.catch(() => undefined);
    child = c;
    await Promise.race([waitPing(host, port, 10_000), exited, spawnError]);
  };

  for (let attempt = 0; ; attempt++) {
    port = await freePort();
    try {
      await launch();
      break;
    } catch (err) {
      child?.kill('SIGKILL');
      if (attempt >= 2) throw err;
    }
  }

  const killChild = async (signal: NodeJS.Signals) => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const gone = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGCONT');
    c.kill(signal);
    await gone;
  };

  return {
    url: `redis://${host}:${port}`,
    host,
    port,
    controllable: true,
    kill: () => killChild('SIGKILL'),
    restart: async () => {
      await killChild('SIGKILL');
      await launch();
    },
    pause: () => void child?.kill('SIGSTOP'),
    resume: () => void child?.kill('SIGCONT'),
    stop: async () => {
      await killChild('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
