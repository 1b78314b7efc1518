// The quarantine: messages held back by policy, each as an .eml plus a .json with envelope, facts
// and verdict. Both are on disk (fsync'd) before the client is told 250, so nothing a client was
// told was accepted can be lost. Layout: <dir>/<YYYY-MM-DD>/<id>.eml and <id>.json.
import { readdir, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { writeDurable } from '../message/durable-write.ts';

export interface QuarantineMeta {
  id: string;
  received: string;
  client: { ip: string; helo: string };
  from: string;
  rcpts: string[];
  size: number;
  reason: string;
  score: number;
  rules: string[];
  facts?: Record<string, unknown>;
}

export class QuarantineStore {
  readonly dir: string;
  constructor(dir: string) {
    this.dir = dir;
  }

  #paths(id: string, day: string) {
    const base = join(this.dir, day, id);
    return { eml: `${base}.eml`, json: `${base}.json` };
  }

  /** Stores the message durably; resolves only when both files are fsync'd. */
  async put(meta: QuarantineMeta, message: ReadonlyArray<Buffer | Readable>): Promise<void> {
    const day = meta.received.slice(0, 10);
    const p = this.#paths(meta.id, day);
    // The .eml first: a .json without its .eml would be a dangling entry; an .eml without .json
    // is still a message an operator can find and release.
    await writeDurable(p.eml, message);
    await writeDurable(p.json, [Buffer.from(JSON.stringify(meta, null, 2) + '\n')]);
  }

  async list(): Promise<QuarantineMeta[]> {
    const out: QuarantineMeta[] = [];
    let days: string[];
    try {
      days = (await readdir(this.dir)).filter((d) => /^\d{4}-\d{2}-\d{2}$/.test(d)).sort();
    } catch {
      return out;
    }
    for (const day of days) {
      for (const f of (await readdir(join(this.dir, day))).filter((n) => n.endsWith('.json')).sort()) {
        try {
          out.push(JSON.parse(await readFile(join(this.dir, day, f), 'utf8')) as QuarantineMeta);
        } catch {
          // a half-written entry cannot exist (temp+rename); an unreadable one is skipped
        }
      }
    }
    return out;
  }

  async get(id: string): Promise<{ meta: QuarantineMeta; eml: Buffer } | undefined> {
    const all = await this.list();
    const meta = all.find((m) => m.id === id);
    if (!meta) return undefined;
    const p = this.#paths(id, meta.received.slice(0, 10));
    return { meta, eml: await readFile(p.eml) };
  }

  async delete(id: string): Promise<boolean> {
    const m = (await this.list()).find((x) => x.id === id);
    if (!m) return false;
    const p = this.#paths(id, m.received.slice(0, 10));
    await unlink(p.json).catch(() => undefined);
    await unlink(p.eml).catch(() => undefined);
    return true;
  }
}
