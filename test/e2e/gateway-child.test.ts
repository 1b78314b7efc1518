// The test helper that starts mailgate as a child process (test/helpers/gateway-child.ts): a start
// that fails says why, with the child's output; a port taken between choosing it and binding it
// (EADDRINUSE) makes it start over on new ports.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnGateway, startGatewayOnFreePorts, waitListening } from '../helpers/gateway-child.ts';

const dir = mkdtempSync(join(tmpdir(), 'mg-gateway-child-'));
mkdirSync(join(dir, 'rules'));
const cleanups: Array<() => void> = [];
after(() => {
  for (const c of cleanups) c();
});

function config(name: string, port: number): string {
  const cfg = join(dir, `${name}.yaml`);
  writeFileSync(
    cfg,
    `hostname: mx.example.test\nlisten: [{ host: 127.0.0.1, port: ${port} }]\ndomains: [example.test]\nbackend: { maildir: ${dir}/md }\nadmin: false\nrules: ${dir}/rules\nlog: { level: silent }\ndns: { servers: ["127.0.0.1:1"] }\n`,
  );
  return cfg;
}

async function occupiedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  cleanups.push(() => s.close());
  return (s.address() as net.AddressInfo).port;
}

test('a child that exits (a bad config): waitListening fails at once with the child’s own words, not after its timeout', async () => {
  const cfg = join(dir, 'bad.yaml');
  writeFileSync(cfg, `${readFileSync(config('good', 1), 'utf8')}no_such_key: 1\n`);
  const gw = spawnGateway(cfg);
  const t0 = Date.now();
  await assert.rejects(waitListening(gw, [1], 30_000), /mailgate exited \(\d+\) before listening on 1:\n.*no_such_key/s);
  assert.ok(Date.now() - t0 < 20_000, `${Date.now() - t0} ms`);
});

test('EADDRINUSE on the first try: startGatewayOnFreePorts starts over on new ports and listens', async () => {
  const taken = await occupiedPort();
  let attempts = 0;
  // The first config ignores the port it was given and uses a taken one, as a race would.
  const { gw, ports } = await startGatewayOnFreePorts(1, ([port]) => config(`try${++attempts}`, attempts === 1 ? taken : (port as number)));
  cleanups.push(() => gw.child.kill('SIGKILL'));
  assert.equal(attempts, 2);
  assert.notEqual(ports[0], taken);
});
