// mailgate_readiness_up{check}: the admin server's /readyz probes as a metric, for the
// MailgateBackendDown alert; a scrape never waits for a (possibly hung) probe.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startAdmin, type ReadinessProbe } from '../../src/admin/server.ts';
import type { Runtime } from '../../src/pipeline/runtime.ts';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { configSchema } from '../../src/config/schema.ts';
import { QuarantineStore } from '../../src/delivery/quarantine/store.ts';

const dir = mkdtempSync(join(tmpdir(), 'mailgate-readiness-'));
const config = configSchema.parse({
  hostname: 'mx.example.test',
  domains: ['example.test'],
  backend: { maildir: join(dir, 'md') },
  quarantine: { dir: join(dir, 'q') },
});
const rt = { config, logger: pino({ level: 'silent' }), draining: false } as unknown as Runtime;
const store = new QuarantineStore({ config: config.quarantine, logger: pino({ level: 'silent' }) });

async function scrape(port: number): Promise<string> {
  return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
}

test('each /metrics scrape refreshes mailgate_readiness_up from the probes', async () => {
  let backendOk = true;
  const probes: ReadinessProbe[] = [
    { name: 'backend', check: async () => ({ ok: backendOk, detail: 'probe' }) },
    { name: 'store', check: async () => ({ ok: false, detail: 'redis down' }) },
  ];
  const admin = await startAdmin({ host: '127.0.0.1', port: 0 }, rt, probes, store);
  try {
    await scrape(admin.port); // starts the first probe run
    await new Promise((r) => setTimeout(r, 50));
    const m = await scrape(admin.port);
    assert.match(m, /^mailgate_readiness_up\{check="backend"\} 1$/m);
    assert.match(m, /^mailgate_readiness_up\{check="store"\} 0$/m);
    backendOk = false;
    await new Promise((r) => setTimeout(r, 2100)); // past the 2 s readiness cache
    await scrape(admin.port);
    await new Promise((r) => setTimeout(r, 50));
    assert.match(await scrape(admin.port), /^mailgate_readiness_up\{check="backend"\} 0$/m);
  } finally {
    await admin.close();
  }
});

test('a hung probe does not stall /metrics', async () => {
  const probes: ReadinessProbe[] = [{ name: 'backend', check: () => new Promise(() => undefined) }];
  const admin = await startAdmin({ host: '127.0.0.1', port: 0 }, rt, probes, store);
  try {
    const t = performance.now();
    const m = await scrape(admin.port);
    assert.ok(performance.now() - t < 1000);
    assert.match(m, /mailgate_connections_total/);
  } finally {
    await admin.close();
  }
});
