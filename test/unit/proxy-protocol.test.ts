// The PROXY protocol header parser (v1 text, v2 binary) against what haproxy's proxy-protocol.txt
// requires, including hostile input (truncated, garbage, over-long, CR/LF inside, bad addresses).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { parse, readProxyHeader, ProxyProtocolError, type ProxyInfo } from '../../src/fronts/smtp/proxy-protocol.ts';

const SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

/** A v2 header: signature, version/command byte, family byte, length, then `body`. */
function v2(verCmd: number, fam: number, body: Buffer, declaredLen = body.length): Buffer {
  const head = Buffer.alloc(4);
  head[0] = verCmd;
  head[1] = fam;
  head.writeUInt16BE(declaredLen, 2);
  return Buffer.concat([SIG, head, body]);
}

function ipv4Block(src: number[], dst: number[], sport: number, dport: number): Buffer {
  const b = Buffer.alloc(12);
  Buffer.from(src).copy(b, 0);
  Buffer.from(dst).copy(b, 4);
  b.writeUInt16BE(sport, 8);
  b.writeUInt16BE(dport, 10);
  return b;
}

function ipv6Block(src: number[], dst: number[], sport: number, dport: number): Buffer {
  const b = Buffer.alloc(36);
  src.forEach((g, i) => b.writeUInt16BE(g, i * 2));
  dst.forEach((g, i) => b.writeUInt16BE(g, 16 + i * 2));
  b.writeUInt16BE(sport, 32);
  b.writeUInt16BE(dport, 34);
  return b;
}

/** What a parse must give: more bytes needed, an error, or the addresses and the header length. */
type Expected = 'more' | 'error' | { info: ProxyInfo; length: number };

interface Case {
  desc: string;
  input: Buffer;
  expected: Expected;
  todo?: string;
}

const ascii = (s: string) => Buffer.from(s, 'latin1');
const v4 = ipv4Block([192, 0, 2, 10], [198, 51, 100, 1], 40000, 25);
const v6 = ipv6Block([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1], [0x2001, 0xdb8, 0, 0, 0, 0, 0, 2], 40001, 25);

const cases: Case[] = [
  // --- v1 ---
  {
    desc: 'v1 TCP4',
    input: ascii('PROXY TCP4 192.0.2.10 198.51.100.1 40000 25\r\n'),
    expected: { info: { sourceAddress: '192.0.2.10', sourcePort: 40000 }, length: 45 },
  },
  {
    desc: 'v1 TCP6',
    input: ascii('PROXY TCP6 2001:db8::1 2001:db8::2 40001 25\r\n'),
    expected: { info: { sourceAddress: '2001:db8::1', sourcePort: 40001 }, length: 45 },
  },
  {
    desc: 'v1 TCP4 with the SMTP greeting bytes after it: length is the header only',
    input: ascii('PROXY TCP4 192.0.2.10 198.51.100.1 1 25\r\nEHLO x\r\n'),
    expected: { info: { sourceAddress: '192.0.2.10', sourcePort: 1 }, length: 41 },
  },
  {
    desc: 'v1 ports 0 and 65535 are valid',
    input: ascii('PROXY TCP4 192.0.2.10 198.51.100.1 65535 0\r\n'),
    expected: { info: { sourceAddress: '192.0.2.10', sourcePort: 65535 }, length: 44 },
  },
  { desc: 'v1 UNKNOWN alone: no address (health check)', input: ascii('PROXY UNKNOWN\r\n'), expected: { info: {}, length: 15 } },
  {
    desc: 'v1 UNKNOWN with addresses: the rest of the line is ignored',
    input: ascii('PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n'),
    expected: { info: {}, length: 59 },
  },
  {
    desc: 'v1 the longest TCP6 line (104 bytes with CRLF)',
    input: ascii('PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n'),
    expected: { info: { sourceAddress: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', sourcePort: 65535 }, length: 104 },
  },
  { desc: 'v1 truncated in the middle: wait for more', input: ascii('PROXY TCP4 192.0.2.'), expected: 'more' },
  { desc: 'v1 only a prefix of "PROXY ": wait for more', input: ascii('PRO'), expected: 'more' },
  {
    desc: 'v1 without the CR (bare LF end) is not a header end: wait for the CRLF',
    input: ascii('PROXY TCP4 192.0.2.10 198.51.100.1 1 25\n'),
    expected: 'more',
  },
  { desc: 'v1 over 107 bytes without CRLF', input: ascii('PROXY TCP4 ' + '1'.repeat(120)), expected: 'error' },
  { desc: 'v1 a CRLF only after 107 bytes (all in one read) is too long', input: ascii('PROXY UNKNOWN ' + 'x'.repeat(100) + '\r\n'), expected: 'error' },
  { desc: 'v1 lower-case keyword', input: ascii('proxy TCP4 192.0.2.10 198.51.100.1 1 25\r\n'), expected: 'error' },
  { desc: 'v1 unknown protocol', input: ascii('PROXY UDP4 192.0.2.10 198.51.100.1 1 25\r\n'), expected: 'error' },
  { desc: 'v1 missing the destination port', input: ascii('PROXY TCP4 192.0.2.10 198.51.100.1 1\r\n'), expected: 'error' },
  { desc: 'v1 two spaces between fields', input: ascii('PROXY TCP4  192.0.2.10 198.51.100.1 1 25\r\n'), expected: 'error' },
  { desc: 'v1 port out of range', input: ascii('PROXY TCP4 192.0.2.10 198.51.100.1 65536 25\r\n'), expected: 'error' },
  { desc: 'v1 negative port', input: ascii('PROXY TCP4 192.0.2.10 198.51.100.1 -1 25\r\n'), expected: 'error' },
  { desc: 'v1 hex port', input: ascii('PROXY TCP4 192.0.2.10 198.51.100.1 0x10 25\r\n'), expected: 'error' },
  { desc: 'v1 destination port not a number', input: ascii('PROXY TCP4 192.0.2.10 198.51.100.1 1 smtp\r\n'), expected: 'error' },
  { desc: 'v1 bare LF inside a field', input: ascii('PROXY TCP4 192.0.2.10\n198.51.100.1 1 25\r\n'), expected: 'error' },
  { desc: 'v1 bare CR at the end of the address field', input: ascii('PROXY TCP4 192.0.2.10\r 198.51.100.1 1 25\r\n'), expected: 'error' },
  { desc: 'v1 TCP4 with an invalid IPv4 address', input: ascii('PROXY TCP4 999.0.2.10 198.51.100.1 1 25\r\n'), expected: 'error' },
  { desc: 'v1 TCP4 with a host name instead of an address', input: ascii('PROXY TCP4 evil.example 198.51.100.1 1 25\r\n'), expected: 'error' },
  { desc: 'v1 TCP4 with an IPv6 address', input: ascii('PROXY TCP4 2001:db8::1 198.51.100.1 1 25\r\n'), expected: 'error' },
  { desc: 'v1 TCP6 with an IPv4 address', input: ascii('PROXY TCP6 192.0.2.10 2001:db8::2 1 25\r\n'), expected: 'error' },
  { desc: 'v1 a protocol word that only starts with UNKNOWN', input: ascii('PROXY UNKNOWNX\r\n'), expected: 'error' },
  { desc: 'v1 TCP6 with an invalid IPv6 address', input: ascii('PROXY TCP6 2001:db8:::1 2001:db8::2 1 25\r\n'), expected: 'error' },
  { desc: 'v1 NUL byte inside a field', input: ascii('PROXY TCP4 192.0.2.10\x00 198.51.100.1 1 25\r\n'), expected: 'error' },
  // --- garbage ---
  { desc: 'an SMTP command instead of a header', input: ascii('EHLO client.example\r\n'), expected: 'error' },
  { desc: 'a TLS ClientHello instead of a header', input: Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01]), expected: 'error' },
  { desc: 'CRLF CRLF then something other than the v2 signature', input: ascii('\r\n\r\nHELLO there\r\n'), expected: 'error' },
  // --- v2 ---
  { desc: 'v2 PROXY TCP over IPv4', input: v2(0x21, 0x11, v4), expected: { info: { sourceAddress: '192.0.2.10', sourcePort: 40000 }, length: 28 } },
  {
    desc: 'v2 PROXY TCP over IPv6, address in RFC 5952 form',
    input: v2(0x21, 0x21, v6),
    expected: { info: { sourceAddress: '2001:db8::1', sourcePort: 40001 }, length: 52 },
  },
  {
    desc: 'v2 IPv6 without zero runs stays uncompressed',
    input: v2(0x21, 0x21, ipv6Block([0x2001, 0xdb8, 1, 2, 3, 4, 5, 6], [1, 1, 1, 1, 1, 1, 1, 1], 1, 25)),
    expected: { info: { sourceAddress: '2001:db8:1:2:3:4:5:6', sourcePort: 1 }, length: 52 },
  },
  {
    desc: 'v2 IPv6 a single zero group is not compressed (RFC 5952 4.2.2)',
    input: v2(0x21, 0x21, ipv6Block([0x2001, 0xdb8, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1], 1, 25)),
    expected: { info: { sourceAddress: '2001:db8:0:1:1:1:1:1', sourcePort: 1 }, length: 52 },
  },
  {
    desc: 'v2 IPv6 the first of two equal zero runs is compressed (RFC 5952 4.2.3)',
    input: v2(0x21, 0x21, ipv6Block([0x2001, 0, 0, 1, 0, 0, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1], 1, 25)),
    expected: { info: { sourceAddress: '2001::1:0:0:1:1', sourcePort: 1 }, length: 52 },
  },
  {
    desc: 'v2 IPv6 the unspecified address',
    input: v2(0x21, 0x21, ipv6Block([0, 0, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1], 1, 25)),
    expected: { info: { sourceAddress: '::', sourcePort: 1 }, length: 52 },
  },
  {
    desc: 'v2 TLVs after the address block are skipped (length covers them)',
    input: v2(0x21, 0x11, Buffer.concat([v4, Buffer.from([0x01, 0x00, 0x02, 0x68, 0x32])])),
    expected: { info: { sourceAddress: '192.0.2.10', sourcePort: 40000 }, length: 33 },
  },
  { desc: 'v2 LOCAL: no address, the block is skipped', input: v2(0x20, 0x11, v4), expected: { info: {}, length: 28 } },
  { desc: 'v2 LOCAL with UNSPEC and no block', input: v2(0x20, 0x00, Buffer.alloc(0)), expected: { info: {}, length: 16 } },
  { desc: 'v2 PROXY with UNSPEC family: no address', input: v2(0x21, 0x00, Buffer.alloc(0)), expected: { info: {}, length: 16 } },
  { desc: 'v2 PROXY over a unix socket: no usable address', input: v2(0x21, 0x31, Buffer.alloc(216)), expected: { info: {}, length: 232 } },
  { desc: 'v2 version 1 in the high nibble', input: v2(0x11, 0x11, v4), expected: 'error' },
  { desc: 'v2 unknown command 0x2', input: v2(0x22, 0x11, v4), expected: 'error' },
  { desc: 'v2 only part of the signature: wait for more', input: SIG.subarray(0, 7), expected: 'more' },
  { desc: 'v2 signature without the fixed header: wait for more', input: Buffer.concat([SIG, Buffer.from([0x21, 0x11])]), expected: 'more' },
  { desc: 'v2 address block shorter than declared: wait for more', input: v2(0x21, 0x11, v4.subarray(0, 6), 12), expected: 'more' },
  { desc: 'v2 PROXY TCP4 with a block too short for two addresses and ports', input: v2(0x21, 0x11, v4.subarray(0, 8)), expected: 'error' },
  { desc: 'v2 PROXY TCP6 with a block too short for the IPv6 addresses', input: v2(0x21, 0x21, v6.subarray(0, 20)), expected: 'error' },
];

function normalise(r: ReturnType<typeof parse>): Expected {
  if (r === 'more') return 'more';
  if (r instanceof Error) {
    assert.ok(r instanceof ProxyProtocolError, `errors are ProxyProtocolError, got ${r.constructor.name}`);
    return 'error';
  }
  return r;
}

for (const c of cases) {
  test(c.desc, c.todo ? { todo: c.todo } : {}, () => {
    assert.deepEqual(normalise(parse(c.input)), c.expected);
  });
}

// --- readProxyHeader on a real socket ---

async function pair(): Promise<{ client: net.Socket; server: net.Socket; close: () => void }> {
  const srv = net.createServer({ pauseOnConnect: true });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address() as net.AddressInfo;
  const accepted = once(srv, 'connection') as Promise<[net.Socket]>;
  const client = net.connect(port, '127.0.0.1');
  const [server] = await accepted;
  await once(client, 'connect');
  return {
    client,
    server,
    close: () => {
      client.destroy();
      server.destroy();
      srv.close();
    },
  };
}

async function readRest(sock: net.Socket, n: number): Promise<string> {
  let got = '';
  sock.resume();
  for await (const chunk of sock) {
    got += (chunk as Buffer).toString('latin1');
    if (got.length >= n) break;
  }
  return got;
}

test('readProxyHeader: header split over several writes, the bytes after it are given back', async () => {
  const p = await pair();
  try {
    const header = readProxyHeader(p.server, 2000);
    p.client.write('PROXY TCP4 192.0.2.10 ');
    await new Promise((r) => setTimeout(r, 20));
    p.client.write('198.51.100.1 40000 25\r\nEHLO x\r\n');
    assert.deepEqual(await header, { sourceAddress: '192.0.2.10', sourcePort: 40000 });
    assert.equal(await readRest(p.server, 8), 'EHLO x\r\n');
  } finally {
    p.close();
  }
});

test('readProxyHeader: v2 header then data in one write', async () => {
  const p = await pair();
  try {
    const header = readProxyHeader(p.server, 2000);
    p.client.write(Buffer.concat([v2(0x21, 0x11, v4), ascii('QUIT\r\n')]));
    assert.deepEqual(await header, { sourceAddress: '192.0.2.10', sourcePort: 40000 });
    assert.equal(await readRest(p.server, 6), 'QUIT\r\n');
  } finally {
    p.close();
  }
});

test('readProxyHeader: rejects garbage', async () => {
  const p = await pair();
  try {
    const header = readProxyHeader(p.server, 2000);
    p.client.write('EHLO x\r\n');
    await assert.rejects(header, ProxyProtocolError);
  } finally {
    p.close();
  }
});

test('readProxyHeader: rejects when the client says nothing within the timeout', async () => {
  const p = await pair();
  try {
    const started = Date.now();
    await assert.rejects(readProxyHeader(p.server, 150), /timeout/);
    const took = Date.now() - started;
    assert.ok(took >= 140 && took < 1500, `took ${took} ms`);
  } finally {
    p.close();
  }
});

test('readProxyHeader: rejects when the client closes before a full header', async () => {
  const p = await pair();
  try {
    const header = readProxyHeader(p.server, 2000);
    p.client.end('PROXY TCP4 192.0.2');
    await assert.rejects(header, /closed before PROXY header/);
  } finally {
    p.close();
  }
});
