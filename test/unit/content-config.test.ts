// The `content:` section of mailgate.yaml: defaults, sizes, the README example, errors naming
// file, line and key; and the shipped rules load with the content checks' facts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parse } from 'yaml';
import { contentConfigSchema, parseSize } from '../../src/config/content-schema.ts';
import { parseConfig } from '../../src/config/load.ts';
import { createContentChecks, contentFacts } from '../../src/checks/content/content-checks.ts';
import { loadRules } from '../../src/rules/loader.ts';
import { knownFacts, knownSections } from '../../src/checks/catalogue.ts';

const repo = resolve(import.meta.dirname, '../..');

const sizeCases = [
  { input: '25M', expected: 25 * 1024 * 1024 },
  { input: '512K', expected: 512 * 1024 },
  { input: '1g', expected: 1024 ** 3 },
  { input: '1000', expected: 1000 },
];
for (const c of sizeCases) test(`size ${c.input}`, () => assert.equal(parseSize(c.input), c.expected));

test('defaults: everything off but the walk, attachments and URLs', () => {
  const c = contentConfigSchema.parse({});
  assert.equal(c.clamav.enabled, false);
  assert.equal(c.clamav.on_failure, 'tempfail');
  assert.equal(c.clamav.stream_max_bytes, 25 * 1024 * 1024);
  assert.equal(c.urls.dnsbl.enabled, false);
  assert.equal(c.rspamd.on_failure, 'continue');
  const names = createContentChecks(c).map((x) => x.name);
  assert.deepEqual(names, ['mime-walk', 'attachments', 'urls', 'antivirus', 'rspamd', 'spamassassin']);
});

test('the README example of content: is valid', () => {
  const readme = readFileSync(join(repo, 'README.md'), 'utf8');
  const at = readme.indexOf('### Content inspection');
  const start = readme.indexOf('```yaml\n', at) + 8;
  const block = readme.slice(start, readme.indexOf('```', start));
  const c = contentConfigSchema.parse((parse(block) as { content: unknown }).content);
  assert.equal(c.hooks[0]?.name, 'phishcheck');
  assert.equal(c.clamav.socket, '/run/clamav/clamd.ctl');
});

test('errors name the file, line and key', () => {
  const text =
    'hostname: mx.example.test\ndomains: [example.test]\nbackend: { host: 127.0.0.1 }\ncontent:\n  clamav:\n    stream_max_bytes: 25X\n  hooks:\n    - { name: Bad Name, url: "http://x/" }\n';
  assert.throws(
    () => parseConfig('/etc/mailgate.yaml', text),
    (err: Error) => {
      assert.match(String(err.message ?? err), /mailgate\.yaml:6.*content\.clamav\.stream_max_bytes/);
      assert.match(String(err.message ?? err), /mailgate\.yaml:8.*content\.hooks\[0\]\.name|content\.hooks\.0\.name/);
      return true;
    },
  );
});

test('the shipped rules load with the content facts, and every content rule reads them', () => {
  const checks = createContentChecks(contentConfigSchema.parse({}));
  const loaded = loadRules(join(repo, 'rules'), knownFacts(checks.flatMap((c) => c.facts)), knownSections(checks));
  const names = loaded.rules.map((r) => r.name);
  for (const n of ['ATTACHMENT_EXECUTABLE', 'VIRUS_FOUND', 'ARCHIVE_ENCRYPTED', 'MIME_PARSE_LIMIT', 'ATTACHMENT_MACRO']) assert.ok(names.includes(n), n);
  // contentFacts is what the registry needs: the same load works from it alone.
  assert.doesNotThrow(() => loadRules(join(repo, 'rules'), knownFacts(contentFacts), knownSections()));
});
