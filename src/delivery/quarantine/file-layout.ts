// The quarantine's files: <dir>/<YYYY-MM-DD>/<id>.eml (the raw bytes) then <id>.json (metadata).
// Each is written to a temp name, fsync'd, renamed and its directory fsync'd; the .json is the
// commit marker, so a crash at any step leaves a complete entry or one that is never listed.
import { mkdir, open, readdir, readFile, stat, unlink } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { fsyncDir, writeDurable } from '../../message/durable-write.ts';
import { validId, type QuarantineMeta } from './entry.ts';

/** The steps of a write, for fault injection in tests (a crash "between" two steps). */
export type WriteStep = 'eml-written' | 'json-written' | 'indexed';
export type FaultHook = (step: WriteStep, id: string) => void | Promise<void>;

/** What the .json holds: the meta plus the stored byte count (to verify the .eml on reconcile). */
export interface StoredMeta extends QuarantineMeta {
  bytes: number;
}

export class FileLayout {
  readonly dir: string;
  readonly fault: FaultHook | undefined;
  constructor(dir: string, fault?: FaultHook) {
    this.dir = dir;
    this.fault = fault;
  }

  dayOf(received: string): string {
    return received.slice(0, 10);
  }

  paths(id: string, received: string): { eml: string; json: string } {
    if (!validId(id)) throw new Error(`invalid quarantine id ${JSON.stringify(id)}`);
    const base = join(this.dir, this.dayOf(received), id);
    return { eml: `${base}.eml`, json: `${base}.json` };
  }

  /** Writes both files durably; returns the number of message bytes stored. */
  async write(meta: QuarantineMeta, parts: ReadonlyArray<Buffer | Readable>): Promise<StoredMeta> {
    const p = this.paths(meta.id, meta.received);
    await this.#ensureDay(this.dayOf(meta.received));
    const bytes = await writeDurable(p.eml, parts);
    await this.fault?.('eml-written', meta.id);
    const stored: StoredMeta = { ...meta, bytes };
    await writeDurable(p.json, [Buffer.from(JSON.stringify(stored, null, 2) + '\n')]);
    await this.fault?.('json-written', meta.id);
    return stored;
  }

  /** A new day directory is only durable once its parent's entry is fsync'd too. */
  async #ensureDay(day: string): Promise<void> {
    const d = join(this.dir, day);
    const created = await mkdir(d, { recursive: true });
    if (created !== undefined) {
      await fsyncDir(this.dir);
      if (created !== d) await fsyncDir(join(this.dir, '..')).catch(() => undefined);
    }
  }

  async readMeta(id: string, received: string): Promise<StoredMeta | undefined> {
    try {
      return JSON.parse(await readFile(this.paths(id, received).json, 'utf8')) as StoredMeta;
    } catch {
      return undefined;
    }
  }

  stream(id: string, received: string): Readable {
    return createReadStream(this.paths(id, received).eml);
  }

  async readBytes(id: string, received: string): Promise<Buffer> {
    return readFile(this.paths(id, received).eml);
  }

  /** At most the first `max` bytes (views parse a bounded prefix of huge messages). */
  async readHead(id: string, received: string, max: number): Promise<Buffer> {
    const fh = await open(this.paths(id, received).eml, 'r');
    try {
      const buf = Buffer.alloc(Math.min(max, (await fh.stat()).size));
      let off = 0;
      while (off < buf.length) {
        const { bytesRead } = await fh.read(buf, off, buf.length - off, off);
        if (bytesRead === 0) break;
        off += bytesRead;
      }
      return buf.subarray(0, off);
    } finally {
      await fh.close();
    }
  }

  /** Removes the .json first (the entry stops existing), then the .eml. */
  async remove(id: string, received: string): Promise<void> {
    const p = this.paths(id, received);
    await unlink(p.json).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
    });
    await unlink(p.eml).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
    });
  }

  /**
   * Every complete entry on disk (a .json whose .eml has the recorded size), and cleans up what a
   * crash left: temp files, and .eml files without .json older than `orphanMs` (younger ones may
   * be a write in progress in another process).
   */
  async scan(orphanMs: number, known: ReadonlySet<string>): Promise<{ found: StoredMeta[]; ids: Set<string>; removed: number }> {
    const found: StoredMeta[] = [];
    const ids = new Set<string>();
    let removed = 0;
    let days: string[];
    try {
      days = (await readdir(this.dir)).filter(isDayName).sort();
    } catch {
      return { found, ids, removed };
    }
    const now = Date.now();
    for (const day of days) {
      const names = await readdir(join(this.dir, day));
      const set = new Set(names);
      for (const n of names) {
        const full = join(this.dir, day, n);
        if (n.startsWith('.') && n.endsWith('.tmp')) {
          const st = await stat(full).catch(() => undefined);
          if (st && now - st.mtimeMs > orphanMs) {
            await unlink(full).catch(() => undefined);
            removed++;
          }
          continue;
        }
        if (n.endsWith('.eml')) {
          const id = n.slice(0, -4);
          if (set.has(`${id}.json`)) continue;
          const st = await stat(full).catch(() => undefined);
          if (st && now - st.mtimeMs > orphanMs) {
            await unlink(full).catch(() => undefined);
            removed++;
          }
          continue;
        }
        if (!n.endsWith('.json')) continue;
        const id = n.slice(0, -5);
        if (!validId(id)) continue;
        ids.add(id);
        if (known.has(id)) continue;
        // Only entries the index does not know are read and verified.
        const meta = await this.#verify(join(this.dir, day), id);
        if (meta) found.push(meta);
        else ids.delete(id);
      }
    }
    return { found, ids, removed };
  }

  async #verify(dayDir: string, id: string): Promise<StoredMeta | undefined> {
    try {
      const meta = JSON.parse(await readFile(join(dayDir, `${id}.json`), 'utf8')) as StoredMeta;
      const st = await stat(join(dayDir, `${id}.eml`));
      if (meta.id !== id || typeof meta.received !== 'string' || !Array.isArray(meta.rcpts)) return undefined;
      if (typeof meta.bytes === 'number' && st.size !== meta.bytes) return undefined;
      meta.bytes ??= st.size;
      return meta;
    } catch {
      return undefined;
    }
  }
}

function isDayName(n: string): boolean {
  if (n.length !== 10 || n[4] !== '-' || n[7] !== '-') return false;
  for (let i = 0; i < 10; i++) {
    if (i === 4 || i === 7) continue;
    const c = n[i] as string;
    if (c < '0' || c > '9') return false;
  }
  return true;
}

/** Opens and fsyncs nothing: used by tests to assert a path exists. */
export async function exists(path: string): Promise<boolean> {
  try {
    const fh = await open(path, 'r');
    await fh.close();
    return true;
  } catch {
    return false;
  }
}
