// `log.file` with logrotate: a real `mailgate serve` process writes its JSON lines to the file,
// and after the file is renamed, SIGUSR1 makes it write to a new file at the configured path.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort } from '../helpers/postfix.ts';
import { loopbackDns } from '../helpers/gateway.ts';
import { START_TIMEOUT_MS } from '../helpers/gateway-child.ts';

const root = resolve(import.meta.dirname, '..', '..');

async function waitFor(what: string, cond: () => boolean, ms = START_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const read = (f: string) => (existsSync(f) ? readFileSync(f, 'utf8') : '');

test('log.file: lines go to the file; SIGUSR1 reopens it after a rename (logrotate)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-logfile-'));
  try {
    const port = await freePort();
    const cfg = join(dir, 'mailgate.yaml');
    writeFileSync(
      cfg,
      `hostname: mx.example.test\nlisten: [{ host: 127.0.0.1, port: ${port} }]\ndomains: [example.test]\nbackend: { maildir: mail }\nadmin: false\nrules: ${join(root, 'rules')}\ndns: { servers: ["${await loopbackDns()}"] }\nlog: { level: info, file: logs/mailgate.log }\nsmtp: { shutdown_grace_s: 2 }\n`,
    );
    const log = join(dir, 'logs', 'mailgate.log');
    const child = spawn(process.execPath, [join(root, 'bin', 'mailgate.js'), 'serve', '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stdout += d));
    const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    try {
      // Relative to the config file's directory, created on first start.
      await waitFor('"mailgate listening" in log.file', () => read(log).includes('"msg":"mailgate listening"'));
      assert.equal(stdout, '', 'nothing on stdout when log.file is set');
      renameSync(log, `${log}.1`);
      child.kill('SIGUSR1');
      await new Promise((r) => setTimeout(r, 300));
      child.kill('SIGHUP'); // logs "configuration reloaded": must land in the new file
      await waitFor('the reopened file', () => read(log).includes('"msg":"configuration reloaded"'));
      assert.ok(!read(`${log}.1`).includes('configuration reloaded'), 'the rotated file is no longer written');
      for (const line of read(log).trim().split('\n')) assert.doesNotThrow(() => JSON.parse(line), line);
    } finally {
      child.kill('SIGTERM');
      assert.equal(await exited, 0, stdout);
    }
    assert.ok(read(log).includes('"msg":"mailgate stopped"'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
