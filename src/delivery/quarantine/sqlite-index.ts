// The embedded quarantine index: node:sqlite (built into Node 24, no native addon), one file in
// the quarantine directory, WAL mode with synchronous=FULL so an indexed entry survives a crash.
import type { DatabaseSync as DatabaseSyncType, SQLInputValue } from 'node:sqlite';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { SqlIndex, type SqlDriver } from './quarantine-index.ts';

let sqlite: typeof import('node:sqlite') | undefined;

/** Loads node:sqlite once, without its one-time "experimental" warning on every CLI call. */
async function loadSqlite(): Promise<typeof import('node:sqlite')> {
  if (sqlite) return sqlite;
  const emit = process.emitWarning;
  process.emitWarning = ((w: string | Error, ...rest: unknown[]) => {
    if (String(typeof w === 'string' ? w : w.message).includes('SQLite')) return;
    (emit as (...a: unknown[]) => void).call(process, w, ...rest);
  }) as typeof process.emitWarning;
  try {
    sqlite = await import('node:sqlite');
  } finally {
    process.emitWarning = emit;
  }
  return sqlite;
}

class SqliteDriver implements SqlDriver {
  readonly db: DatabaseSyncType;
  #lock: Promise<unknown> = Promise.resolve();
  #inTx = false;
  constructor(db: DatabaseSyncType) {
    this.db = db;
  }
  #params(p: readonly unknown[] | undefined): SQLInputValue[] {
    return (p ?? []) as SQLInputValue[];
  }
  async all(sql: string, params?: readonly unknown[]): Promise<Array<Record<string, unknown>>> {
    await this.#idle();
    return this.db.prepare(sql).all(...this.#params(params)) as Array<Record<string, unknown>>;
  }
  async run(sql: string, params?: readonly unknown[]): Promise<number> {
    await this.#idle();
    return Number(this.db.prepare(sql).run(...this.#params(params)).changes);
  }
  async exec(sql: string): Promise<void> {
    await this.#idle();
    this.db.exec(sql);
  }
  /** Statements outside a transaction wait for one in progress (one connection, async callers). */
  async #idle(): Promise<void> {
    if (!this.#inTx) return;
    await this.#lock.catch(() => undefined);
  }
  transaction<T>(fn: (d: SqlDriver) => Promise<T>): Promise<T> {
    const inner: SqlDriver = {
      all: async (s, p) => this.db.prepare(s).all(...this.#params(p)) as Array<Record<string, unknown>>,
      run: async (s, p) => Number(this.db.prepare(s).run(...this.#params(p)).changes),
      exec: async (s) => void this.db.exec(s),
      transaction: (f) => f(inner),
      close: async () => undefined,
    };
    const next = this.#lock
      .catch(() => undefined)
      .then(async () => {
        this.#inTx = true;
        this.db.exec('BEGIN IMMEDIATE');
        try {
          const r = await fn(inner);
          this.db.exec('COMMIT');
          return r;
        } catch (err) {
          this.db.exec('ROLLBACK');
          throw err;
        } finally {
          this.#inTx = false;
        }
      });
    this.#lock = next;
    return next;
  }
  async close(): Promise<void> {
    await this.#lock.catch(() => undefined);
    if (this.db.isOpen) this.db.close();
  }
}

export async function openSqliteIndex(file: string): Promise<SqlIndex> {
  const { DatabaseSync } = await loadSqlite();
  mkdirSync(dirname(file), { recursive: true });
  const db = new DatabaseSync(file);
  // WAL lets the CLI read while serve writes; busy_timeout covers the moments they collide.
  db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = OFF');
  return SqlIndex.open(new SqliteDriver(db), `sqlite:${file}`);
}
