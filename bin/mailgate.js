#!/usr/bin/env node
// The `mailgate` command. The CLI is TypeScript: it runs the compiled dist/ when `npm run build`
// made it from exactly the current src/ (bin/source-hash.js), else src/ through Node 24's type
// stripping (which costs ≈ 30 MiB of resident memory for the life of the process). Under an older
// Node (Debian's 20) this re-runs itself with the project's own Node 24 (npm package `node`).
// Plain JavaScript that parses on old Node: nothing else is imported before the version check.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const NEED = 24;
const major = Number(process.versions.node.split('.')[0]);

// Memory (bench/HISTORY.md, 2026-12-02, third round; docs/operations.md#memory). glibc gives
// each of V8's and libuv's threads its own malloc arena, which keeps the compilers' freed memory:
// MALLOC_ARENA_MAX=2 shares two (−6 MiB idle). MAILGATE_SEMI_SPACE_MIB=N caps V8's young
// generation (N MiB per semi-space; it otherwise grows to 3 × 16 MiB under traffic and stays
// until ~10 s idle): ≈ 50 MiB less idle RSS at 4, but 1.4–2.3× the CPU per message at 20
// sessions, so it is the operator's choice, off by default. Both are read only when a process
// starts, so the launcher replaces itself (execve: same PID and stdio, for service managers) with
// them added, unless the operator chose already (MALLOC_ARENA_MAX set; --max-semi-space-size on
// the command line or in NODE_OPTIONS). Cluster workers inherit both (execArgv, environment).
if (major >= NEED && typeof process.execve === 'function') {
  const SEMI = '--max-semi-space-size';
  const semiMiB = process.env.MAILGATE_SEMI_SPACE_MIB ?? '';
  const chosen = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)].some((a) => a.startsWith(SEMI));
  const addSemi = !chosen && /^[1-9][0-9]*$/.test(semiMiB);
  const addArena = process.env.MALLOC_ARENA_MAX === undefined;
  if (addSemi || addArena) {
    const flags = addSemi ? [`${SEMI}=${semiMiB}`] : [];
    const env = addArena ? { ...process.env, MALLOC_ARENA_MAX: '2' } : process.env;
    try {
      process.execve(process.execPath, [process.execPath, ...process.execArgv, ...flags, fileURLToPath(import.meta.url), ...process.argv.slice(2)], env);
    } catch (err) {
      // e.g. a seccomp filter without execve: run as is, say once why the settings are missing
      process.stderr.write(`mailgate: cannot re-exec with the memory settings (${err instanceof Error ? err.message : err}); running without them\n`);
    }
  }
}

if (major >= NEED) {
  const { chooseEntry } = await import('./source-hash.js');
  const { entry, stale } = chooseEntry(fileURLToPath(new URL('..', import.meta.url)));
  // A stale build is never run; say so once, on stderr, so the operator knows to rebuild.
  if (stale) process.stderr.write(`mailgate: dist/ was built from other sources or another Node (run 'npm run build'); running src/\n`);
  await import(pathToFileURL(entry).href);
} else {
  // import.meta.url is the real file even through an `npm link` symlink, so this finds the checkout.
  const node24 = fileURLToPath(new URL('../node_modules/node/bin/node', import.meta.url));
  // this same launcher again, under Node 24: it chooses dist/ or src/
  const self = fileURLToPath(import.meta.url);
  if (!existsSync(node24)) {
    const root = fileURLToPath(new URL('..', import.meta.url));
    process.stderr.write(
      `mailgate: needs Node.js ${NEED} or newer (this is ${process.version}), and the project's own Node 24 is not installed:\n` +
        `  run 'npm ci' in ${root} (it installs Node 24 into node_modules/node), or install Node.js ${NEED}+ and put it first on PATH.\n`,
    );
    process.exit(1);
  }
  const child = spawn(node24, [self, ...process.argv.slice(2)], { stdio: 'inherit' });
  // The launcher's PID is what a service manager signals (SIGHUP reload, SIGTERM stop): pass them on.
  for (const sig of ['SIGHUP', 'SIGTERM', 'SIGINT', 'SIGUSR1', 'SIGUSR2']) process.on(sig, () => child.kill(sig));
  child.on('error', (err) => {
    process.stderr.write(`mailgate: cannot run ${node24}: ${err.message}\n`);
    process.exit(2);
  });
  child.on('exit', (code, signal) => process.exit(code ?? (signal === 'SIGTERM' || signal === 'SIGINT' ? 0 : 2)));
}
