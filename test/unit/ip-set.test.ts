// IpSet (src/net/ip.ts), our own CIDR matcher, against node:net's BlockList (what it replaced) on
// random addresses and networks of both families, in every spelling an address can come in.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockList } from 'node:net';
import fc from 'fast-check';
import { IpSet, ipFamily, normalizeIp, parseCidr } from '../../src/net/ip.ts';

/** The old IpSet: BlockList over normalized addresses. */
function reference(entries: readonly string[]): (ip: string) => boolean {
  const list = new BlockList();
  let size = 0;
  for (const e of entries) {
    const c = parseCidr(e);
    if (!c) continue;
    list.addSubnet(c.address, c.prefix, c.family === 4 ? 'ipv4' : 'ipv6');
    size++;
  }
  return (ip) => {
    if (size === 0) return false;
    const n = normalizeIp(ip);
    return n !== undefined && list.check(n, ipFamily(n) === 4 ? 'ipv4' : 'ipv6');
  };
}

// Few distinct high bits, so random addresses often fall inside random networks.
const v4 = fc.tuple(fc.constantFrom(10, 127, 192, 0, 255), fc.nat(255), fc.nat(255), fc.nat(255)).map((o) => o.join('.'));
const v6 = fc
  .tuple(fc.constantFrom('2001:db8', 'fc00', 'fe80', '0', 'ffff'), fc.array(fc.nat(0xffff), { minLength: 6, maxLength: 6 }))
  .map(([head, rest]) => `${head}:${rest.map((x) => (x < 0x100 ? 0 : x).toString(16)).join(':')}`);
const spelled = fc.oneof(
  v4,
  v6,
  v4.map((a) => `[${a}]`),
  v4.map((a) => `::ffff:${a}`),
  v6.map((a) => `[IPv6:${a.toUpperCase()}]`),
  v6.map((a) => `${a}%eth0`),
  fc.constantFrom('', '1.2.3', '1.2.3.4.5', '01.2.3.4', '256.1.1.1', '1..2.3', 'a.b.c.d', '::', '::1', '1.2.3.4 ', ' 10.0.0.1'),
);
const cidr = fc.oneof(
  fc.tuple(v4, fc.nat(32)).map(([a, p]) => `${a}/${p}`),
  fc.tuple(v6, fc.nat(128)).map(([a, p]) => `${a}/${p}`),
  v4,
  v6,
  fc.constantFrom('0.0.0.0/0', '::/0', '::/64', '::/80', '::/95', '::ffff:0:0/96', '::1', '10.0.0.0/33', 'fc00::/129', 'nonsense', '1.2.3.4/x'),
);

test('IpSet matches exactly what node:net BlockList matched, for any list and address', () => {
  fc.assert(
    fc.property(fc.array(cidr, { maxLength: 8 }), fc.array(spelled, { minLength: 1, maxLength: 20 }), (entries, ips) => {
      const set = new IpSet();
      for (const e of entries) assert.equal(set.add(e), parseCidr(e) !== undefined, e);
      const ref = reference(entries);
      for (const ip of ips) assert.equal(set.has(ip), ref(ip), `${ip} in ${JSON.stringify(entries)}`);
    }),
    { numRuns: 3000 },
  );
});

test('IpSet: network edges of both families', () => {
  const set = new IpSet();
  for (const c of ['10.0.0.0/8', '192.168.1.128/25', '0.0.0.0/32', '2001:db8::/33', 'fe80::1']) assert.ok(set.add(c));
  assert.equal(set.size, 5);
  for (const [ip, inside] of [
    ['10.0.0.0', true],
    ['10.255.255.255', true],
    ['11.0.0.0', false],
    ['9.255.255.255', false],
    ['192.168.1.127', false],
    ['192.168.1.128', true],
    ['192.168.1.255', true],
    ['0.0.0.0', true],
    ['0.0.0.1', false],
    ['2001:db8:7fff:ffff::1', true],
    ['2001:db8:8000::', false],
    ['2001:0db8:0000::0001', true],
    ['FE80::1', true],
    ['fe80::2', false],
    ['::ffff:10.1.2.3', true],
    ['[10.1.2.3]', true],
  ] as const) {
    assert.equal(set.has(ip), inside, ip);
  }
  assert.equal(new IpSet().has('10.0.0.1'), false);
});
