// Private instances of the spam scanners for tests: Rspamd (Debian package, the stock config with
// its workers on free loopback ports, a private DB/run dir and the test DNS server) and spamd
// (SpamAssassin, with a tiny rule set the test writes, no sa-update needed). Stopped by PID.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, copyFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { freePort } from './postfix.ts';

export interface Scanner {
  port: number;
  dir: string;
  stop(): Promise<void>;
}

async function waitHttp(url: string, child: ChildProcess, ms: number): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch {
      // not up yet
    }
    if (child.exitCode !== null) throw new Error(`scanner exited with ${child.exitCode}`);
    if (Date.now() > end) throw new Error(`scanner not ready after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function waitTcp(port: number, child: ChildProcess, ms: number): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        r(true);
      });
      s.on('error', () => r(false));
    });
    if (ok) return;
    if (child.exitCode !== null) throw new Error(`scanner exited with ${child.exitCode}`);
    if (Date.now() > end) throw new Error(`scanner not ready after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function stopper(child: ChildProcess, dir: string): () => Promise<void> {
  return async () => {
    if (child.exitCode === null && child.pid) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  };
}

/** Rspamd with the stock rules; `dns` is "127.0.0.1:port" of a test DNS server. */
export async function startRspamd(dns: string): Promise<Scanner> {
  const dir = mkdtempSync(join(tmpdir(), 'mailgate-rspamd-'));
  for (const d of ['conf/local.d', 'db', 'run', 'log']) mkdirSync(join(dir, d), { recursive: true });
  const ports = [await freePort(), await freePort(), await freePort(), await freePort()];
  const conf = readFileSync('/etc/rspamd/rspamd.conf', 'utf8')
    .replace('localhost:11333', `127.0.0.1:${ports[0]}`)
    .replace('localhost:11334', `127.0.0.1:${ports[1]}`)
    .replace('localhost:11332', `127.0.0.1:${ports[2]}`)
    .replace('localhost:11335', `127.0.0.1:${ports[3]}`);
  writeFileSync(join(dir, 'rspamd.conf'), conf);
  writeFileSync(join(dir, 'conf/local.d/options.inc'), `dns { nameserver = ["${dns}"]; timeout = 500ms; retransmits = 1; }\n`);
  writeFileSync(join(dir, 'conf/local.d/logging.inc'), 'type = "console"; level = "error";\n');
  const child = spawn(
    'rspamd',
    [
      '-f',
      '-i',
      '-c',
      join(dir, 'rspamd.conf'),
      `--var=LOCAL_CONFDIR=${join(dir, 'conf')}`,
      `--var=DBDIR=${join(dir, 'db')}`,
      `--var=RUNDIR=${join(dir, 'run')}`,
      `--var=LOGDIR=${join(dir, 'log')}`,
    ],
    { stdio: 'ignore' },
  );
  const port = ports[0] as number;
  try {
    await waitHttp(`http://127.0.0.1:${port}/ping`, child, 60_000);
  } catch (err) {
    await stopper(child, dir)();
    throw err;
  }
  return { port, dir, stop: stopper(child, dir) };
}

/** spamd with the given rules (SpamAssassin .cf syntax) and nothing else. */
export async function startSpamd(rules: string): Promise<Scanner> {
  const dir = mkdtempSync(join(tmpdir(), 'mailgate-spamd-'));
  mkdirSync(join(dir, 'rules'));
  mkdirSync(join(dir, 'site'));
  writeFileSync(join(dir, 'rules', '10-test.cf'), rules);
  for (const f of readdirSync('/etc/spamassassin').filter((n) => n.endsWith('.pre'))) copyFileSync(join('/etc/spamassassin', f), join(dir, 'site', f));
  writeFileSync(join(dir, 'site', 'local.cf'), '');
  // spamd's children run as nobody: they must be able to read the rules.
  for (const p of [dir, join(dir, 'rules'), join(dir, 'site')]) chmodSync(p, 0o755);
  const port = await freePort();
  const child = spawn(
    'spamd',
    [
      '-x',
      '-s',
      'stderr',
      '-C',
      join(dir, 'rules'),
      `--siteconfigpath=${join(dir, 'site')}`,
      '-i',
      '127.0.0.1',
      '-A',
      '127.0.0.1',
      '-p',
      String(port),
      '-m',
      '2',
      '--min-spare=1',
      '--max-spare=1',
      '-u',
      'nobody',
      '-r',
      join(dir, 'spamd.pid'),
      '-L',
    ],
    { stdio: 'ignore' },
  );
  try {
    await waitTcp(port, child, 60_000);
  } catch (err) {
    await stopper(child, dir)();
    throw err;
  }
  return { port, dir, stop: stopper(child, dir) };
}
