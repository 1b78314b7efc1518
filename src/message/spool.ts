// Spools one message's DATA: normalises line endings (bare CR/LF → CRLF, or flags them for
// rejection), enforces size, line and header limits while still draining the client, and keeps
// the bytes in memory up to a threshold, then in a temp file. Exactly one copy is ever held.
import { createReadStream, openSync, readSync, writeSync, closeSync, unlinkSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { parseHeaderBlock, type HeaderField } from './headers.ts';

export interface SpoolLimits {
  maxBytes: number;
  maxHeaderBytes: number;
  maxLineBytes: number;
  memoryBytes: number;
  /** Directory for temp files of large messages. */
  tmpDir: string;
}

export type SpoolProblem = 'too-big' | 'header-too-big' | 'line-too-long' | 'bare-newline' | 'nul-byte';

/** What to do with NUL bytes in DATA (RFC 5321 2.3.8 forbids them; MTAs and MUAs disagree on them). */
export type NulPolicy = 'strip' | 'reject';

export interface SpoolOptions {
  /** Default 'strip': NULs are removed before anything else looks at the data. */
  nulBytes?: NulPolicy;
}

const CR = 0x0d;
const LF = 0x0a;

/**
 * A Writable the DATA stream is piped into. After `finish`, `problem` says whether a limit was
 * hit (the data was still drained so the client gets a proper reply), else the spool is a
 * complete message readable any number of times.
 */
export class Spool extends Writable {
  readonly limits: SpoolLimits;
  /** Bytes stored (after normalisation). */
  size = 0;
  /** Bytes received from the client. */
  received = 0;
  problem: SpoolProblem | undefined;
  bareNewlines = false;
  /** The data contained NUL bytes (stripped, or the reason for problem 'nul-byte'). */
  nulBytes = false;
  headerEnd = -1;
  /** The header block ended with an empty line (false: the message is all header). */
  headerTerminated = false;
  #headerBytes: Buffer | undefined;
  #headers: HeaderField[] | undefined;

  #chunks: Buffer[] = [];
  #fd: number | undefined;
  #path: string | undefined;
  #prevCR = false;
  #lineLen = 0;
  readonly #normalize: boolean;
  readonly #nul: NulPolicy;

  constructor(limits: SpoolLimits, normalizeBareNewlines: boolean, opts: SpoolOptions = {}) {
    super({ highWaterMark: 64 * 1024 });
    this.limits = limits;
    this.#normalize = normalizeBareNewlines;
    this.#nul = opts.nulBytes ?? 'strip';
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    try {
      this.received += chunk.length;
      if (this.problem === 'too-big' || this.problem === 'bare-newline' || this.problem === 'nul-byte') {
        cb();
        return;
      }
      const data = this.#scan(chunk);
      if (data && !this.problem) this.#store(data);
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  override _final(cb: (err?: Error | null) => void): void {
    try {
      // A trailing lone CR at the very end is a bare CR too.
      if (this.#prevCR) {
        this.#prevCR = false;
        this.bareNewlines = true;
        if (!this.#normalize) this.problem ??= 'bare-newline';
        else if (!this.problem) this.#store(Buffer.from([LF]));
      }
      if (this.headerEnd < 0 && !this.problem) {
        // No empty line: the whole message is header (or an empty message).
        this.headerEnd = this.size;
      }
      if (this.#fd !== undefined) {
        closeSync(this.#fd);
        this.#fd = undefined;
      }
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  /**
   * One pass over the chunk: finds bare CR/LF (rewriting them when normalising), tracks line
   * lengths and the end of the header block. Returns the bytes to store.
   */
  #scan(input: Buffer): Buffer | undefined {
    let chunk = input;
    // NULs first, so "\r\0\n" is judged as the CRLF it becomes (issue 14, item 9).
    if (chunk.includes(0)) {
      this.nulBytes = true;
      if (this.#nul === 'reject') {
        this.problem = 'nul-byte';
        this.#discard();
        return undefined;
      }
      chunk = stripNul(chunk);
      // Nothing left: a pending CR stays pending for the next chunk.
      if (chunk.length === 0) return undefined;
    }
    let out: Buffer = chunk;
    // Fast check: any CR not followed by LF, or LF not preceded by CR?
    if (this.#hasBare(chunk)) {
      this.bareNewlines = true;
      if (!this.#normalize) {
        this.problem = 'bare-newline';
        return undefined;
      }
      out = this.#rewrite(chunk);
    }
    this.#prevCR = out.length > 0 && out[out.length - 1] === CR;
    this.#trackLines(out);
    return out;
  }

  #hasBare(chunk: Buffer): boolean {
    if (this.#prevCR && chunk[0] !== LF) return true;
    let i = chunk.indexOf(LF);
    while (i >= 0) {
      if (i === 0 ? !this.#prevCR : chunk[i - 1] !== CR) return true;
      i = chunk.indexOf(LF, i + 1);
    }
    let j = chunk.indexOf(CR);
    while (j >= 0) {
      if (j + 1 < chunk.length && chunk[j + 1] !== LF) return true;
      j = chunk.indexOf(CR, j + 1);
    }
    return false;
  }

  /** Slow path: rebuild the chunk with every line ending as CRLF. */
  #rewrite(chunk: Buffer): Buffer {
    const out: number[] = [];
    let prevCR = this.#prevCR;
    if (prevCR && chunk[0] !== LF) {
      // The stored CR from the previous chunk was bare: complete it.
      out.push(LF);
      prevCR = false;
    }
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i] as number;
      if (b === CR) {
        if (prevCR) out.push(LF); // CR CR: the first one was bare
        out.push(CR);
        prevCR = true;
      } else if (b === LF) {
        if (!prevCR && !(i === 0 && this.#prevCR)) out.push(CR);
        out.push(LF);
        prevCR = false;
      } else {
        if (prevCR) out.push(LF);
        out.push(b);
        prevCR = false;
      }
    }
    // A CR at the very end stays pending: the next chunk (or _final) decides.
    return Buffer.from(out);
  }

  #trackLines(buf: Buffer): void {
    let pos = 0;
    let i = buf.indexOf(LF);
    while (i >= 0) {
      const len = this.#lineLen + (i - pos);
      if (len > this.limits.maxLineBytes + 1) this.problem ??= 'line-too-long';
      // An empty line (just CRLF) ends the header block (RFC 5322 2.1).
      if (this.headerEnd < 0 && len === 1) {
        this.headerEnd = this.size + i + 1;
        this.headerTerminated = true;
      }
      this.#lineLen = 0;
      pos = i + 1;
      i = buf.indexOf(LF, pos);
    }
    this.#lineLen += buf.length - pos;
    if (this.#lineLen > this.limits.maxLineBytes + 1) this.problem ??= 'line-too-long';
    const headerSoFar = this.headerEnd < 0 ? this.size + buf.length : this.headerEnd;
    if (headerSoFar > this.limits.maxHeaderBytes) this.problem ??= 'header-too-big';
  }

  #store(data: Buffer): void {
    if (this.size + data.length > this.limits.maxBytes) {
      this.problem = 'too-big';
      this.#discard();
      return;
    }
    this.size += data.length;
    if (this.#fd === undefined && this.size <= this.limits.memoryBytes) {
      this.#chunks.push(data);
      return;
    }
    if (this.#fd === undefined) {
      mkdirSync(this.limits.tmpDir, { recursive: true, mode: 0o700 }); // private, as prepareSpoolDir made it
      this.#path = join(this.limits.tmpDir, `spool-${process.pid}-${randomBytes(8).toString('hex')}`);
      this.#fd = openSync(this.#path, 'wx', 0o600);
      for (const c of this.#chunks) writeSync(this.#fd, c);
      this.#chunks = [];
    }
    writeSync(this.#fd, data);
  }

  #discard(): void {
    this.#chunks = [];
    if (this.#fd !== undefined) {
      closeSync(this.#fd);
      this.#fd = undefined;
    }
    this.#unlink();
  }

  #unlink(): void {
    if (this.#path) {
      try {
        unlinkSync(this.#path);
      } catch {
        // already gone
      }
      this.#path = undefined;
    }
  }

  /** Removes the temp file, if any. Call when the transaction is over. */
  release(): void {
    this.#chunks = [];
    if (this.#fd !== undefined) {
      closeSync(this.#fd);
      this.#fd = undefined;
    }
    this.#unlink();
  }

  get inMemory(): boolean {
    return this.#path === undefined;
  }

  /** Reads `len` bytes from `start` (memory or file), for the header block. */
  #readRange(start: number, end: number): Buffer {
    if (this.#path === undefined) {
      // Usually the whole header block is in the first chunk: a view of it, no copy of the message.
      const first = this.#chunks[0];
      if (first && end <= first.length) return first.subarray(start, end);
      return Buffer.concat(this.#chunks).subarray(start, end);
    }
    const fd = openSync(this.#path, 'r');
    try {
      const buf = Buffer.allocUnsafe(end - start);
      let got = 0;
      while (got < buf.length) {
        const n = readSync(fd, buf, got, buf.length - got, start + got);
        if (n === 0) break;
        got += n;
      }
      return buf.subarray(0, got);
    } finally {
      closeSync(fd);
    }
  }

  get headerBytes(): Buffer {
    if (!this.#headerBytes) this.#headerBytes = this.#readRange(0, Math.max(0, this.headerEnd));
    return this.#headerBytes;
  }

  get headers(): HeaderField[] {
    if (!this.#headers) this.#headers = parseHeaderBlock(this.headerBytes);
    return this.#headers;
  }

  /** Stream of the stored bytes from `start`. */
  streamFrom(start: number): Readable {
    if (this.#path === undefined) {
      const chunks = this.#chunks;
      return Readable.from(sliceChunks(chunks, start), { objectMode: false });
    }
    if (start >= this.size) return Readable.from([]);
    return createReadStream(this.#path, { start, highWaterMark: 64 * 1024 });
  }

  stream(): Readable {
    return this.streamFrom(0);
  }

  /** The stored buffers while the message is in memory (MessageView.memoryChunks). */
  memoryChunks(): readonly Buffer[] | undefined {
    return this.#path === undefined ? this.#chunks : undefined;
  }

  bodyStream(): Readable {
    return this.streamFrom(Math.max(0, this.headerEnd));
  }

  /**
   * The body for the backend: the stored buffers themselves while the message is in memory (the
   * backend client writes them as they are: no stream and async iteration per message), else one
   * stream of the temp file.
   */
  bodyParts(): Array<Buffer | Readable> {
    if (this.#path !== undefined) return [this.bodyStream()];
    return [...sliceChunks(this.#chunks, Math.max(0, this.headerEnd))];
  }
}

/** The chunk without its NUL bytes. */
export function stripNul(chunk: Buffer): Buffer {
  const out = Buffer.allocUnsafe(chunk.length);
  let o = 0;
  let from = 0;
  let i = chunk.indexOf(0);
  while (i >= 0) {
    o += chunk.copy(out, o, from, i);
    from = i + 1;
    i = chunk.indexOf(0, from);
  }
  o += chunk.copy(out, o, from);
  return out.subarray(0, o);
}

/** The bytes of `chunks` from offset `start`, as views of the same buffers (no copy). */
export function* sliceChunks(chunks: readonly Buffer[], start: number): Generator<Buffer> {
  let skip = start;
  for (const c of chunks) {
    if (skip >= c.length) {
      skip -= c.length;
      continue;
    }
    yield skip > 0 ? c.subarray(skip) : c;
    skip = 0;
  }
}

/**
 * Feeds `src` into `spool` with back-pressure, like stream/promises.pipeline(src, spool), without
 * pipeline's per-call AbortController: Node 24 aborts it at every finish, building a DOMException
 * with a stack trace (~60 µs per message on the bench VM, 5% of the relay leg). An error on either
 * side, or `src` closing before its end, destroys both and rejects with that error.
 */
export function spoolFrom(src: Readable, spool: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      src.unpipe(spool);
      src.destroy(err);
      spool.destroy(err);
      reject(err);
    };
    src.on('error', fail);
    spool.on('error', fail);
    src.once('close', () => {
      if (!src.readableEnded) fail(Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }));
    });
    spool.once('finish', () => {
      if (settled) return;
      settled = true;
      resolve();
    });
    src.pipe(spool);
  });
}
