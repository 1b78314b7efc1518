// Writes a file so that once the promise resolves it survives a crash: write to a temp name in the
// same directory, fsync the file, rename into place, fsync the directory (rename is only durable
// once the directory entry is). Used before mailgate itself answers 250 (quarantine, maildir).
import { open, rename, mkdir, unlink } from 'node:fs/promises';
import { dirname, join, basename } from 'node:path';
import type { Readable } from 'node:stream';

export async function writeDurable(path: string, parts: ReadonlyArray<Buffer | Readable>): Promise<number> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `.${basename(path)}.tmp`);
  const fh = await open(tmp, 'wx', 0o640);
  let size = 0;
  try {
    for (const p of parts) {
      if (Buffer.isBuffer(p)) {
        await fh.write(p);
        size += p.length;
      } else {
        for await (const chunk of p as AsyncIterable<Buffer>) {
          await fh.write(chunk);
          size += chunk.length;
        }
      }
    }
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fh.close();
  await rename(tmp, path);
  await fsyncDir(dir);
  return size;
}

export async function fsyncDir(dir: string): Promise<void> {
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}
