// verifyDkim (mailauth's DKIM verifier fed with Buffer.indexOf instead of its Writable) against
// mailauth's own dkimVerify: the same results, headers, ARC data and seal body hash, for signed,
// sealed and unsigned messages, bare LFs, odd header endings, and every way of cutting the input
// into chunks around the end of the header block.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { dkimSign, sealMessage } from 'mailauth';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import type { DKIMVerifyOptions, DKIMVerifyResult } from 'mailauth';
import { repairLineBreaks, verifyDkim } from '../../src/checks/auth/dkim-feed.ts';

const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
const keyRecord = `v=DKIM1; k=rsa; p=${publicKey.export({ format: 'der', type: 'spki' }).toString('base64')}`;
const resolver = async (name: string, type: string): Promise<string[][]> => {
  if (type === 'TXT' && /^(s1|arc)\._domainkey\.example\.com$/i.test(name)) return [[keyRecord]];
  throw Object.assign(new Error(`no ${type} ${name}`), { code: 'ENOTFOUND' });
};

const plain = (body = 'Hello,\r\n\r\n  a  body  line \t\r\nlast line\r\n\r\n\r\n'): string =>
  [
    'From: Alice <alice@example.com>',
    'To: bob@example.test',
    'Subject: a test',
    'Content-Type: multipart/mixed; boundary="b1"',
    'Date: Mon, 23 Nov 2026 10:00:00 +0000',
    '',
    body,
  ].join('\r\n');

async function signed(raw: string, canonicalization: string): Promise<string> {
  const one = { signingDomain: 'example.com', selector: 's1', privateKey: pem, canonicalization };
  const res = await dkimSign(raw, { ...one, signatureData: [one], signTime: new Date('2026-11-23T10:00:00Z') });
  assert.equal(res.errors.length, 0);
  return res.signatures + raw;
}

async function sealed(raw: string): Promise<string> {
  const seal = await sealMessage(Buffer.from(raw), {
    signingDomain: 'example.com',
    selector: 'arc',
    privateKey: pem,
    authResults: 'list.example.com; dkim=pass header.d=example.com; dmarc=pass header.from=example.com',
    cv: 'none',
    signTime: new Date('2026-11-23T10:00:00Z'),
  });
  return seal.toString() + raw;
}

/** What the checks read of a DKIM run, comparable with deepEqual. */
function view(r: DKIMVerifyResult): unknown {
  const hidden = r as DKIMVerifyResult & { headers?: { parsed: Array<{ key: string; line: Buffer }>; original: Buffer }; seal?: { bodyHash?: string } };
  const arc = r.arc as { chain?: unknown[] | false; lastEntry?: { messageSignature?: unknown }; error?: Error } | undefined;
  return {
    json: JSON.parse(JSON.stringify(r)),
    headers: hidden.headers?.parsed.map((h) => [h.key, h.line.toString('latin1')]),
    original: hidden.headers?.original.toString('latin1'),
    arcChain: Array.isArray(arc?.chain) ? arc.chain.length : arc?.chain,
    arcSignature: JSON.parse(JSON.stringify(arc?.lastEntry?.messageSignature ?? null)),
    arcError: arc?.error?.message,
    sealBodyHash: hidden.seal?.bodyHash,
  };
}

const options = (seal: boolean): DKIMVerifyOptions => ({
  resolver: resolver as unknown as DKIMVerifyOptions['resolver'],
  curTime: new Date('2026-11-24T10:00:00Z'),
  sender: 'alice@example.com',
  ...(seal ? { seal: { signingDomain: 'gw.example.org', selector: 's', privateKey: pem } } : {}),
});

/** The message cut into chunks of `size` bytes (0: one chunk). */
const chunks = (buf: Buffer, size: number): Buffer[] => {
  if (size === 0) return [buf];
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
};

/** Two chunks cut at `at`. */
const cutAt = (buf: Buffer, at: number): Buffer[] => [buf.subarray(0, at), buf.subarray(at)].filter((b) => b.length > 0);

async function same(desc: string, parts: Buffer[], seal = false): Promise<void> {
  const expected = view(await dkimVerify(Readable.from(parts), options(seal)));
  const got = view(await verifyDkim(Readable.from(parts), options(seal)));
  assert.deepEqual(got, expected, desc);
}

describe('verifyDkim gives what dkimVerify gives', async () => {
  const relaxed = await signed(plain(), 'relaxed/relaxed');
  const simple = await signed(plain(), 'simple/simple');
  const cases: Array<{ desc: string; raw: string; seal?: boolean }> = [
    { desc: 'signed, relaxed', raw: relaxed },
    { desc: 'signed, simple', raw: simple },
    { desc: 'signed and sealed by us', raw: relaxed, seal: true },
    { desc: 'signed, body altered', raw: relaxed.replace('last line', 'last  line!') },
    { desc: 'signed, From altered', raw: relaxed.replace('alice@example.com', 'mallory@example.com') },
    { desc: 'ARC sealed upstream', raw: await sealed(relaxed) },
    { desc: 'unsigned', raw: plain() },
    { desc: 'unsigned, sealed by us', raw: plain(), seal: true },
    { desc: 'bare LF in the body', raw: (await signed(plain('one\ntwo\r\nthree\n\n'), 'relaxed/relaxed')).replace('one\r\ntwo', 'one\ntwo') },
    { desc: 'bare LFs everywhere', raw: relaxed.replace(/\r\n/g, '\n') },
    { desc: 'bare LF header end', raw: 'From: a@example.com\r\nSubject: x\n\nbody\r\n' },
    { desc: 'LF CR LF header end', raw: 'From: a@example.com\n\r\nbody\r\n' },
    { desc: 'bare CRs', raw: 'From: a@example.com\r\nSubject: x\r\r\n\r\nbo\rdy\r\r\n' },
    { desc: 'no header end', raw: 'From: a@example.com\r\nSubject: x\r\n' },
    { desc: 'empty header block', raw: '\r\nFrom: a@example.com\r\n\r\nbody\r\n' },
    { desc: 'bare LF first', raw: '\nFrom: a@example.com\r\n\r\nbody\r\n' },
    { desc: 'empty message', raw: '' },
  ];
  for (const c of cases) {
    test(c.desc, async () => {
      const raw = Buffer.from(c.raw, 'latin1');
      for (const size of [0, 1, 2, 3, 7, 64]) await same(`${c.desc}, chunks of ${size}`, chunks(raw, size), c.seal);
      // Every cut within a few bytes of the end of the header block, and of the start.
      const end = Math.max(raw.indexOf('\n\r\n'), raw.indexOf('\n\n'), 0);
      for (let at = 1; at < Math.min(raw.length, 6); at++) await same(`${c.desc}, cut at ${at}`, cutAt(raw, at), c.seal);
      for (let at = Math.max(1, end - 3); at < Math.min(raw.length, end + 5); at++) await same(`${c.desc}, cut at ${at}`, cutAt(raw, at), c.seal);
    });
  }

  test('the results are real: a pass, a body hash failure and a none', async () => {
    const pass = await verifyDkim(Readable.from([Buffer.from(relaxed)]), options(false));
    assert.equal(pass.results[0]?.status.result, 'pass');
    const altered = await verifyDkim(Readable.from([Buffer.from(relaxed.replace('last line', 'last line!'))]), options(false));
    assert.equal(altered.results[0]?.status.comment, 'body hash did not verify');
    const none = await verifyDkim(Readable.from([Buffer.from(plain())]), options(false));
    assert.equal(none.results[0]?.status.result, 'none');
    assert.deepEqual(none.headerFrom, ['alice@example.com']);
  });
});

describe('an unsigned message without a seal: the body is not read', () => {
  test('the stream stops after the header block', async () => {
    let bodyChunksRead = 0;
    async function* parts(): AsyncGenerator<Buffer> {
      yield Buffer.from('From: a@example.com\r\nSubject: x\r\n\r\nfirst body chunk\r\n');
      for (let i = 0; i < 100; i++) {
        bodyChunksRead++;
        yield Buffer.from('more body\r\n');
      }
    }
    const r = await verifyDkim(parts(), options(false));
    assert.equal(bodyChunksRead, 0);
    assert.equal(r.results[0]?.status.result, 'none');
  });
  test('with a seal to make, it is (the seal needs the body hash)', async () => {
    let bodyChunksRead = 0;
    async function* parts(): AsyncGenerator<Buffer> {
      yield Buffer.from('From: a@example.com\r\nSubject: x\r\n\r\n');
      for (let i = 0; i < 3; i++) {
        bodyChunksRead++;
        yield Buffer.from('more body\r\n');
      }
    }
    await verifyDkim(parts(), options(true));
    assert.equal(bodyChunksRead, 3);
  });
});

describe('repairLineBreaks', () => {
  const cases = [
    { desc: 'no LF', input: 'abc', prev: -1, expected: 'abc' },
    { desc: 'CRLF only', input: 'a\r\nb\r\n', prev: -1, expected: 'a\r\nb\r\n' },
    { desc: 'bare LF', input: 'a\nb', prev: -1, expected: 'a\r\nb' },
    { desc: 'LF first, CR before the chunk', input: '\nb', prev: 0x0d, expected: '\nb' },
    { desc: 'LF first, no CR before', input: '\nb', prev: 0x61, expected: '\r\nb' },
    { desc: 'LF LF', input: '\r\n\n', prev: -1, expected: '\r\n\r\n' },
    { desc: 'CR CR LF', input: '\r\r\n', prev: -1, expected: '\r\r\n' },
  ];
  for (const c of cases) test(c.desc, () => assert.equal(repairLineBreaks(Buffer.from(c.input, 'latin1'), c.prev).toString('latin1'), c.expected));
});
