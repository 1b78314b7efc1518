// The shared quarantine index: PostgreSQL (the pure-JS `pg` client) holds every instance's
// metadata, so any gateway can list and release what another held. The message bytes stay on
// the quarantine volume (see docs/quarantine.md: why files, not bytea).
import pg from 'pg';
import { SqlIndex, type SqlDriver } from './quarantine-index.ts';

/** `?` placeholders → `$1…$n` (our SQL has no `?` inside string literals). */
function numbered(sql: string): string {
  let n = 0;
  let out = '';
  for (const c of sql) out += c === '?' ? `$${++n}` : c;
  return out;
}

class PgDriver implements SqlDriver {
  readonly #q: pg.Pool | pg.PoolClient;
  readonly #pool: pg.Pool | undefined;
  constructor(q: pg.Pool | pg.PoolClient, pool?: pg.Pool) {
    this.#q = q;
    this.#pool = pool;
  }
  async all(sql: string, params?: readonly unknown[]): Promise<Array<Record<string, unknown>>> {
    return (await this.#q.query(numbered(sql), params as unknown[] | undefined)).rows as Array<Record<string, unknown>>;
  }
  async run(sql: string, params?: readonly unknown[]): Promise<number> {
    return (await this.#q.query(numbered(sql), params as unknown[] | undefined)).rowCount ?? 0;
  }
  async exec(sql: string): Promise<void> {
    await this.#q.query(sql);
  }
  async transaction<T>(fn: (d: SqlDriver) => Promise<T>): Promise<T> {
    if (!this.#pool) return fn(this);
    const c = await this.#pool.connect();
    try {
      await c.query('BEGIN');
      const r = await fn(new PgDriver(c));
      await c.query('COMMIT');
      return r;
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      c.release();
    }
  }
  async close(): Promise<void> {
    await this.#pool?.end();
  }
}

export async function openPostgresIndex(url: string, schema: string): Promise<SqlIndex> {
  // Identifier checked by the config schema (lower-case letters, digits, _), so safe to splice.
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new Error(`invalid schema name ${JSON.stringify(schema)}`);
  const pool = new pg.Pool({ connectionString: url, max: 4, options: `-c search_path=${schema}` });
  pool.on('error', () => undefined); // an idle client's error is seen by the next query instead
  await pool.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
  const safe = new URL(url);
  safe.password = '';
  return SqlIndex.open(new PgDriver(pool, pool), `postgres:${safe.host}${safe.pathname}#${schema}`);
}
