// Incremental Content-Transfer-Encoding decoders (RFC 2045 §6.7 quoted-printable, §6.8 base64) for
// the MIME walk: synchronous, one pass over each input line, no regexes, and they count the
// junk they skip so the walk can report "base64 with garbage" as malformed MIME.

export interface TransferDecoder {
  /**
   * Decodes one chunk of encoded body bytes; returns the decoded bytes so far. With `scratch`
   * (big enough: see scratchSize), they may be written there: a caller that only counts them
   * makes no garbage.
   */
  write(chunk: Buffer, scratch?: Buffer): Buffer;
  /** Flushes what is pending at the end of the part. */
  end(): Buffer;
  /** Bytes that are not part of the encoding's alphabet (base64 junk, bad `=XY` escapes). */
  readonly junk: number;
}

const B64 = new Int16Array(256).fill(-1);
for (const [i, c] of [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'].entries()) B64[c.charCodeAt(0)] = i;
// URL-safe alphabet seen in broken senders: accept it too.
B64['-'.charCodeAt(0)] = 62;
B64['_'.charCodeAt(0)] = 63;

/** Room a decoder's output needs for `n` input bytes (base64: 3/4, quoted-printable: 1×; + carry). */
export function scratchSize(n: number): number {
  return n + 8;
}

/** Chunks shorter than this go through the byte loop (the native path's setup is not worth it). */
const FAST_MIN = 64;
/** Standard alphabet and CR/LF, at most two "=" at the very end (then line ends only). */
const CLEAN_BASE64 = /^[A-Za-z0-9+/\r\n]*={0,2}[\r\n]*$/;

function isSpace(b: number): boolean {
  return b === 0x0d || b === 0x0a || b === 0x20 || b === 0x09;
}

export class Base64Decoder implements TransferDecoder {
  junk = 0;
  #acc = 0;
  #bits = 0;
  #ended = false;

  write(chunk: Buffer, scratch?: Buffer): Buffer {
    const max = Math.ceil((chunk.length * 3) / 4) + 3;
    const out = scratch && scratch.length >= max ? scratch : Buffer.allocUnsafe(max);
    if (this.#bits === 0 && !this.#ended && chunk.length >= FAST_MIN) {
      const n = this.#fast(chunk, out);
      if (n >= 0) return out.subarray(0, n);
    }
    return out.subarray(0, this.#loop(chunk, out, 0));
  }

  /**
   * Clean base64 (the alphabet and line ends, padding only at the end) decoded natively, up to
   * the last whole quantum; the rest goes through the byte loop, which carries it over. Same
   * bytes as the loop; -1 when the chunk is not clean, else the bytes written to `out`.
   */
  #fast(chunk: Buffer, out: Buffer): number {
    const s = chunk.toString('latin1');
    if (!CLEAN_BASE64.test(s)) return -1;
    let end = s.length;
    while (end > 0 && (s.charCodeAt(end - 1) === 0x0a || s.charCodeAt(end - 1) === 0x0d)) end--;
    let pad = 0;
    while (end > 0 && s.charCodeAt(end - 1) === 0x3d) {
      end--;
      pad++;
    }
    let breaks = 0;
    for (let i = s.indexOf('\n'); i >= 0 && i < end; i = s.indexOf('\n', i + 1)) breaks++;
    for (let i = s.indexOf('\r'); i >= 0 && i < end; i = s.indexOf('\r', i + 1)) breaks++;
    const count = end - breaks;
    const rest = count % 4;
    if (pad > 0) {
      // A padded end: only the well-formed ones (xx== / xxx=), which leave no state behind.
      if (rest === 1 || (rest + pad) % 4 !== 0) return -1;
      this.#ended = true;
      return out.write(s, 0, out.length, 'base64');
    }
    if (rest === 0) return out.write(s, 0, out.length, 'base64');
    // Cut before the last `rest` alphabet characters: they start the next quantum.
    let cut = end;
    for (let left = rest; left > 0; cut--) {
      const c = s.charCodeAt(cut - 1);
      if (c !== 0x0a && c !== 0x0d) left--;
    }
    const n = out.write(s.slice(0, cut), 0, out.length, 'base64');
    return this.#loop(chunk.subarray(cut), out, n);
  }

  /** The byte loop: decodes `chunk` into `out` from `n`; returns the new end. */
  #loop(chunk: Buffer, out: Buffer, from: number): number {
    let n = from;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i] as number;
      const v = B64[b] as number;
      if (v < 0) {
        // '=' padding ends a quantum; anything else but whitespace is junk (counted, skipped).
        if (b === 0x3d) {
          this.#acc = 0;
          this.#bits = 0;
          this.#ended = true;
        } else if (!isSpace(b)) this.junk++;
        continue;
      }
      if (this.#ended) {
        // Data after padding: concatenated base64 (seen in the wild); keep decoding, count it.
        this.#ended = false;
        this.junk++;
      }
      this.#acc = (this.#acc << 6) | v;
      this.#bits += 6;
      if (this.#bits >= 8) {
        this.#bits -= 8;
        out[n++] = (this.#acc >> this.#bits) & 0xff;
        this.#acc &= (1 << this.#bits) - 1;
      }
    }
    return n;
  }

  end(): Buffer {
    return Buffer.alloc(0);
  }
}

function hexVal(b: number): number {
  if (b >= 0x30 && b <= 0x39) return b - 0x30;
  if (b >= 0x41 && b <= 0x46) return b - 0x37;
  if (b >= 0x61 && b <= 0x66) return b - 0x57;
  return -1;
}

/** Quoted-printable; input arrives in arbitrary chunks, so a split `=X` escape is carried over. */
export class QuotedPrintableDecoder implements TransferDecoder {
  junk = 0;
  #pending: number[] = [];

  write(chunk: Buffer, scratch?: Buffer): Buffer {
    const data = this.#pending.length ? Buffer.concat([Buffer.from(this.#pending), chunk]) : chunk;
    this.#pending = [];
    const out = scratch && scratch.length >= data.length ? scratch : Buffer.allocUnsafe(data.length);
    let n = 0;
    let i = 0;
    while (i < data.length) {
      const b = data[i] as number;
      if (b !== 0x3d) {
        out[n++] = b;
        i++;
        continue;
      }
      if (i + 2 >= data.length) {
        // Incomplete escape at the end of the chunk: wait for more.
        for (let k = i; k < data.length; k++) this.#pending.push(data[k] as number);
        break;
      }
      const c1 = data[i + 1] as number;
      const c2 = data[i + 2] as number;
      if (c1 === 0x0d && c2 === 0x0a) {
        i += 3; // soft line break
        continue;
      }
      if (c1 === 0x0a) {
        i += 2; // soft line break with a bare LF
        continue;
      }
      const h = hexVal(c1);
      const l = hexVal(c2);
      if (h >= 0 && l >= 0) {
        out[n++] = (h << 4) | l;
        i += 3;
      } else {
        this.junk++;
        out[n++] = b;
        i++;
      }
    }
    return out.subarray(0, n);
  }

  end(): Buffer {
    const rest = this.#pending;
    this.#pending = [];
    // "=" then the end of the part (soft break) is dropped; a lone "=X" is kept as written.
    if (rest.length === 0 || (rest.length === 1 && rest[0] === 0x3d)) return Buffer.alloc(0);
    this.junk++;
    return Buffer.from(rest);
  }
}

export class IdentityDecoder implements TransferDecoder {
  readonly junk = 0;
  write(chunk: Buffer): Buffer {
    return chunk;
  }
  end(): Buffer {
    return Buffer.alloc(0);
  }
}

/** Known encodings (RFC 2045 §6.1); anything else is decoded as identity and reported. */
export const KNOWN_ENCODINGS = ['', '7bit', '8bit', 'binary', 'base64', 'quoted-printable'] as const;

export function decoderFor(encoding: string): TransferDecoder {
  if (encoding === 'base64') return new Base64Decoder();
  if (encoding === 'quoted-printable') return new QuotedPrintableDecoder();
  return new IdentityDecoder();
}

/**
 * Decodes uuencoded lines (`begin 644 name` … `end`, as old clients put in text/plain bodies).
 * Returns the bytes of one line; malformed lines decode to nothing.
 */
export function uudecodeLine(line: string): Buffer {
  if (line.length === 0) return Buffer.alloc(0);
  const len = (line.charCodeAt(0) - 32) & 0x3f;
  if (len === 0) return Buffer.alloc(0);
  const out = Buffer.alloc(len);
  let n = 0;
  for (let i = 1; i + 3 < line.length + 1 && n < len; i += 4) {
    const c = [0, 1, 2, 3].map((k) => ((line.charCodeAt(i + k) || 32) - 32) & 0x3f) as [number, number, number, number];
    const bytes = [(c[0] << 2) | (c[1] >> 4), ((c[1] & 0xf) << 4) | (c[2] >> 2), ((c[2] & 0x3) << 6) | c[3]];
    for (const b of bytes) if (n < len) out[n++] = b & 0xff;
  }
  return out.subarray(0, n);
}
