// buildChecks and `checks.disabled`: a check family whose checks are all disabled is not created
// (its modules are not even imported: test/e2e/lazy-modules.test.ts), one with a check left on, or
// with an HTTP hook configured, is; names stay known either way.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { buildChecks, closeChecks } from '../../src/checks/catalogue.ts';
import { parseConfig } from '../../src/config/load.ts';

const CONTENT = ['mime-walk', 'attachments', 'urls', 'antivirus', 'rspamd', 'spamassassin'];
const OTHERS = ['spf', 'dkim-arc-dmarc', 'fcrdns', 'helo-sanity', 'dnsbl', 'concurrency', 'ratelimit', 'greylist', 'batv', 'backscatter', 'body-text'];

async function built(disabled: string[], extra = ''): Promise<string[]> {
  const text = `hostname: mx.example.test\ndomains: [example.test]\nbackend: { host: 127.0.0.1 }\nchecks:\n  disabled: ${JSON.stringify(disabled)}\n${extra}`;
  const { config } = parseConfig('/etc/mailgate/mailgate.yaml', text, {});
  const checks = await buildChecks(config, { logger: pino({ level: 'silent' }), now: Date.now });
  await closeChecks(checks);
  return checks.map((c) => c.name);
}

const HOOK = 'content:\n  hooks:\n    - { name: phishcheck, url: "http://127.0.0.1:9/" }\n';

test('every check disabled: none is built', async () => {
  assert.deepEqual(await built([...OTHERS, ...CONTENT]), []);
});

test('the auth family is built when one of its checks is on, and only that one is kept', async () => {
  const names = await built([...OTHERS.filter((n) => n !== 'spf'), ...CONTENT]);
  assert.deepEqual(names, ['spf']);
});

test('content off but an HTTP hook configured: the hook still runs; disabling it too builds nothing', async () => {
  assert.deepEqual(await built([...OTHERS, ...CONTENT], HOOK), ['hook-phishcheck']);
  assert.deepEqual(await built([...OTHERS, ...CONTENT, 'hook-phishcheck'], HOOK), []);
});

test('a family that is skipped still knows its names; an unknown name is still an error', async () => {
  // hook-phishcheck is known through the config even though the content family is not built
  assert.deepEqual(await built([...OTHERS, ...CONTENT, 'hook-phishcheck'], HOOK), []);
  await assert.rejects(built([...OTHERS, ...CONTENT, 'antivirus-typo']), /checks\.disabled: unknown check "antivirus-typo"/);
  await assert.rejects(built([...OTHERS, ...CONTENT, 'hook-phishcheck']), /unknown check "hook-phishcheck"/);
});
