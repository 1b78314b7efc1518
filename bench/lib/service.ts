// Starts the processes a bench row needs (sink, gateway, Haraka) in their own process group with
// output to a log file, and stops exactly those (by recorded pid + start time, never by name).
import { spawn } from 'node:child_process';
import { openSync, closeSync, readFileSync, mkdirSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startTime, tree } from './procfs.ts';

export interface Service {
  readonly name: string;
  readonly pid: number;
  readonly log: string;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  readonly exited: Promise<number | string>;
  stop(graceMs?: number): Promise<void>;
  logTail(lines?: number): string;
}

const running = new Set<Service>();

export interface StartOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  logDir: string;
}

export function startService(name: string, cmd: string, args: string[], opts: StartOptions): Service {
  mkdirSync(opts.logDir, { recursive: true });
  const log = join(opts.logDir, `${name}.log`);
  const fd = openSync(log, 'w');
  const child = spawn(cmd, args, {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    detached: true, // own process group: stop() can signal the process and its workers together
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${name}: ${cmd}`);
  const st = startTime(pid);
  let done = false;
  const exited = new Promise<number | string>((resolve) => {
    child.on('exit', (code, sig) => {
      done = true;
      resolve(code ?? sig ?? 'unknown');
    });
  });
  const svc: Service = {
    name,
    pid,
    log,
    exited,
    async stop(graceMs = 15_000) {
      running.delete(svc);
      if (done) return;
      if (startTime(pid) !== st) return; // pid no longer ours
      signalGroup(pid, 'SIGTERM');
      const t = await Promise.race([exited.then(() => 'exited'), sleep(graceMs, 'timeout')]);
      if (t === 'timeout') {
        signalGroup(pid, 'SIGKILL');
        await Promise.race([exited, sleep(2000)]);
      }
      // leftover workers of the group (a master that exited without reaping them)
      signalGroup(pid, 'SIGKILL');
    },
    logTail(lines = 20) {
      try {
        return readFileSync(log, 'utf8').split('\n').slice(-lines).join('\n');
      } catch {
        return '';
      }
    },
  };
  running.add(svc);
  return svc;
}

function signalGroup(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig);
  } catch {
    try {
      process.kill(pid, sig);
    } catch {
      /* already gone */
    }
  }
}

/** Sends sig to every process of the service's tree (e.g. SIGWINCH = full GC via gc-signal.cjs). */
export function signalTree(pid: number, sig: NodeJS.Signals): void {
  for (const p of tree(pid)) {
    try {
      process.kill(p, sig);
    } catch {
      /* gone */
    }
  }
}

/** Stops every service still running (on exit, on error, on Ctrl-C). */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((s) => s.stop(5000)));
}

/** A free TCP port on 127.0.0.1 (bind to port 0, read it, close). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Waits until 127.0.0.1:port sends an SMTP greeting ("220"), or throws after timeoutMs. */
export async function waitSmtp(port: number, timeoutMs: number, svc?: Service): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void svc?.exited.then(() => (exited = true));
  while (Date.now() < deadline) {
    if (exited) throw new Error(`${svc?.name} exited before listening:\n${svc?.logTail()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port });
      let buf = '';
      const t = setTimeout(() => {
        s.destroy();
        resolve(false);
      }, 2000);
      s.on('data', (d) => {
        buf += d.toString('latin1');
        if (/^220[ -]/m.test(buf)) {
          clearTimeout(t);
          s.end('QUIT\r\n');
          s.destroy();
          resolve(true);
        }
      });
      s.on('error', () => {
        clearTimeout(t);
        resolve(false);
      });
    });
    if (ok) return;
    await sleep(200);
  }
  throw new Error(`port ${port} gave no SMTP greeting within ${timeoutMs} ms${svc ? `:\n${svc.logTail()}` : ''}`);
}

/** Waits until 127.0.0.1:port accepts a TCP connection (a milter, which sends nothing first). */
export async function waitTcp(port: number, timeoutMs: number, svc?: Service): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void svc?.exited.then(() => (exited = true));
  while (Date.now() < deadline) {
    if (exited) throw new Error(`${svc?.name} exited before listening:\n${svc?.logTail()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(200);
  }
  throw new Error(`port ${port} not listening within ${timeoutMs} ms${svc ? `:\n${svc.logTail()}` : ''}`);
}
