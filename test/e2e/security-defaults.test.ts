// Security defaults (issue 14): no secret reaches the logs even at debug level while Redis with a
// password is unreachable and clients come and go; the admin listener defaults to loopback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { startGateway, testConfig, closedPort } from '../helpers/gateway.ts';
import { sendMessage } from '../helpers/smtp-client.ts';
import { configSchema } from '../../src/config/schema.ts';

test('no secret in the logs: a Redis password never appears, at debug level, during an outage', async () => {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  const secret = 'Sup3rS3cretRedisPassw0rd';
  const redisPort = await closedPort();
  const gw = await startGateway(
    testConfig({
      backend: { maildir: mkdtempSync(join(tmpdir(), 'mailgate-sec-')) },
      redis: `redis://default:${secret}@127.0.0.1:${redisPort}/0`,
      redis_options: { connect_timeout_ms: 200, command_timeout_ms: 100 },
      checks: { disabled: ['spf', 'dkim-arc-dmarc', 'dnsbl', 'greylist', 'fcrdns'] },
      log: { level: 'debug' },
    }),
    { logger: pino({ level: 'trace' }, stream) },
  );
  try {
    for (let i = 0; i < 3; i++) await sendMessage(gw.port, { from: 's@client.example.net', to: ['alice@example.test'], data: 'Subject: s\r\n\r\nbody\r\n' });
    await new Promise((r) => setTimeout(r, 300));
  } finally {
    await gw.stop(100);
  }
  assert.ok(
    lines.some((l) => /redis/i.test(l)),
    'the Redis outage was logged (else the test proves nothing)',
  );
  const leaked = lines.filter((l) => l.includes(secret));
  assert.deepEqual(leaked, [], 'a log line carries the Redis password');
});

test('the admin listener defaults to loopback', () => {
  const c = configSchema.parse({ hostname: 'mx.example.test', domains: ['example.test'], backend: { host: '127.0.0.1' } });
  assert.ok(c.admin !== false && c.admin.host === '127.0.0.1');
});
