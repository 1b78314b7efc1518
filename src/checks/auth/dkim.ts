// DKIM (RFC 6376, RFC 8463) around mailauth's verifier: caps the signatures verified per message,
// refuses keys above the configured size before any cryptography, and turns mailauth's results
// into the `dkim.signatures` records and the best overall result.
import { createPublicKey } from 'node:crypto';
import type { DKIMResult } from 'mailauth';
import type { MessageView } from '../../pipeline/check.ts';
import type { FactRecord } from '../../pipeline/facts.ts';
import { sliceChunks } from '../../message/spool.ts';
import { DKIM_RESULTS } from './auth-facts.ts';
import { formatDomain, type AuthStatusLike } from './mailauth-internals.ts';

export type DkimResult = (typeof DKIM_RESULTS)[number];

/** Renamed so mailauth does not see it; only in the copy given to the verifier, never relayed. */
const SKIPPED_PREFIX = 'X-Mailgate-Unverified-';

/** Parses a DKIM tag-list (RFC 6376 3.2) leniently: lower-cased tag names, whitespace removed from values. */
export function parseTags(value: string): Map<string, string> {
  const tags = new Map<string, string>();
  for (const part of value.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const k = part.slice(0, eq).trim().toLowerCase();
    if (k && !tags.has(k)) tags.set(k, part.slice(eq + 1).replace(/[ \t\r\n]+/g, ''));
  }
  return tags;
}

export interface SignatureTags {
  domain: string;
  selector: string;
  algorithm: string;
  identity: string;
  /** b= without whitespace, to match mailauth's results to the fields. */
  b: string;
}

export interface PreparedInput {
  /** The message for the verifier: the header block, then the body chunks, read only if asked for. */
  input: Iterable<Buffer> | AsyncIterable<Buffer>;
  /** DKIM-Signature fields in the message. */
  total: number;
  /** Those given to the verifier. */
  verified: SignatureTags[];
  /** Those not given to the verifier (over max_dkim_signatures). */
  skipped: SignatureTags[];
}

/** The field name anywhere in a header block (a cheap test before splitting it into fields). */
const DKIM_SIGNATURE_NAME = /dkim-signature/i;

/** Splits a raw header block into raw fields (each with its folding and CRLF). */
function rawFields(block: string): string[] {
  const out: string[] = [];
  const lines = block.split(/(?<=\n)/);
  for (const line of lines) {
    if (line === '\r\n' || line === '\n') break;
    if ((line.startsWith(' ') || line.startsWith('\t')) && out.length > 0) out[out.length - 1] += line;
    else out.push(line);
  }
  return out;
}

const fromDomainOf = (message: MessageView): string => {
  const from = message.headers.find((h) => h.name.toLowerCase() === 'from')?.value ?? '';
  const m = /@([^\s<>@,;"]+)\s*>?\s*$/.exec(from);
  return (m?.[1] ?? '').toLowerCase().replace(/\.$/, '');
};

/** Could this d= align with the From domain (relaxed, without the Public Suffix List)? */
const mayAlign = (d: string, from: string): boolean => d !== '' && from !== '' && (d === from || from.endsWith(`.${d}`) || d.endsWith(`.${from}`));

/**
 * The message as mailauth should see it. With more DKIM-Signature fields than `max`, the ones that
 * may align with From are kept first, then the others top-down; the rest are renamed in the copy
 * the verifier reads, so no key is fetched and no body hash computed for them. (A signature whose
 * h= covers DKIM-Signature fields can then fail: an acceptable cost of the cap.)
 */
export function prepareDkimInput(message: MessageView, max: number): PreparedInput {
  // Most mail has one signature or none: no field splitting unless the name occurs at all.
  const block = message.headerBytes.toString('latin1');
  if (!DKIM_SIGNATURE_NAME.test(block)) return { input: headThenBody(message.headerBytes, message), total: 0, verified: [], skipped: [] };
  const fields = rawFields(block);
  const sigIndexes = fields.flatMap((f, i) => (/^dkim-signature[ \t]*:/i.test(f) ? [i] : []));
  const tagsOf = (i: number): SignatureTags => {
    const t = parseTags((fields[i] ?? '').slice((fields[i] ?? '').indexOf(':') + 1));
    return { domain: t.get('d') ?? '', selector: t.get('s') ?? '', algorithm: t.get('a') ?? '', identity: t.get('i') ?? '', b: t.get('b') ?? '' };
  };
  if (sigIndexes.length <= max)
    return { input: headThenBody(message.headerBytes, message), total: sigIndexes.length, verified: sigIndexes.map(tagsOf), skipped: [] };

  const fromDomain = fromDomainOf(message);
  const preferred = sigIndexes.filter((i) => mayAlign(tagsOf(i).domain.toLowerCase(), fromDomain));
  const keep = new Set([...preferred, ...sigIndexes.filter((i) => !preferred.includes(i))].slice(0, max));
  const skipped: SignatureTags[] = [];
  const verified: SignatureTags[] = [];
  const rewritten = fields.map((f, i) => {
    if (!sigIndexes.includes(i)) return f;
    if (keep.has(i)) {
      verified.push(tagsOf(i));
      return f;
    }
    skipped.push(tagsOf(i));
    return SKIPPED_PREFIX + f;
  });
  const head = Buffer.from(rewritten.join('') + '\r\n', 'latin1');
  return { input: headThenBody(head, message), total: sigIndexes.length, verified, skipped };
}

/**
 * `head`, then the body chunks: the spool's own buffers while the message is in memory, else its
 * body stream. The stream is only opened when the verifier asks for more than the header block
 * (a message with nothing to hash never opens it; stopping a Readable early would build an
 * AbortError with a stack trace). headerBytes + the body is the whole message.
 */
function headThenBody(head: Buffer, message: MessageView): Iterable<Buffer> | AsyncIterable<Buffer> {
  const chunks = message.memoryChunks?.();
  return chunks ? headThenChunks(head, chunks, message.headerBytes.length) : headThenStream(head, message);
}

function* headThenChunks(head: Buffer, chunks: readonly Buffer[], bodyStart: number): Generator<Buffer> {
  yield head;
  yield* sliceChunks(chunks, bodyStart);
}

async function* headThenStream(head: Buffer, message: MessageView): AsyncGenerator<Buffer> {
  yield head;
  for await (const chunk of message.bodyStream()) yield Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
}

/** keyBits per key record: parsing an RSA key costs ~80 µs, and a sender's key repeats. */
const bitsOf = new Map<string, number | undefined>();

/** Size in bits of a DKIM key record's public key, or undefined if it can not be read. */
export function keyBits(record: string): number | undefined {
  if (bitsOf.has(record)) return bitsOf.get(record);
  const bits = readKeyBits(record);
  // bounded: records come from DNS answers of arbitrary senders
  if (bitsOf.size >= 1024) bitsOf.clear();
  bitsOf.set(record, bits);
  return bits;
}

function readKeyBits(record: string): number | undefined {
  const tags = parseTags(record);
  const p = tags.get('p');
  if (!p) return undefined;
  const k = (tags.get('k') ?? 'rsa').toLowerCase();
  if (k === 'ed25519') return 256;
  const der = Buffer.from(p, 'base64');
  for (const type of ['spki', 'pkcs1'] as const) {
    try {
      const key = createPublicKey({ key: der, format: 'der', type });
      return key.asymmetricKeyDetails?.modulusLength;
    } catch {
      // try the other encoding
    }
  }
  return undefined;
}

/**
 * Wraps a resolver so that a DKIM key record (`*._domainkey.*` TXT) with an RSA key larger than
 * `maxBits` is refused before mailauth parses it. Such a lookup fails with EINVALIDVAL (what
 * mailauth calls an unusable key); the DKIM result is then reported as policy by `signatureRecords`.
 */
export function keySizeGuard(resolve: (name: string, rrtype: string) => Promise<unknown[]>, maxBits: number) {
  const oversized = new Map<string, number>();
  const guarded = async (name: string, rrtype: string): Promise<unknown[]> => {
    const records = await resolve(name, rrtype);
    if (String(rrtype).toUpperCase() === 'TXT' && /\._domainkey\./i.test(name)) {
      const first = records[0];
      const text = Array.isArray(first) ? first.join('') : typeof first === 'string' ? first : '';
      const bits = keyBits(text);
      if (bits !== undefined && bits > maxBits) {
        oversized.set(name.toLowerCase().replace(/\.$/, ''), bits);
        const err = new Error(`key of ${bits} bits is larger than ${maxBits}`) as Error & { code: string };
        err.code = 'EINVALIDVAL';
        throw err;
      }
    }
    return records;
  };
  return { resolve: guarded, oversized };
}

const ORDER: readonly DkimResult[] = ['pass', 'temperror', 'fail', 'policy', 'neutral', 'permerror', 'none'];

/** The best result over all signatures (none when there are none). */
export function bestResult(results: readonly string[]): DkimResult {
  let best: DkimResult = 'none';
  for (const r of results) {
    const res = (DKIM_RESULTS as readonly string[]).includes(r) ? (r as DkimResult) : 'neutral';
    if (ORDER.indexOf(res) < ORDER.indexOf(best)) best = res;
  }
  return best;
}

/**
 * Lenient acceptances that RFC 6376 makes a PERMFAIL and that matter for who is authenticated:
 * an i= that is not d= or a subdomain of it, or a subdomain i= with a t=s key (6.1.1, 3.6.1).
 * (mailauth's other lenient acceptances, such as q=dns from the drafts, are kept.)
 */
const PERMFAIL_WARNINGS: Record<string, string> = {
  'identity-domain': 'domain mismatch',
};

export interface SignatureOutcome {
  record: FactRecord;
  /** Status as written into Authentication-Results. */
  status: AuthStatusLike;
}

/** Turns mailauth's results (plus the skipped ones) into records and A-R statuses. */
export function signatureOutcomes(
  results: readonly DKIMResult[],
  opts: {
    oversized: ReadonlyMap<string, number>;
    verified: readonly SignatureTags[];
    skipped: readonly SignatureTags[];
    maxKeyBits: number;
    maxSignatures: number;
    dkimAligned?: ReadonlySet<string> | undefined;
  },
): SignatureOutcome[] {
  const out: SignatureOutcome[] = [];
  const seen = new Set(results.map((r) => (r.signature ?? '').replace(/\s+/g, '')));
  // mailauth's lenient mode leaves out signatures it can not process at all (unknown a= or c=,
  // no d= or s=); they are still signatures, reported as neutral (RFC 8601 2.7.1), not as "none".
  const unprocessed = opts.verified.filter((t) => !seen.has(t.b));
  for (const r of results) {
    if (!r.signingDomain && r.status.result === 'none') continue; // mailauth's "message not signed" row
    const status: AuthStatusLike = { ...(r.status as AuthStatusLike) };
    const domain = r.signingDomain ?? '';
    const selector = r.selector ?? '';
    const keyName = `${selector}._domainkey.${domain}`.toLowerCase();
    let bits: number | null = r.modulusLength ?? (r.rr ? (keyBits(r.rr) ?? null) : null);
    // mailauth's lenient mode passes a few signatures RFC 6376 says to PERMFAIL; a gateway
    // should not let those count for DMARC (mailauth reports them as warnings).
    const permfail = status.result === 'pass' ? (r.status.warnings ?? []).find((w) => w in PERMFAIL_WARNINGS) : undefined;
    if (permfail) {
      status.result = 'neutral';
      status.comment = PERMFAIL_WARNINGS[permfail];
    }
    const big = opts.oversized.get(keyName);
    if (big !== undefined) {
      bits = big;
      status.result = 'policy';
      status.comment = `key larger than ${opts.maxKeyBits} bits`;
      status.policy = { 'dkim-rules': 'key-too-large' };
    }
    const aligned = status.result === 'pass' && (opts.dkimAligned ? opts.dkimAligned.has(formatDomain(domain)) : Boolean(r.status.aligned));
    out.push({
      record: {
        result: status.result,
        domain,
        selector,
        identity: typeof r.status.header?.i === 'string' ? (r.status.header.i as string) : `@${domain}`,
        algorithm: r.algo ?? '',
        key_bits: bits,
        body_length_limited: r.canonBodyLengthLimited === true,
        body_unsigned_bytes: r.status.underSized ?? 0,
        aligned,
        testing: r.status.testing === true,
        comment: typeof status.comment === 'string' ? status.comment : '',
      },
      status,
    });
  }
  const extra = (s: SignatureTags, result: string, comment: string, policy?: string): SignatureOutcome => ({
    record: {
      result,
      domain: s.domain,
      selector: s.selector,
      identity: s.identity || `@${s.domain}`,
      algorithm: s.algorithm,
      key_bits: null,
      body_length_limited: false,
      body_unsigned_bytes: 0,
      aligned: false,
      testing: false,
      comment,
    },
    status: { result, comment, ...(policy ? { policy: { 'dkim-rules': policy } } : {}), header: { i: `@${s.domain}`, s: s.selector, a: s.algorithm } },
  });
  for (const s of unprocessed) out.push(extra(s, 'neutral', 'signature not processed: unsupported algorithm or canonicalization, or required tag missing'));
  for (const s of opts.skipped) out.push(extra(s, 'policy', `not verified: more than ${opts.maxSignatures} signatures`, 'too-many-signatures'));
  return out;
}
