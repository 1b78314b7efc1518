// A bounded capture of recent verdict inputs (facts, not bodies) as JSON lines, for `mailgate
// rules diff` to replay against proposed rules. Two files rotate (FILE and FILE.1), so at most
// `maxEntries` entries are kept and nothing is ever rewritten in place.
import { createWriteStream, mkdirSync, readFileSync, renameSync, type WriteStream } from 'node:fs';
import { dirname } from 'node:path';
import type { FactSet, FactValue } from '../pipeline/facts.ts';
import type { Stage } from '../pipeline/stages.ts';
import type { Verdict } from './verdict.ts';
import { globToRegExp } from './patterns.ts';

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
  /** Entries are dropped rather than buffered beyond this many bytes awaiting the disk. */
  maxPendingBytes?: number;
}

export const DEFAULT_CAPTURE_EXCLUDE = ['message.body_text', 'message.body_html'];

function cut(v: FactValue, max: number): FactValue {
  if (typeof v === 'string') return v.length > max ? v.slice(0, max) : v;
  if (Array.isArray(v)) {
    const list = (v as readonly unknown[]).slice(0, 500);
    return list.map((x) => {
      if (typeof x === 'string') return x.length > max ? x.slice(0, max) : x;
      if (x && typeof x === 'object') {
        return Object.fromEntries(Object.entries(x).map(([k, y]) => [k, typeof y === 'string' && y.length > max ? y.slice(0, max) : y]));
      }
      return x;
    }) as FactValue;
  }
  return v;
}

export class Capture {
  readonly file: string;
  readonly #max: number;
  readonly #exclude: RegExp[];
  readonly #maxValue: number;
  readonly #maxPending: number;
  #stream: WriteStream | undefined;
  #lines = 0;
  /** Entries not written because the disk could not keep up. */
  dropped = 0;

  constructor(opts: CaptureOptions) {
    this.file = opts.file;
    this.#max = Math.max(2, opts.maxEntries ?? 10_000);
    this.#exclude = (opts.exclude ?? DEFAULT_CAPTURE_EXCLUDE).map(globToRegExp);
    this.#maxValue = opts.maxValueChars ?? 2048;
    this.#maxPending = opts.maxPendingBytes ?? 1_048_576;
    mkdirSync(dirname(this.file), { recursive: true });
    try {
      this.#lines = readFileSync(this.file, 'utf8').split('\n').filter(Boolean).length;
    } catch {
      this.#lines = 0;
    }
  }

  /** Records one verdict. Never throws and never blocks on the disk. */
  record(facts: FactSet, verdict: Verdict, action: string = verdict.action, id?: string): void {
    const out: Record<string, FactValue> = {};
    for (const [k, v] of facts.entries()) {
      if (this.#exclude.some((re) => re.test(k))) continue;
      out[k] = cut(v, this.#maxValue);
    }
    const entry: CaptureEntry = {
      v: 1,
      time: new Date().toISOString(),
      action,
      verdict: { action: verdict.action, score: verdict.score, rules: verdict.fired.map((f) => f.rule) },
      facts: out,
    };
    if (id !== undefined) entry.id = id;
    if (verdict.decided) entry.verdict.decided = verdict.decided.rule;
    if (verdict.stage) entry.verdict.stage = verdict.stage;
    this.#write(`${JSON.stringify(entry)}\n`);
  }

  #write(line: string): void {
    if (this.#lines >= Math.ceil(this.#max / 2)) this.#rotate();
    this.#stream ??= this.#open();
    if (this.#stream.writableLength > this.#maxPending) {
      this.dropped++;
      return;
    }
    this.#stream.write(line);
    this.#lines++;
  }

  #open(): WriteStream {
    const s = createWriteStream(this.file, { flags: 'a' });
    // A full or read-only disk must not take the gateway down; entries are best-effort.
    s.on('error', () => {
      this.dropped++;
    });
    return s;
  }

  #rotate(): void {
    // Renaming an open file is safe on POSIX: pending writes land in the renamed file.
    this.#stream?.end();
    this.#stream = undefined;
    try {
      renameSync(this.file, `${this.file}.1`);
    } catch {
      // nothing to rotate yet
    }
    this.#lines = 0;
  }

  /** Flushes and closes the file. */
  async close(): Promise<void> {
    const s = this.#stream;
    this.#stream = undefined;
    if (s) await new Promise<void>((res) => s.end(res));
  }
}

/** Reads a capture (FILE.1 then FILE), oldest first, skipping unreadable lines. */
export function readCapture(file: string): { entries: CaptureEntry[]; skipped: number } {
  const entries: CaptureEntry[] = [];
  let skipped = 0;
  for (const f of [`${file}.1`, file]) {
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
  return { entries, skipped };
}
