#!/usr/bin/env node
// The `mailgate` command. The CLI is TypeScript run by Node 24's type stripping; under an older
// Node (Debian's 20) this re-runs itself with the project's own Node 24 (npm package `node`).
// Plain JavaScript that parses on old Node: no .ts import before the version check.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const NEED = 24;
const major = Number(process.versions.node.split('.')[0]);

if (major >= NEED) {
  await import('../src/cli/main.ts');
} else {
  // import.meta.url is the real file even through an `npm link` symlink, so this finds the checkout.
  const node24 = fileURLToPath(new URL('../node_modules/node/bin/node', import.meta.url));
  const main = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));
  if (!existsSync(node24)) {
    const root = fileURLToPath(new URL('..', import.meta.url));
    process.stderr.write(
      `mailgate: needs Node.js ${NEED} or newer (this is ${process.version}), and the project's own Node 24 is not installed:\n` +
        `  run 'npm ci' in ${root} (it installs Node 24 into node_modules/node), or install Node.js ${NEED}+ and put it first on PATH.\n`,
    );
    process.exit(1);
  }
  const child = spawn(node24, [main, ...process.argv.slice(2)], { stdio: 'inherit' });
  // The launcher's PID is what a service manager signals (SIGHUP reload, SIGTERM stop): pass them on.
  for (const sig of ['SIGHUP', 'SIGTERM', 'SIGINT', 'SIGUSR1', 'SIGUSR2']) process.on(sig, () => child.kill(sig));
  child.on('error', (err) => {
    process.stderr.write(`mailgate: cannot run ${node24}: ${err.message}\n`);
    process.exit(2);
  });
  child.on('exit', (code, signal) => process.exit(code ?? (signal === 'SIGTERM' || signal === 'SIGINT' ? 0 : 2)));
}
