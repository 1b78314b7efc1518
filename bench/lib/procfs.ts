// Reads CPU time and memory of a process tree from /proc (Linux only), the way the anchors did:
// utime+stime of the root and every live descendant (cluster workers included), VmRSS/VmHWM summed.
import { readFileSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

/** Clock ticks per second for /proc/<pid>/stat times (getconf CLK_TCK; 100 on Linux). */
export const CLK_TCK: number = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** Fields of /proc/<pid>/stat after the ")" closing the command name; index 0 is field 3 (state). */
function statFields(pid: number): string[] | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** Start time (clock ticks since boot) — with the pid, identifies a process across pid reuse. */
export function startTime(pid: number): string | null {
  return statFields(pid)?.[19] ?? null;
}

/** Live descendants of pid (children of every thread, recursively). */
export function descendants(pid: number): number[] {
  const out: number[] = [];
  const walk = (p: number): void => {
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${p}/task`);
    } catch {
      return;
    }
    for (const t of tasks) {
      let kids = '';
      try {
        kids = readFileSync(`/proc/${p}/task/${t}/children`, 'utf8');
      } catch {
        continue;
      }
      for (const k of kids.split(' ')) {
        const c = Number(k);
        if (c > 0 && !out.includes(c)) {
          out.push(c);
          walk(c);
        }
      }
    }
  };
  walk(pid);
  return out;
}

export function tree(pid: number): number[] {
  return [pid, ...descendants(pid)];
}

/**
 * CPU seconds (user+system) of pid and its live descendants, plus the root's cutime+cstime so that
 * a worker that exited and was reaped between two samples is still counted.
 */
export function cpuSeconds(pid: number): number {
  let ticks = 0;
  const root = statFields(pid);
  if (root) ticks += Number(root[13]) + Number(root[14]);
  for (const p of tree(pid)) {
    const f = statFields(p);
    if (f) ticks += Number(f[11]) + Number(f[12]);
  }
  return ticks / CLK_TCK;
}

function statusKiB(pid: number, key: 'VmRSS' | 'VmHWM'): number {
  try {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m?.[1] ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Resident memory (MiB) of the whole tree now. */
export function rssMiB(pid: number): number {
  return tree(pid).reduce((a, p) => a + statusKiB(p, 'VmRSS'), 0) / 1024;
}

/** Peak resident memory (MiB): VmHWM of each process of the tree, summed (an upper bound for a cluster). */
export function hwmMiB(pid: number): number {
  return tree(pid).reduce((a, p) => a + statusKiB(p, 'VmHWM'), 0) / 1024;
}

/** Machine-wide CPU counters from /proc/stat, to tell how busy the box was during a run. */
export function machineTicks(): { total: number; idle: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  return { total, idle: (v[3] ?? 0) + (v[4] ?? 0) };
}

/** Busy share (0–100) of all cores between two machineTicks() samples. */
export function busyPct(a: { total: number; idle: number }, b: { total: number; idle: number }): number {
  const d = b.total - a.total;
  return d > 0 ? (100 * (d - (b.idle - a.idle))) / d : 0;
}
