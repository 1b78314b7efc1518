// The header fields removed from every message on the way in, whatever checks run: fields only
// mailgate may write (Authentication-Results for our authserv-id, RFC 8601 5; X-Spam-*, X-Mailgate-*).
// This belongs to the transaction, not to the auth check: with that check disabled a forged "pass"
// would otherwise reach the mailbox (issue 14, item 4).
import { compileGlob, type TextPattern } from './text-patterns.ts';

/** Name globs always removed (case-insensitive): every header mailgate itself can add. */
export const DEFAULT_STRIP_GLOBS: readonly string[] = ['X-Spam-*', 'X-Mailgate-*'];

/** Name-only globs plus Authentication-Results claiming one of `authservIds`. */
export interface StripOptions {
  /** Our authserv-ids (the config's `hostname`, plus any configured auth.authserv_id). */
  authservIds: readonly string[];
  /** Extra name globs (the config's smtp.strip_headers). */
  globs?: readonly string[];
}

/** A predicate for rewriteHeaderBlock's `remove` list: true = drop this field. */
export function buildTransactionStrip(opts: StripOptions): (name: string, value: string) => boolean {
  const ids = new Set(opts.authservIds.map(normalizeId));
  const globs: TextPattern[] = [...DEFAULT_STRIP_GLOBS, ...(opts.globs ?? [])].map((g) => compileGlob(g));
  return (name, value) => {
    const n = name.trim();
    if (globs.some((g) => g.test(n))) return true;
    const lower = n.toLowerCase();
    // ARC-Authentication-Results are sealed by their instance: the ARC code judges those.
    if (lower === 'authentication-results') return ids.has(normalizeId(authservIdOf(value)));
    return false;
  };
}

function normalizeId(id: string): string {
  return id.trim().toLowerCase().replace(/\.$/, '');
}

/**
 * The authserv-id an Authentication-Results value starts with (RFC 8601 2.2: a token or a
 * quoted-string, after optional CFWS), lower-cased. Loop-based and bounded by the value.
 */
export function authservIdOf(value: string): string {
  let i = 0;
  // Skip whitespace and (nested) comments.
  for (;;) {
    while (i < value.length && (value[i] === ' ' || value[i] === '\t' || value[i] === '\r' || value[i] === '\n')) i++;
    if (value[i] !== '(') break;
    let depth = 0;
    for (; i < value.length; i++) {
      const c = value[i];
      if (c === '\\') i++;
      else if (c === '(') depth++;
      else if (c === ')' && --depth === 0) {
        i++;
        break;
      }
    }
  }
  if (value[i] === '"') {
    let out = '';
    for (i++; i < value.length && value[i] !== '"'; i++) {
      if (value[i] === '\\') i++;
      out += value[i] ?? '';
    }
    return out.toLowerCase();
  }
  const start = i;
  while (i < value.length && !' \t\r\n;()'.includes(value[i] as string)) i++;
  return value.slice(start, i).toLowerCase();
}
