// URL facts, table-driven: extraction from text and HTML (entities, punctuation, www., IDN,
// caps), the check on the shared walk, and URI blocklists through the real resolver against a
// loopback DNS server (listed, not listed, error answers, the lookup bound).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { extractUrls, type FoundUrl } from '../../src/checks/content/url-extract.ts';
import { createUrlCheck, lookupNames } from '../../src/checks/content/url-check.ts';
import { urlSettingsSchema } from '../../src/config/content-schema.ts';
import { createResolver } from '../../src/dns/resolver.ts';
import { emptyEdits, detachedConnection, type CheckOutput } from '../../src/pipeline/check.ts';
import { FactSet } from '../../src/pipeline/facts.ts';
import { startDnsServer, type TestDnsServer } from '../helpers/dns-server.ts';
import { messageView, mimeMessage } from '../helpers/content-fixtures.ts';

const cases = [
  { desc: 'plain URL with prose punctuation', input: 'See http://example.com/a.', urls: ['http://example.com/a'], hosts: ['example.com'] },
  { desc: 'HTML href with entities', input: '<a href="https://ex.example/p?a=1&amp;b=2">x</a>', urls: ['https://ex.example/p?a=1&b=2'], hosts: ['ex.example'] },
  { desc: 'www. without a scheme', input: 'go to www.shop.example/deal now', urls: ['www.shop.example/deal'], hosts: ['www.shop.example'] },
  { desc: 'upper-case scheme, IDN host', input: 'HTTPS://bücher.example/x', urls: ['https://bücher.example/x'], hosts: ['xn--bcher-kva.example'] },
  { desc: 'defanged hxxp', input: 'hxxp://evil.example/', urls: ['hxxp://evil.example/'], hosts: ['evil.example'] },
  { desc: 'IP host', input: 'http://192.0.2.7/login', urls: ['http://192.0.2.7/login'], hosts: ['192.0.2.7'] },
  { desc: 'not URLs: mailto, other schemes', input: 'mailto:a@b.example javascript://x file:///etc', urls: [], hosts: [] },
  { desc: 'parenthesised', input: '(http://example.com/wiki/A_(b))', urls: ['http://example.com/wiki/A_(b)'], hosts: ['example.com'] },
];
for (const c of cases) {
  test(`extract: ${c.desc}`, () => {
    const m = new Map<string, FoundUrl>();
    extractUrls(c.input, m, 100);
    assert.deepEqual([...m.keys()], c.urls);
    assert.deepEqual([...new Set([...m.values()].map((u) => u.host))], c.hosts);
  });
}

test('extract: bounded count, linear on a hostile 1 MiB line', () => {
  const m = new Map<string, FoundUrl>();
  const text = Array.from({ length: 500 }, (_, i) => `http://h${i}.example/`).join(' ');
  assert.equal(extractUrls(text, m, 10), true);
  assert.equal(m.size, 10);
  const t0 = performance.now();
  extractUrls('http://'.repeat(150_000) + 'www.'.repeat(50_000), new Map(), 100);
  assert.ok(performance.now() - t0 < 1000);
});

test('lookup names: host, parent domain, reversed IPv4', () => {
  assert.deepEqual(lookupNames('a.b.example.com'), ['a.b.example.com', 'example.com']);
  assert.deepEqual(lookupNames('example.com'), ['example.com']);
  assert.deepEqual(lookupNames('192.0.2.7'), ['7.2.0.192']);
});

async function run(check: ReturnType<typeof createUrlCheck>, msg: Buffer): Promise<FactSet> {
  const out: CheckOutput = { facts: new FactSet(), edits: emptyEdits() };
  await check.run(
    { stage: 'data', connection: detachedConnection(), facts: new FactSet(), message: messageView(msg), signal: new AbortController().signal },
    out,
  );
  return out.facts;
}

test('check: URLs from text and HTML parts of the walk', async () => {
  const f = await run(
    createUrlCheck({ settings: urlSettingsSchema.parse({}) }),
    mimeMessage({ text: 'Claim at http://prize.example/claim', html: '<a href="https://bit.example/x1">YOU HAVE WON</a>' }),
  );
  assert.deepEqual(f.get('url.urls'), ['http://prize.example/claim', 'https://bit.example/x1']);
  assert.deepEqual(f.get('url.hosts'), ['prize.example', 'bit.example']);
  assert.equal(f.get('url.dnsbl_score'), 0);
});

let dns: TestDnsServer | undefined;
after(async () => dns?.close());

test('check: URI blocklist through the shared resolver (listed, unlisted, error answer, bounded)', async () => {
  dns = await startDnsServer({
    zone: {
      'bad.example.dbl.test': { A: ['127.0.1.2'] },
      'evil.example.multi.test': { A: ['127.0.0.4'] },
      'good.example.dbl.test': { A: ['127.255.255.254'] },
    },
  });
  const resolver = createResolver({ servers: [dns.address], timeout_ms: 1000 });
  const settings = urlSettingsSchema.parse({
    dnsbl: {
      enabled: true,
      max_lookups: 8,
      lists: [
        { zone: 'dbl.test', weight: 5, name: 'dbl' },
        { zone: 'multi.test', weight: 3 },
      ],
    },
  });
  const check = createUrlCheck({ settings, deps: { dns: resolver } });
  const f = await run(check, mimeMessage({ text: 'http://www.bad.example/ http://evil.example/ http://good.example/ http://clean.example/' }));
  assert.deepEqual(f.get('url.dnsbl_listed'), ['bad.example', 'evil.example']);
  assert.deepEqual([...(f.get('url.dnsbl_lists') as string[])].sort(), ['dbl', 'multi.test']);
  assert.equal(f.get('url.dnsbl_score'), 8);
  assert.deepEqual(f.get('url.dnsbl_errors'), ['dbl']);
  assert.ok(dns.queries.length <= 8, `${dns.queries.length} queries`);
});

test('body text from the walk: text part, HTML fallback, caps', async () => {
  const { createWalkBodyTextCheck } = await import('../../src/checks/content/body-text-walk.ts');
  const cases = [
    {
      desc: 'text/plain wins',
      msg: mimeMessage({ text: 'Plain words', html: '<p>Html words</p>' }),
      text: 'Plain words',
      html: '<p>Html words</p>',
      truncated: false,
      max: 1000,
    },
    { desc: 'capped', msg: mimeMessage({ text: 'abcdefghij' }), text: 'abcd', html: '', truncated: true, max: 4 },
  ];
  for (const c of cases) {
    const out: CheckOutput = { facts: new FactSet(), edits: emptyEdits() };
    await createWalkBodyTextCheck({ always: true, maxBytes: c.max }).run(
      { stage: 'data', connection: detachedConnection(), facts: new FactSet(), message: messageView(c.msg), signal: new AbortController().signal },
      out,
    );
    assert.equal(out.facts.get('message.body_text'), c.text, c.desc);
    assert.equal(out.facts.get('message.body_html'), c.html, c.desc);
    assert.equal(out.facts.get('message.body_truncated'), c.truncated, c.desc);
  }
  const htmlOnly = Buffer.from('Content-Type: text/html\r\n\r\n<html><body><p>YOU HAVE WON</p></body></html>\r\n');
  const out: CheckOutput = { facts: new FactSet(), edits: emptyEdits() };
  await createWalkBodyTextCheck({ always: true }).run(
    { stage: 'data', connection: detachedConnection(), facts: new FactSet(), message: messageView(htmlOnly), signal: new AbortController().signal },
    out,
  );
  assert.equal(out.facts.get('message.body_text'), 'YOU HAVE WON');
});
