// Looks inside archives: zip (yauzl, from the attachment's bytes), gzip and tar (cheap, zlib and
// 512-byte headers). Lists members, reads the small ones for the same inspection as attachments,
// recurses to a depth, and stops at zip-bomb signs (ratio, total size, entry count).
import { gunzipSync } from 'node:zlib';
import { createRequire } from 'node:module';
import type * as Yauzl from 'yauzl';

// yauzl is required on the first zip attachment, not imported: most messages have none, and a
// CommonJS package imported from ESM keeps its source twice (bench/HISTORY.md)
const lazyRequire = createRequire(import.meta.url);

export interface ArchiveLimits {
  /** Nested archive levels opened (a zip in a zip in a zip is 3). */
  maxDepth: number;
  /** Entries listed per message over all archives. */
  maxEntries: number;
  /** Members up to this size are read for inspection. */
  maxMemberBytes: number;
  /** Total uncompressed bytes read (and declared) over all archives of the message. */
  maxTotalBytes: number;
  /** Uncompressed/compressed ratio above which a member is a bomb (for members over 1 MiB). */
  maxRatio: number;
}

export const DEFAULT_ARCHIVE_LIMITS: ArchiveLimits = {
  maxDepth: 3,
  maxEntries: 1000,
  maxMemberBytes: 4 * 1024 * 1024,
  maxTotalBytes: 64 * 1024 * 1024,
  maxRatio: 100,
};

export interface ArchiveMember {
  /** Path inside the archive, as stored (decoded). */
  name: string;
  size: number;
  encrypted: boolean;
  /** The member's bytes when read (small, not encrypted, within the budget). */
  data: Buffer | undefined;
}

export interface ArchiveListing {
  format: 'zip' | 'gzip' | 'tar';
  members: ArchiveMember[];
  /** Some member is encrypted (zip general-purpose flag bit 0, APPNOTE 4.4.4). */
  encrypted: boolean;
  /** Bomb signs: a ratio, total or count limit was hit. */
  bomb: boolean;
  /** Not fully listed (corrupt, limits, or too big to open). */
  incomplete: boolean;
}

/** Budget shared by every archive of one message. */
export interface ArchiveBudget {
  entries: number;
  bytes: number;
}

export function archiveFormat(head: Buffer): ArchiveListing['format'] | '' {
  if (head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b && (head[2] === 0x03 || head[2] === 0x05)) return 'zip';
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 262 && head.toString('latin1', 257, 262) === 'ustar') return 'tar';
  return '';
}

const MIB = 1024 * 1024;

async function readZip(data: Buffer, limits: ArchiveLimits, budget: ArchiveBudget): Promise<ArchiveListing> {
  const out: ArchiveListing = { format: 'zip', members: [], encrypted: false, bomb: false, incomplete: false };
  const yauzl = lazyRequire('yauzl') as typeof Yauzl;
  let zip: Yauzl.ZipFile;
  try {
    zip = await yauzl.fromBufferPromise(data, { lazyEntries: true, decodeStrings: true, validateEntrySizes: true, strictFileNames: false });
  } catch {
    out.incomplete = true;
    return out;
  }
  try {
    for (;;) {
      const entry = await new Promise<Yauzl.Entry | undefined>((resolve, reject) => {
        const onEntry = (e: Yauzl.Entry) => {
          zip.off('end', onEnd);
          zip.off('error', onErr);
          resolve(e);
        };
        const onEnd = () => {
          zip.off('entry', onEntry);
          zip.off('error', onErr);
          resolve(undefined);
        };
        const onErr = (err: Error) => {
          zip.off('entry', onEntry);
          zip.off('end', onEnd);
          reject(err);
        };
        zip.once('entry', onEntry);
        zip.once('end', onEnd);
        zip.once('error', onErr);
        zip.readEntry();
      });
      if (!entry) break;
      if (entry.fileName.endsWith('/')) continue; // directory
      if (++budget.entries > limits.maxEntries) {
        out.bomb = true;
        out.incomplete = true;
        break;
      }
      const encrypted = (entry.generalPurposeBitFlag & 0x1) !== 0;
      if (encrypted) out.encrypted = true;
      const size = entry.uncompressedSize;
      if (size > MIB && entry.compressedSize > 0 && size / entry.compressedSize > limits.maxRatio) out.bomb = true;
      const member: ArchiveMember = { name: entry.fileName.slice(0, 1024), size, encrypted, data: undefined };
      out.members.push(member);
      if (encrypted || out.bomb || size > limits.maxMemberBytes || budget.bytes + size > limits.maxTotalBytes) {
        if (!encrypted && budget.bytes + size > limits.maxTotalBytes) out.incomplete = true;
        continue;
      }
      try {
        const stream = await zip.openReadStreamPromise(entry);
        const chunks: Buffer[] = [];
        let got = 0;
        for await (const c of stream as AsyncIterable<Buffer>) {
          got += c.length;
          // validateEntrySizes stops a lying header, but bound our own reading too.
          if (got > limits.maxMemberBytes) {
            (stream as NodeJS.ReadableStream & { destroy(): void }).destroy();
            out.bomb = true;
            break;
          }
          chunks.push(c);
        }
        budget.bytes += got;
        if (got <= limits.maxMemberBytes) member.data = Buffer.concat(chunks);
      } catch {
        out.incomplete = true;
      }
    }
  } catch {
    out.incomplete = true;
  } finally {
    zip.close();
  }
  return out;
}

function readTar(data: Buffer, limits: ArchiveLimits, budget: ArchiveBudget): ArchiveListing {
  const out: ArchiveListing = { format: 'tar', members: [], encrypted: false, bomb: false, incomplete: false };
  let off = 0;
  while (off + 512 <= data.length) {
    const h = data.subarray(off, off + 512);
    if (h.every((b) => b === 0)) break;
    const cstr = (a: number, b: number) => {
      const s = h.subarray(a, b);
      const z = s.indexOf(0);
      return s.subarray(0, z < 0 ? s.length : z).toString('utf8');
    };
    const size = parseInt(cstr(124, 136).trim() || '0', 8);
    if (!Number.isFinite(size) || size < 0) {
      out.incomplete = true;
      break;
    }
    const type = String.fromCharCode(h[156] ?? 0x30);
    const prefix = h.toString('latin1', 257, 262) === 'ustar' ? cstr(345, 500) : '';
    const name = (prefix ? `${prefix}/` : '') + cstr(0, 100);
    const start = off + 512;
    off = start + Math.ceil(size / 512) * 512;
    if (type !== '0' && type !== '\0' && type !== '7') continue; // only regular files
    if (++budget.entries > limits.maxEntries) {
      out.bomb = true;
      out.incomplete = true;
      break;
    }
    const member: ArchiveMember = { name: name.slice(0, 1024), size, encrypted: false, data: undefined };
    if (size <= limits.maxMemberBytes && start + size <= data.length && budget.bytes + size <= limits.maxTotalBytes) {
      member.data = data.subarray(start, start + size);
      budget.bytes += size;
    }
    out.members.push(member);
  }
  return out;
}

function readGzip(data: Buffer, name: string, limits: ArchiveLimits, budget: ArchiveBudget): ArchiveListing {
  const out: ArchiveListing = { format: 'gzip', members: [], encrypted: false, bomb: false, incomplete: false };
  const room = Math.min(limits.maxMemberBytes, limits.maxTotalBytes - budget.bytes);
  let inner: Buffer;
  try {
    inner = gunzipSync(data, { maxOutputLength: Math.max(1, room) });
  } catch (err) {
    // RangeError: more than `room` bytes (a bomb if the ratio says so), else corrupt.
    out.incomplete = true;
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' && room / Math.max(1, data.length) > limits.maxRatio) out.bomb = true;
    return out;
  }
  budget.bytes += inner.length;
  if (inner.length > MIB && inner.length / Math.max(1, data.length) > limits.maxRatio) out.bomb = true;
  const base = name.replace(/\.(t?gz|gzip)$/i, (m) => (m.toLowerCase() === '.tgz' ? '.tar' : ''));
  out.members.push({ name: base || 'data', size: inner.length, encrypted: false, data: inner });
  return out;
}

/** Lists one archive. Never throws: a corrupt archive is `incomplete`. */
export async function listArchive(data: Buffer, name: string, limits: ArchiveLimits, budget: ArchiveBudget): Promise<ArchiveListing | undefined> {
  const format = archiveFormat(data);
  if (format === 'zip') return readZip(data, limits, budget);
  if (format === 'gzip') return readGzip(data, name, limits, budget);
  if (format === 'tar') return readTar(data, limits, budget);
  return undefined;
}
