// The SMTP listener's connection facts through a real socket: client.local_port is the port the
// client connected to (taken from the bound listener, not asked of each socket), client.ip/port
// the client's side.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Check } from '../../src/pipeline/check.ts';
import type { FactValue } from '../../src/pipeline/facts.ts';
import { startGateway, testConfig, type TestGateway } from '../helpers/gateway.ts';

const dir = mkdtempSync(join(tmpdir(), 'mailgate-listener-facts-'));
const gws: TestGateway[] = [];
after(async () => {
  for (const g of gws) await g.stop(500);
  rmSync(dir, { recursive: true, force: true });
});

/** Connects, reads the greeting, says QUIT; resolves with the client's local port. */
function connectAndQuit(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = '';
    let local = 0;
    s.on('connect', () => (local = s.localPort ?? 0));
    s.on('error', reject);
    s.on('data', (d) => {
      buf += d.toString();
      if (buf.startsWith('220') && buf.endsWith('\r\n') && !buf.includes('221')) s.write('QUIT\r\n');
    });
    s.on('close', () => resolve(local));
  });
}

test('client.local_port is the listener port the client connected to, on each of two listeners', async () => {
  const seen: Array<Record<string, FactValue | undefined>> = [];
  const probe: Check = {
    name: 'probe',
    stages: ['connect'],
    facts: [],
    run: (i) => {
      seen.push({ local: i.facts.get('client.local_port'), ip: i.facts.get('client.ip'), port: i.facts.get('client.port') });
    },
  };
  const gw = await startGateway(
    testConfig({
      listen: [
        { host: '127.0.0.1', port: 0 },
        { host: '127.0.0.1', port: 0 },
      ],
      backend: { maildir: join(dir, 'maildir') },
      quarantine: { dir: join(dir, 'q') },
      spool_dir: join(dir, 'spool'),
      capture: false,
    }),
    { extraChecks: [probe] },
  );
  gws.push(gw);
  assert.equal(gw.ports.length, 2);
  const [a, b] = gw.ports as [number, number];
  assert.notEqual(a, b);
  const clientA = await connectAndQuit(a);
  const clientB = await connectAndQuit(b);
  assert.deepEqual(seen, [
    { local: a, ip: '127.0.0.1', port: clientA },
    { local: b, ip: '127.0.0.1', port: clientB },
  ]);
});
