// Unit tests for the DNS resolver against the loopback test DNS server: TTL caching, negative
// caching (RFC 2308), timeouts, the concurrency bound, TCP fallback, CNAMEs and error shapes.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { registry } from '../../src/metrics/registry.ts';
import { DnsScope, Resolver } from '../../src/dns/resolver.ts';
import { parseResolvConf, parseServer, systemServers } from '../../src/dns/servers.ts';
import { startDnsServer, type TestDnsServer } from '../helpers/dns-server.ts';

const zone = {
  'example.com': { A: ['192.0.2.1'], TXT: ['v=spf1 -all'], MX: [{ priority: 10, exchange: 'mx.example.com' }], ttl: 60 },
  'short.example.com': { A: ['192.0.2.2'], ttl: 5 },
  'zero.example.com': { A: ['192.0.2.3'], ttl: 0 },
  'alias.example.com': { CNAME: 'example.com' },
  'away.example.com': { CNAME: 'target.example.org' },
  'target.example.org': { A: ['198.51.100.7'] },
  'long.example.com': { TXT: ['k=rsa; p=' + 'A'.repeat(1500)] },
  'broken.example.com': { servfail: true },
  'slow.example.com': { timeout: true, A: ['192.0.2.9'] },
};

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'resolved';
  } catch (err) {
    return String((err as { code?: unknown }).code);
  }
}

const count = (server: TestDnsServer, name: string, type: string): number =>
  server.queries.filter((q) => q.name.toLowerCase() === name && q.type === type).length;

let server: TestDnsServer;
before(async () => {
  server = await startDnsServer({ zone, soa: { ttl: 120, minimum: 30 } });
});
after(async () => {
  await server.close();
});

describe('answers in node:dns shapes', () => {
  const cases = [
    { desc: 'A', name: 'example.com', type: 'A', expected: ['192.0.2.1'] },
    { desc: 'TXT as string[][]', name: 'example.com', type: 'TXT', expected: [['v=spf1 -all']] },
    { desc: 'MX as {exchange, priority}', name: 'example.com', type: 'MX', expected: [{ exchange: 'mx.example.com', priority: 10 }] },
    { desc: 'CNAME followed inside the reply', name: 'alias.example.com', type: 'A', expected: ['192.0.2.1'] },
    { desc: 'CNAME out of the zone chased', name: 'away.example.com', type: 'A', expected: ['198.51.100.7'] },
    { desc: 'CNAME itself', name: 'alias.example.com', type: 'CNAME', expected: ['example.com'] },
    { desc: 'case and trailing dot ignored', name: 'EXAMPLE.com.', type: 'a', expected: ['192.0.2.1'] },
  ];
  for (const c of cases) {
    test(c.desc, async () => {
      const r = new Resolver({ servers: [server.address], timeoutMs: 500 });
      assert.deepEqual(await r.resolve(c.name, c.type), c.expected);
    });
  }

  const errors = [
    { desc: 'NXDOMAIN → ENOTFOUND', name: 'nope.example.com', type: 'A', code: 'ENOTFOUND' },
    { desc: 'no records of the type → ENODATA', name: 'example.com', type: 'AAAA', code: 'ENODATA' },
    { desc: 'SERVFAIL → ESERVFAIL', name: 'broken.example.com', type: 'A', code: 'ESERVFAIL' },
    { desc: 'label over 63 octets → EBADNAME', name: `${'a'.repeat(64)}.example.com`, type: 'A', code: 'EBADNAME' },
    { desc: 'empty label → EBADNAME', name: 'a..example.com', type: 'TXT', code: 'EBADNAME' },
    { desc: 'empty last label (two trailing dots) → EBADNAME', name: 'example.com..', type: 'TXT', code: 'EBADNAME' },
    { desc: 'leading dot → EBADNAME', name: '.example.com', type: 'TXT', code: 'EBADNAME' },
    { desc: 'name over 253 octets → EBADNAME', name: `${'a.'.repeat(126)}ab`, type: 'A', code: 'EBADNAME' },
    { desc: 'a label of 40 characters and 80 octets (UTF-8) → EBADNAME', name: `${'é'.repeat(40)}.example.com`, type: 'A', code: 'EBADNAME' },
    { desc: 'a label of 63 octets is a name (then NXDOMAIN)', name: `${'a'.repeat(63)}.example.com.`, type: 'A', code: 'ENOTFOUND' },
    { desc: 'unsupported type → ENOTIMP', name: 'example.com', type: 'HINFO', code: 'ENOTIMP' },
  ];
  for (const c of errors) {
    test(c.desc, async () => {
      const r = new Resolver({ servers: [server.address], timeoutMs: 500 });
      assert.equal(await codeOf(r.resolve(c.name, c.type)), c.code);
    });
  }

  test('every caller gets its own error object and its own copy of the records', async () => {
    const r = new Resolver({ servers: [server.address], timeoutMs: 500 });
    const e1 = (await r.resolve('nope.example.com', 'A').catch((e: unknown) => e)) as Record<string, unknown>;
    e1.spfResult = { error: 'permerror' };
    const e2 = (await r.resolve('nope.example.com', 'A').catch((e: unknown) => e)) as Record<string, unknown>;
    assert.notEqual(e1, e2);
    assert.equal(e2.spfResult, undefined);
    const mx = (await r.resolve('example.com', 'MX')) as Array<{ priority: number }>;
    (mx[0] as { priority: number }).priority = 99;
    assert.deepEqual(await r.resolve('example.com', 'MX'), [{ exchange: 'mx.example.com', priority: 10 }]);
  });
});

describe('cache', () => {
  test('answers are cached for their TTL', async () => {
    let now = 1_000_000;
    const r = new Resolver({ servers: [server.address], timeoutMs: 500, now: () => now });
    const before = count(server, 'short.example.com', 'A');
    await r.resolve('short.example.com', 'A');
    await r.resolve('short.example.com', 'A');
    assert.equal(count(server, 'short.example.com', 'A') - before, 1, 'second lookup from cache');
    now += 4_000;
    await r.resolve('short.example.com', 'A');
    assert.equal(count(server, 'short.example.com', 'A') - before, 1, 'still cached after 4 s of a 5 s TTL');
    now += 2_000;
    await r.resolve('short.example.com', 'A');
    assert.equal(count(server, 'short.example.com', 'A') - before, 2, 'asked again after the TTL');
  });

  test('TTL 0 is not cached', async () => {
    const r = new Resolver({ servers: [server.address], timeoutMs: 500 });
    const before = count(server, 'zero.example.com', 'A');
    await r.resolve('zero.example.com', 'A');
    await r.resolve('zero.example.com', 'A');
    assert.equal(count(server, 'zero.example.com', 'A') - before, 2);
  });

  test('NXDOMAIN is cached for min(SOA TTL, SOA minimum) (RFC 2308 section 5)', async () => {
    let now = 2_000_000;
    const r = new Resolver({ servers: [server.address], timeoutMs: 500, now: () => now });
    const name = 'gone.example.com';
    const before = count(server, name, 'TXT');
    assert.equal(await codeOf(r.resolve(name, 'TXT')), 'ENOTFOUND');
    now += 29_000;
    assert.equal(await codeOf(r.resolve(name, 'TXT')), 'ENOTFOUND');
    assert.equal(count(server, name, 'TXT') - before, 1, 'negative answer cached for 30 s');
    now += 2_000;
    assert.equal(await codeOf(r.resolve(name, 'TXT')), 'ENOTFOUND');
    assert.equal(count(server, name, 'TXT') - before, 2);
  });

  test('NODATA is cached too, and a reply without SOA uses the default negative TTL', async () => {
    const noSoa = await startDnsServer({ zone, soa: false });
    try {
      let now = 3_000_000;
      const r = new Resolver({ servers: [noSoa.address], timeoutMs: 500, now: () => now, negativeTtl: 10 });
      assert.equal(await codeOf(r.resolve('example.com', 'AAAA')), 'ENODATA');
      now += 9_000;
      assert.equal(await codeOf(r.resolve('example.com', 'AAAA')), 'ENODATA');
      assert.equal(count(noSoa, 'example.com', 'AAAA'), 1);
      now += 2_000;
      await codeOf(r.resolve('example.com', 'AAAA'));
      assert.equal(count(noSoa, 'example.com', 'AAAA'), 2);
    } finally {
      await noSoa.close();
    }
  });

  test('temporary failures are not cached', async () => {
    const r = new Resolver({ servers: [server.address], timeoutMs: 500 });
    const before = count(server, 'broken.example.com', 'TXT');
    await codeOf(r.resolve('broken.example.com', 'TXT'));
    await codeOf(r.resolve('broken.example.com', 'TXT'));
    // Two sends per lookup (one server, two attempts): SERVFAIL is retried, then not cached.
    assert.ok(count(server, 'broken.example.com', 'TXT') - before >= 2);
    assert.equal(r.load.cached, 0);
  });

  test('the cache is bounded (least recently used entries go first)', async () => {
    const r = new Resolver({ servers: [server.address], timeoutMs: 500, cacheSize: 2 });
    await r.resolve('example.com', 'A');
    await r.resolve('example.com', 'TXT');
    await r.resolve('example.com', 'MX');
    assert.equal(r.load.cached, 2);
  });

  test('concurrent identical lookups share one query', async () => {
    const r = new Resolver({ servers: [server.address], timeoutMs: 500 });
    const before = count(server, 'example.com', 'MX');
    await Promise.all([r.resolve('example.com', 'MX'), r.resolve('example.com', 'MX'), r.resolve('example.com', 'MX')]);
    assert.equal(count(server, 'example.com', 'MX') - before, 1);
  });
});

describe('timeouts and failures', () => {
  test('a server that never answers → ETIMEOUT within the configured timeout', async () => {
    const silent = await startDnsServer({ zone, mode: 'silent' });
    try {
      const r = new Resolver({ servers: [silent.address], timeoutMs: 300 });
      const t0 = performance.now();
      assert.equal(await codeOf(r.resolve('example.com', 'TXT')), 'ETIMEOUT');
      const took = performance.now() - t0;
      assert.ok(took >= 280 && took < 600, `took ${took} ms`);
      assert.ok(silent.queries.length >= 2, 'the query was retransmitted within the deadline');
    } finally {
      await silent.close();
    }
  });

  test('a name whose server does not answer for a type → ETIMEOUT (and the scope records the trouble)', async () => {
    const r = new Resolver({ servers: [server.address], timeoutMs: 200 });
    const scope = new DnsScope(r);
    assert.equal(await codeOf(scope.resolve('slow.example.com', 'TXT')), 'ETIMEOUT');
    assert.deepEqual(await scope.resolve('slow.example.com', 'A'), ['192.0.2.9']);
    assert.equal(scope.lookups, 2);
    assert.deepEqual(scope.troubles, [{ name: 'slow.example.com', type: 'TXT', code: 'ETIMEOUT' }]);
    assert.ok(scope.troubleWith('Slow.Example.com.'));
  });

  test('a silent first server: the second one answers within the deadline', async () => {
    const silent = await startDnsServer({ zone, mode: 'silent' });
    try {
      const r = new Resolver({ servers: [silent.address, server.address], timeoutMs: 600 });
      const t0 = performance.now();
      assert.deepEqual(await r.resolve('example.com', 'A'), ['192.0.2.1']);
      assert.ok(performance.now() - t0 < 550);
    } finally {
      await silent.close();
    }
  });

  test('truncated UDP reply → retried over TCP', async () => {
    const tc = await startDnsServer({ zone, truncateUdp: true });
    try {
      const r = new Resolver({ servers: [tc.address], timeoutMs: 500 });
      assert.deepEqual(await r.resolve('example.com', 'A'), ['192.0.2.1']);
      assert.deepEqual(
        tc.queries.map((q) => q.proto),
        ['udp', 'tcp'],
      );
    } finally {
      await tc.close();
    }
  });

  test('a reply larger than the EDNS size comes over TCP and is reassembled', async () => {
    const r = new Resolver({ servers: [server.address], timeoutMs: 500 });
    const txt = (await r.resolve('long.example.com', 'TXT')) as string[][];
    assert.equal(txt[0]?.join('').length, 'k=rsa; p='.length + 1500);
    assert.ok(server.queries.some((q) => q.name === 'long.example.com' && q.proto === 'tcp'));
  });
});

describe('concurrency bound', () => {
  test('at most maxConcurrency queries are in flight; the others wait', async () => {
    const slow = await startDnsServer({
      zone: Object.fromEntries(Array.from({ length: 6 }, (_, i) => [`h${i}.example.com`, { A: [`192.0.2.${i}`] }])),
      delayMs: 100,
    });
    try {
      const r = new Resolver({ servers: [slow.address], timeoutMs: 2000, maxConcurrency: 2 });
      let maxActive = 0;
      const timer = setInterval(() => (maxActive = Math.max(maxActive, r.load.active)), 5);
      timer.unref();
      let answers: unknown[];
      const t0 = performance.now();
      try {
        const pending = Array.from({ length: 6 }, (_, i) => r.resolve(`h${i}.example.com`, 'A'));
        // Wait until every lookup has reached the limiter (a few promise turns each).
        for (let i = 0; i < 100 && r.load.active + r.load.waiting < 6; i++) await new Promise((res) => setImmediate(res));
        assert.equal(r.load.active, 2);
        assert.equal(r.load.waiting, 4);
        answers = await Promise.all(pending);
      } finally {
        clearInterval(timer);
      }
      assert.deepEqual(
        answers,
        Array.from({ length: 6 }, (_, i) => [`192.0.2.${i}`]),
      );
      assert.equal(maxActive, 2);
      assert.ok(performance.now() - t0 >= 290, 'three rounds of two');
    } finally {
      await slow.close();
    }
  });

  test('waiting for a slot counts against the deadline', async () => {
    const slow = await startDnsServer({ zone, delayMs: 300 });
    try {
      const r = new Resolver({ servers: [slow.address], timeoutMs: 200, maxConcurrency: 1, attempts: 1 });
      const codes = await Promise.all([codeOf(r.resolve('example.com', 'A')), codeOf(r.resolve('example.com', 'TXT'))]);
      assert.deepEqual(codes, ['ETIMEOUT', 'ETIMEOUT']);
    } finally {
      await slow.close();
    }
  });
});

describe('servers', () => {
  const cases = [
    { desc: 'ip', input: '192.0.2.53', expected: { host: '192.0.2.53', port: 53, family: 4 } },
    { desc: 'ip:port', input: '127.0.0.1:5353', expected: { host: '127.0.0.1', port: 5353, family: 4 } },
    { desc: '[v6]:port', input: '[2001:db8::1]:5300', expected: { host: '2001:db8::1', port: 5300, family: 6 } },
    { desc: 'bare v6', input: '2001:db8::1', expected: { host: '2001:db8::1', port: 53, family: 6 } },
  ];
  for (const c of cases) test(c.desc, () => assert.deepEqual(parseServer(c.input), c.expected));

  test('host names are refused', () => assert.throws(() => parseServer('dns.example.com')));

  test('resolv.conf nameserver lines (fallback when no servers are configured)', () => {
    const text = '# comment\nsearch example.com\nnameserver 192.0.2.1\nnameserver  2001:db8::53 # v6\nnameserver bogus\noptions ndots:1\n';
    assert.deepEqual(parseResolvConf(text), [
      { host: '192.0.2.1', port: 53, family: 4 },
      { host: '2001:db8::53', port: 53, family: 6 },
    ]);
    const dir = mkdtempSync(join(tmpdir(), 'mailgate-dns-'));
    writeFileSync(join(dir, 'resolv.conf'), text);
    assert.deepEqual(new Resolver({ resolvConf: join(dir, 'resolv.conf') }).servers, parseResolvConf(text));
    assert.deepEqual(systemServers(join(dir, 'missing')), [{ host: '127.0.0.1', port: 53, family: 4 }]);
  });
});

test('metrics: mailgate_dns_queries_total and mailgate_dns_duration_seconds', async () => {
  const r = new Resolver({ servers: [server.address], timeoutMs: 500 });
  await r.resolve('example.com', 'TXT');
  await codeOf(r.resolve('nothere.example.com', 'TXT'));
  const text = await registry.metrics();
  assert.match(text, /mailgate_dns_queries_total\{type="TXT",result="noerror"\} [1-9]/);
  assert.match(text, /mailgate_dns_queries_total\{type="TXT",result="nxdomain"\} [1-9]/);
  assert.match(text, /mailgate_dns_duration_seconds_count\{type="TXT"\} [1-9]/);
});

test('CNAME loops across replies end with an error, not a hang', async () => {
  const loop = await startDnsServer({ zone: { 'a.loop.example': { CNAME: 'b.loop.example' }, 'b.loop.example': { CNAME: 'a.loop.example' } }, soa: false });
  try {
    const r = new Resolver({ servers: [loop.address], timeoutMs: 1000 });
    const codes = await Promise.all([codeOf(r.resolve('a.loop.example', 'A')), codeOf(r.resolve('b.loop.example', 'A'))]);
    assert.deepEqual(codes, ['ESERVFAIL', 'ESERVFAIL']);
  } finally {
    await loop.close();
  }
});

describe('cached(): the entry behind an answer, for results derived from answers', () => {
  test('the same object while the answer is cached, a new one after it expired and was fetched again', async () => {
    let now = 3_000_000;
    const r = new Resolver({ servers: [server.address], timeoutMs: 500, now: () => now });
    assert.equal(r.cached('short.example.com', 'A'), undefined, 'never asked');
    await r.resolve('short.example.com', 'A');
    const first = r.cached('short.example.com', 'A');
    assert.ok(first);
    assert.equal(r.cached('SHORT.example.com.', 'a'), first, 'same question, other spelling');
    now += 4_000;
    assert.equal(r.cached('short.example.com', 'A'), first);
    now += 2_000;
    assert.equal(r.cached('short.example.com', 'A'), undefined, 'TTL 5 s passed');
    await r.resolve('short.example.com', 'A');
    const again = r.cached('short.example.com', 'A');
    assert.ok(again);
    assert.notEqual(again, first);
  });

  const none = [
    { desc: 'TTL 0', name: 'zero.example.com', type: 'A' },
    { desc: 'SERVFAIL', name: 'broken.example.com', type: 'A' },
  ];
  for (const c of none) {
    test(`nothing for an answer that is not cached: ${c.desc}`, async () => {
      const r = new Resolver({ servers: [server.address], timeoutMs: 500 });
      await r.resolve(c.name, c.type).catch(() => undefined);
      assert.equal(r.cached(c.name, c.type), undefined);
    });
  }

  test('NXDOMAIN is a cached answer too; clearCache() drops it', async () => {
    const r = new Resolver({ servers: [server.address], timeoutMs: 500 });
    await r.resolve('nope.example.com', 'TXT').catch(() => undefined);
    assert.ok(r.cached('nope.example.com', 'TXT'));
    r.clearCache();
    assert.equal(r.cached('nope.example.com', 'TXT'), undefined);
  });
});
