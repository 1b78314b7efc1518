// Pins smtp-server: the front's patches (smtp-server-patches.ts, slow-client-watchdog.ts) wrap
// internals of SMTPConnection, so an upgrade must fail here until every patch is re-checked.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { PATCHED_SMTP_SERVER_VERSION } from '../../src/fronts/smtp/smtp-server-patches.ts';

const require = createRequire(import.meta.url);

test('installed smtp-server is the version the patches were written against', () => {
  const pkgPath = require.resolve('smtp-server/package.json');
  const pkg = JSON.parse(readFileSync(pkgPath, 'utf8')) as { version?: unknown };
  assert.equal(
    pkg.version,
    PATCHED_SMTP_SERVER_VERSION,
    `smtp-server is ${String(pkg.version)} but the patches were written for ${PATCHED_SMTP_SERVER_VERSION}: ` +
      're-check every patch in src/fronts/smtp/smtp-server-patches.ts and src/fronts/smtp/slow-client-watchdog.ts ' +
      'against the new smtp-connection.js, then update PATCHED_SMTP_SERVER_VERSION',
  );
});

const wrapped = [
  'handler_MAIL',
  'handler_RCPT',
  'handler_DATA',
  'handler_EHLO',
  'handler_HELO',
  'handler_RSET',
  '_onCommand',
  'send',
  '_setListeners',
  'connectionReady',
];

const cases = wrapped.map((name) => ({ desc: `SMTPConnection.prototype.${name} is a function`, input: name, expected: 'function' }));

for (const c of cases) {
  test(c.desc, () => {
    const proto = SMTPConnection.prototype as unknown as Record<string, unknown>;
    assert.equal(typeof proto[c.input], c.expected, `smtp-server no longer has ${c.input}: the patch wrapping it must be rewritten`);
  });
}
