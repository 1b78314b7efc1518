// The one streaming MIME walk of a message: every part's type, name and decoded size, the first
// bytes of each attachment (and the whole of small ones, for archive and document inspection),
// the decoded text and HTML, and why the MIME is malformed — all bounded. One synchronous pass
// over the bytes (lines found with indexOf, content handed on in runs, no per-line objects).
import { decoderFor, KNOWN_ENCODINGS, scratchSize, uudecodeLine, type TransferDecoder } from './transfer-decode.ts';
import { parsePartHeader, type PartHeader } from './mime-part-header.ts';

export interface WalkLimits {
  /** Deepest nesting inspected (multipart and message/rfc822 levels); deeper parts are skipped. */
  maxDepth: number;
  /** Most MIME parts (all levels); the walk stops there. */
  maxParts: number;
  /** Largest header block of one part. */
  maxPartHeaderBytes: number;
  /** Most decoded bytes over all parts; beyond, parts are only counted. */
  maxDecodedBytes: number;
  /** Characters of text/plain (and of text/html) kept for body rules and URL extraction. */
  maxTextBytes: number;
  /** Attachments up to this size are kept whole for archive/document inspection. */
  maxKeepBytes: number;
  /** Total bytes kept whole over all attachments of the message. */
  maxKeepTotalBytes: number;
}

export const DEFAULT_WALK_LIMITS: WalkLimits = {
  maxDepth: 20,
  maxParts: 500,
  maxPartHeaderBytes: 65_536,
  maxDecodedBytes: 64 * 1024 * 1024,
  maxTextBytes: 262_144,
  maxKeepBytes: 10 * 1024 * 1024,
  maxKeepTotalBytes: 16 * 1024 * 1024,
};

/** Bytes of every attachment always kept for type detection (file-type reads 4100). */
export const SNIFF_BYTES = 4100;

export const MALFORMED_REASONS = [
  'header-too-big',
  'too-many-parts',
  'too-deep',
  'missing-final-boundary',
  'duplicate-boundary',
  'multipart-without-boundary',
  'unknown-encoding',
  'base64-garbage',
  'qp-garbage',
  'decoded-limit',
  'parse-error',
] as const;
export type MalformedReason = (typeof MALFORMED_REASONS)[number];

export interface WalkPart {
  /** Position in the walk, from 0 (document order, nested messages included). */
  index: number;
  /** Nesting depth: 0 for a single-part message body, 1 for a top-level attachment, ... */
  depth: number;
  /** Declared Content-Type, lower-cased (`text/plain` when absent). */
  contentType: string;
  disposition: string;
  /** File name as declared, RFC 2047/2231 decoded ("" when none). */
  filename: string;
  charset: string;
  encoding: string;
  /** Decoded size in bytes. */
  size: number;
  /** The first SNIFF_BYTES decoded bytes. */
  head: Buffer;
  /** The whole decoded content, when it fitted the keep limits. */
  data: Buffer | undefined;
  /** Where the part came from: a MIME part, or a uuencoded block inside a text part. */
  source: 'mime' | 'uuencode';
  /** Inside an attached message/rfc822 (a forwarded message). */
  inMessage: boolean;
  /** An attachment (has a file name, disposition attachment, or is not text/message/multipart). */
  attachment: boolean;
}

export interface MimeWalk {
  /** Leaf parts (multipart containers are not listed; their types are in contentTypes). */
  parts: WalkPart[];
  /** Every Content-Type seen, multipart containers included, in order, without duplicates. */
  contentTypes: string[];
  /** Number of MIME nodes (containers and leaves) seen. */
  partCount: number;
  depth: number;
  text: string;
  html: string;
  /** Text or HTML was cut at maxTextBytes, or the walk did not reach the end. */
  textTruncated: boolean;
  decodedBytes: number;
  malformed: MalformedReason[];
}

function countParam(value: string, name: string): number {
  const lower = value.toLowerCase();
  let n = 0;
  let i = lower.indexOf(name);
  while (i >= 0) {
    const before = i === 0 ? ';' : lower[i - 1];
    if (before === ';' || before === ' ' || before === '\t') n++;
    i = lower.indexOf(name, i + name.length);
  }
  return n;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Header bytes are read as latin1, so a raw UTF-8 file name (RFC 6532, sent by many clients
 * without encoded-words) arrives as mojibake — and an RTLO in it would go unseen. A value made
 * only of byte-range characters that is valid UTF-8 is decoded as UTF-8.
 */
function rawUtf8(s: string): string {
  let high = false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff) return s;
    if (c >= 0x80) high = true;
  }
  if (!high) return s;
  try {
    return utf8.decode(Buffer.from(s, 'latin1'));
  } catch {
    return s;
  }
}

/** One TextDecoder per charset label, per process (decode() without `stream` keeps no state). */
const textDecoders = new Map<string, TextDecoder | null>();

function decodeText(bytes: Buffer, charset: string): string {
  const label = charset.trim().toLowerCase() || 'utf-8';
  let d = textDecoders.get(label);
  if (d === undefined) {
    try {
      d = new TextDecoder(label);
    } catch {
      d = null;
    }
    // Bounded: labels come from messages, so only the first few hundred are remembered.
    if (textDecoders.size < 256) textDecoders.set(label, d);
  }
  // Unknown charset label: latin1 keeps every byte, good enough for pattern matching.
  return d ? d.decode(bytes) : bytes.toString('latin1');
}

const LF = 0x0a;
const CR = 0x0d;
const DASH = 0x2d;
const CRLF = Buffer.from('\r\n');
const EMPTY = Buffer.alloc(0);
const NL_DASH = Buffer.from('\n-');
const NL_CR = Buffer.from('\n\r');

/** A MIME node of one walker level: where its delimiter lines are, and its parsed header. */
interface MimeNode {
  parent: MimeNode | undefined;
  /** The boundary its own header declares. */
  boundary: Buffer | undefined;
  /** The boundary of the node it was created under, fixed at creation. */
  parentBoundary: Buffer | undefined;
  /** The header block so far: earlier pieces, then [headStart, headEnd) of headBuf. */
  headLines: Buffer[];
  headBuf: Buffer | undefined;
  headStart: number;
  headEnd: number;
  headLen: number;
  header: PartHeader | undefined;
  multipart: boolean;
}

function newNode(parent: MimeNode | undefined): MimeNode {
  return {
    parent,
    boundary: undefined,
    parentBoundary: parent?.boundary,
    headLines: [],
    headBuf: undefined,
    headStart: 0,
    headEnd: 0,
    headLen: 0,
    header: undefined,
    multipart: false,
  };
}

/** The header block's pieces (one, unless it spans input chunks). */
function headPieces(node: MimeNode): Buffer[] {
  const pieces = node.headLines;
  if (node.headBuf) pieces.push(node.headBuf.subarray(node.headStart, node.headEnd));
  node.headLines = [];
  node.headBuf = undefined;
  return pieces;
}

function parseNode(node: MimeNode, pieces: Buffer[] = headPieces(node)): PartHeader {
  if (node.header) return node.header;
  const block = pieces.length === 1 ? (pieces[0] as Buffer) : Buffer.concat(pieces, node.headLen);
  const h = parsePartHeader(block);
  node.header = h;
  const slash = h.contentType.indexOf('/');
  node.multipart = slash >= 0 && h.contentType.slice(0, slash) === 'multipart' && slash < h.contentType.length - 1;
  node.boundary = h.boundary;
  return h;
}

/**
 * Compares a line with `--boundary` (RFC 2046 §5.1.1) from `start`: 1 a delimiter line
 * (`--b` then the line end), 2 the close delimiter (`--b--`, then an optional line end), 0 none.
 * No transport padding after the boundary is accepted (as before).
 */
function compareBoundary(buf: Buffer, s: number, e: number, start: number, b: Buffer): 0 | 1 | 2 {
  const len = e - s;
  if (len < b.length + 3 + start || len > b.length + 6 + start) return 0;
  const at = s + start + 2;
  for (let i = 0; i < b.length; i++) if (buf[at + i] !== b[i]) return 0;
  let pos = 0;
  for (let i = at + b.length; i < e; i++) {
    const c = buf[i];
    if (pos === 0 && (c === CR || c === LF)) return 1;
    if (pos === 0 && c !== DASH) return 0;
    if (pos === 1 && c !== DASH) return 0;
    if (pos === 2 && c !== CR && c !== LF) return 0;
    if (pos === 3 && c !== LF) return 0;
    pos++;
  }
  return 2;
}

/**
 * Which delimiter the line [s, e) is for the current node: 1 its next child, 2 its end, 3 the
 * next sibling (its parent's boundary), 4 the parent's end; 0 a content line. A line that starts
 * with a bare CR is compared from its third byte, as the walk always did.
 */
function checkBoundary(buf: Buffer, s: number, e: number, node: MimeNode): 0 | 1 | 2 | 3 | 4 {
  let start = 0;
  const c0 = buf[s];
  if (e - s >= 1 && (c0 === CR || c0 === LF)) {
    start++;
    if (e - s >= 2 && (c0 === CR || buf[s + 1] === LF)) start++;
  }
  if (e - s < 4 || buf[s + start] !== DASH || buf[s + start + 1] !== DASH) return 0;
  if (node.boundary) {
    const b = compareBoundary(buf, s, e, start, node.boundary);
    if (b) return b;
  }
  if (node.parentBoundary) {
    const b = compareBoundary(buf, s, e, start, node.parentBoundary);
    if (b) return (b + 2) as 3 | 4;
  }
  return 0;
}

/** Shared counters of one walk, across nested message/rfc822 walkers. */
interface WalkState {
  limits: WalkLimits;
  result: MimeWalk;
  kept: number;
  stopped: boolean;
  /** Reused output of decoders whose bytes are only counted. */
  scratch: Buffer;
}

interface Leaf {
  part: WalkPart;
  decoder: TransferDecoder;
  headChunks: Buffer[];
  headLen: number;
  chunks: Buffer[] | undefined;
  text: 'plain' | 'html' | undefined;
  textChunks: Buffer[];
  textLen: number;
  nested: Walker | undefined;
}

function addMalformed(result: MimeWalk, reason: MalformedReason): void {
  if (!result.malformed.includes(reason)) result.malformed.push(reason);
}

/**
 * One level of the walk (the message, or an attached message): splits the bytes into lines
 * with indexOf, follows the multipart tree, and hands each leaf's content bytes — in runs as
 * long as the input chunks, never a line at a time — to its transfer decoder. Synchronous; the
 * input is held only for a partial last line (and at most a short one: a line that cannot be a
 * delimiter is passed on at once).
 */
class Walker {
  readonly #st: WalkState;
  readonly #base: number;
  readonly #inMessage: boolean;
  #node: MimeNode;
  readonly #tree: MimeNode[];
  /** Nodes created (the root included): the walk stops past maxParts. */
  #created = 1;
  #inHead = true;
  #leaf: Leaf | undefined;
  #failed = false;
  /** A partial last line, waiting for its line end. */
  #carry: Buffer[] = [];
  #carryLen = 0;
  /** The line being read was already found to be content (too long for a delimiter). */
  #midLine = false;
  /**
   * The line break after the last content line, held back: it belongs to the delimiter line if
   * one follows (RFC 2046 §5.1.1), to the content otherwise.
   */
  #held: Buffer | undefined;
  #heldStart = 0;
  #heldEnd = 0;
  /** Content lines since the last other line, and whether the first was only a line break. */
  #runLines = 0;
  #runEmpty = false;
  /** Content bytes not yet given to the leaf: [runStart, runEnd) of runBuf, one decoder write. */
  #runBuf: Buffer = EMPTY;
  #runStart = 0;
  #runEnd = 0;
  /** Close delimiters of this level's multiparts, and whether each was seen. */
  readonly #open: Array<{ close: Buffer; closed: boolean; decided: number }> = [];
  /**
   * Runs of consecutive preamble/epilogue/close-delimiter lines ("groups"): a close delimiter
   * counts where it is the first occurrence of `--boundary--` in its group and starts a line
   * — the rule the walk has always applied (mailsplit handed such runs on as one chunk), kept so
   * mime.malformed stays what it was. `#group` numbers the groups; 0 between them.
   */
  #group = 0;
  #groups = 0;

  constructor(st: WalkState, baseDepth: number, inMessage: boolean) {
    this.#st = st;
    this.#base = baseDepth;
    this.#inMessage = inMessage;
    this.#node = newNode(undefined);
    this.#tree = [this.#node];
  }

  /** The walk of this level gave up (a limit); it takes no more input. */
  get failed(): boolean {
    return this.#failed;
  }

  write(chunk: Buffer): void {
    if (this.#failed || this.#st.stopped || chunk.length === 0) return;
    let pos = 0;
    const len = chunk.length;
    if (this.#carryLen > 0 || this.#midLine) {
      const lf = chunk.indexOf(LF);
      if (lf < 0) {
        this.#carry.push(chunk);
        this.#carryLen += len;
        this.#longCarry();
        return;
      }
      const first = this.#carryLen > 0 ? Buffer.concat([...this.#carry, chunk.subarray(0, lf + 1)]) : chunk.subarray(0, lf + 1);
      this.#carry = [];
      this.#carryLen = 0;
      this.#line(first, 0, first.length, false);
      pos = lf + 1;
    }
    while (pos < len && !this.#failed) {
      const c = chunk[pos];
      if (c !== DASH && c !== CR && !this.#inHead && !this.#node.multipart && (c !== LF || this.#runLines > 0)) {
        const to = this.#bodyBlock(chunk, pos);
        if (to > pos) {
          pos = to;
          continue;
        }
      }
      const lf = chunk.indexOf(LF, pos);
      if (lf < 0) break;
      this.#line(chunk, pos, lf + 1, false);
      pos = lf + 1;
    }
    this.#flushRun();
    this.#scan = EMPTY;
    if (pos < len && !this.#failed) {
      this.#carry.push(chunk.subarray(pos));
      this.#carryLen += len - pos;
      this.#longCarry();
    }
  }

  end(): void {
    if (this.#failed) return;
    // The last line (without a line end), or an empty one: a header block still open ends here.
    const last = this.#carryLen > 0 ? Buffer.concat(this.#carry) : EMPTY;
    this.#carry = [];
    this.#carryLen = 0;
    this.#line(last, 0, last.length, true);
    this.#bodyLead();
    this.#flushRun();
    if (!this.#failed) this.#finishLeaf();
    if (!this.#failed) for (const o of this.#open) if (!o.closed) addMalformed(this.#st.result, 'missing-final-boundary');
  }

  /** Where the next "\n-" and "\n\r" are in #scan (-1: none), so no search repeats. */
  #scan: Buffer = EMPTY;
  #nextDash = -1;
  #nextCr = -1;

  /**
   * Content lines of a leaf from `pos` (a line start that cannot be a delimiter) up to the next
   * line that could be one — a line starting with "-" or CR (see checkBoundary) — taken as one
   * block: the same bytes and held line break as line by line, with two native searches per
   * block instead of one per line. Returns the end of the block (pos: no complete line).
   */
  #bodyBlock(buf: Buffer, pos: number): number {
    if (this.#created > this.#st.limits.maxParts) return pos;
    if (this.#scan !== buf) {
      this.#scan = buf;
      this.#nextDash = this.#nextCr = -2;
    }
    const from = pos > 0 ? pos - 1 : 0;
    if (this.#nextDash !== -1 && this.#nextDash < from) this.#nextDash = buf.indexOf(NL_DASH, from);
    if (this.#nextCr !== -1 && this.#nextCr < from) this.#nextCr = buf.indexOf(NL_CR, from);
    const d = this.#nextDash;
    const r = this.#nextCr;
    const next = d < 0 ? r : r < 0 ? d : Math.min(d, r);
    const end = next >= 0 ? next + 1 : buf.lastIndexOf(LF) + 1;
    if (end <= pos) return pos;
    this.#group = 0;
    if (this.#runLines === 0) this.#runEmpty = false;
    this.#runLines++;
    this.#bodyLead();
    let stop = end;
    if (this.#node.parent) {
      stop -= stop - 2 >= pos && buf[stop - 2] === CR ? 2 : 1;
      this.#held = buf;
      this.#heldStart = stop;
      this.#heldEnd = end;
    }
    if (stop > pos) this.#emit(buf, pos, stop);
    return end;
  }

  /** A partial line that has grown past what a delimiter line can be is content: pass it on. */
  #longCarry(): void {
    const node = this.#node;
    const maxDelim = Math.max(node.boundary?.length ?? 0, node.parentBoundary?.length ?? 0) + 8;
    if (!this.#midLine && this.#carryLen <= maxDelim) return;
    if (this.#created > this.#st.limits.maxParts) {
      this.#fail('too-many-parts');
      return;
    }
    if (this.#inHead) {
      // A header line too long for a delimiter: it fails the header limit before it is complete.
      if (node.headLen + this.#carryLen > this.#st.limits.maxPartHeaderBytes) this.#fail('header-too-big');
      return;
    }
    const pieces = this.#carry;
    const lastPiece = pieces[pieces.length - 1] as Buffer;
    // Keep a trailing CR back: with the LF after it, it is the line break.
    const keepCr = lastPiece[lastPiece.length - 1] === CR;
    if (node.multipart) {
      if (!this.#midLine) {
        const line = pieces.length === 1 ? lastPiece : Buffer.concat(pieces);
        this.#dataLine(line, 0, line.length);
      }
      this.#runLines = 0;
    } else {
      if (!this.#midLine) {
        // A content line starts (and it is not an empty one).
        this.#bodyLead();
        this.#runEmpty = false;
        this.#runLines++;
      }
      for (let i = 0; i < pieces.length; i++) {
        const p = pieces[i] as Buffer;
        this.#emit(p, 0, i === pieces.length - 1 && keepCr ? p.length - 1 : p.length);
      }
      this.#flushRun();
    }
    this.#midLine = true;
    this.#carry = keepCr ? [CRLF.subarray(0, 1)] : [];
    this.#carryLen = keepCr ? 1 : 0;
  }

  #fail(reason: MalformedReason): void {
    const r = this.#st.result;
    addMalformed(r, reason);
    r.textTruncated = true;
    this.#st.stopped = true;
    this.#failed = true;
    this.#runEnd = this.#runStart;
    this.#held = undefined;
    this.#finishLeaf();
  }

  #depthOf(node: MimeNode): number {
    let d = 0;
    for (let p = node.parent; p; p = p.parent) d++;
    return this.#base + d;
  }

  /** One line [s, e) of `buf` (its LF included, except for the last line of the input). */
  #line(buf: Buffer, s: number, e: number, final: boolean): void {
    if (this.#created > this.#st.limits.maxParts) {
      this.#fail('too-many-parts');
      return;
    }
    const node = this.#node;
    if (this.#midLine) {
      // The rest of a line already known to be content.
      this.#midLine = false;
      // (A continued line of a multipart's preamble/epilogue is not a line start: nothing to note.)
      if (!node.multipart) this.#bodyLine(buf, s, e, true);
      return;
    }
    const b = checkBoundary(buf, s, e, node);
    if (b !== 0) {
      // The line break before a delimiter belongs to the delimiter — except where the part's
      // content is a single empty line and a next-part delimiter follows: the walk has always
      // kept that line break (mailsplit's quirk), and the content facts stay as they were.
      if ((b === 1 || b === 3) && this.#runLines === 1 && this.#runEmpty) this.#bodyLead();
      this.#runLines = 0;
      this.#flushRun();
      this.#held = undefined;
      if (b === 1) this.#newNode(node);
      else if (b === 3) {
        let p = node.parent;
        if (p && p.header?.contentType === 'message/rfc822') p = p.parent;
        this.#newNode(p);
      } else if (b === 4) {
        // The parent ends while this node's header is still open: the node is a header only,
        // and its header lines join the close delimiter's group (as they always did).
        if (node.headLen > 0 && !node.header) {
          const lines = headPieces(node);
          parseNode(node, lines);
          this.#nodeSeen(node);
          for (const l of lines) this.#dataLine(l, 0, l.length);
        }
        const up = this.#tree.pop();
        if (up) this.#node = up;
        this.#inHead = false;
      }
      // A next-part delimiter line is a group of its own; a close delimiter joins the group.
      if (b === 1 || b === 3) this.#group = 0;
      this.#dataLine(buf, s, e);
      if (b === 1 || b === 3) this.#group = 0;
      return;
    }
    if (final) this.#group = 0;
    if (this.#inHead) this.#headLine(buf, s, e, final);
    else if (node.multipart) {
      this.#dataLine(buf, s, e);
      this.#runLines = 0;
      return;
    } else {
      this.#group = 0;
      this.#runEmpty = this.#runLines === 0 && (e - s === 1 || (e - s === 2 && buf[s] === CR)) && buf[e - 1] === LF;
      this.#runLines++;
      this.#bodyLine(buf, s, e, false);
      return;
    }
    this.#runLines = 0;
  }

  #headLine(buf: Buffer, s: number, e: number, final: boolean): void {
    const node = this.#node;
    if (e > s) {
      if (node.headBuf === buf && node.headEnd === s) node.headEnd = e;
      else {
        if (node.headBuf) node.headLines.push(node.headBuf.subarray(node.headStart, node.headEnd));
        node.headBuf = buf;
        node.headStart = s;
        node.headEnd = e;
      }
      node.headLen += e - s;
    }
    if (node.headLen > this.#st.limits.maxPartHeaderBytes) {
      this.#fail('header-too-big');
      return;
    }
    const n = e - s;
    if (final || (n === 1 && buf[s] === LF) || (n === 2 && buf[s] === CR && buf[s + 1] === LF)) {
      parseNode(node);
      this.#inHead = false;
      if (node.multipart && node.boundary) this.#tree.push(node);
      this.#nodeSeen(node);
    }
  }

  #newNode(parent: MimeNode | undefined): void {
    this.#node = newNode(parent);
    this.#inHead = true;
    this.#created++;
  }

  /**
   * A multipart's preamble/epilogue line or a delimiter line [s, e): notes the close delimiters
   * (`--boundary--` starting a line) of this level's multiparts, group by group (see #group).
   */
  #dataLine(buf: Buffer, s: number, e: number): void {
    if (this.#group === 0) this.#group = ++this.#groups;
    if (this.#open.length === 0 || e - s < 5) return;
    const line = buf.subarray(s, e);
    const dashes = line.indexOf('--');
    if (dashes < 0) return;
    for (const o of this.#open) {
      if (o.closed || o.decided === this.#group) continue;
      const at = line.indexOf(o.close, dashes);
      if (at < 0) continue;
      o.decided = this.#group;
      // At a line start (`line` may hold several lines: a header-only part's block).
      if (at === 0 || line[at - 1] === LF) o.closed = true;
    }
  }

  /** Emits what a previous content line held back, now that another content line follows. */
  #bodyLead(): void {
    const h = this.#held;
    if (h) {
      this.#held = undefined;
      this.#emit(h, this.#heldStart, this.#heldEnd);
    }
  }

  /** A content line of a leaf: [s, e), its line break held back (except for a top-level body). */
  #bodyLine(buf: Buffer, s: number, e: number, continued: boolean): void {
    if (!continued) this.#bodyLead();
    let end = e;
    if (this.#node.parent && end > s && buf[end - 1] === LF) {
      end -= end - 2 >= s && buf[end - 2] === CR ? 2 : 1;
      this.#held = buf;
      this.#heldStart = end;
      this.#heldEnd = e;
    }
    if (end > s) this.#emit(buf, s, end);
  }

  /** Content bytes [s, e) of `buf` for the current leaf: joined to the pending run when adjacent. */
  #emit(buf: Buffer, s: number, e: number): void {
    if (this.#runEnd > this.#runStart) {
      if (this.#runBuf === buf && this.#runEnd === s) {
        this.#runEnd = e;
        return;
      }
      this.#flushRun();
    }
    this.#runBuf = buf;
    this.#runStart = s;
    this.#runEnd = e;
  }

  #flushRun(): void {
    if (this.#runEnd <= this.#runStart) return;
    const bytes = this.#runBuf.subarray(this.#runStart, this.#runEnd);
    this.#runBuf = EMPTY;
    this.#runStart = this.#runEnd = 0;
    const leaf = this.#leaf;
    if (!leaf || this.#st.stopped) return;
    // Past the kept head, the kept data and the text cap only the size counts: decode into
    // the walk's scratch buffer, so a big attachment makes no garbage.
    const counted = !leaf.nested && !leaf.chunks && leaf.headLen >= SNIFF_BYTES && (!leaf.text || leaf.textLen >= this.#st.limits.maxTextBytes);
    this.#decoded(leaf, leaf.decoder.write(bytes, counted ? this.#scratch(bytes.length) : undefined));
  }

  #scratch(n: number): Buffer {
    const need = scratchSize(n);
    if (this.#st.scratch.length < need) this.#st.scratch = Buffer.allocUnsafe(Math.max(need, 65_536));
    return this.#st.scratch;
  }

  /** A node's header is complete: count it, and start a leaf for a non-multipart one. */
  #nodeSeen(node: MimeNode): void {
    this.#flushRun();
    this.#group = 0;
    const st = this.#st;
    const r = st.result;
    this.#finishLeaf();
    r.partCount++;
    if (r.partCount > st.limits.maxParts) {
      addMalformed(r, 'too-many-parts');
      return;
    }
    const h = node.header as PartHeader;
    const depth = this.#depthOf(node);
    if (depth > r.depth) r.depth = depth;
    const ctype = (h.contentType || 'text/plain').slice(0, 200);
    if (r.contentTypes.length < 100 && !r.contentTypes.includes(ctype)) r.contentTypes.push(ctype);
    if (node.multipart) {
      if (countParam(h.contentTypeField, 'boundary=') > 1) addMalformed(r, 'duplicate-boundary');
      if (!node.boundary) addMalformed(r, 'multipart-without-boundary');
      else this.#open.push({ close: Buffer.from(`--${node.boundary.toString('latin1')}--`, 'latin1'), closed: false, decided: 0 });
      return;
    }
    if (depth > st.limits.maxDepth) {
      addMalformed(r, 'too-deep');
      return;
    }
    const encoding = h.encoding;
    if (!(KNOWN_ENCODINGS as readonly string[]).includes(encoding)) addMalformed(r, 'unknown-encoding');
    const disposition = h.disposition;
    const filename = rawUtf8(h.filename);
    const textKind = ctype === 'text/plain' ? 'plain' : ctype === 'text/html' ? 'html' : undefined;
    const attachment =
      filename !== '' || disposition === 'attachment' || !(ctype.startsWith('text/') || ctype.startsWith('message/') || ctype.startsWith('multipart/'));
    const part: WalkPart = {
      index: r.parts.length,
      depth,
      contentType: ctype,
      disposition,
      filename,
      charset: h.charset,
      encoding,
      size: 0,
      head: EMPTY,
      data: undefined,
      source: 'mime',
      inMessage: this.#inMessage,
      attachment,
    };
    r.parts.push(part);
    const leaf: Leaf = {
      part,
      decoder: decoderFor(encoding),
      headChunks: [],
      headLen: 0,
      chunks: attachment ? [] : undefined,
      // A text part that is an attachment (a .txt file) is not body text, except uuencode scanning.
      text: textKind && (disposition !== 'attachment' || textKind === 'plain') ? textKind : undefined,
      textChunks: [],
      textLen: 0,
      nested: undefined,
    };
    // An attached message (forwarded mail, possibly base64-encoded) is walked as a message of
    // its own, one level deeper, from its decoded bytes.
    if (ctype === 'message/rfc822' || ctype === 'message/global') leaf.nested = new Walker(st, depth + 1, true);
    this.#leaf = leaf;
  }

  #decoded(leaf: Leaf, bytes: Buffer): void {
    if (bytes.length === 0) return;
    const st = this.#st;
    const r = st.result;
    const part = leaf.part;
    part.size += bytes.length;
    // An attached message's bytes are counted by the parts of its own walk, not twice.
    if (leaf.nested && !leaf.nested.failed) {
      this.#keepHead(leaf, bytes);
      leaf.nested.write(bytes);
      return;
    }
    if (r.decodedBytes + bytes.length > st.limits.maxDecodedBytes) {
      addMalformed(r, 'decoded-limit');
      r.textTruncated = true;
      leaf.chunks = undefined;
      return;
    }
    r.decodedBytes += bytes.length;
    this.#keepHead(leaf, bytes);
    if (leaf.chunks) {
      if (part.size > st.limits.maxKeepBytes || st.kept + bytes.length > st.limits.maxKeepTotalBytes) {
        st.kept -= part.size - bytes.length;
        leaf.chunks = undefined;
      } else {
        leaf.chunks.push(bytes);
        st.kept += bytes.length;
      }
    }
    if (leaf.text) {
      const room = st.limits.maxTextBytes - leaf.textLen;
      if (room > 0) {
        const take = bytes.length > room ? bytes.subarray(0, room) : bytes;
        leaf.textChunks.push(take);
        leaf.textLen += take.length;
      }
      if (bytes.length > room) r.textTruncated = true;
    }
  }

  #keepHead(leaf: Leaf, bytes: Buffer): void {
    if (leaf.headLen >= SNIFF_BYTES) return;
    const take = bytes.subarray(0, SNIFF_BYTES - leaf.headLen);
    leaf.headChunks.push(take);
    leaf.headLen += take.length;
  }

  #finishLeaf(): void {
    const leaf = this.#leaf;
    if (!leaf) return;
    this.#leaf = undefined;
    const st = this.#st;
    const r = st.result;
    this.#decoded(leaf, leaf.decoder.end());
    if (leaf.decoder.junk > 0) addMalformed(r, leaf.part.encoding === 'base64' ? 'base64-garbage' : 'qp-garbage');
    // A copy: the head outlives the input chunk it may be a view of (a 64 KB file read).
    leaf.part.head = Buffer.from(concat(leaf.headChunks, leaf.headLen));
    if (leaf.chunks) leaf.part.data = concat(leaf.chunks, -1);
    if (leaf.nested && !leaf.nested.failed) leaf.nested.end();
    if (leaf.text) {
      const text = decodeText(concat(leaf.textChunks, leaf.textLen), leaf.part.charset);
      if (leaf.text === 'plain') {
        scanUuencode(text, leaf.part, st);
        if (!leaf.part.attachment) r.text = appendCapped(r.text, text, st.limits.maxTextBytes, r);
      } else r.html = appendCapped(r.html, text, st.limits.maxTextBytes, r);
    }
  }
}

/** The chunks as one buffer; one chunk is returned as it is (`len` -1: not known). */
function concat(chunks: Buffer[], len: number): Buffer {
  if (chunks.length === 0) return EMPTY;
  if (chunks.length === 1) return chunks[0] as Buffer;
  return len < 0 ? Buffer.concat(chunks) : Buffer.concat(chunks, len);
}

function appendCapped(into: string, add: string, cap: number, r: MimeWalk): string {
  const joined = into ? `${into}\n${add}` : add;
  if (joined.length <= cap) return joined;
  r.textTruncated = true;
  return joined.slice(0, cap);
}

/**
 * Finds `begin <mode> <name>` … `end` blocks in a text part and records each as an attachment
 * of its own (source 'uuencode'); clients such as Outlook Express still decode them.
 */
function scanUuencode(text: string, parent: WalkPart, st: WalkState): void {
  let pos = text.indexOf('begin ');
  while (pos >= 0) {
    if (pos === 0 || text[pos - 1] === '\n') {
      const eol = text.indexOf('\n', pos);
      const first = text.slice(pos, eol < 0 ? text.length : eol).trimEnd();
      const sp = first.indexOf(' ', 6);
      const mode = sp > 6 ? first.slice(6, sp) : '';
      if (mode.length >= 3 && mode.length <= 4 && [...mode].every((c) => c >= '0' && c <= '7')) {
        const name = first.slice(sp + 1).slice(0, 255);
        const chunks: Buffer[] = [];
        let size = 0;
        let at = eol < 0 ? text.length : eol + 1;
        while (at < text.length) {
          const next = text.indexOf('\n', at);
          const line = text.slice(at, next < 0 ? text.length : next).replace(/\r$/, '');
          at = next < 0 ? text.length : next + 1;
          if (line === 'end') break;
          const bytes = uudecodeLine(line);
          size += bytes.length;
          if (size <= st.limits.maxKeepBytes) chunks.push(bytes);
        }
        const data = Buffer.concat(chunks);
        st.result.parts.push({
          index: st.result.parts.length,
          depth: parent.depth + 1,
          contentType: 'application/octet-stream',
          disposition: 'attachment',
          filename: name,
          charset: '',
          encoding: 'uuencode',
          size,
          head: data.subarray(0, SNIFF_BYTES),
          data: size <= st.limits.maxKeepBytes ? data : undefined,
          source: 'uuencode',
          inMessage: parent.inMessage,
          attachment: true,
        });
        pos = text.indexOf('begin ', at);
        continue;
      }
    }
    pos = text.indexOf('begin ', pos + 6);
  }
}

/**
 * Walks a message from a stream of its bytes. Never throws for bad MIME (that is `malformed`);
 * stops early when `signal` aborts (the result then has textTruncated set).
 */
export async function walkMime(
  source: AsyncIterable<Buffer | string> | Iterable<Buffer>,
  limits: WalkLimits = DEFAULT_WALK_LIMITS,
  signal?: AbortSignal,
): Promise<MimeWalk> {
  const walk = new MimeWalker(limits);
  if (Array.isArray(source)) {
    for (const chunk of source as Buffer[]) {
      if (walk.stopped || signal?.aborted) break;
      walk.write(chunk);
    }
  } else {
    for await (const chunk of source) {
      if (walk.stopped || signal?.aborted) break;
      walk.write(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
    }
  }
  return walk.end(signal?.aborted ?? false);
}

/** The walk fed chunk by chunk (synchronously), for callers that already hold the bytes. */
export class MimeWalker {
  readonly #state: WalkState;
  readonly #root: Walker;

  constructor(limits: WalkLimits = DEFAULT_WALK_LIMITS) {
    const result: MimeWalk = {
      parts: [],
      contentTypes: [],
      partCount: 0,
      depth: 0,
      text: '',
      html: '',
      textTruncated: false,
      decodedBytes: 0,
      malformed: [],
    };
    this.#state = { limits, result, kept: 0, stopped: false, scratch: EMPTY };
    this.#root = new Walker(this.#state, 0, false);
  }

  /** A limit stopped the walk: more input changes nothing. */
  get stopped(): boolean {
    return this.#state.stopped;
  }

  write(chunk: Buffer): void {
    if (!this.#state.stopped) this.#root.write(chunk);
  }

  /** Finishes the walk; `cut`: the input was not read to its end. */
  end(cut = false): MimeWalk {
    const r = this.#state.result;
    if (cut) r.textTruncated = true;
    this.#root.end();
    return r;
  }
}
