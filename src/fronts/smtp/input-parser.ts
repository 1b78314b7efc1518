// The SMTP front's input parser: bytes in, command lines or DATA content out, pulled one item at
// a time. Pure (no I/O, no timers), so every chunk split can be tested. The consumer decides the
// mode after each line, which is what keeps DATA, STARTTLS and QUIT boundaries exact: nothing
// after a line is looked at until the consumer asks for the next item.

/** One thing the client sent, in order. */
export type InputItem =
  /** A command line without its line ending, decoded as UTF-8 (invalid bytes become U+FFFD). */
  | { kind: 'line'; line: string }
  /** A command line (complete or not) over the limit: the connection cannot stay in step. */
  | { kind: 'too-long' }
  /** Message content, dot-unstuffed; a view into the received chunk (no copy). */
  | { kind: 'data'; chunk: Buffer }
  /** The `<CRLF>.<CRLF>` that ends DATA (RFC 5321 4.1.1.4); the parser is back in command mode. */
  | { kind: 'end' };

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
const EMPTY = Buffer.alloc(0);

/**
 * Command lines end at LF (an optional CR before it is dropped): clients that end lines with a
 * bare LF are common, and a CR alone ends nothing. In DATA only `CRLF . CRLF` ends the message —
 * a dot line after a bare LF, or ended by a bare LF, is content (SMTP smuggling). A line starting
 * with two dots loses one (RFC 5321 4.5.2, transparency); a single leading dot before other text
 * comes from a client that did not dot-stuff, and is kept (as smtp-server and Postfix keep it).
 */
export class InputParser {
  /** Longest command line accepted, line ending excluded. */
  readonly maxLine: number;
  #buf: Buffer = EMPTY;
  #pos = 0;
  #data = false;
  /** DATA: the next byte starts a line (after CRLF, or the first byte of the message). */
  #lineStart = false;
  /** DATA: the previous byte (possibly in an earlier chunk) was a CR. */
  #cr = false;

  constructor(maxLine: number) {
    this.maxLine = maxLine;
  }

  /** Adds received bytes. */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    if (this.#pos >= this.#buf.length) this.#buf = chunk;
    else this.#buf = Buffer.concat([this.#buf.subarray(this.#pos), chunk]);
    this.#pos = 0;
  }

  /** Bytes received and not yet handed out. */
  get buffered(): number {
    return this.#buf.length - this.#pos;
  }

  /** In command mode with part of a line received (the slow-client deadline runs). */
  get partialLine(): boolean {
    return !this.#data && this.#pos < this.#buf.length;
  }

  /** A complete command line is waiting. */
  hasLine(): boolean {
    return !this.#data && this.#buf.indexOf(LF, this.#pos) >= 0;
  }

  get inData(): boolean {
    return this.#data;
  }

  /** Switches to DATA content (after the 354 reply). */
  startData(): void {
    this.#data = true;
    this.#lineStart = true;
    this.#cr = false;
  }

  /** Drops everything buffered (STARTTLS: plaintext sent after the command is never run). */
  discard(): void {
    this.#buf = EMPTY;
    this.#pos = 0;
  }

  /** The next item, or undefined when more input is needed. */
  next(): InputItem | undefined {
    return this.#data ? this.#nextData() : this.#nextLine();
  }

  #nextLine(): InputItem | undefined {
    const buf = this.#buf;
    const start = this.#pos;
    if (start >= buf.length) return undefined;
    const lf = buf.indexOf(LF, start);
    if (lf < 0) {
      if (buf.length - start > this.maxLine) return this.#tooLong();
      return undefined;
    }
    const end = lf > start && buf[lf - 1] === CR ? lf - 1 : lf;
    if (end - start > this.maxLine) return this.#tooLong();
    this.#pos = lf + 1;
    const line = buf.toString('utf8', start, end);
    // All consumed: let go of the chunk (an idle connection should not pin its last read).
    if (this.#pos >= buf.length) this.discard();
    return { kind: 'line', line };
  }

  #tooLong(): InputItem {
    this.discard();
    return { kind: 'too-long' };
  }

  #nextData(): InputItem | undefined {
    const buf = this.#buf;
    const len = buf.length;
    let p = this.#pos;
    if (p >= len) return undefined;
    if (this.#lineStart && buf[p] === DOT) {
      // A dot line ends the message; a line starting with two dots loses one. Deciding needs the
      // next byte or two: wait for them rather than guess (the split may fall anywhere).
      if (len - p < 2 || (buf[p + 1] === CR && len - p < 3)) return undefined;
      if (buf[p + 1] === CR && buf[p + 2] === LF) {
        this.#pos = p + 3;
        this.#data = false;
        if (this.#pos >= len) this.discard();
        return { kind: 'end' };
      }
      if (buf[p + 1] === DOT) p++; // the stuffing dot
    }
    // Content up to the next line start that begins with a dot (or the end of the chunk).
    this.#lineStart = false;
    const from = p;
    let cr = this.#cr;
    for (;;) {
      const lf = buf.indexOf(LF, p);
      if (lf < 0) {
        cr = buf[len - 1] === CR || (len === p && cr);
        this.#cr = cr;
        this.#pos = len;
        return this.#emit(from, len);
      }
      const crlf = lf > p ? buf[lf - 1] === CR : cr || (lf > from && buf[lf - 1] === CR);
      p = lf + 1;
      cr = false;
      if (!crlf) continue;
      if (p >= len) {
        // The chunk ends with CRLF: the next chunk starts a line.
        this.#lineStart = true;
        this.#cr = false;
        this.#pos = len;
        return this.#emit(from, len);
      }
      if (buf[p] === DOT) {
        this.#lineStart = true;
        this.#cr = false;
        this.#pos = p;
        return this.#emit(from, p);
      }
    }
  }

  #emit(from: number, to: number): InputItem | undefined {
    if (this.#pos >= this.#buf.length) {
      const chunk = this.#buf.subarray(from, to);
      this.discard();
      return chunk.length > 0 ? { kind: 'data', chunk } : this.next();
    }
    return to > from ? { kind: 'data', chunk: this.#buf.subarray(from, to) } : this.next();
  }
}
