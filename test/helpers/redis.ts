// Starts a throwaway redis-server for tests: loopback, a free port, a temp dir, no persistence.
// It can be killed, paused (SIGSTOP: a hung server) and restarted on the same port, for outage
// tests. With REDIS_URL set, that server is used instead (and outage tests are skipped). Also: a
// three-node Redis Cluster and a master with one Sentinel, for the config forms the docs show.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
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
    const exited = new Promise<never>((_, reject) => c.once('exit', (code) => reject(new Error(`redis-server exited (${code}): ${stderr}`))));
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

/** One redis-server (or Sentinel) process with `args`, on a free port; resolves when it answers. */
async function spawnServer(dir: string, args: (port: number) => string[]): Promise<{ port: number; child: ChildProcess }> {
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    let stderr = '';
    const child = spawn('redis-server', args(port), { stdio: ['ignore', 'ignore', 'pipe'], cwd: dir });
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`redis-server exited (${code}): ${stderr}`))));
    exited.catch(() => undefined);
    try {
      await Promise.race([waitPing('127.0.0.1', port, 10_000), exited]);
      return { port, child };
    } catch (err) {
      child.kill('SIGKILL');
      if (attempt >= 2) throw err;
    }
  }
}

async function stopAll(children: ChildProcess[], dir: string): Promise<void> {
  await Promise.all(
    children.map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve();
          c.once('exit', () => resolve());
          c.kill('SIGKILL');
        }),
    ),
  );
  rmSync(dir, { recursive: true, force: true });
}

const base = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'warning'];
const run = promisify(execFile);

export interface TestCluster {
  /** "127.0.0.1:port" of every node (all masters). */
  nodes: string[];
  stop(): Promise<void>;
}

/** Three masters, slots spread by redis-cli --cluster create, no replicas. */
export async function startRedisCluster(): Promise<TestCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'mailgate-redis-cluster-'));
  const children: ChildProcess[] = [];
  try {
    const nodes: string[] = [];
    for (let i = 0; i < 3; i++) {
      const { port, child } = await spawnServer(dir, (p) => [
        '--port',
        String(p),
        ...base,
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        `nodes-${p}.conf`,
        '--dir',
        dir,
      ]);
      children.push(child);
      nodes.push(`127.0.0.1:${port}`);
    }
    await run('redis-cli', ['--cluster', 'create', ...nodes, '--cluster-replicas', '0', '--cluster-yes'], { timeout: 20_000 });
    const [host, port] = (nodes[0] as string).split(':') as [string, string];
    const deadline = Date.now() + 15_000;
    for (;;) {
      const { stdout } = await run('redis-cli', ['-h', host, '-p', port, 'cluster', 'info']);
      if (stdout.includes('cluster_state:ok')) break;
      if (Date.now() > deadline) throw new Error(`cluster not ok: ${stdout}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return { nodes, stop: () => stopAll(children, dir) };
  } catch (err) {
    await stopAll(children, dir);
    throw err;
  }
}

export interface TestSentinel {
  /** "127.0.0.1:port" of the Sentinel. */
  sentinel: string;
  /** The monitored group's name. */
  name: string;
  masterPort: number;
  stop(): Promise<void>;
}

/** A master and one Sentinel monitoring it as `mymaster` (quorum 1). */
export async function startRedisSentinel(): Promise<TestSentinel> {
  const dir = mkdtempSync(join(tmpdir(), 'mailgate-redis-sentinel-'));
  const children: ChildProcess[] = [];
  try {
    const master = await spawnServer(dir, (p) => ['--port', String(p), ...base, '--dir', dir]);
    children.push(master.child);
    const conf = join(dir, 'sentinel.conf');
    const sentinel = await spawnServer(dir, (p) => {
      // Sentinel rewrites its config file: one per attempt, in the temp dir.
      writeFileSync(
        conf,
        `port ${p}\nbind 127.0.0.1\ndir ${dir}\nsentinel monitor mymaster 127.0.0.1 ${master.port} 1\nsentinel down-after-milliseconds mymaster 2000\n`,
      );
      return [conf, '--sentinel'];
    });
    children.push(sentinel.child);
    return { sentinel: `127.0.0.1:${sentinel.port}`, name: 'mymaster', masterPort: master.port, stop: () => stopAll(children, dir) };
  } catch (err) {
    await stopAll(children, dir);
    throw err;
  }
}
