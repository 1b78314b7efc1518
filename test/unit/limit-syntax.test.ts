// Table-driven tests of the small syntaxes of the limit sections: durations, rates, client networks,
// greylisting's sender normalisation, retry hints, and which key a limit counts an event under.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeSender } from '../../src/checks/limits/greylist.ts';
import { humanDuration, keyPartValue, keyValue, parseDuration, parseRate } from '../../src/checks/limits/durations-rates-keys.ts';
import { networkOf } from '../../src/net/ip.ts';
import { FactSet } from '../../src/pipeline/facts.ts';

describe('durations and rates', () => {
  const durations = [
    { input: '250ms', expected: 250 },
    { input: '30s', expected: 30_000 },
    { input: '5m', expected: 300_000 },
    { input: '2h', expected: 7_200_000 },
    { input: '35d', expected: 35 * 86_400_000 },
    { input: '1w', expected: 604_800_000 },
    { input: '90', expected: 90_000 },
    { input: '1.5m', expected: 90_000 },
    { input: '0s', expected: undefined },
    { input: '5 minutes', expected: undefined },
    { input: '-1m', expected: undefined },
  ];
  for (const c of durations) test(`duration ${JSON.stringify(c.input)}`, () => assert.equal(parseDuration(c.input), c.expected));

  const rates = [
    { input: '100/1m', expected: { count: 100, periodMs: 60_000 } },
    { input: '100/m', expected: { count: 100, periodMs: 60_000 } },
    { input: '10/s', expected: { count: 10, periodMs: 1000 } },
    { input: '5/10s', expected: { count: 5, periodMs: 10_000 } },
    { input: '1000 / 1d', expected: { count: 1000, periodMs: 86_400_000 } },
    { input: '0/1m', expected: undefined },
    { input: '100', expected: undefined },
    { input: '100/1x', expected: undefined },
  ];
  for (const c of rates) test(`rate ${JSON.stringify(c.input)}`, () => assert.deepEqual(parseRate(c.input), c.expected));
});

describe('client networks', () => {
  const cases = [
    { ip: '192.0.2.77', p4: 24, p6: 64, expected: '192.0.2.0/24' },
    { ip: '192.0.2.77', p4: 16, p6: 64, expected: '192.0.0.0/16' },
    { ip: '203.0.113.255', p4: 32, p6: 64, expected: '203.0.113.255/32' },
    { ip: '::ffff:192.0.2.9', p4: 24, p6: 64, expected: '192.0.2.0/24' },
    { ip: '2001:db8:1:2:3:4:5:6', p4: 24, p6: 64, expected: '2001:db8:1:2:0:0:0:0/64' },
    { ip: '2001:DB8::1', p4: 24, p6: 48, expected: '2001:db8:0:0:0:0:0:0/48' },
    { ip: '2001:db8:abcd:ef12::1', p4: 24, p6: 56, expected: '2001:db8:abcd:ef00:0:0:0:0/56' },
    { ip: 'not-an-ip', p4: 24, p6: 64, expected: undefined },
  ];
  for (const c of cases) test(`${c.ip} /${c.p4} /${c.p6}`, () => assert.equal(networkOf(c.ip, c.p4, c.p6), c.expected));
});

describe('greylisting sender normalisation (Postgrey-like)', () => {
  const cases = [
    { input: '', expected: '<>' },
    { input: 'Alice@Example.NET', expected: 'alice@example.net' },
    { input: 'bounce-1234-alice=example.net@lists.example', expected: 'bounce-#-alice=example.net@lists.example' },
    { input: 'prvs=1234abcdef=alice@example.net', expected: 'alice@example.net' },
    { input: 'SRS0=HHH=TT=example.org=alice@forwarder.example', expected: 'srs0=example.org=alice@forwarder.example' },
    { input: 'alice+news@example.net', expected: 'alice@example.net' },
  ];
  for (const c of cases) test(JSON.stringify(c.input), () => assert.equal(normalizeSender(c.input), c.expected));
});

describe('retry hints', () => {
  const cases = [
    { ms: 1, expected: '1 second' },
    { ms: 30_000, expected: '30 seconds' },
    { ms: 89_000, expected: '89 seconds' },
    { ms: 300_000, expected: '5 minutes' },
    { ms: 3_600_000, expected: '60 minutes' },
    { ms: 3 * 3_600_000, expected: '3 hours' },
    { ms: 3 * 86_400_000, expected: '3 days' },
  ];
  for (const c of cases) test(`${c.ms} ms`, () => assert.equal(humanDuration(c.ms), c.expected));
});

describe('key parts', () => {
  const facts = new FactSet([
    ['client.ip', '2001:DB8::7'],
    ['helo.name', 'MX.Example.NET.'],
    ['mail.from', ''],
    ['mail.from_domain', ''],
    ['rcpt.address', 'Bob@example.test'],
    ['dmarc.result', 'fail'],
    ['dmarc.domain', 'example.net'],
  ]);
  const ctx = { facts, prefix4: 24, prefix6: 64 };
  const cases = [
    { part: 'client_ip', expected: '2001:db8::7' },
    { part: 'client_net', expected: '2001:db8:0:0:0:0:0:0/64' },
    { part: 'helo', expected: 'mx.example.net' },
    { part: 'sender', expected: '<>' },
    { part: 'sender_domain', expected: '<>' },
    { part: 'recipient', expected: 'bob@example.test' },
    { part: 'recipient_domain', expected: 'example.test' },
    { part: 'dmarc_domain', expected: undefined },
  ] as const;
  for (const c of cases) test(c.part, () => assert.equal(keyPartValue(c.part, ctx), c.expected));

  test('dmarc_domain only when DMARC passes', () => {
    const f = new FactSet(facts);
    f.set('dmarc.result', 'pass');
    assert.equal(keyPartValue('dmarc_domain', { facts: f, prefix4: 24, prefix6: 64 }), 'example.net');
  });

  test('long client-controlled values are hashed', () => {
    const long = `${'x'.repeat(300)}.example`;
    const v = keyValue(long);
    assert.ok(v.startsWith('#') && v.length === 23);
    assert.equal(keyValue(long.toUpperCase()), v, 'case-insensitive');
  });
});
