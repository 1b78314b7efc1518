// BATV sign/verify (draft-levine-smtp-batv-01 prvs=): round trips, tag expiry across the day-number
// wrap, key rotation and tampered tags.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { batvSign, batvVerify, dayNumber, isBatvTagged, type BatvKeyring } from '../../src/checks/backscatter/batv.ts';

const DAY = 86_400_000;
const ring: BatvKeyring = { keys: [{ id: 1, secret: 'first-secret-0123456789' }], signId: 1, maxAgeDays: 7 };
const rotated: BatvKeyring = {
  keys: [
    { id: 2, secret: 'second-secret-0123456789' },
    { id: 1, secret: 'first-secret-0123456789' },
  ],
  signId: 2,
  maxAgeDays: 7,
};
const now = Date.UTC(2026, 11, 1, 12);

test('format: prvs=KDDDSSSSSS=user@domain with K = key id and DDD = expiry day mod 1000', () => {
  const tagged = batvSign('alice@example.test', ring, now);
  const ddd = String((dayNumber(now) + 7) % 1000).padStart(3, '0');
  assert.match(tagged, new RegExp(`^prvs=1${ddd}[0-9a-f]{6}=alice@example\\.test$`));
  assert.equal(batvSign(tagged, ring, now), tagged, 'signing twice keeps one tag');
});

const cases: Array<{ desc: string; address: () => string; ring: BatvKeyring; at: number; status: string; plain?: string }> = [
  { desc: 'fresh tag', address: () => batvSign('alice@example.test', ring, now), ring, at: now, status: 'valid', plain: 'alice@example.test' },
  { desc: 'on the expiry day', address: () => batvSign('alice@example.test', ring, now), ring, at: now + 7 * DAY, status: 'valid' },
  { desc: 'the day after expiry', address: () => batvSign('alice@example.test', ring, now), ring, at: now + 8 * DAY, status: 'expired' },
  { desc: '500 days later', address: () => batvSign('alice@example.test', ring, now), ring, at: now + 500 * DAY, status: 'expired' },
  {
    desc: 'signed on day 996 (expires 003), checked on day 000 after the wrap',
    address: () => batvSign('alice@example.test', ring, dayStart(996)),
    ring,
    at: dayStart(996) + 4 * DAY,
    status: 'valid',
  },
  {
    desc: 'signed on day 996 (expires 003), checked on day 004 after the wrap',
    address: () => batvSign('alice@example.test', ring, dayStart(996)),
    ring,
    at: dayStart(996) + 8 * DAY,
    status: 'expired',
  },
  {
    desc: 'expiry day 002 checked on day 998 (wraps)',
    address: () => batvSign('alice@example.test', ring, dayStart(995)),
    ring,
    at: dayStart(998),
    status: 'valid',
  },
  { desc: 'case of the address changed by a relay', address: () => upperLocal(batvSign('alice@example.test', ring, now)), ring, at: now, status: 'valid' },
  { desc: 'old key still verifies after rotation', address: () => batvSign('alice@example.test', ring, now), ring: rotated, at: now, status: 'valid' },
  { desc: 'new key signs after rotation', address: () => batvSign('alice@example.test', rotated, now), ring: rotated, at: now, status: 'valid' },
  {
    desc: 'key retired from the ring',
    address: () => batvSign('alice@example.test', rotated, now),
    ring,
    at: now,
    status: 'unknown-key',
    plain: 'alice@example.test',
  },
  { desc: 'tampered signature', address: () => flipSig(batvSign('alice@example.test', ring, now)), ring, at: now, status: 'bad-signature' },
  { desc: 'tampered day (extends lifetime)', address: () => bumpDay(batvSign('alice@example.test', ring, now)), ring, at: now, status: 'bad-signature' },
  {
    desc: 'tag moved to another user',
    address: () => batvSign('alice@example.test', ring, now).replace('=alice@', '=bob@'),
    ring,
    at: now,
    status: 'bad-signature',
  },
  {
    desc: 'tag signed with another secret',
    address: () => batvSign('alice@example.test', { ...ring, keys: [{ id: 1, secret: 'attacker-guess-000000' }] }, now),
    ring,
    at: now,
    status: 'bad-signature',
  },
  { desc: 'untagged', address: () => 'alice@example.test', ring, at: now, status: 'untagged', plain: 'alice@example.test' },
  { desc: 'prvs= without a tag', address: () => 'prvs=alice@example.test', ring, at: now, status: 'malformed' },
  { desc: 'non-hex signature', address: () => 'prvs=1234zzzzzz=alice@example.test', ring, at: now, status: 'malformed' },
  { desc: 'no domain', address: () => 'prvs=1234abcdef=alice', ring, at: now, status: 'malformed' },
];

for (const c of cases) {
  test(`verify: ${c.desc}`, () => {
    const addr = c.address();
    const v = batvVerify(addr, c.ring, c.at);
    assert.equal(v.status, c.status, addr);
    if (c.plain) assert.equal(v.plain, c.plain);
  });
}

test('isBatvTagged', () => {
  assert.equal(isBatvTagged(batvSign('a@b.test', ring, now)), true);
  assert.equal(isBatvTagged('PRVS=1234abcdef=a@b.test'), true);
  assert.equal(isBatvTagged('a@b.test'), false);
  assert.equal(isBatvTagged('prvs=' + 'x'.repeat(300)), false, 'over-long input is not parsed');
});

test('signing with a key id missing from the ring is a configuration bug', () => {
  assert.throws(() => batvSign('a@b.test', { ...ring, signId: 9 }, now), /key 9/);
});

function dayStart(dddWanted: number): number {
  // The first day at or after `now` whose number mod 1000 is dddWanted.
  const d = dayNumber(now);
  return (d + ((dddWanted - (d % 1000) + 1000) % 1000)) * DAY + 3_600_000;
}
function upperLocal(a: string): string {
  const at = a.lastIndexOf('=');
  return a.slice(0, at + 1) + a.slice(at + 1).toUpperCase();
}
function flipSig(a: string): string {
  const c = a[14] === '0' ? '1' : '0';
  return a.slice(0, 14) + c + a.slice(15);
}
function bumpDay(a: string): string {
  const ddd = (Number(a.slice(6, 9)) + 1) % 1000;
  return a.slice(0, 6) + String(ddd).padStart(3, '0') + a.slice(9);
}
