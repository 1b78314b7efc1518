// The watchdog of `npm test` (test/run.ts). Node's runner bounds each test (--test-timeout), but
// not a test file's process that blocks its own event loop (a synchronous child process that
// never returns, a loop that never ends: its timers never fire) or one that never ends after its
// tests (a handle left open; --test-force-exit would end it, but under Node 24.9 it also ended
// files part-way through their tests, silently). The runner then waits forever, CI runs into its
// own limit and prints nothing about the cause (it happened once, in
// test/e2e/quarantine-digest.test.ts, and not in 25 runs of that file alone and full runs since).
// So: when the run has printed nothing for `stallMs`, the watchdog prints the process tree under
// the runner and kills the test files' processes still running (the runner reports each as
// failed, with what it printed, and goes on to the next file); past `totalMs` it kills the run.
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

export interface WatchdogOptions {
  /** No output for this long: the run is stuck. */
  stallMs: number;
  /** The whole run may take this long. */
  totalMs: number;
  /** How often to look (default: a tenth of stallMs, at most 10 s). */
  checkMs?: number;
  /** Where the watchdog's own lines go. */
  write: (line: string) => void;
}

export interface Watchdog {
  /** The run printed something. */
  touch(): void;
  stop(): void;
  /** Whether the total limit was hit (the run was killed). */
  readonly overTime: boolean;
}

interface Proc {
  pid: number;
  ppid: number;
  args: string;
}

/** Every process of the machine, from /proc (Linux: what the tests run on). */
export function listProcesses(): Proc[] {
  const out: Proc[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'latin1');
      // "pid (comm) state ppid …": comm may hold spaces and parentheses, so read after the last ')'.
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const args = readFileSync(`/proc/${name}/cmdline`, 'latin1').split('\0').filter(Boolean).join(' ');
      out.push({ pid: Number(name), ppid: Number(rest[1]), args });
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

/** `root`'s descendants, parents before their children, each with its depth below root. */
export function descendants(procs: readonly Proc[], root: number): Array<Proc & { depth: number }> {
  const byParent = new Map<number, Proc[]>();
  for (const p of procs) {
    const siblings = byParent.get(p.ppid);
    if (siblings) siblings.push(p);
    else byParent.set(p.ppid, [p]);
  }
  const out: Array<Proc & { depth: number }> = [];
  const walk = (pid: number, depth: number): void => {
    for (const c of byParent.get(pid) ?? []) {
      out.push({ ...c, depth });
      walk(c.pid, depth + 1);
    }
  };
  walk(root, 1);
  return out;
}

/** A command line for a log line: Node's runner puts its flags first and the file last. */
function short(args: string): string {
  return args.length <= 300 ? args : `${args.slice(0, 60)} … ${args.slice(-220)}`;
}

function kill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* already gone */
  }
}

/** Watches `child` (Node's test runner, spawned detached so it leads its own process group). */
export function watchRun(child: ChildProcess, o: WatchdogOptions): Watchdog {
  const started = Date.now();
  let last = started;
  let overTime = false;
  const root = child.pid as number;
  const timer = setInterval(
    () => {
      const now = Date.now();
      if (now - started > o.totalMs) {
        overTime = true;
        o.write(`npm test: the run passed its limit of ${Math.round(o.totalMs / 1000)} s: killing it`);
        for (const p of descendants(listProcesses(), root)) o.write(`npm test:   still running: ${p.pid} ${short(p.args)}`);
        try {
          process.kill(-root, 'SIGKILL');
        } catch {
          kill(root);
        }
        clearInterval(timer);
        return;
      }
      if (now - last < o.stallMs) return;
      last = now;
      const tree = descendants(listProcesses(), root);
      o.write(`npm test: no output for ${Math.round(o.stallMs / 1000)} s; the processes under the test runner:`);
      for (const p of tree) o.write(`npm test:   ${'  '.repeat(p.depth - 1)}${p.pid} ${short(p.args)}`);
      // A test file's process is a direct child of the runner; its own children (servers it
      // started) go with it, deepest first, so none is left holding a port.
      const files = tree.filter((p) => p.ppid === root && /\.test\.ts\b/.test(p.args));
      for (const f of files) {
        o.write(`npm test: killing the stuck test file's process ${f.pid} (${short(f.args)})`);
        for (const d of descendants(tree, f.pid).reverse()) kill(d.pid);
        kill(f.pid);
      }
    },
    o.checkMs ?? Math.min(10_000, Math.max(50, o.stallMs / 10)),
  );
  timer.unref();
  return {
    touch() {
      last = Date.now();
    },
    stop() {
      clearInterval(timer);
    },
    get overTime() {
      return overTime;
    },
  };
}
