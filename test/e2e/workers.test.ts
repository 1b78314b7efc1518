// `workers: 2`: two processes share the listener (node:cluster), the primary serves /metrics
// summed over both and /readyz, and SIGTERM stops all of them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sendMessage } from '../helpers/smtp-client.ts';
import { closedPort, loopbackDns } from '../helpers/gateway.ts';
import { START_TIMEOUT_MS } from '../helpers/gateway-child.ts';

test('workers: 2 — both workers take connections, metrics aggregated, SIGTERM exits 0', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mg-workers-'));
  mkdirSync(join(dir, 'rules'));
  const port = await closedPort();
  const adminPort = await closedPort();
  const cfg = join(dir, 'mailgate.yaml');
  writeFileSync(
    cfg,
    `hostname: mx.example.test\nlisten: [{ host: 127.0.0.1, port: ${port} }]\ndomains: [example.test]\nbackend: { maildir: ${dir}/md }\nadmin: { host: 127.0.0.1, port: ${adminPort} }\nrules: ${dir}/rules\nworkers: 2\ndns: { servers: ["${await loopbackDns()}"] }\n`,
  );
  const child = spawn(process.execPath, ['src/cli/main.ts', 'serve', '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  try {
    let ready = false;
    for (const end = Date.now() + START_TIMEOUT_MS; Date.now() < end && !ready && child.exitCode === null; ) {
      await new Promise((r) => setTimeout(r, 100));
      ready = await fetch(`http://127.0.0.1:${adminPort}/readyz`).then(
        (r) => r.ok,
        () => false,
      );
    }
    assert.ok(ready, out);
    for (let i = 0; i < 8; i++) {
      const r = await sendMessage(port, { from: 's@client.example.net', to: ['alice@example.test'], data: `Subject: w${i}\r\n\r\nbody\r\n` });
      assert.equal(r.end?.code, 250);
    }
    const pids = new Set(readdirSync(join(dir, 'md', 'new')).map((f) => /\.M(\d+)P/.exec(f)?.[1]));
    assert.equal(pids.size, 2, `messages handled by both workers: ${[...pids].join(',')}`);
    const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    assert.match(metrics, /^mailgate_messages_total\{action="accept",front="smtp"\} 8$/m);
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
  } finally {
    child.kill('SIGKILL');
  }
});
