// The DKIM key memo: a key record is parsed once, but looked up for every message, and a changed
// record (a rotated or revoked key) is what the next message is verified with.
import assert from 'node:assert/strict';
import { generateKeyPairSync, KeyObject, sign, verify } from 'node:crypto';
import { beforeEach, describe, test } from 'node:test';
import { clearKeyMemo, createKeyCache } from '../../src/checks/auth/key-memo.ts';
import { getPublicKey } from '../../src/checks/auth/mailauth-internals.ts';

const rsa = () => generateKeyPairSync('rsa', { modulusLength: 2048 });
const record = (k: KeyObject): string => `v=DKIM1; k=rsa; p=${k.export({ format: 'der', type: 'spki' }).toString('base64')}`;
const a = rsa();
const b = rsa();

/** A resolver serving `zone` (name → TXT text), counting its lookups. */
function zoneResolver(zone: Map<string, string>) {
  const calls: string[] = [];
  const resolve = async (name: string, type: string): Promise<string[][]> => {
    calls.push(`${type} ${name}`);
    const txt = zone.get(name);
    if (txt === undefined) throw Object.assign(new Error('nxdomain'), { code: 'ENOTFOUND' });
    return [[txt]];
  };
  return { resolve, calls };
}

beforeEach(() => clearKeyMemo());

describe('key memo', () => {
  test('the same record is parsed once, looked up every time', async () => {
    const zone = new Map([['s1._domainkey.example.com', record(a.publicKey)]]);
    const { resolve, calls } = zoneResolver(zone);
    const first = await createKeyCache(resolve).get('DKIM', 's1._domainkey.example.com', 1024, { hashAlgo: 'sha256' });
    const second = await createKeyCache(resolve).get('DKIM', 's1._domainkey.example.com', 1024, { hashAlgo: 'sha256' });
    assert.equal(calls.length, 2);
    assert.ok(first.publicKey instanceof KeyObject);
    assert.equal(first.publicKey, second.publicKey, 'the second message reuses the parsed key');
    // what mailauth itself returns for the record, PEM text included
    const own = await getPublicKey('DKIM', 's1._domainkey.example.com', 1024, resolve, { hashAlgo: 'sha256' });
    assert.deepEqual({ ...first, publicKey: String(first.publicKey) }, own);
  });

  test('one lookup per question within a message (as mailauth caches it)', async () => {
    const { resolve, calls } = zoneResolver(new Map([['s1._domainkey.example.com', record(a.publicKey)]]));
    const cache = createKeyCache(resolve);
    await Promise.all([cache.get('DKIM', 's1._domainkey.example.com', 1024, {}), cache.get('AS', 's1._domainkey.example.com', 1024, {})]);
    assert.equal(calls.length, 1);
  });

  test('a rotated key is used at once', async () => {
    const zone = new Map([['s1._domainkey.example.com', record(a.publicKey)]]);
    const { resolve } = zoneResolver(zone);
    const data = Buffer.from('signed data');
    const sigB = sign('sha256', data, b.privateKey);
    const before = await createKeyCache(resolve).get('DKIM', 's1._domainkey.example.com', 1024, {});
    zone.set('s1._domainkey.example.com', record(b.publicKey));
    const after = await createKeyCache(resolve).get('DKIM', 's1._domainkey.example.com', 1024, {});
    assert.notEqual(before.publicKey, after.publicKey);
    assert.equal(verify('sha256', data, after.publicKey, sigB), true);
  });

  const refused = [
    { desc: 'revoked key (empty p=)', txt: 'v=DKIM1; k=rsa; p=', code: 'EINVALIDVAL' },
    { desc: 'a key too short for min_key_bits', txt: record(generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey), min: 2048, code: 'ESHORTKEY' },
    { desc: 'a key record that does not allow sha256', txt: `${record(a.publicKey)}; h=sha1`, code: 'EINVALIDHASH' },
  ];
  for (const c of refused) {
    test(`${c.desc}: refused every time`, async () => {
      const { resolve } = zoneResolver(new Map([['s1._domainkey.example.com', c.txt]]));
      for (let i = 0; i < 2; i++) {
        await assert.rejects(createKeyCache(resolve).get('DKIM', 's1._domainkey.example.com', c.min ?? 1024, { hashAlgo: 'sha256' }), { code: c.code });
      }
    });
  }

  test('min_key_bits is part of the memo: a key accepted at 1024 is still refused at 4096', async () => {
    const { resolve } = zoneResolver(new Map([['s1._domainkey.example.com', record(a.publicKey)]]));
    await createKeyCache(resolve).get('DKIM', 's1._domainkey.example.com', 1024, {});
    await assert.rejects(createKeyCache(resolve).get('DKIM', 's1._domainkey.example.com', 4096, {}), { code: 'ESHORTKEY' });
  });
});
