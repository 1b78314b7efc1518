// TEST ORACLE: the previous MIME walk (mailsplit underneath), kept to compare the new walker with: every part's type, name and
// decoded size, the first bytes of each attachment (and the whole of small ones, for archive and
// document inspection), the decoded text and HTML, and why the MIME is malformed — all bounded.
import { createRequire } from 'node:module';
import { decoderFor, KNOWN_ENCODINGS, uudecodeLine, type TransferDecoder } from '../../src/message/transfer-decode.ts';

// mailsplit is CommonJS without type declarations; the little of it the walk uses is typed here.
interface SplitHeaders {
  get(key: string): string[];
  getFirst(key: string): string;
}
interface SplitNode {
  type: 'node';
  root: boolean;
  parentNode: SplitNode | false;
  contentType: string | false;
  encoding: string | false;
  charset: string | false;
  disposition: string | false;
  filename: string | false;
  multipart: string | false;
  messageNode?: boolean;
  _boundary: Buffer | false;
  headers: SplitHeaders;
}
interface SplitChunk {
  type: 'body' | 'data';
  node: SplitNode;
  value: Buffer;
}
type SplitterStream = NodeJS.ReadWriteStream;
const require = createRequire(import.meta.url);
const { Splitter } = require('mailsplit') as { Splitter: new (opts: Record<string, unknown>) => SplitterStream };

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
 * mailsplit reads header bytes as latin1, so a raw UTF-8 file name (RFC 6532, sent by many
 * clients without encoded-words) arrives as mojibake — and an RTLO in it would go unseen.
 * A value made only of byte-range characters that is valid UTF-8 is decoded as UTF-8.
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

function decodeText(bytes: Buffer, charset: string): string {
  const label = charset.trim().toLowerCase() || 'utf-8';
  try {
    return new TextDecoder(label).decode(bytes);
  } catch {
    // Unknown charset label: latin1 keeps every byte, good enough for pattern matching.
    return bytes.toString('latin1');
  }
}

/** Longest run without a line end held back before it is written anyway. */
const MAX_PENDING = 1024 * 1024;

/** Shared counters of one walk, across nested message/rfc822 walkers. */
interface WalkState {
  limits: WalkLimits;
  result: MimeWalk;
  kept: number;
  stopped: boolean;
  pending: Array<Promise<void>>;
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

class Walker {
  readonly #state: WalkState;
  readonly #base: number;
  readonly #inMessage: boolean;
  readonly #splitter: SplitterStream;
  #leaf: Leaf | undefined;
  #failed = false;
  #pending: Buffer[] = [];
  #pendingLen = 0;
  /** Open multipart boundaries of this walker, with whether their close line was seen. */
  readonly #open = new Map<SplitNode, { close: Buffer; closed: boolean }>();
  readonly done: Promise<void>;

  constructor(state: WalkState, baseDepth: number, inMessage: boolean) {
    this.#state = state;
    this.#base = baseDepth;
    this.#inMessage = inMessage;
    const l = state.limits;
    this.#splitter = new Splitter({ maxHeadSize: l.maxPartHeaderBytes, maxChildNodes: l.maxParts, ignoreEmbedded: true });
    this.#splitter.on('data', (d: SplitNode | SplitChunk) => {
      try {
        if (d.type === 'node') this.#node(d);
        else if (d.type === 'body') this.#body(d);
        else this.#data(d);
      } catch {
        addMalformed(this.#state.result, 'parse-error');
      }
    });
    this.done = new Promise<void>((resolve) => {
      this.#splitter.on('end', () => {
        this.#finishLeaf();
        for (const o of this.#open.values()) if (!o.closed) addMalformed(this.#state.result, 'missing-final-boundary');
        resolve();
      });
      this.#splitter.on('error', (err: Error) => {
        const msg = err.message.toLowerCase();
        addMalformed(this.#state.result, msg.includes('header size') ? 'header-too-big' : msg.includes('child nodes') ? 'too-many-parts' : 'parse-error');
        this.#state.result.textTruncated = true;
        this.#state.stopped = true;
        this.#failed = true;
        this.#finishLeaf();
        resolve();
      });
    });
  }

  /** The splitter gave up (a limit or a parse error); it must not be written to again. */
  get failed(): boolean {
    return this.#failed;
  }

  /**
   * Writes raw message bytes; false: wait for 'drain' (see writeAsync). Writes are cut at line
   * ends: mailsplit 5.4.6 drops body bytes when a chunk ends between CR and LF and the next one is
   * short (found by this project's tests), so the splitter only ever sees whole lines — the tail
   * waits for the next chunk (or is written as-is past MAX_PENDING without a line end).
   */
  write(chunk: Buffer): boolean {
    const lf = chunk.lastIndexOf(0x0a);
    if (lf < 0) {
      this.#pending.push(chunk);
      this.#pendingLen += chunk.length;
      if (this.#pendingLen < MAX_PENDING) return true;
      return this.#flush();
    }
    const head = chunk.subarray(0, lf + 1);
    const out = this.#pendingLen ? Buffer.concat([...this.#pending, head]) : head;
    this.#pending = lf + 1 < chunk.length ? [chunk.subarray(lf + 1)] : [];
    this.#pendingLen = chunk.length - lf - 1;
    return this.#splitter.write(out);
  }

  #flush(): boolean {
    if (this.#pendingLen === 0) return true;
    const out = Buffer.concat(this.#pending);
    this.#pending = [];
    this.#pendingLen = 0;
    return this.#splitter.write(out);
  }

  async writeAsync(chunk: Buffer): Promise<void> {
    if (this.write(chunk)) return;
    await Promise.race([new Promise((r) => this.#splitter.once('drain', r)), this.done]);
  }

  end(): void {
    this.#flush();
    this.#splitter.end();
  }

  /** Calls `fn` once the splitter can take more (or has finished/failed). */
  onDrain(fn: () => void): void {
    let called = false;
    const once = () => {
      if (called) return;
      called = true;
      this.#splitter.off('drain', once);
      fn();
    };
    this.#splitter.once('drain', once);
    void this.done.then(once);
  }

  #depthOf(node: SplitNode): number {
    let d = 0;
    for (let p = node.parentNode; p; p = p.parentNode) d++;
    return this.#base + d;
  }

  #node(node: SplitNode): void {
    const st = this.#state;
    const r = st.result;
    this.#finishLeaf();
    r.partCount++;
    if (r.partCount > st.limits.maxParts) {
      addMalformed(r, 'too-many-parts');
      return;
    }
    const depth = this.#depthOf(node);
    if (depth > r.depth) r.depth = depth;
    const ctype = (node.contentType || 'text/plain').slice(0, 200);
    if (!r.contentTypes.includes(ctype) && r.contentTypes.length < 100) r.contentTypes.push(ctype);
    const ctHeader = node.headers.getFirst('content-type') ?? '';
    if (node.multipart) {
      if (countParam(ctHeader, 'boundary=') > 1) addMalformed(r, 'duplicate-boundary');
      if (!node._boundary) addMalformed(r, 'multipart-without-boundary');
      else this.#open.set(node, { close: Buffer.from(`--${node._boundary.toString('latin1')}--`, 'latin1'), closed: false });
      return;
    }
    if (depth > st.limits.maxDepth) {
      addMalformed(r, 'too-deep');
      return;
    }
    const encoding = (node.encoding || '').toLowerCase();
    if (!(KNOWN_ENCODINGS as readonly string[]).includes(encoding)) addMalformed(r, 'unknown-encoding');
    const disposition = node.disposition || '';
    const filename = rawUtf8(node.filename || '');
    const textKind = ctype === 'text/plain' ? 'plain' : ctype === 'text/html' ? 'html' : undefined;
    const attachment =
      filename !== '' || disposition === 'attachment' || !(ctype.startsWith('text/') || ctype.startsWith('message/') || ctype.startsWith('multipart/'));
    const part: WalkPart = {
      index: r.parts.length,
      depth,
      contentType: ctype,
      disposition,
      filename,
      charset: node.charset || '',
      encoding,
      size: 0,
      head: Buffer.alloc(0),
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
    if (ctype === 'message/rfc822' || ctype === 'message/global') {
      leaf.nested = new Walker(st, depth + 1, true);
      st.pending.push(leaf.nested.done);
    }
    this.#leaf = leaf;
  }

  #body(chunk: SplitChunk): void {
    const leaf = this.#leaf;
    if (!leaf || this.#state.stopped) return;
    // mailsplit strips the line break before a boundary; the body lines keep theirs.
    this.#decoded(leaf, leaf.decoder.write(chunk.value));
  }

  #decoded(leaf: Leaf, bytes: Buffer): void {
    if (bytes.length === 0) return;
    const st = this.#state;
    const r = st.result;
    const part = leaf.part;
    part.size += bytes.length;
    // An attached message's bytes are counted by the parts of its own walk, not twice.
    if (leaf.nested && !leaf.nested.failed) {
      this.#keepHead(leaf, bytes);
      if (!leaf.nested.write(bytes)) {
        // Back-pressure from the inner walk to the outer one (and so to the spool stream): a
        // big forwarded message is never buffered whole.
        this.#splitter.pause();
        leaf.nested.onDrain(() => this.#splitter.resume());
      }
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
        leaf.textChunks.push(Buffer.from(take));
        leaf.textLen += take.length;
      }
      if (bytes.length > room) r.textTruncated = true;
    }
  }

  #keepHead(leaf: Leaf, bytes: Buffer): void {
    if (leaf.headLen >= SNIFF_BYTES) return;
    const take = bytes.subarray(0, SNIFF_BYTES - leaf.headLen);
    leaf.headChunks.push(Buffer.from(take));
    leaf.headLen += take.length;
  }

  #data(chunk: SplitChunk): void {
    // Boundary lines arrive in 'data' chunks of their multipart node (with the line break that
    // precedes them, and sometimes epilogue lines): note the closing `--boundary--` lines.
    const v = chunk.value;
    for (const o of this.#open.values()) {
      if (o.closed) continue;
      const at = v.indexOf(o.close);
      if (at === 0 || (at > 0 && v[at - 1] === 0x0a)) o.closed = true;
    }
  }

  #finishLeaf(): void {
    const leaf = this.#leaf;
    if (!leaf) return;
    this.#leaf = undefined;
    const st = this.#state;
    const r = st.result;
    this.#decoded(leaf, leaf.decoder.end());
    if (leaf.decoder.junk > 0) addMalformed(r, leaf.part.encoding === 'base64' ? 'base64-garbage' : 'qp-garbage');
    leaf.part.head = Buffer.concat(leaf.headChunks);
    if (leaf.chunks) leaf.part.data = Buffer.concat(leaf.chunks);
    if (leaf.nested && !leaf.nested.failed) leaf.nested.end();
    if (leaf.text) {
      const text = decodeText(Buffer.concat(leaf.textChunks), leaf.part.charset);
      if (leaf.text === 'plain') {
        scanUuencode(text, leaf.part, st);
        if (!leaf.part.attachment) r.text = appendCapped(r.text, text, st.limits.maxTextBytes, r);
      } else r.html = appendCapped(r.html, text, st.limits.maxTextBytes, r);
    }
  }
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
  const state: WalkState = { limits, result, kept: 0, stopped: false, pending: [] };
  const root = new Walker(state, 0, false);
  for await (const chunk of source) {
    if (state.stopped || signal?.aborted) break;
    await root.writeAsync(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  }
  if (signal?.aborted) result.textTruncated = true;
  if (!root.failed) root.end();
  await root.done;
  // Nested walkers finish after their outer part ended; wait for all (they may add more).
  for (let i = 0; i < state.pending.length; i++) await state.pending[i];
  return result;
}
