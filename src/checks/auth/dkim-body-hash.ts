// The DKIM body hash (RFC 6376 3.4.3 simple, 3.4.4 relaxed, 3.5 l=) computed straight from the
// spool's chunks: a chunk whose lines need no change (no HTAB, no run of spaces, no space before
// CRLF) goes to the hash as it is, found with three native scans; only the lines that do are
// rewritten, into one reused scratch buffer. It stands in for mailauth's per-byte JavaScript
// hashers (lib/dkim/body/), which copy the carried partial line onto every chunk and allocate a
// buffer per rewritten line; the bytes hashed, and every length the verifier reads, are the same
// (test/unit/dkim-body-hash.test.ts compares them on generated bodies). Input: the body with
// every LF after a CR (dkim-feed.ts repairs bare LFs first, as mailauth's parser does).
import { createHash, type Hash } from 'node:crypto';

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const CRLF = Buffer.from('\r\n');
const TWO_SPACES = Buffer.from('  ');
const SPACE_CRLF = Buffer.from(' \r\n');
/** Empty lines held back at the end are hashed from here, a batch at a time. */
const CRLF_RUN = Buffer.alloc(1024, '\r\n');

/** What mailauth's verifier reads of a body hasher (dkim-verifier.js finalChunk/verifySignature). */
export interface MimeStartFinder {
  update(chunk: Buffer): void;
  getMimeStructureStart(): number;
  setBoundary?(boundary: string): void;
}

export type BodyCanonicalization = 'simple' | 'relaxed';

/** Chunks in, `digest()` out; counts as mailauth's hashers count (raw, canonical, hashed bytes). */
export class DkimBodyHash {
  /** Body bytes given to update(). */
  byteLength = 0;
  /** Canonical bytes, past l= too (what is left unsigned is reported from it). */
  canonicalizedLength = 0;
  /** Canonical bytes hashed (at most l=). */
  bodyHashedBytes = 0;
  readonly maxBodyLength: number | false | undefined;
  maxSizeReached: boolean;
  /** Set by finalChunk() in the verifier. */
  hash?: string;
  mimeStructureStart?: number;

  readonly #relaxed: boolean;
  readonly #hash: Hash;
  readonly #finder: MimeStartFinder | undefined;
  readonly #limit: number;
  /** CRLF pairs at the end of what was canonicalised so far: hashed only if content follows. */
  #pendingPairs = 0;
  /** simple: a CR held after them (it may be the start of a pair, or content). */
  #pendingCr = false;
  /** relaxed: the partial last line (after the last LF), copied here until its LF comes. */
  #carry: Buffer = Buffer.alloc(0);
  #carryLength = 0;
  /** relaxed: where rewritten lines are built. */
  #scratch: Buffer = Buffer.alloc(0);

  constructor(canonicalization: BodyCanonicalization, algorithm: string, maxBodyLength: number | false | undefined, finder?: MimeStartFinder) {
    this.#relaxed = canonicalization === 'relaxed';
    this.#hash = createHash(algorithm);
    this.maxBodyLength = maxBodyLength;
    this.maxSizeReached = maxBodyLength === 0;
    this.#limit = typeof maxBodyLength === 'number' && !Number.isNaN(maxBodyLength) && maxBodyLength >= 0 ? maxBodyLength : -1;
    this.#finder = finder;
  }

  update(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.byteLength += chunk.length;
    if (this.#relaxed) this.#relaxedUpdate(chunk);
    else this.#simpleUpdate(chunk);
  }

  digest(encoding: 'base64' | 'hex'): string {
    if (this.#relaxed) {
      // The last line has no line ending: canonicalised as any other line, then (3.4.4) a CRLF
      // ends a non-empty body; empty lines at the end were never hashed.
      if (this.#carryLength > 0) this.#pushCanonical(this.#canonicalLine(this.#carry, 0, this.#carryLength));
      this.#carryLength = 0;
      if (this.canonicalizedLength > 0) this.#emit(CRLF);
    } else {
      // 3.4.3: *CRLF at the end becomes one CRLF; a CR that no LF followed is content.
      if (this.#pendingCr) {
        this.#drainPairs();
        this.#emit(CRLF.subarray(0, 1));
      }
      this.#emit(CRLF);
    }
    this.#pendingPairs = 0;
    return this.#hash.digest(encoding);
  }

  getMimeStructureStart(): number {
    return this.#finder ? this.#finder.getMimeStructureStart() : 0;
  }

  setContentType(contentType: { value: string; params: Record<string, string | undefined> }): void {
    const boundary = contentType.params.boundary;
    if (/^multipart\//i.test(contentType.value) && boundary && this.#finder?.setBoundary) this.#finder.setBoundary(boundary);
  }

  #simpleUpdate(input: Buffer): void {
    let d = input;
    if (this.#pendingCr) {
      this.#pendingCr = false;
      if (d[0] === LF) {
        this.#pendingPairs++;
        d = d.subarray(1);
      } else {
        this.#drainPairs();
        this.#emit(CRLF.subarray(0, 1));
      }
    }
    let end = d.length;
    const tailCr = end > 0 && d[end - 1] === CR;
    if (tailCr) end--;
    let content = end;
    while (content >= 2 && d[content - 2] === CR && d[content - 1] === LF) content -= 2;
    if (content > 0) {
      this.#drainPairs();
      this.#emit(d.subarray(0, content));
    }
    this.#pendingPairs += (end - content) / 2;
    this.#pendingCr = tailCr;
  }

  #relaxedUpdate(chunk: Buffer): void {
    let from = 0;
    if (this.#carryLength > 0) {
      const lf = chunk.indexOf(LF);
      if (lf < 0) {
        this.#appendCarry(chunk);
        return;
      }
      // The carried partial line, completed by this chunk's first line.
      this.#appendCarry(chunk.subarray(0, lf + 1));
      this.#pushCanonical(this.#canonicalLine(this.#carry, 0, this.#carryLength));
      this.#carryLength = 0;
      from = lf + 1;
    }
    const last = chunk.lastIndexOf(LF);
    if (last >= from) {
      const lines = chunk.subarray(from, last + 1);
      if (lines.indexOf(HTAB) < 0 && lines.indexOf(TWO_SPACES) < 0 && lines.indexOf(SPACE_CRLF) < 0) this.#pushCanonical(lines);
      else this.#relaxedLines(lines);
      from = last + 1;
    }
    if (from < chunk.length) this.#appendCarry(chunk.subarray(from));
  }

  /** Complete lines of which some need rewriting: line by line. */
  #relaxedLines(lines: Buffer): void {
    let start = 0;
    let clean = 0;
    while (start < lines.length) {
      const lf = lines.indexOf(LF, start);
      const line = lines.subarray(start, lf + 1);
      if (lineIsCanonical(line)) {
        start = lf + 1;
        continue;
      }
      if (start > clean) this.#pushCanonical(lines.subarray(clean, start));
      this.#pushCanonical(this.#canonicalLine(lines, start, lf + 1));
      start = lf + 1;
      clean = start;
    }
    if (lines.length > clean) this.#pushCanonical(lines.subarray(clean));
  }

  /**
   * One line (its LF included, or none for the last line) relaxed (3.4.4): every run of WSP
   * becomes one SP, WSP before the line end goes; the line ends with CRLF. The CR just before the
   * LF is the line ending; any other CR is content. Written into the scratch buffer.
   */
  #canonicalLine(src: Buffer, start: number, end: number): Buffer {
    let stop = end;
    const ended = stop > start && src[stop - 1] === LF;
    if (ended) {
      stop--;
      if (stop > start && src[stop - 1] === CR) stop--;
    }
    if (this.#scratch.length < stop - start + 2) this.#scratch = Buffer.allocUnsafe(Math.max(256, 2 * (stop - start + 2)));
    const out = this.#scratch;
    let n = 0;
    let wsp = false;
    for (let i = start; i < stop; i++) {
      const c = src[i] as number;
      if (c === SP || c === HTAB) {
        wsp = true;
        continue;
      }
      if (wsp) {
        out[n++] = SP;
        wsp = false;
      }
      out[n++] = c;
    }
    if (ended) {
      out[n++] = CR;
      out[n++] = LF;
    }
    return out.subarray(0, n);
  }

  /**
   * Canonical bytes, in order: a run of CRLF pairs at their end is held back (3.4.4 drops empty
   * lines at the end of the body), to be hashed when something follows it. Bytes from the scratch
   * buffer are hashed (and shown to the finder) before it is reused, so nothing is copied.
   */
  #pushCanonical(bytes: Buffer): void {
    let end = bytes.length;
    while (end >= 2 && bytes[end - 2] === CR && bytes[end - 1] === LF) end -= 2;
    if (end === 0) {
      this.#pendingPairs += bytes.length / 2;
      return;
    }
    this.#drainPairs();
    this.#pendingPairs = (bytes.length - end) / 2;
    this.#emit(bytes.subarray(0, end));
  }

  #drainPairs(): void {
    let n = this.#pendingPairs;
    this.#pendingPairs = 0;
    while (n > 0) {
      const batch = Math.min(n, CRLF_RUN.length / 2);
      this.#emit(CRLF_RUN.subarray(0, batch * 2));
      n -= batch;
    }
  }

  #appendCarry(bytes: Buffer): void {
    const need = this.#carryLength + bytes.length;
    if (this.#carry.length < need) {
      const grown = Buffer.allocUnsafe(Math.max(256, 2 * need));
      this.#carry.copy(grown, 0, 0, this.#carryLength);
      this.#carry = grown;
    }
    bytes.copy(this.#carry, this.#carryLength);
    this.#carryLength = need;
  }

  /** Canonical bytes to the hash, cut at l= (3.5); all of them counted and shown to the finder. */
  #emit(bytes: Buffer): void {
    this.#finder?.update(bytes);
    this.canonicalizedLength += bytes.length;
    if (this.maxSizeReached) return;
    let b = bytes;
    if (this.#limit >= 0 && this.bodyHashedBytes + b.length > this.#limit) {
      this.maxSizeReached = true;
      if (this.bodyHashedBytes >= this.#limit) return;
      b = b.subarray(0, this.#limit - this.bodyHashedBytes);
    }
    this.bodyHashedBytes += b.length;
    this.#hash.update(b);
  }
}

/** A complete line (ending with LF) that relaxed canonicalisation leaves as it is. */
function lineIsCanonical(line: Buffer): boolean {
  const n = line.length;
  if (n < 2 || line[n - 2] !== CR) return false;
  let prevSpace = false;
  for (let i = 0; i < n - 2; i++) {
    const c = line[i];
    if (c === HTAB) return false;
    if (c === SP) {
      if (prevSpace) return false;
      prevSpace = true;
    } else prevSpace = false;
  }
  return !prevSpace;
}
