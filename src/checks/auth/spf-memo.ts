// SPF results remembered per (client IP, domain evaluated) for as long as every DNS answer the
// evaluation read is still the same entry of the resolver's cache (so never past the smallest
// TTL of those answers), capped at `maxTtlMs`, bounded by count (least recently used out).
// check_host() (RFC 7208 section 4) is a function of <ip>, <domain>, <sender> and the DNS data;
// <sender> (and the HELO name, the receiving host, the time) only enter through macros (section
// 7), so an evaluation is only remembered when no TXT record it read contains a "%". Nothing is
// remembered when a lookup failed other than NXDOMAIN/NODATA, or the result is a temperror.

/** One remembered evaluation, as checkSpf uses it. */
export interface SpfEvaluation {
  result: string;
  domain: string;
  explanation: string;
  record: string;
  /** mailauth's count of lookup-limited queries (RFC 7208 4.6.4). */
  lookups: number;
  /** DNS questions asked (what the scope counts: fact spf.dns_lookups). */
  dnsLookups: number;
}

interface Entry {
  evaluation: SpfEvaluation;
  /**
   * The answers it read: [name, type, the cache entry that gave it]. Weakly held: the memo must
   * not keep answers alive that the DNS cache has let go (up to 64 KB each, 10 per evaluation).
   */
  answers: ReadonlyArray<readonly [string, string, WeakRef<object>]>;
  expires: number;
}

type Resolve = (name: string, rrtype: string) => Promise<unknown[]>;
type Cached = (name: string, rrtype: string) => object | undefined;

const VOID_CODES = new Set(['ENOTFOUND', 'ENODATA']);

/** Records what one evaluation asks the resolver, to decide whether its result may be remembered. */
export class SpfRecorder {
  readonly #resolve: Resolve;
  readonly #cached: Cached;
  readonly answers: Array<readonly [string, string, WeakRef<object>]> = [];
  /** Questions asked. */
  count = 0;
  /** False once something makes the result unfit to remember. */
  memoisable = true;

  constructor(resolve: Resolve, cached: Cached) {
    this.#resolve = resolve;
    this.#cached = cached;
  }

  /** The resolver to give mailauth's spf(). */
  resolve = async (name: string, rrtype: string): Promise<unknown[]> => {
    this.count++;
    let records: unknown[];
    try {
      records = await this.#resolve(name, rrtype);
    } catch (err) {
      if (VOID_CODES.has(String((err as { code?: unknown }).code))) this.#note(name, rrtype);
      else this.memoisable = false;
      throw err;
    }
    this.#note(name, rrtype);
    if (this.memoisable && String(rrtype).toUpperCase() === 'TXT' && records.some((r) => (Array.isArray(r) ? r.join('') : String(r)).includes('%'))) {
      // a macro may read the local part, the HELO name, the time: not a function of (ip, domain)
      this.memoisable = false;
    }
    return records;
  };

  /** The cache entry behind the answer just read (read at once, before anything can replace it). */
  #note(name: string, rrtype: string): void {
    const token = this.#cached(name, rrtype);
    if (token === undefined) this.memoisable = false;
    else this.answers.push([name, rrtype, new WeakRef(token)]);
  }
}

export class SpfMemo {
  readonly #entries = new Map<string, Entry>();
  readonly #max: number;
  readonly #maxTtlMs: number;
  readonly #cached: Cached;
  readonly #now: () => number;

  constructor(opts: { size: number; maxTtlMs: number; cached: Cached; now?: () => number }) {
    this.#max = Math.max(0, opts.size);
    this.#maxTtlMs = opts.maxTtlMs;
    this.#cached = opts.cached;
    this.#now = opts.now ?? Date.now;
  }

  /** Evaluations answered from the memo so far. */
  hits = 0;

  get size(): number {
    return this.#entries.size;
  }

  /** The key: the client IP and the domain mailauth evaluates for this sender (after the last "@"). */
  static key(ip: string, sender: string, helo: string): string {
    const s = sender || `postmaster@${helo}`;
    return `${ip}\u0000${s.slice(s.lastIndexOf('@') + 1)}`;
  }

  /** The answer is still the cache entry it was (an entry collected since can not be). */
  #still(name: string, type: string, ref: WeakRef<object>): boolean {
    const token = ref.deref();
    return token !== undefined && this.#cached(name, type) === token;
  }

  recorder(resolve: Resolve): SpfRecorder {
    return new SpfRecorder(resolve, this.#cached);
  }

  /** The remembered evaluation, if every answer it read is still the one in the DNS cache. */
  get(key: string): SpfEvaluation | undefined {
    const e = this.#entries.get(key);
    if (!e) return undefined;
    if (e.expires <= this.#now() || e.answers.some(([name, type, ref]) => !this.#still(name, type, ref))) {
      this.#entries.delete(key);
      return undefined;
    }
    this.#entries.delete(key);
    this.#entries.set(key, e);
    this.hits++;
    return e.evaluation;
  }

  /** Remembers an evaluation made through `rec`, when it may be. */
  set(key: string, rec: SpfRecorder, evaluation: SpfEvaluation): void {
    if (this.#max === 0 || !rec.memoisable || evaluation.result === 'temperror') return;
    this.#entries.delete(key);
    this.#entries.set(key, { evaluation, answers: rec.answers, expires: this.#now() + this.#maxTtlMs });
    while (this.#entries.size > this.#max) {
      const oldest = this.#entries.keys().next();
      if (oldest.done) break;
      this.#entries.delete(oldest.value);
    }
  }
}
