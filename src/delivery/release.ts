// Release from quarantine: the stored bytes, with the original envelope (or chosen recipients),
// re-injected through the same Backend/BackendLink code live mail uses. Exactly one release per
// entry (a claim in the index, across instances); a second release reports the first.
import type { Backend, BackendReply } from './backend.ts';
import type { QuarantineStore } from './quarantine/store.ts';

export interface ReleaseOptions {
  /** Who released it (user name, `token`, `cli:root`, `digest:alice@example.test`). */
  by: string;
  /** Deliver to these recipients instead of the original ones. */
  to?: readonly string[];
  now?: () => Date;
}

export interface ReleaseResult {
  id: string;
  status: 'released' | 'already' | 'busy' | 'missing' | 'failed';
  /** The backend's final reply (or why it failed), as `code enhanced text`. */
  reply?: string;
  rcpts?: Array<{ rcpt: string; reply: string }>;
  releasedAt?: string;
  releasedBy?: string;
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 127) return false;
  return true;
}

function fmt(r: BackendReply): string {
  return `${r.code} ${r.enhanced} ${r.lines.join(' ')}`.replace(/\s+/g, ' ').trim();
}

/** A header value from operator text: one line, printable, bounded. */
function headerSafe(s: string): string {
  let out = '';
  for (const c of s.slice(0, 200)) out += c >= ' ' && c <= '~' ? c : '?';
  return out;
}

export async function releaseEntry(store: QuarantineStore, backend: Backend, id: string, opts: ReleaseOptions): Promise<ReleaseResult> {
  const entry = await store.get(id);
  if (!entry) return { id, status: 'missing', reply: 'no such quarantined message' };
  const claim = await store.claimRelease(id);
  if (claim === 'missing') return { id, status: 'missing', reply: 'no such quarantined message' };
  if (claim === 'already' || claim === 'busy') {
    const row = (await store.get(id))?.row;
    const r: ReleaseResult = { id, status: claim };
    if (row?.releasedAt) r.releasedAt = row.releasedAt;
    if (row?.releasedBy) r.releasedBy = row.releasedBy;
    if (row?.releaseReply) r.reply = row.releaseReply;
    return r;
  }
  const { meta, row } = entry;
  const targets = opts.to && opts.to.length ? [...opts.to] : meta.rcpts;
  const link = backend.link({
    ip: meta.client.ip,
    port: meta.client.port ?? 0,
    helo: meta.client.helo,
    esmtp: true,
    ...(meta.client.rdns ? { rdns: meta.client.rdns } : {}),
  });
  let outcome: ReleaseResult | undefined;
  try {
    // The original MAIL parameters are not stored; SIZE and SMTPUTF8 (RFC 6531 §3.4, needed
    // for non-ASCII addresses) are derived. The link passes on only what the backend offers.
    const params: Record<string, string | true> = { SIZE: String(meta.bytes + 200) };
    if ([meta.from, ...targets].some((a) => !isAscii(a))) params.SMTPUTF8 = true;
    const m = await link.mail(meta.from, params);
    if (m.code >= 300) {
      outcome = { id, status: 'failed', reply: fmt(m) };
    } else {
      const rcpts: Array<{ rcpt: string; reply: string }> = [];
      let accepted = 0;
      for (const t of targets) {
        const r = await link.rcpt(t);
        rcpts.push({ rcpt: t, reply: fmt(r) });
        if (r.code < 300) accepted++;
      }
      if (accepted === 0) {
        await link.abort();
        outcome = { id, status: 'failed', reply: 'every recipient refused', rcpts };
      } else {
        const at = (opts.now ?? (() => new Date()))();
        // The one header a release adds (RFC 5322 field); the stored bytes follow unchanged.
        const header = Buffer.from(`X-Mailgate-Released: ${id} by ${headerSafe(opts.by)}; ${at.toUTCString()}\r\n`, 'latin1');
        const d = await link.data([header, store.stream(row)]);
        outcome = d.code < 300 ? { id, status: 'released', reply: fmt(d), rcpts } : { id, status: 'failed', reply: fmt(d), rcpts };
      }
    }
  } catch (err) {
    outcome = { id, status: 'failed', reply: (err as Error).message };
    await link.abort();
  } finally {
    link.release();
  }
  if (outcome.status === 'released') {
    await store.finishRelease(id, { by: opts.by, reply: outcome.reply ?? '' });
    const after = (await store.get(id))?.row;
    if (after?.releasedAt) outcome.releasedAt = after.releasedAt;
    outcome.releasedBy = opts.by;
  } else {
    await store.finishRelease(id, undefined);
  }
  return outcome;
}
