// The quarantine store: durable files (file-layout.ts) plus an index (sqlite or PostgreSQL) for
// listing without reading files; retention, quota and periodic expiry; reconciliation of the
// index with the files at start, so whatever a crash left behind is either complete or absent.
import { isAbsolute, join } from 'node:path';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { FileLayout, type FaultHook, type StoredMeta } from './file-layout.ts';
import { enrichMeta, rowOf, validId, type IndexRow, type ListFilter, type QuarantineMeta } from './entry.ts';
import type { QuarantineIndex } from './quarantine-index.ts';
import { quarantineSchema, type QuarantineConfig } from '../../config/quarantine-schema.ts';
import { countAction, reportTotalsFrom } from './quarantine-metrics.ts';
import { QuarantineFullError } from './quota-error.ts';

export type { QuarantineMeta } from './entry.ts';

export interface StoreOptions {
  config: QuarantineConfig;
  logger?: Logger;
  now?: () => number;
  /** Tests: called between write steps (throw, or kill the process, to simulate a crash). */
  fault?: FaultHook;
  /** Use this index instead of opening the configured one (tests). */
  index?: QuarantineIndex;
}

/** An .eml without its .json younger than this may be a write in progress elsewhere. */
const ORPHAN_MS = 10 * 60_000;
/** A release claim older than this is taken to be from a crashed process. */
const CLAIM_STALE_MS = 5 * 60_000;
/** Quota totals are re-read from the index at most this often (kept up to date in between). */
const TOTALS_TTL_MS = 30_000;

export async function openIndex(config: QuarantineConfig): Promise<QuarantineIndex> {
  const ix = config.index;
  if (ix.backend === 'postgres') {
    const { openPostgresIndex } = await import('./postgres-index.ts');
    return openPostgresIndex(ix.url, ix.schema);
  }
  const { openSqliteIndex } = await import('./sqlite-index.ts');
  const file = ix.file ? (isAbsolute(ix.file) ? ix.file : join(config.dir, ix.file)) : join(config.dir, 'index.sqlite');
  return openSqliteIndex(file);
}

export class QuarantineStore {
  readonly dir: string;
  readonly config: QuarantineConfig;
  readonly files: FileLayout;
  readonly #opts: StoreOptions;
  #index: Promise<QuarantineIndex> | undefined;
  #totals: { messages: number; bytes: number; at: number } | undefined;
  #timer: NodeJS.Timeout | undefined;
  #needsReconcile = false;
  #stopReporting: (() => void) | undefined;

  /** A directory (the old `quarantine: { dir }` form), a `quarantine:` config, or full options. */
  constructor(opts: string | QuarantineConfig | StoreOptions) {
    const o: StoreOptions = typeof opts === 'string' ? { config: quarantineSchema.parse({ dir: opts }) } : 'config' in opts ? opts : { config: opts };
    this.#opts = o;
    this.config = o.config;
    this.dir = o.config.dir;
    this.files = new FileLayout(this.dir, o.fault);
  }

  #now(): number {
    return (this.#opts.now ?? Date.now)();
  }

  index(): Promise<QuarantineIndex> {
    this.#index ??= this.#opts.index ? Promise.resolve(this.#opts.index) : openIndex(this.config);
    return this.#index;
  }

  /**
   * Stores the message durably; resolves only once the bytes and metadata are fsync'd (and
   * indexed). Throws QuarantineFullError when the quota is reached and the outcome is not eviction.
   */
  async put(given: QuarantineMeta, parts: ReadonlyArray<Buffer | Readable>): Promise<void> {
    const meta = enrichMeta(given);
    if (!validId(meta.id)) throw new Error(`invalid quarantine id ${JSON.stringify(meta.id)}`);
    const index = await this.index();
    let stored: StoredMeta;
    try {
      await this.#enforceQuota(meta.size);
      stored = await this.files.write(meta, parts);
    } catch (err) {
      // Unread spool streams hold file descriptors: release them on every failure path.
      for (const p of parts) if (!Buffer.isBuffer(p)) p.destroy();
      throw err;
    }
    try {
      await index.insert([{ ...rowOf(stored), size: stored.bytes }]);
    } catch (err) {
      // The entry is durable on disk (the client may be told 250): the index catches up at the
      // next reconcile, which the periodic maintenance runs when this flag is set.
      this.#needsReconcile = true;
      this.#opts.logger?.error({ err: (err as Error).message, id: meta.id }, 'quarantine index insert failed; will reconcile');
    }
    await this.files.fault?.('indexed', meta.id);
    if (this.#totals) {
      this.#totals.messages++;
      this.#totals.bytes += stored.bytes;
    }
    countAction('quarantine');
    this.#opts.logger?.info({ qid: meta.id, rcpts: meta.rcpts, size: stored.bytes, reason: meta.reason }, 'quarantined');
  }

  async #currentTotals(): Promise<{ messages: number; bytes: number }> {
    const now = this.#now();
    if (!this.#totals || now - this.#totals.at > TOTALS_TTL_MS) {
      this.#totals = { ...(await (await this.index()).totals()), at: now };
    }
    return this.#totals;
  }

  async #enforceQuota(incoming: number): Promise<void> {
    const q = this.config.quota;
    if (q.max_bytes === undefined && q.max_messages === undefined) return;
    const over = (t: { messages: number; bytes: number }) =>
      (q.max_messages !== undefined && t.messages + 1 > q.max_messages) || (q.max_bytes !== undefined && t.bytes + incoming > q.max_bytes);
    let t = await this.#currentTotals();
    if (!over(t)) return;
    if (q.outcome === 'evict_oldest') {
      const index = await this.index();
      // Oldest first, a batch at a time, until the new message fits (or nothing is left).
      while (over(t)) {
        const victims = await index.olderThan('9999', 50);
        if (victims.length === 0) break;
        for (const v of victims) {
          await this.#removeRow(v);
          countAction('evict');
          if (!over(await this.#currentTotals())) break;
        }
        t = await this.#currentTotals();
      }
      if (!over(t)) return;
    }
    countAction('refused_quota');
    const detail = `${t.messages} messages, ${t.bytes} bytes; quota ${q.max_messages ?? '-'} messages, ${q.max_bytes ?? '-'} bytes`;
    this.#opts.logger?.warn({ detail }, 'quarantine full: refusing new quarantines');
    throw new QuarantineFullError(q.outcome === 'reject' ? 'reject' : 'tempfail', detail);
  }

  async list(filter: ListFilter = {}): Promise<{ rows: IndexRow[]; total: number }> {
    return (await this.index()).list(filter);
  }

  /** The index row and the full metadata (from the .json) of one entry. */
  async get(id: string): Promise<{ row: IndexRow; meta: StoredMeta } | undefined> {
    if (!validId(id)) return undefined;
    const row = await (await this.index()).get(id);
    if (!row) return undefined;
    const meta = await this.files.readMeta(id, row.received);
    return meta ? { row, meta } : undefined;
  }

  async bytes(row: IndexRow): Promise<Buffer> {
    return this.files.readBytes(row.id, row.received);
  }

  /** The first `max` bytes of the message (for bounded views). */
  head(row: IndexRow, max: number): Promise<Buffer> {
    return this.files.readHead(row.id, row.received, max);
  }

  stream(row: IndexRow): Readable {
    return this.files.stream(row.id, row.received);
  }

  async #removeRow(row: IndexRow): Promise<void> {
    // Index first: once the row is gone nobody lists or releases the entry; then the files.
    await (await this.index()).remove([row.id]);
    await this.files.remove(row.id, row.received);
    if (this.#totals) {
      this.#totals.messages = Math.max(0, this.#totals.messages - 1);
      this.#totals.bytes = Math.max(0, this.#totals.bytes - row.size);
    }
  }

  /** Deletes entries; returns the ids that existed. Logged with who asked. */
  async delete(ids: readonly string[], by = 'unknown'): Promise<string[]> {
    const index = await this.index();
    const done: string[] = [];
    for (const id of ids) {
      if (!validId(id)) continue;
      const row = await index.get(id);
      if (!row) continue;
      await this.#removeRow(row);
      done.push(id);
      countAction('delete');
      this.#opts.logger?.info({ qid: id, by }, 'quarantine entry deleted');
    }
    return done;
  }

  /** Deletes every entry received more than `olderThanMs` ago; returns how many. */
  async purge(olderThanMs: number, action: 'expire' | 'delete' = 'delete'): Promise<number> {
    const index = await this.index();
    const before = new Date(this.#now() - olderThanMs).toISOString();
    let n = 0;
    for (;;) {
      const rows = await index.olderThan(before, 500);
      if (rows.length === 0) break;
      for (const r of rows) await this.#removeRow(r);
      n += rows.length;
    }
    countAction(action, n);
    if (n) this.#opts.logger?.info({ count: n, before }, 'quarantine entries expired');
    return n;
  }

  /** Retention: what the periodic maintenance runs. */
  expire(): Promise<number> {
    return this.purge(this.config.retention, 'expire');
  }

  /**
   * Brings the index in line with the files: entries complete on disk but not indexed (a crash
   * after the .json, or an index outage) are added; rows whose files are gone are removed.
   */
  async reconcile(): Promise<{ added: number; removed: number; cleaned: number }> {
    const index = await this.index();
    const known = await index.ids();
    const scan = await this.files.scan(ORPHAN_MS, known);
    if (scan.found.length) await index.insert(scan.found.map((m) => ({ ...rowOf(m), size: m.bytes })));
    let gone = [...known].filter((id) => !scan.ids.has(id));
    if (gone.length && scan.ids.size === 0) {
      // No entry files at all but an index full of rows: more likely an unmounted shared volume
      // than a quarantine emptied by hand. Keep the rows; `mailgate quarantine purge` clears them.
      this.#opts.logger?.warn({ dir: this.dir, rows: gone.length }, 'quarantine directory has no entries but the index has; not dropping rows');
      gone = [];
    }
    if (gone.length) await index.remove(gone);
    this.#totals = undefined;
    this.#needsReconcile = false;
    return { added: scan.found.length, removed: gone.length, cleaned: scan.removed };
  }

  claimRelease(id: string): Promise<'claimed' | 'already' | 'busy' | 'missing'> {
    const now = this.#now();
    return this.index().then((ix) => ix.claimRelease(id, new Date(now).toISOString(), new Date(now - CLAIM_STALE_MS).toISOString()));
  }

  async finishRelease(id: string, outcome: { by: string; reply: string } | undefined): Promise<void> {
    await (await this.index()).finishRelease(id, outcome ? { ...outcome, at: new Date(this.#now()).toISOString() } : undefined);
    if (outcome) {
      countAction('release');
      this.#opts.logger?.info({ qid: id, by: outcome.by, reply: outcome.reply }, 'quarantine entry released');
    }
  }

  /** For `serve`: reconcile now, then expire (and reconcile after index trouble) periodically. */
  async start(): Promise<void> {
    this.#stopReporting = reportTotalsFrom(async () => (await this.index()).totals());
    const r = await this.reconcile();
    if (r.added || r.removed) this.#opts.logger?.info(r, 'quarantine index reconciled with the files');
    await this.expire();
    this.#timer = setInterval(() => {
      void (async () => {
        if (this.#needsReconcile) await this.reconcile();
        await this.expire();
      })().catch((err: Error) => this.#opts.logger?.error({ err: err.message }, 'quarantine maintenance failed'));
    }, this.config.expiry_interval);
    this.#timer.unref();
  }

  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#stopReporting?.();
    this.#stopReporting = undefined;
    const ix = this.#index;
    this.#index = undefined;
    if (ix) await (await ix).close();
  }
}
