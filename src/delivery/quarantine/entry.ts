// What a quarantine entry is: the metadata stored beside the raw bytes (meta), the row the index
// keeps for listing and filtering without reading files, and the filters a listing accepts.
import type { QuarantineRecord } from '../../pipeline/delivery.ts';

/**
 * Metadata written with every entry (its .json file); everything a reviewer needs to decide: what
 * the core records (pipeline/delivery.ts QuarantineRecord) plus what the store derives from it.
 */
export interface QuarantineMeta extends QuarantineRecord {
  /** SPF/DKIM/DMARC/ARC results (the Authentication-Results values), when the checks ran. */
  auth?: Record<string, string>;
}

/** The index row: meta's searchable fields plus the entry's lifecycle. */
export interface IndexRow {
  id: string;
  received: string;
  from: string;
  rcpts: string[];
  rules: string[];
  size: number;
  score: number;
  reason: string;
  subject: string;
  clientIp: string;
  helo: string;
  /** Set once released (idempotence: a second release reports this). */
  releasedAt?: string;
  releasedBy?: string;
  releaseReply?: string;
}

export interface ListFilter {
  /** Exact address, or `@domain` for every recipient of a domain (case-insensitive). */
  rcpt?: string;
  from?: string;
  rule?: string;
  /** Substring of the reason (case-insensitive). */
  reason?: string;
  /** ISO times, inclusive since / exclusive until. */
  since?: string;
  until?: string;
  minScore?: number;
  maxScore?: number;
  /** held (default), released, or all. */
  status?: 'held' | 'released' | 'all';
  limit?: number;
  offset?: number;
}

export function rowOf(meta: QuarantineMeta): IndexRow {
  return {
    id: meta.id,
    received: meta.received,
    from: meta.from,
    rcpts: meta.rcpts,
    rules: meta.rules,
    size: meta.size,
    score: meta.score,
    reason: meta.reason,
    subject: subjectOf(meta),
    clientIp: meta.client.ip,
    helo: meta.client.helo,
  };
}

/**
 * Fills TLS, authentication results and rDNS from the transaction's facts when the caller did
 * not pass them explicitly (today's session passes the facts only).
 */
export function enrichMeta(meta: QuarantineMeta): QuarantineMeta {
  const f = meta.facts ?? {};
  const str = (k: string) => (typeof f[k] === 'string' && (f[k] as string).length > 0 ? (f[k] as string) : undefined);
  const out: QuarantineMeta = { ...meta, client: { ...meta.client } };
  if (!out.tls && (str('tls.version') || str('tls.cipher'))) {
    out.tls = {};
    const v = str('tls.version');
    const c = str('tls.cipher');
    if (v) out.tls.protocol = v;
    if (c) out.tls.cipher = c;
  }
  if (!out.auth) {
    const auth: Record<string, string> = {};
    for (const k of ['spf', 'dkim', 'dmarc', 'arc']) {
      const v = str(`${k}.result`);
      if (v) auth[k] = v;
    }
    if (Object.keys(auth).length) out.auth = auth;
  }
  const rdns = str('client.rdns');
  if (!out.client.rdns && rdns) out.client.rdns = rdns;
  if (out.subject === undefined && str('message.subject')) out.subject = str('message.subject') as string;
  return out;
}

function subjectOf(meta: QuarantineMeta): string {
  const s = meta.subject ?? meta.facts?.['message.subject'];
  return typeof s === 'string' ? s.slice(0, 500) : '';
}

/** Queue ids are what the session makes: letters and digits only; anything else never reaches a path. */
export function validId(id: string): boolean {
  if (id.length === 0 || id.length > 64) return false;
  for (const c of id) {
    const ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c === '-' || c === '_';
    if (!ok) return false;
  }
  return true;
}
