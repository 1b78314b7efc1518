// The quarantine index: the searchable metadata of every entry, so listing and filtering never
// read message files. One interface, two backends (node:sqlite embedded, PostgreSQL shared), one
// SQL implementation over a minimal driver so both behave the same and pass one test suite.
import type { IndexRow, ListFilter } from './entry.ts';

export interface QuarantineIndex {
  readonly description: string;
  insert(rows: readonly IndexRow[]): Promise<void>;
  list(filter: ListFilter): Promise<{ rows: IndexRow[]; total: number }>;
  get(id: string): Promise<IndexRow | undefined>;
  /** Every id (for reconciling with the files at start). */
  ids(): Promise<Set<string>>;
  remove(ids: readonly string[]): Promise<number>;
  /** Oldest first, received before `before`. */
  olderThan(before: string, limit: number): Promise<IndexRow[]>;
  totals(): Promise<{ messages: number; bytes: number }>;
  /**
   * Takes the right to release an entry: 'claimed' for exactly one caller (across instances),
   * 'already' once released, 'busy' while another release is in flight, 'missing'.
   */
  claimRelease(id: string, now: string, staleBefore: string): Promise<'claimed' | 'already' | 'busy' | 'missing'>;
  finishRelease(id: string, outcome: { at: string; by: string; reply: string } | undefined): Promise<void>;
  /** Records a single-use token; false if it was used before. */
  useToken(nonce: string, expires: string): Promise<boolean>;
  close(): Promise<void>;
}

/** What the SQL implementation needs from a database connection. `?` placeholders. */
export interface SqlDriver {
  all(sql: string, params?: readonly unknown[]): Promise<Array<Record<string, unknown>>>;
  /** Returns the number of rows changed. */
  run(sql: string, params?: readonly unknown[]): Promise<number>;
  exec(sql: string): Promise<void>;
  transaction<T>(fn: (d: SqlDriver) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

const SCHEMA = [
  `CREATE TABLE IF NOT EXISTS q_entries (
    id TEXT PRIMARY KEY, received TEXT NOT NULL, sender TEXT NOT NULL, sender_key TEXT NOT NULL,
    sender_domain TEXT NOT NULL, size BIGINT NOT NULL, score DOUBLE PRECISION NOT NULL, reason TEXT NOT NULL, subject TEXT NOT NULL,
    client_ip TEXT NOT NULL, helo TEXT NOT NULL, rcpts TEXT NOT NULL, rules TEXT NOT NULL,
    released_at TEXT, released_by TEXT, release_reply TEXT, claim_at TEXT)`,
  `CREATE INDEX IF NOT EXISTS q_entries_received ON q_entries (received, id)`,
  `CREATE INDEX IF NOT EXISTS q_entries_sender ON q_entries (sender_key)`,
  `CREATE INDEX IF NOT EXISTS q_entries_sender_domain ON q_entries (sender_domain)`,
  `CREATE INDEX IF NOT EXISTS q_entries_score ON q_entries (score)`,
  `CREATE TABLE IF NOT EXISTS q_rcpts (id TEXT NOT NULL, rcpt TEXT NOT NULL, domain TEXT NOT NULL, PRIMARY KEY (rcpt, id))`,
  `CREATE INDEX IF NOT EXISTS q_rcpts_domain ON q_rcpts (domain, id)`,
  `CREATE INDEX IF NOT EXISTS q_rcpts_id ON q_rcpts (id)`,
  `CREATE TABLE IF NOT EXISTS q_rules (id TEXT NOT NULL, rule TEXT NOT NULL, PRIMARY KEY (rule, id))`,
  `CREATE INDEX IF NOT EXISTS q_rules_id ON q_rules (id)`,
  `CREATE TABLE IF NOT EXISTS q_tokens (nonce TEXT PRIMARY KEY, expires TEXT NOT NULL)`,
];

const BATCH = 400;

function domainOf(addr: string): string {
  const at = addr.lastIndexOf('@');
  return at >= 0 ? addr.slice(at + 1).toLowerCase() : '';
}

/** LIKE pattern matching `s` literally anywhere (escape char `\`). */
function likeContains(s: string): string {
  let out = '%';
  for (const c of s.toLowerCase()) out += c === '%' || c === '_' || c === '\\' ? `\\${c}` : c;
  return `${out}%`;
}

function toRow(r: Record<string, unknown>): IndexRow {
  const row: IndexRow = {
    id: String(r.id),
    received: String(r.received),
    from: String(r.sender),
    rcpts: JSON.parse(String(r.rcpts)) as string[],
    rules: JSON.parse(String(r.rules)) as string[],
    size: Number(r.size),
    score: Number(r.score),
    reason: String(r.reason),
    subject: String(r.subject ?? ''),
    clientIp: String(r.client_ip),
    helo: String(r.helo),
  };
  if (r.released_at != null) row.releasedAt = String(r.released_at);
  if (r.released_by != null) row.releasedBy = String(r.released_by);
  if (r.release_reply != null) row.releaseReply = String(r.release_reply);
  return row;
}

export class SqlIndex implements QuarantineIndex {
  readonly description: string;
  readonly #db: SqlDriver;
  constructor(db: SqlDriver, description: string) {
    this.#db = db;
    this.description = description;
  }

  static async open(db: SqlDriver, description: string): Promise<SqlIndex> {
    for (const s of SCHEMA) await db.exec(s);
    return new SqlIndex(db, description);
  }

  async insert(rows: readonly IndexRow[]): Promise<void> {
    // One transaction for the whole call: one fsync, and a bulk load is all or nothing.
    await this.#db.transaction(async (d) => {
      for (let i = 0; i < rows.length; i += BATCH) {
        const batch = rows.slice(i, i + BATCH);
        const ev: unknown[] = [];
        const rv: unknown[] = [];
        const uv: unknown[] = [];
        for (const r of batch) {
          const from = r.from.toLowerCase();
          ev.push(
            r.id,
            r.received,
            r.from,
            from,
            domainOf(from),
            r.size,
            r.score,
            r.reason,
            r.subject ?? '',
            r.clientIp,
            r.helo,
            JSON.stringify(r.rcpts),
            JSON.stringify(r.rules),
          );
          for (const a of new Set(r.rcpts.map((x) => x.toLowerCase()))) rv.push(r.id, a, domainOf(a));
          for (const u of new Set(r.rules)) uv.push(r.id, u);
        }
        const values = (n: number, cols: number) => Array.from({ length: n }, () => `(${Array(cols).fill('?').join(',')})`).join(',');
        await d.run(
          `INSERT INTO q_entries (id, received, sender, sender_key, sender_domain, size, score, reason, subject, client_ip, helo, rcpts, rules) VALUES ${values(batch.length, 13)} ON CONFLICT (id) DO NOTHING`,
          ev,
        );
        if (rv.length) await d.run(`INSERT INTO q_rcpts (id, rcpt, domain) VALUES ${values(rv.length / 3, 3)} ON CONFLICT DO NOTHING`, rv);
        if (uv.length) await d.run(`INSERT INTO q_rules (id, rule) VALUES ${values(uv.length / 2, 2)} ON CONFLICT DO NOTHING`, uv);
      }
    });
  }

  async list(f: ListFilter): Promise<{ rows: IndexRow[]; total: number }> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (f.rcpt) {
      const r = f.rcpt.toLowerCase();
      if (r.startsWith('@')) {
        where.push('e.id IN (SELECT id FROM q_rcpts WHERE domain = ?)');
        params.push(r.slice(1));
      } else {
        where.push('e.id IN (SELECT id FROM q_rcpts WHERE rcpt = ?)');
        params.push(r);
      }
    }
    if (f.from !== undefined) {
      const s = f.from.toLowerCase();
      if (s.startsWith('@')) {
        where.push('e.sender_domain = ?');
        params.push(s.slice(1));
      } else {
        where.push('e.sender_key = ?');
        params.push(s);
      }
    }
    if (f.rule) {
      where.push('e.id IN (SELECT id FROM q_rules WHERE rule = ?)');
      params.push(f.rule);
    }
    if (f.reason) {
      where.push(`lower(e.reason) LIKE ? ESCAPE '\\'`);
      params.push(likeContains(f.reason));
    }
    if (f.since) {
      where.push('e.received >= ?');
      params.push(f.since);
    }
    if (f.until) {
      where.push('e.received < ?');
      params.push(f.until);
    }
    if (f.minScore !== undefined) {
      where.push('e.score >= ?');
      params.push(f.minScore);
    }
    if (f.maxScore !== undefined) {
      where.push('e.score <= ?');
      params.push(f.maxScore);
    }
    const status = f.status ?? 'held';
    if (status === 'held') where.push('e.released_at IS NULL');
    else if (status === 'released') where.push('e.released_at IS NOT NULL');
    const w = where.length ? `WHERE ${where.join(' AND ')}` : '';
    const limit = Math.max(1, Math.min(f.limit ?? 100, 10_000));
    const offset = Math.max(0, f.offset ?? 0);
    const rows = await this.#db.all(`SELECT e.* FROM q_entries e ${w} ORDER BY e.received DESC, e.id DESC LIMIT ? OFFSET ?`, [...params, limit, offset]);
    const total = await this.#db.all(`SELECT count(*) AS n FROM q_entries e ${w}`, params);
    return { rows: rows.map(toRow), total: Number(total[0]?.n ?? 0) };
  }

  async get(id: string): Promise<IndexRow | undefined> {
    const r = await this.#db.all('SELECT * FROM q_entries WHERE id = ?', [id]);
    return r[0] ? toRow(r[0]) : undefined;
  }

  async ids(): Promise<Set<string>> {
    return new Set((await this.#db.all('SELECT id FROM q_entries')).map((r) => String(r.id)));
  }

  async remove(ids: readonly string[]): Promise<number> {
    let n = 0;
    for (let i = 0; i < ids.length; i += BATCH) {
      const batch = ids.slice(i, i + BATCH);
      const q = batch.map(() => '?').join(',');
      n += await this.#db.transaction(async (d) => {
        await d.run(`DELETE FROM q_rcpts WHERE id IN (${q})`, batch);
        await d.run(`DELETE FROM q_rules WHERE id IN (${q})`, batch);
        return d.run(`DELETE FROM q_entries WHERE id IN (${q})`, batch);
      });
    }
    return n;
  }

  async olderThan(before: string, limit: number): Promise<IndexRow[]> {
    return (await this.#db.all('SELECT * FROM q_entries WHERE received < ? ORDER BY received, id LIMIT ?', [before, limit])).map(toRow);
  }

  async totals(): Promise<{ messages: number; bytes: number }> {
    const r = (await this.#db.all('SELECT count(*) AS n, coalesce(sum(size), 0) AS b FROM q_entries'))[0];
    return { messages: Number(r?.n ?? 0), bytes: Number(r?.b ?? 0) };
  }

  async claimRelease(id: string, now: string, staleBefore: string): Promise<'claimed' | 'already' | 'busy' | 'missing'> {
    const n = await this.#db.run('UPDATE q_entries SET claim_at = ? WHERE id = ? AND released_at IS NULL AND (claim_at IS NULL OR claim_at < ?)', [
      now,
      id,
      staleBefore,
    ]);
    if (n === 1) return 'claimed';
    const row = (await this.#db.all('SELECT released_at FROM q_entries WHERE id = ?', [id]))[0];
    if (!row) return 'missing';
    return row.released_at != null ? 'already' : 'busy';
  }

  async finishRelease(id: string, outcome: { at: string; by: string; reply: string } | undefined): Promise<void> {
    if (outcome) {
      await this.#db.run('UPDATE q_entries SET released_at = ?, released_by = ?, release_reply = ?, claim_at = NULL WHERE id = ?', [
        outcome.at,
        outcome.by,
        outcome.reply,
        id,
      ]);
    } else {
      await this.#db.run('UPDATE q_entries SET claim_at = NULL WHERE id = ?', [id]);
    }
  }

  async useToken(nonce: string, expires: string): Promise<boolean> {
    // Expired nonces can go: their tokens are refused on the expiry time alone.
    await this.#db.run('DELETE FROM q_tokens WHERE expires < ?', [new Date().toISOString()]);
    return (await this.#db.run('INSERT INTO q_tokens (nonce, expires) VALUES (?, ?) ON CONFLICT (nonce) DO NOTHING', [nonce, expires])) === 1;
  }

  close(): Promise<void> {
    return this.#db.close();
  }
}
