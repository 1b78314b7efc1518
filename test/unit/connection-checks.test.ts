// The connection-level checks against a real DNS server on loopback: forward-confirmed rDNS,
// DNSBL/DNSWL weights (error answers never count, DNS trouble is a result), HELO sanity.
import { detachedConnection, emptyEdits } from '../../src/pipeline/check.ts';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { FactSet, type FactValue } from '../../src/pipeline/facts.ts';
import type { Check, CheckOutput } from '../../src/pipeline/check.ts';
import { Resolver } from '../../src/dns/resolver.ts';
import { createFcrdnsCheck } from '../../src/checks/connection/fcrdns.ts';
import { createDnsblCheck, dnsblSection, type DnsblConfig } from '../../src/checks/connection/dnsbl.ts';
import { createHeloCheck, heloSanity, isFqdn } from '../../src/checks/connection/helo-sanity.ts';
import { getSection, loadRules } from '../../src/rules/loader.ts';
import { knownFacts } from '../../src/checks/catalogue.ts';
import { startDnsServer, type TestDnsServer } from '../helpers/dns-server.ts';
import { makeRulesDir } from '../helpers/rules-dir.ts';

let dns: TestDnsServer;
let silent: TestDnsServer;

before(async () => {
  dns = await startDnsServer({
    zone: {
      // 198.51.100.10: PTR confirmed by A
      '10.100.51.198.in-addr.arpa': { PTR: ['mail.good.example.'] },
      'mail.good.example': { A: ['198.51.100.10'] },
      // 198.51.100.11: PTR whose name points elsewhere
      '11.100.51.198.in-addr.arpa': { PTR: ['dyn-11.isp.example'] },
      'dyn-11.isp.example': { A: ['203.0.113.99'] },
      // 198.51.100.12: no PTR at all (NXDOMAIN)
      // 198.51.100.13: PTR lookup fails
      '13.100.51.198.in-addr.arpa': { servfail: true },
      // 2001:db8::25 (documentation prefix, fine for a test server)
      '5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa': { PTR: ['v6.good.example'] },
      'v6.good.example': { AAAA: ['2001:db8::25'] },
      // DNSBL answers for 198.51.100.10
      '10.100.51.198.bl.test': { A: ['127.0.0.2'] },
      '10.100.51.198.big.test': { A: ['127.0.0.4'] },
      '10.100.51.198.wl.test': { A: ['127.0.15.2'] },
      '10.100.51.198.broken.test': { A: ['127.255.255.254'] },
      '10.100.51.198.slow.test': { servfail: true },
    },
  });
  silent = await startDnsServer({ mode: 'silent' });
});

after(async () => {
  await dns.close();
  await silent.close();
});

async function runCheck(check: Check, given: Record<string, FactValue>, ms = 5000): Promise<Record<string, FactValue>> {
  const out: CheckOutput = { facts: new FactSet(), edits: emptyEdits() };
  await check.run(
    { stage: check.stages[0] ?? 'connect', connection: detachedConnection(), facts: new FactSet(Object.entries(given)), signal: AbortSignal.timeout(ms) },
    out,
  );
  return out.facts.toJSON();
}

const resolver = () => new Resolver({ servers: [dns.address], timeoutMs: 1500 });

interface RdnsCase {
  desc: string;
  ip: string;
  expected: Record<string, FactValue>;
}

const rdnsCases: RdnsCase[] = [
  {
    desc: 'confirmed',
    ip: '198.51.100.10',
    expected: { 'client.rdns_names': ['mail.good.example'], 'client.rdns': 'mail.good.example', 'client.fcrdns': true, 'client.rdns_status': 'pass' },
  },
  {
    desc: 'PTR does not resolve back',
    ip: '198.51.100.11',
    expected: { 'client.rdns_names': ['dyn-11.isp.example'], 'client.rdns': 'dyn-11.isp.example', 'client.fcrdns': false, 'client.rdns_status': 'fail' },
  },
  { desc: 'no PTR', ip: '198.51.100.12', expected: { 'client.rdns': '', 'client.rdns_names': [], 'client.fcrdns': false, 'client.rdns_status': 'none' } },
  {
    desc: 'DNS failure is a temperror, not an exception',
    ip: '198.51.100.13',
    expected: { 'client.rdns': '', 'client.rdns_names': [], 'client.fcrdns': false, 'client.rdns_status': 'temperror' },
  },
  {
    desc: 'IPv6',
    ip: '2001:db8::25',
    expected: { 'client.rdns_names': ['v6.good.example'], 'client.rdns': 'v6.good.example', 'client.fcrdns': true, 'client.rdns_status': 'pass' },
  },
];

for (const c of rdnsCases) {
  test(`fcrdns: ${c.desc}`, async () => {
    assert.deepEqual(await runCheck(createFcrdnsCheck({ dns: resolver() }), { 'client.ip': c.ip }), c.expected);
  });
}

test('fcrdns: no resolver configured sets nothing', async () => {
  assert.deepEqual(await runCheck(createFcrdnsCheck({}), { 'client.ip': '198.51.100.10' }), {});
});

function dnsblConfig(yaml: string): DnsblConfig {
  const loaded = loadRules(makeRulesDir({ 'a.yaml': yaml }), knownFacts(), [dnsblSection]);
  const cfg = getSection(loaded, dnsblSection);
  assert.ok(cfg);
  return cfg;
}

test('dnsbl: weights add up, allow lists subtract, error answers and failures never count', async () => {
  const cfg = dnsblConfig(`dnsbl:
  enabled: true
  skip_private: false
  lists:
    - { name: bl, zone: bl.test, weight: 3 }
    - { name: big-only, zone: big.test, weight: 2, returns: ["127.0.0.2"] }
    - { name: big-any, zone: big.test, weight: 1 }
    - { name: wl, zone: wl.test, weight: -2, returns: ["127.0.*.2", "127.0.*.3"] }
    - { name: broken, zone: broken.test, weight: 5 }
    - { name: slow, zone: slow.test, weight: 5 }
    - { name: clean, zone: clean.test, weight: 5 }
`);
  const facts = await runCheck(
    createDnsblCheck({ dns: resolver() }, () => cfg),
    { 'client.ip': '198.51.100.10' },
  );
  assert.deepEqual(facts, {
    'dnsbl.score': 2,
    'dnsbl.listed': ['bl', 'big-any'],
    'dnswl.listed': ['wl'],
    'dnsbl.hits': [
      { list: 'bl', zone: 'bl.test', answer: '127.0.0.2', weight: 3 },
      { list: 'big-any', zone: 'big.test', answer: '127.0.0.4', weight: 1 },
      { list: 'wl', zone: 'wl.test', answer: '127.0.15.2', weight: -2 },
    ],
    'dnsbl.errors': ['slow'],
  });
});

test('dnsbl: off by default, private addresses skipped, slow lists give up at timeout_ms', async () => {
  const off = dnsblConfig('dnsbl: { lists: [ { zone: bl.test } ] }\n');
  assert.deepEqual(
    await runCheck(
      createDnsblCheck({ dns: resolver() }, () => off),
      { 'client.ip': '198.51.100.10' },
    ),
    {},
  );
  const on = dnsblConfig('dnsbl: { enabled: true, lists: [ { zone: bl.test } ] }\n');
  assert.deepEqual(
    await runCheck(
      createDnsblCheck({ dns: resolver() }, () => on),
      { 'client.ip': '10.1.2.3' },
    ),
    {},
  );
  const slow = dnsblConfig('dnsbl: { enabled: true, skip_private: false, timeout_ms: 200, lists: [ { zone: bl.test } ] }\n');
  const start = Date.now();
  const facts = await runCheck(
    createDnsblCheck({ dns: new Resolver({ servers: [silent.address], timeoutMs: 5000 }) }, () => slow),
    { 'client.ip': '198.51.100.10' },
  );
  assert.ok(Date.now() - start < 2000);
  assert.deepEqual(facts['dnsbl.errors'], ['bl.test']);
  assert.equal(facts['dnsbl.score'], 0);
});

test('dnsbl: the check follows the rules (RulesAware)', async () => {
  const check = createDnsblCheck({ dns: resolver() });
  assert.deepEqual(await runCheck(check, { 'client.ip': '198.51.100.10' }), {});
  check.onRulesLoaded(
    loadRules(makeRulesDir({ 'a.yaml': 'dnsbl: { enabled: true, skip_private: false, lists: [ { zone: bl.test, weight: 4 } ] }\n' }), knownFacts(), [
      dnsblSection,
    ]),
  );
  assert.equal((await runCheck(check, { 'client.ip': '198.51.100.10' }))['dnsbl.score'], 4);
});

test('dnsbl: a bad returns entry is a located error', () => {
  assert.throws(
    () => dnsblConfig('dnsbl:\n  lists:\n    - zone: bl.test\n      returns: [127.0.0.2, bogus]\n'),
    /a.yaml:4: dnsbl.lists\[0\].returns\[1\]: "bogus" is not an address, CIDR block or glob/,
  );
});

interface HeloCase {
  helo: string;
  ip?: string;
  rdns?: string;
  expected: Partial<Record<string, boolean>>;
}

const heloCases: HeloCase[] = [
  {
    helo: 'mail.example.org',
    expected: { 'helo.fqdn': true, 'helo.is_ip_literal': false, 'helo.is_bare_ip': false, 'helo.literal_mismatch': false, 'helo.is_our_name': false },
  },
  { helo: 'localhost', expected: { 'helo.fqdn': false } },
  { helo: 'PC-123', expected: { 'helo.fqdn': false } },
  { helo: 'host.123', expected: { 'helo.fqdn': false } },
  { helo: 'bad_name.example', expected: { 'helo.fqdn': false } },
  { helo: 'bücher.example', expected: { 'helo.fqdn': true } },
  { helo: '[192.0.2.1]', ip: '192.0.2.1', expected: { 'helo.is_ip_literal': true, 'helo.literal_mismatch': false, 'helo.fqdn': false } },
  { helo: '[192.0.2.1]', ip: '192.0.2.2', expected: { 'helo.is_ip_literal': true, 'helo.literal_mismatch': true } },
  { helo: '[IPv6:2001:db8::1]', ip: '2001:DB8:0::1', expected: { 'helo.is_ip_literal': true, 'helo.literal_mismatch': false } },
  { helo: '192.0.2.7', ip: '192.0.2.1', expected: { 'helo.is_bare_ip': true, 'helo.literal_mismatch': true, 'helo.fqdn': false } },
  { helo: 'MX.Example.TEST.', expected: { 'helo.is_our_name': true } },
  { helo: 'example.test', expected: { 'helo.is_our_name': true } },
  { helo: 'mail.example.org', rdns: 'mail.example.org', expected: { 'helo.matches_rdns': true } },
  { helo: 'other.example.org', rdns: 'mail.example.org', expected: { 'helo.matches_rdns': false } },
];

for (const c of heloCases) {
  test(`helo sanity: ${c.helo}${c.ip ? ` from ${c.ip}` : ''}${c.rdns ? ` rdns ${c.rdns}` : ''}`, () => {
    const got = heloSanity(c.helo, c.ip ?? '198.51.100.1', ['mx.example.test', 'example.test'], c.rdns);
    for (const [k, v] of Object.entries(c.expected)) assert.equal(got[k], v, k);
  });
}

test('helo sanity: the check reads helo.name and client.ip', async () => {
  const facts = await runCheck(createHeloCheck({ ourNames: () => ['mx.example.test'] }), { 'helo.name': '[192.0.2.9]', 'client.ip': '192.0.2.1' });
  assert.equal(facts['helo.literal_mismatch'], true);
  assert.equal(isFqdn('a.b'), true);
});

test('fcrdns: an unanswering server is a temperror, not a check failure', async () => {
  const facts = await runCheck(createFcrdnsCheck({ dns: new Resolver({ servers: [silent.address], timeoutMs: 200 }) }), { 'client.ip': '198.51.100.10' });
  assert.equal(facts['client.rdns_status'], 'temperror');
});
