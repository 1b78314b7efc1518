// Fuzzing the PROXY v1/v2 parser (src/smtp/proxy-protocol.ts) with random bytes, mutated valid
// headers and split deliveries: it never throws, never reads past its input, and every address it
// returns is a valid IP (so nothing but an address ever reaches a Received header).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import fc from 'fast-check';
import { parse } from '../../src/fronts/smtp/proxy-protocol.ts';
import { runFuzz } from '../helpers/fuzz.ts';

const SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

function check(buf: Buffer): void {
  const r = parse(buf);
  if (r === 'more' || r instanceof Error) return;
  assert.ok(r.length > 0 && r.length <= buf.length, `length ${r.length} of ${buf.length}`);
  if (r.info.sourceAddress !== undefined) assert.notEqual(net.isIP(r.info.sourceAddress), 0, `not an IP: ${JSON.stringify(r.info.sourceAddress)}`);
  if (r.info.sourcePort !== undefined) assert.ok(Number.isInteger(r.info.sourcePort) && r.info.sourcePort >= 0 && r.info.sourcePort <= 65535);
}

const v1Field = fc.oneof(
  fc.constantFrom(
    'TCP4',
    'TCP6',
    'UNKNOWN',
    '192.0.2.1',
    '::1',
    '2001:db8::1',
    '1.2.3.4\nX: y',
    '65535',
    '0',
    '-1',
    '',
    ' ',
    '\r',
    '\n',
    '\0',
    '01',
    '255.255.255.255',
    '1.2.3.4.5',
    '::ffff:1.2.3.4',
  ),
  fc.string({ maxLength: 20 }),
);
const v1 = fc
  .array(v1Field, { minLength: 1, maxLength: 7 })
  .chain((fields) => fc.constantFrom('\r\n', '\n', '', '\r\n\r\nEHLO x\r\n').map((end) => Buffer.from(`PROXY ${fields.join(' ')}${end}`, 'latin1')));
const v2 = fc
  .record({
    verCmd: fc.oneof(fc.constantFrom(0x20, 0x21, 0x22, 0x11), fc.integer({ min: 0, max: 255 })),
    fam: fc.oneof(fc.constantFrom(0x00, 0x11, 0x12, 0x21, 0x22, 0x31), fc.integer({ min: 0, max: 255 })),
    body: fc.uint8Array({ maxLength: 64 }),
    lenDelta: fc.integer({ min: -8, max: 8 }),
  })
  .map(({ verCmd, fam, body, lenDelta }) => {
    const len = Math.max(0, Math.min(65535, body.length + lenDelta));
    const hdr = Buffer.alloc(4);
    hdr[0] = verCmd;
    hdr[1] = fam;
    hdr.writeUInt16BE(len, 2);
    return Buffer.concat([SIG, hdr, Buffer.from(body)]);
  });
const anyBytes = fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a));

test('fuzz: PROXY parser on v1 lines, v2 headers and random bytes', (t) => {
  const runs = runFuzz(
    'proxy v1/v2',
    fc.property(fc.oneof(v1, v2, anyBytes), fc.nat(), (buf, cut) => {
      check(buf);
      // Split delivery: any prefix must parse to 'more', an error, or a complete header.
      check(buf.subarray(0, buf.length === 0 ? 0 : cut % buf.length));
    }),
  );
  t.diagnostic(`runs ${runs}`);
});

test('fuzz: a valid v1 header round-trips', (t) => {
  const runs = runFuzz(
    'proxy v1 round trip',
    fc.property(fc.ipV4(), fc.ipV4(), fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 0, max: 65535 }), (src, dst, sp, dp) => {
      const line = `PROXY TCP4 ${src} ${dst} ${sp} ${dp}\r\n`;
      const r = parse(Buffer.from(line + 'EHLO x\r\n'));
      assert.ok(r !== 'more' && !(r instanceof Error), String(r));
      assert.deepEqual(r.info, { sourceAddress: src, sourcePort: sp });
      assert.equal(r.length, line.length);
    }),
  );
  t.diagnostic(`runs ${runs}`);
});
