// Postfix's load tools: smtp-sink (the "MTA" every row delivers to, counting what arrives) and
// smtp-source (the load generator: N messages over S parallel sessions, one connection per message).
import { spawn } from 'node:child_process';
import { existsSync, openSync, readSync, closeSync, fstatSync } from 'node:fs';
import { startService, waitSmtp, freePort, type Service } from './service.ts';

const DIRS = ['/usr/sbin', '/usr/lib/postfix/sbin', '/usr/libexec/postfix', '/usr/bin', '/usr/local/sbin', '/usr/local/bin'];

export function findBin(name: string): string {
  for (const d of DIRS) if (existsSync(`${d}/${name}`)) return `${d}/${name}`;
  throw new Error(`${name} not found (apt-get install postfix; see docs/bench.md)`);
}

export interface Sink {
  readonly port: number;
  readonly svc: Service;
  /** Messages the sink has received so far (from its -c counter). */
  delivered(): number;
}

/**
 * smtp-sink on a free loopback port: -c counts, -m 1024 parallel sessions, backlog 1024. It offers
 * "XCLIENT NAME HELO" (no ADDR), which mailgate's `xclient: auto` does not use, so mailgate keeps
 * pooled backend sessions; the mailgate-nopool row shows the one-backend-connection-per-client
 * shape a Postfix backend with XCLIENT gets.
 */
export async function startSink(logDir: string, pinCpus?: string): Promise<Sink> {
  const port = await freePort();
  const args = ['-u', 'nobody', '-c', '-m', '1024', `127.0.0.1:${port}`, '1024'];
  // --pin-load: the sink runs on the load generator's CPUs (taskset), away from the gateway
  const svc = pinCpus
    ? startService('smtp-sink', 'taskset', ['-c', pinCpus, findBin('smtp-sink'), ...args], { logDir })
    : startService('smtp-sink', findBin('smtp-sink'), args, { logDir });
  await waitSmtp(port, 10_000, svc);
  return {
    port,
    svc,
    delivered: () => lastCount(svc.log),
  };
}

/** smtp-sink -c rewrites "sess=N quit=N mesg=N\r" in place: read the last one from the log's tail. */
function lastCount(file: string): number {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return 0;
  }
  try {
    const size = fstatSync(fd).size;
    const len = Math.min(size, 512);
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, size - len);
    const all = [...buf.toString('latin1').matchAll(/mesg=(\d+)/g)];
    return Number(all.at(-1)?.[1] ?? 0);
  } finally {
    closeSync(fd);
  }
}

export interface SourceRun {
  msgs: number;
  sessions: number;
  wallS: number;
  /** CPU seconds (user+sys) smtp-source itself used. */
  sourceCpuS: number;
  exitCode: number | null;
  timedOut: boolean;
  /** smtp-source's complaints (it prints nothing on success). */
  output: string;
}

export interface SourceOptions {
  port: number;
  sessions: number;
  msgs: number;
  messageFile: string;
  timeoutS: number;
  from?: string;
  to?: string;
  helo?: string;
  /** CPU list for taskset (--pin-load): smtp-source runs only there. */
  pinCpus?: string;
}

/**
 * Runs smtp-source once under bash's `time` (for its CPU) and a hard timeout. One new TCP
 * connection per message (no -d), as real MX traffic.
 */
export async function runSource(o: SourceOptions): Promise<SourceRun> {
  const args = [
    '-s',
    String(o.sessions),
    '-m',
    String(o.msgs),
    '-F',
    o.messageFile,
    '-f',
    o.from ?? 'sender@example.test',
    '-t',
    o.to ?? 'rcpt@example.test',
    '-M',
    o.helo ?? 'client.example.test',
    `127.0.0.1:${o.port}`,
  ];
  // bash's `time` reports the child's user/sys CPU; smtp-source's own output goes to fd 3 → stdout.
  const script = 'TIMEFORMAT="@cpu %U %S"; { time timeout -s KILL "$0" "$@" 2>&1 1>&3 ; } 3>&1 2>&1';
  const t0 = process.hrtime.bigint();
  const cmd = o.pinCpus ? ['taskset', '-c', o.pinCpus, findBin('smtp-source')] : [findBin('smtp-source')];
  const child = spawn('bash', ['-c', script, String(o.timeoutS), ...cmd, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
  const m = /@cpu ([\d.]+) ([\d.]+)/.exec(out);
  const output = out.replace(/@cpu [\d.]+ [\d.]+\n?/, '').trim();
  return {
    msgs: o.msgs,
    sessions: o.sessions,
    wallS,
    sourceCpuS: m ? Number(m[1]) + Number(m[2]) : NaN,
    exitCode: code,
    timedOut: code === 137,
    output,
  };
}
