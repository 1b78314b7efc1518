// mailauth's DKIM verifier fed directly, without its Writable: dkimVerify() pipes the message
// through MessageParser, which walks every byte in JavaScript twice (bare-LF repair, then the
// header/body split one byte at a time through a 4-byte array) behind an async _write per chunk.
// Here the same two steps are done with Buffer.indexOf, and the verifier's own methods are called
// in the same order with the same bytes (emitHeaders, nextChunk, finish), so the results are
// those of dkimVerify() (test/unit/dkim-feed.test.ts compares them). When the header block asks
// for no body hash (no DKIM-Signature, no ARC-Message-Signature, no seal), the body is not read.
// Keys come from key-memo.ts's cache (parsed once per record) instead of mailauth's per-message one.
// Body hashes are dkim-body-hash.ts's, not mailauth's per-byte hashers.
// Pinned to mailauth 7.1.0's lib/dkim/message-parser.js and lib/dkim/verify.js.
import type { DKIMVerifyOptions, DKIMVerifyResult } from 'mailauth';
import { DkimBodyHash, type MimeStartFinder } from './dkim-body-hash.ts';
import { createKeyCache } from './key-memo.ts';
import { DkimVerifier } from './mailauth-internals.ts';

const CR = 0x0d;
const LF = 0x0a;
const CRLF = Buffer.from('\r\n');
const END_OF_HEADER = Buffer.from('\n\r\n');

/**
 * Every LF not preceded by CR becomes CRLF (MessageParser.ensureLinebreaks); `prev` is the byte
 * before the chunk (-1 at the start). Returns the chunk itself when there is none.
 */
export function repairLineBreaks(chunk: Buffer, prev: number): Buffer {
  let i = chunk.indexOf(LF);
  if (i < 0) return chunk;
  let parts: Buffer[] | undefined;
  let from = 0;
  while (i >= 0) {
    const before = i === 0 ? prev : (chunk[i - 1] as number);
    if (before !== CR) {
      parts ??= [];
      if (i > from) parts.push(chunk.subarray(from, i));
      parts.push(CRLF);
      from = i + 1;
    }
    i = chunk.indexOf(LF, i + 1);
  }
  if (!parts) return chunk;
  if (from < chunk.length) parts.push(chunk.subarray(from));
  return Buffer.concat(parts);
}

/**
 * Where the header block ends in `buf` (the offset after its empty line), given `seen` bytes of
 * header before it and `tail`, the last two of them; -1 if not in this chunk. After the repair
 * every LF follows a CR, so MessageParser's test reduces to: the message starts with CRLF, or
 * the first LF CR LF.
 */
function headerEndIn(buf: Buffer, seen: number, tail: Buffer): number {
  if (seen === 0 && buf.length >= 2 && buf[0] === CR && buf[1] === LF) return 2;
  if (seen === 1 && tail[tail.length - 1] === CR && buf[0] === LF) return 1;
  if (tail.length > 0) {
    // The LF CR LF may start in the bytes before this chunk.
    const joined = Buffer.concat([tail, buf.subarray(0, 2)]);
    const j = joined.indexOf(END_OF_HEADER);
    if (j >= 0) return j + 3 - tail.length;
  }
  const k = buf.indexOf(END_OF_HEADER);
  return k < 0 ? -1 : k + 3;
}

interface Verifier {
  state: string;
  headerChunks: Buffer[];
  headers: unknown;
  bodyHashes: Map<string, unknown>;
  headerFrom: string[];
  fromFields: number;
  envelopeFrom: string | false;
  results: DKIMVerifyResult['results'];
  arc?: object;
  seal?: unknown;
  keyCache: unknown;
  emitHeaders(chunk?: Buffer): Promise<void>;
  nextChunk(chunk: Buffer): Promise<void>;
  finish(): Promise<void>;
}

/** dkimVerify(input, options) for a message given as chunks (a stream of the whole message). */
export async function verifyDkim(input: AsyncIterable<Buffer | string> | Iterable<Buffer>, options: DKIMVerifyOptions): Promise<DKIMVerifyResult> {
  const v = new DkimVerifier(options) as unknown as Verifier;
  // Keys parsed once per key record (key-memo.ts); ARC validation reuses this cache through the
  // chain data's hidden keyCache, as with mailauth's own.
  v.keyCache = createKeyCache(options.resolver as unknown as Parameters<typeof createKeyCache>[0]);
  if (v.arc) Object.defineProperty(v.arc, 'keyCache', { value: v.keyCache, enumerable: false, configurable: true, writable: true });
  let prev = -1;
  let tail: Buffer = Buffer.alloc(0);
  let seen = 0;
  for await (const raw of input) {
    const original = typeof raw === 'string' ? Buffer.from(raw) : raw;
    if (original.length === 0) continue;
    let chunk = repairLineBreaks(original, prev);
    prev = original[original.length - 1] as number;
    if (v.state === 'header') {
      const end = headerEndIn(chunk, seen, tail);
      if (end < 0) {
        v.headerChunks.push(chunk);
        seen += chunk.length;
        tail = Buffer.concat([tail, chunk]).subarray(-2);
        continue;
      }
      await v.emitHeaders(chunk.subarray(0, end));
      ownBodyHashes(v.bodyHashes);
      chunk = chunk.subarray(end);
      // Nothing the header block asked for reads the body: stop reading it.
      if (v.bodyHashes.size === 0) break;
      if (chunk.length === 0) continue;
    }
    await v.nextChunk(chunk);
  }
  await v.finish();
  return resultOf(v);
}

/** What the verifier's body hashers hold that ownBodyHashes() takes over. */
interface MailauthBodyHash {
  constructor: { name: string };
  maxBodyLength?: number | false;
  byteLength?: number;
  mimeStructureStartFinder?: MimeStartFinder;
}

/**
 * Replaces the verifier's body hashers (made by emitHeaders, keyed `canon:algo:l=`, before any
 * body byte) with dkim-body-hash.ts's: same canonicalisation, algorithm and l=, and mailauth's own
 * MIME structure finder, already given the boundary, carried over.
 */
function ownBodyHashes(hashes: Map<string, unknown>): void {
  for (const [key, value] of hashes) {
    const old = value as MailauthBodyHash;
    const canon = old.constructor.name === 'RelaxedHash' ? 'relaxed' : old.constructor.name === 'SimpleHash' ? 'simple' : undefined;
    const algorithm = (key.split(':')[1] || 'sha256').split('-').pop()?.toLowerCase() ?? 'sha256';
    if (!canon || old.byteLength !== 0 || !['sha256', 'sha1'].includes(algorithm)) continue;
    hashes.set(key, new DkimBodyHash(canon, algorithm, old.maxBodyLength, old.mimeStructureStartFinder));
  }
}

/** The object dkimVerify() returns: headers, arc and seal as hidden properties. */
function resultOf(v: Verifier): DKIMVerifyResult {
  const result = { headerFrom: v.headerFrom, fromFields: v.fromFields, envelopeFrom: v.envelopeFrom, results: v.results } as DKIMVerifyResult;
  for (const key of ['headers', 'arc', 'seal'] as const) {
    if (v[key]) Object.defineProperty(result, key, { enumerable: false, configurable: false, writable: false, value: v[key] });
  }
  return result;
}
