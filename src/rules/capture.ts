// A bounded capture of recent verdict inputs (facts, not bodies) as JSON lines, for `mailgate
// rules diff` to replay against proposed rules. Two files rotate (FILE and FILE.1), so at most
// `maxEntries` entries are kept and nothing is ever rewritten in place.
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, readSync } from 'node:fs';
import { open, rename, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { FactSet, FactValue } from '../pipeline/facts.ts';
import type { Stage } from '../pipeline/stages.ts';
import type { Verdict } from '../pipeline/verdict.ts';
import { globToRegExp, type TextPattern } from '../message/text-patterns.ts';

export interface CaptureEntry {
  v: 1;
  /** ISO time of the verdict. */
  time: string;
  id?: string;
  /** What the gateway did (may differ from the verdict: backend refusal, check failure). */
  action: string;
  verdict: { action: string; score: number; rules: string[]; decided?: string; stage?: Stage };
  facts: Record<string, FactValue>;
}

export interface CaptureOptions {
  file: string;
  /** Most entries kept (default 10000). */
  maxEntries?: number;
  /** Fact names (globs) never written; default: the body text facts. */
  exclude?: readonly string[];
  /** Longest string value kept (longer ones are cut), default 2048. */
  maxValueChars?: number;
  /** Entries are dropped rather than queued beyond this many bytes awaiting the disk. */
  maxPendingBytes?: number;
}

export const DEFAULT_CAPTURE_EXCLUDE = ['message.body_text', 'message.body_html'];

/**
 * `v` with every string longer than `max` cut to `max`, lists to 500 items. Copies only what it
 * shortens: most facts need no cut, and copying every header record of every message was the
 * capture's main allocation.
 */
function cut(v: FactValue, max: number): FactValue {
  if (typeof v === 'string') return v.length > max ? v.slice(0, max) : v;
  if (!Array.isArray(v)) return v;
  const list = v as readonly unknown[];
  let out: unknown[] | undefined = list.length > 500 ? list.slice(0, 500) : undefined;
  const n = Math.min(list.length, 500);
  for (let i = 0; i < n; i++) {
    const x = list[i];
    let y = x;
    if (typeof x === 'string') {
      if (x.length > max) y = x.slice(0, max);
    } else if (x && typeof x === 'object') y = cutRecord(x as Record<string, unknown>, max);
    if (y !== x) {
      out ??= list.slice(0, n);
      out[i] = y;
    }
  }
  return (out ?? v) as FactValue;
}

function cutRecord(r: Record<string, unknown>, max: number): Record<string, unknown> {
  let out: Record<string, unknown> | undefined;
  for (const k in r) {
    const y = r[k];
    if (typeof y === 'string' && y.length > max) {
      out ??= { ...r };
      out[k] = y.slice(0, max);
    }
  }
  return out ?? r;
}

/** One fact value as JSON (cut as `cut` cuts it), or undefined where JSON.stringify drops the property. */
export function valueJson(v: FactValue, max: number): string | undefined {
  switch (typeof v) {
    case 'string':
      return JSON.stringify(v.length > max ? v.slice(0, max) : v);
    case 'number':
      return Number.isFinite(v) ? String(v) : 'null';
    case 'boolean':
      return v ? 'true' : 'false';
    default:
      return JSON.stringify(cut(v, max)) as string | undefined;
  }
}

/**
 * Non-empty lines of `file` (0 when it cannot be read), read in 64 KiB pieces: a full capture file
 * is tens of MB (34 MB in the bench), and reading it as one string at start put all of it in the
 * heap for a moment.
 */
export function countLines(file: string): number {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return 0;
  }
  const buf = Buffer.allocUnsafe(65536);
  let lines = 0;
  let prev = 0x0a; // the last byte seen: a line piece after an LF starts a new line
  try {
    for (let n = readSync(fd, buf); n > 0; n = readSync(fd, buf)) {
      const piece = n === buf.length ? buf : buf.subarray(0, n);
      let from = 0;
      for (let i = piece.indexOf(0x0a); i >= 0; i = piece.indexOf(0x0a, from)) {
        if (i > from || prev !== 0x0a) lines++; // not an empty line
        prev = 0x0a;
        from = i + 1;
      }
      if (from < n) prev = piece[n - 1] as number;
    }
  } catch {
    // unreadable past some point: what was counted stands
  } finally {
    closeSync(fd);
  }
  return prev !== 0x0a ? lines + 1 : lines; // a last line without its LF
}

/** An idle capture file is closed after this long (reopened by the next entry). */
const IDLE_CLOSE_MS = 2000;
/** Entries wait at most this long for the disk, or until BATCH_BYTES are pending. */
const FLUSH_DELAY_MS = 100;
const BATCH_BYTES = 64 * 1024;

export class Capture {
  readonly file: string;
  readonly #half: number;
  readonly #exclude: TextPattern[];
  readonly #maxValue: number;
  readonly #maxPending: number;
  #lines = 0;
  #queue: string[] = [];
  #pendingBytes = 0;
  #flushing: Promise<void> | undefined;
  /** The file, open while entries keep coming (an open and a close per batch otherwise). */
  #fh: FileHandle | undefined;
  #idle: NodeJS.Timeout | undefined;
  /** The pending batch's flush. */
  #timer: NodeJS.Timeout | undefined;
  /** Entries not written because the disk could not keep up (or failed). */
  dropped = 0;

  constructor(opts: CaptureOptions) {
    this.file = opts.file;
    this.#half = Math.max(1, Math.ceil((opts.maxEntries ?? 10_000) / 2));
    this.#exclude = (opts.exclude ?? DEFAULT_CAPTURE_EXCLUDE).map(globToRegExp);
    this.#maxValue = opts.maxValueChars ?? 2048;
    this.#maxPending = opts.maxPendingBytes ?? 1_048_576;
    mkdirSync(dirname(this.file), { recursive: true });
    this.#lines = countLines(this.file);
  }

  /** Per fact name, its JSON key (`"client.ip":`), or null when the name is excluded. */
  readonly #keys = new Map<string, string | null>();

  /**
   * Records one verdict. Never throws and never waits for the disk.
   *
   * The line is written out fact by fact, not built as an object of ~150 properties (added in
   * whatever order the checks finished) for one JSON.stringify: the entry was 4% of the full
   * pipeline's CPU, and this way costs 40% less (bench/HISTORY.md). The text is what
   * JSON.stringify(entry) gives for the same entry, byte for byte (test/unit/capture-line.test.ts).
   */
  record(facts: FactSet, verdict: Verdict, action: string = verdict.action, id?: string): void {
    let body = '';
    for (const [k, v] of facts.entries()) {
      let key = this.#keys.get(k);
      if (key === undefined) {
        key = this.#exclude.some((re) => re.test(k)) ? null : `${JSON.stringify(k)}:`;
        // Fact names come from FactSpecs (bounded), but header-derived names could grow: cap it.
        if (this.#keys.size < 4096) this.#keys.set(k, key);
      }
      if (key === null) continue;
      const json = valueJson(v, this.#maxValue);
      if (json === undefined) continue;
      body = body === '' ? key + json : `${body},${key}${json}`;
    }
    const v: CaptureEntry['verdict'] = { action: verdict.action, score: verdict.score, rules: verdict.fired.map((f) => f.rule) };
    if (verdict.decided) v.decided = verdict.decided.rule;
    if (verdict.stage) v.stage = verdict.stage;
    let line = `{"v":1,"time":"${new Date().toISOString()}","action":${JSON.stringify(action)},"verdict":${JSON.stringify(v)},"facts":{${body}}`;
    if (id !== undefined) line += `,"id":${JSON.stringify(id)}`;
    line += '}\n';
    if (this.#pendingBytes + line.length > this.#maxPending) {
      this.dropped++;
      return;
    }
    this.#queue.push(line);
    this.#pendingBytes += line.length;
    if (this.#flushing) return; // the running flush takes it
    // Batched: one append per FLUSH_DELAY_MS (or per BATCH_BYTES) instead of one per message —
    // each append is a trip through the thread pool (~6 futex calls and a write per message).
    if (this.#pendingBytes >= BATCH_BYTES) this.#startFlush();
    else this.#timer ??= setTimeout(() => this.#startFlush(), FLUSH_DELAY_MS).unref();
  }

  #startFlush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#flushing ??= this.#flush();
  }

  /** One writer: batches are appended in order, and FILE becomes FILE.1 every maxEntries/2 lines. */
  async #flush(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        if (this.#lines >= this.#half) {
          await this.#closeFile();
          await rename(this.file, `${this.file}.1`).catch(() => undefined);
          this.#lines = 0;
        }
        const batch = this.#queue.splice(0, this.#half - this.#lines);
        const text = batch.join('');
        this.#pendingBytes -= text.length;
        try {
          this.#fh ??= await open(this.file, 'a');
          await this.#fh.appendFile(text);
          this.#lines += batch.length;
        } catch {
          // A full or read-only disk must not take the gateway down; entries are best-effort.
          this.dropped += batch.length;
          await this.#closeFile();
        }
      }
    } finally {
      this.#flushing = undefined;
      if (this.#fh) {
        if (this.#idle) this.#idle.refresh();
        else this.#idle = setTimeout(() => this.#onIdle(), IDLE_CLOSE_MS).unref();
      }
    }
  }

  #onIdle(): void {
    this.#idle = undefined;
    if (this.#flushing) return; // the flush re-arms the timer when it ends
    void this.#closeFile();
  }

  async #closeFile(): Promise<void> {
    const fh = this.#fh;
    this.#fh = undefined;
    await fh?.close().catch(() => undefined);
  }

  /** Waits until everything recorded so far is on disk, and closes the file. */
  async close(): Promise<void> {
    if (this.#queue.length > 0) this.#startFlush();
    while (this.#flushing) await this.#flushing;
    clearTimeout(this.#idle);
    this.#idle = undefined;
    await this.#closeFile();
  }
}

/** The capture files of FILE: FILE itself and the per-worker FILE-w<N>.jsonl of a multi-process gateway. */
export function captureFiles(file: string): string[] {
  const dir = dirname(file);
  const stem = basename(file).replace(/\.jsonl$/, '');
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch {
    return [file];
  }
  const worker = new RegExp(`^${stem.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}-w\\d+\\.jsonl$`);
  return [
    file,
    ...names
      .filter((n) => worker.test(n))
      .sort()
      .map((n) => join(dir, n)),
  ];
}

/**
 * Reads a capture — FILE.1 then FILE, and the same for each worker's file — oldest first,
 * skipping unreadable lines.
 */
export function readCapture(file: string): { entries: CaptureEntry[]; skipped: number } {
  const entries: CaptureEntry[] = [];
  let skipped = 0;
  for (const f of captureFiles(file).flatMap((c) => [`${c}.1`, c])) {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      try {
        const e = JSON.parse(line) as CaptureEntry;
        if (e && e.v === 1 && typeof e.facts === 'object') entries.push(e);
        else skipped++;
      } catch {
        skipped++;
      }
    }
  }
  entries.sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
  return { entries, skipped };
}
