// The one DNS resolver every check uses: asks the configured servers (or the system's) over UDP
// with TCP fallback, caches answers for their TTL and NXDOMAIN/NODATA for the RFC 2308 negative
// TTL, bounds the queries in flight, and speaks the node:dns `resolve(name, rrtype)` dialect that
// mailauth expects. `scope()` gives a per-message view that counts lookups and DNS trouble.
import type { Answer, RecordType } from 'dns-packet';
import { metrics } from '../metrics/registry.ts';
import type { DnsLookup } from './lookup.ts';
import { DnsCache } from './cache.ts';
import { DnsError, TEMPORARY_CODES, type DnsErrorCode } from './errors.ts';
import { Limiter } from './limiter.ts';
import { cloneRecords, convertRecord, isSupportedType, type SupportedType } from './records.ts';
import { parseServer, systemServers, type ServerAddress } from './servers.ts';
import { exchange, TransportError, type Reply } from './transport.ts';
import { activeSpan } from '../trace/active-span.ts';

export interface ResolverOptions {
  /** "ip", "ip:port" or "[ipv6]:port"; empty or absent = the `nameserver`s of /etc/resolv.conf. */
  servers?: readonly string[] | undefined;
  /** Deadline for one lookup, all retries and servers included. Default 2000. */
  timeoutMs?: number;
  /** Most cached answers (positive and negative). Default 10 000; 0 disables the cache. */
  cacheSize?: number;
  /** Most queries in flight at once; more wait for a slot (the wait counts against the deadline). Default 64. */
  maxConcurrency?: number;
  /** Negative TTL (seconds) when the reply has no SOA to take it from. Default 300. */
  negativeTtl?: number;
  /** Upper bound on any cached TTL (seconds). Default 86 400. */
  maxTtl?: number;
  /** Upper bound on a negative TTL (seconds); RFC 2308 section 5 suggests 1-3 hours. Default 3600. */
  maxNegativeTtl?: number;
  /** Sends per lookup (spread over the servers and the deadline). Default: servers, at least 2, at most 3. */
  attempts?: number;
  /** resolv.conf to read when no servers are given. */
  resolvConf?: string;
  now?: () => number;
}

/** Outcome of one lookup, shareable between callers and cacheable; turned into fresh values/errors per caller. */
type Outcome = { ok: true; records: readonly unknown[] } | { ok: false; code: DnsErrorCode; detail?: string };

/** Most CNAMEs followed for one lookup (the reply's chain plus our own chasing). */
const MAX_CNAME_HOPS = 8;

const typeLabel = (t: string): string => (isSupportedType(t) ? t : 'other');

const RESULT_LABEL: Partial<Record<DnsErrorCode, string>> = {
  ENOTFOUND: 'nxdomain',
  ENODATA: 'nodata',
  ETIMEOUT: 'timeout',
  ESERVFAIL: 'servfail',
  EREFUSED: 'refused',
};

/** Validates and normalises a query name (RFC 1035 2.3.4: labels ≤ 63 octets, name ≤ 253 as text). */
function normaliseName(name: string): string | undefined {
  if (typeof name !== 'string') return undefined;
  let n = name.trim();
  if (n.endsWith('.')) n = n.slice(0, -1);
  if (n === '') return undefined;
  if (NON_ASCII.test(n)) {
    if (Buffer.byteLength(n) > 253) return undefined;
    for (const label of n.split('.')) {
      const len = Buffer.byteLength(label);
      if (len === 0 || len > 63) return undefined;
    }
    return n;
  }
  // ASCII (nearly every name): a character is an octet, labels measured between the dots.
  if (n.length > 253) return undefined;
  for (let start = 0; ; ) {
    const dot = n.indexOf('.', start);
    const len = (dot < 0 ? n.length : dot) - start;
    if (len === 0 || len > 63) return undefined;
    if (dot < 0) return n;
    start = dot + 1;
  }
}

const NON_ASCII = /[^\x00-\x7f]/;

export class Resolver implements DnsLookup {
  readonly servers: readonly ServerAddress[];
  readonly timeoutMs: number;
  readonly #cache: DnsCache;
  readonly #limiter: Limiter;
  readonly #inflight = new Map<string, Promise<Outcome>>();
  readonly #negativeTtl: number;
  readonly #maxTtl: number;
  readonly #maxNegativeTtl: number;
  readonly #attempts: number;
  readonly #now: () => number;

  constructor(opts: ResolverOptions = {}) {
    this.servers = opts.servers && opts.servers.length > 0 ? opts.servers.map(parseServer) : systemServers(opts.resolvConf);
    this.timeoutMs = opts.timeoutMs ?? 2000;
    this.#now = opts.now ?? Date.now;
    this.#cache = new DnsCache(opts.cacheSize ?? 10_000, this.#now);
    this.#limiter = new Limiter(opts.maxConcurrency ?? 64);
    this.#negativeTtl = opts.negativeTtl ?? 300;
    this.#maxTtl = opts.maxTtl ?? 86_400;
    this.#maxNegativeTtl = opts.maxNegativeTtl ?? 3600;
    this.#attempts = Math.max(1, opts.attempts ?? Math.max(2, Math.min(this.servers.length, 3)));
  }

  /** Queries in flight now and callers waiting for a slot (for tests and the admin page). */
  get load(): { active: number; waiting: number; cached: number } {
    return { active: this.#limiter.active, waiting: this.#limiter.waiting, cached: this.#cache.size };
  }

  clearCache(): void {
    this.#cache.clear();
  }

  /**
   * mailauth-compatible lookup: resolves with node:dns shapes, rejects with a DnsError whose
   * `code` is ENOTFOUND (NXDOMAIN), ENODATA (no such record), ETIMEOUT, ESERVFAIL, ...
   */
  resolve = async (name: string, rrtype: string): Promise<unknown[]> => {
    const type = String(rrtype).toUpperCase();
    const qname = normaliseName(name);
    if (qname === undefined) throw new DnsError('EBADNAME', String(name), type);
    if (!isSupportedType(type)) throw new DnsError('ENOTIMP', qname, type, 'record type not supported');
    // A span per lookup under the check that asked (tracing on only: else the no-op span).
    const span = activeSpan().child('dns');
    if (span.recording) span.set('dns.question.name', qname).set('dns.question.type', type);
    const outcome = await this.#lookup(qname, type, this.#now() + this.timeoutMs, 0);
    if (span.recording)
      span
        .set('dns.answers', outcome.ok ? outcome.records.length : undefined)
        .set('dns.error', outcome.ok ? undefined : outcome.code)
        .end();
    if (outcome.ok) return cloneRecords(outcome.records);
    throw new DnsError(outcome.code, qname, type, outcome.detail);
  };

  /**
   * The cache entry now answering (name, rrtype), positive or negative, or undefined when it is
   * not cached (never asked, expired, evicted, TTL 0, a temporary failure). An entry is replaced,
   * never changed, so the same object means the same answer: results derived from answers (the
   * SPF memo) stay valid while every answer they used is still the same entry. No metrics.
   */
  cached = (name: string, rrtype: string): object | undefined => {
    const qname = normaliseName(name);
    const type = String(rrtype).toUpperCase();
    return qname === undefined ? undefined : this.#cache.get(`${type} ${qname.toLowerCase()}`);
  };

  /** A per-message view: same cache and servers, with its own lookup counters. */
  scope(): DnsScope {
    return new DnsScope(this);
  }

  async #lookup(qname: string, type: SupportedType, deadline: number, hops: number): Promise<Outcome> {
    const key = `${type} ${qname.toLowerCase()}`;
    const cached = this.#cache.get(key);
    if (cached) {
      metrics.dnsCache.inc({ result: cached.kind === 'answer' ? 'hit' : 'negative_hit' });
      return cached.kind === 'answer' ? { ok: true, records: cached.records } : { ok: false, code: cached.code };
    }
    metrics.dnsCache.inc({ result: 'miss' });
    // A CNAME target we chase gets its own query: sharing it could make two lookups wait on each
    // other (a → b while another caller's b → a); the hop limit bounds the chase instead.
    if (hops > 0) return this.#network(qname, type, key, deadline, hops);
    // Callers asking the same question at the same time share one query.
    let pending = this.#inflight.get(key);
    if (!pending) {
      pending = this.#network(qname, type, key, deadline, hops).finally(() => this.#inflight.delete(key));
      this.#inflight.set(key, pending);
    }
    return pending;
  }

  async #network(qname: string, type: SupportedType, key: string, deadline: number, hops: number): Promise<Outcome> {
    const started = performance.now();
    const outcome = await this.#query(qname, type, deadline).then(
      (reply) => this.#interpret(qname, type, key, reply, deadline, hops),
      (err: unknown): Outcome => {
        if (err instanceof DnsError) return { ok: false, code: err.code };
        return { ok: false, code: 'EBADRESP', detail: err instanceof Error ? err.message : String(err) };
      },
    );
    // Chased CNAME targets are counted by their own lookup; this records the question asked.
    if (hops === 0 || !outcome.ok) {
      metrics.dnsQueries.inc({ type: typeLabel(type), result: outcome.ok ? 'noerror' : (RESULT_LABEL[outcome.code] ?? 'error') });
      metrics.dnsDuration.observe({ type: typeLabel(type) }, (performance.now() - started) / 1000);
    }
    return outcome;
  }

  /** Interprets a reply (RFC 1035 4.1.1 RCODE, RFC 2308 negative answers, CNAME chains). */
  async #interpret(qname: string, type: SupportedType, key: string, reply: Reply, deadline: number, hops: number): Promise<Outcome> {
    const answers = reply.answers ?? [];
    if (reply.rcode === 'NXDOMAIN') {
      this.#cache.set(key, { kind: 'negative', code: 'ENOTFOUND' }, this.#negativeTtlOf(reply));
      return { ok: false, code: 'ENOTFOUND' };
    }
    if (reply.rcode !== 'NOERROR') return { ok: false, code: 'EBADRESP', detail: `rcode ${reply.rcode ?? '?'}` };

    // Follow the CNAME chain inside the answer section: the records we want are owned by its end.
    let owner = qname.toLowerCase();
    let ttl = Infinity;
    const seen = new Set<string>();
    for (let i = 0; i <= MAX_CNAME_HOPS; i++) {
      const own = answers.filter((a) => a.name.toLowerCase().replace(/\.$/, '') === owner);
      const wanted = own.filter((a) => a.type === type);
      if (wanted.length > 0) {
        const records = wanted.map((a) => convertRecord(type, a)).filter((r) => r !== undefined);
        for (const a of wanted) ttl = Math.min(ttl, ttlOf(a));
        this.#cache.set(key, { kind: 'answer', records }, Math.min(ttl, this.#maxTtl));
        return { ok: true, records };
      }
      const cname = type === 'CNAME' ? undefined : own.find((a) => a.type === 'CNAME');
      if (cname?.type !== 'CNAME') break;
      ttl = Math.min(ttl, ttlOf(cname));
      seen.add(owner);
      owner = cname.data.toLowerCase().replace(/\.$/, '');
      if (seen.has(owner)) return { ok: false, code: 'ESERVFAIL', detail: 'CNAME loop' };
    }

    const hasSoa = (reply.authorities ?? []).some((a) => a.type === 'SOA');
    if (owner !== qname.toLowerCase() && !hasSoa) {
      // The chain ends at a name this reply says nothing about (an authoritative server does not
      // chase out-of-zone targets): look the target up ourselves, RFC 1034 section 5.3.3.
      if (hops + seen.size > MAX_CNAME_HOPS) return { ok: false, code: 'ESERVFAIL', detail: 'CNAME chain too long' };
      const target = await this.#lookup(owner, type, deadline, hops + seen.size);
      if (target.ok) this.#cache.set(key, { kind: 'answer', records: target.records }, Math.min(ttl, this.#maxTtl));
      else if (target.code === 'ENOTFOUND' || target.code === 'ENODATA')
        this.#cache.set(key, { kind: 'negative', code: target.code }, Math.min(ttl, this.#negativeTtl));
      return target;
    }
    this.#cache.set(key, { kind: 'negative', code: 'ENODATA' }, this.#negativeTtlOf(reply));
    return { ok: false, code: 'ENODATA' };
  }

  /** RFC 2308 section 5: the negative TTL is min(SOA TTL, SOA MINIMUM) of the authority SOA. */
  #negativeTtlOf(reply: Reply): number {
    const soa = (reply.authorities ?? []).find((a) => a.type === 'SOA');
    if (soa?.type !== 'SOA') return Math.min(this.#negativeTtl, this.#maxNegativeTtl);
    return Math.min(ttlOf(soa), soa.data.minimum ?? this.#negativeTtl, this.#maxNegativeTtl);
  }

  /**
   * Sends the question until a usable reply arrives or the deadline passes. Sends are spread over
   * the deadline and rotate through the servers; an earlier send's late reply is still accepted.
   * SERVFAIL/REFUSED from one server moves on to the next send at once.
   */
  async #query(qname: string, type: SupportedType, deadline: number): Promise<Reply> {
    const timeout = new AbortController();
    const remaining = (): number => deadline - this.#now();
    // When the timer fires after the event loop was busy, a reply may already be waiting in the
    // socket: setImmediate lets this loop turn's I/O callbacks run before we give up.
    const timer = setTimeout(() => setImmediate(() => timeout.abort(new DnsError('ETIMEOUT', qname, type))), Math.max(0, remaining()));
    let release: (() => void) | undefined;
    try {
      release = await this.#limiter.acquire(timeout.signal);
      if (timeout.signal.aborted || remaining() <= 0) throw new DnsError('ETIMEOUT', qname, type);
      return await this.#sendAll(qname, type, timeout.signal, remaining());
    } catch (err) {
      if (err instanceof DnsError) throw err;
      if (timeout.signal.aborted) throw new DnsError('ETIMEOUT', qname, type);
      throw err;
    } finally {
      clearTimeout(timer);
      release?.();
    }
  }

  #sendAll(qname: string, type: RecordType, signal: AbortSignal, budgetMs: number): Promise<Reply> {
    const servers = this.servers;
    const attempts = this.#attempts;
    const slice = Math.max(1, budgetMs / attempts);
    const stop = new AbortController();
    return new Promise<Reply>((resolve, reject) => {
      let started = 0;
      let pending = 0;
      let lastError: DnsError | undefined;
      let next: NodeJS.Timeout | undefined;
      let done = false;
      const finish = (err: Error | null, reply?: Reply): void => {
        if (done) return;
        done = true;
        clearTimeout(next);
        signal.removeEventListener('abort', onAbort);
        stop.abort();
        if (err) reject(err);
        else resolve(reply as Reply);
      };
      const onAbort = (): void => finish(lastError ?? (signal.reason as Error));
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      const failed = (err: DnsError): void => {
        pending--;
        lastError = err;
        if (started < attempts) send();
        else if (pending === 0) finish(err);
      };
      const send = (): void => {
        if (done || started >= attempts) return;
        const server = servers[started % servers.length] as ServerAddress;
        started++;
        pending++;
        clearTimeout(next);
        if (started < attempts) next = setTimeout(send, slice);
        exchange(server, { name: qname, type }, stop.signal).then(
          (reply) => {
            if (done) return;
            const code = rcodeError(reply.rcode);
            if (code) return failed(new DnsError(code, qname, type, `from ${server.host}`));
            pending--;
            finish(null, reply);
          },
          (err: unknown) => {
            if (done) return;
            const code = err instanceof TransportError && err.code === 'ECONNREFUSED' ? 'ECONNREFUSED' : 'EBADRESP';
            failed(new DnsError(code, qname, type, err instanceof Error ? err.message : String(err)));
          },
        );
      };
      send();
    });
  }
}

/** RCODEs after which another server may do better (RFC 1035 4.1.1); NOERROR/NXDOMAIN are answers. */
function rcodeError(rcode: string | undefined): DnsErrorCode | undefined {
  switch (rcode) {
    case 'NOERROR':
    case 'NXDOMAIN':
      return undefined;
    case 'SERVFAIL':
      return 'ESERVFAIL';
    case 'REFUSED':
      return 'EREFUSED';
    case 'FORMERR':
      return 'EFORMERR';
    case 'NOTIMP':
      return 'ENOTIMP';
    default:
      return 'EBADRESP';
  }
}

function ttlOf(a: Answer): number {
  return 'ttl' in a && typeof a.ttl === 'number' ? a.ttl : 0;
}

/** A temporary DNS failure seen while handling one message. */
export interface DnsTrouble {
  name: string;
  type: string;
  code: string;
}

/**
 * One message's (or one MAIL FROM's) view of the resolver: counts every lookup the checks make
 * (cache hits included, since they are what a per-message limit is about) and remembers temporary
 * failures so a check can tell "no record" from "could not find out".
 */
export class DnsScope implements DnsLookup {
  readonly #resolver: DnsLookup;
  lookups = 0;
  readonly troubles: DnsTrouble[] = [];

  constructor(resolver: DnsLookup) {
    this.#resolver = resolver;
  }

  resolve = async (name: string, rrtype: string): Promise<unknown[]> => {
    this.lookups++;
    try {
      return await this.#resolver.resolve(name, rrtype);
    } catch (err) {
      const code = String((err as { code?: unknown }).code ?? '');
      if (TEMPORARY_CODES.has(code)) this.troubles.push({ name: String(name).toLowerCase().replace(/\.$/, ''), type: String(rrtype).toUpperCase(), code });
      throw err;
    }
  };

  /** True if a lookup of `name` (any type, or `type`) failed temporarily in this scope. */
  troubleWith(name: string, type?: string): boolean {
    const n = name.toLowerCase().replace(/\.$/, '');
    return this.troubles.some((t) => t.name === n && (type === undefined || t.type === type));
  }
}

/** Builds the resolver from the `dns:` config section. */
export function createResolver(
  cfg: { servers?: readonly string[] | undefined; timeout_ms: number },
  extra: Omit<ResolverOptions, 'servers' | 'timeoutMs'> = {},
): Resolver {
  return new Resolver({ ...extra, servers: cfg.servers, timeoutMs: cfg.timeout_ms });
}
