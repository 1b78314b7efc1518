// Facts about the message itself, computed once at end of DATA from the spooled header block:
// size, header fields, decoded Subject, RFC 5322.From addresses and domain, Message-ID.
import { libmime } from '../message/libmime-lazy.ts';
import type { FactSet } from './facts.ts';
import type { Spool } from '../message/spool.ts';
import { normalizeDomain } from '../net/address.ts';

export function messageFacts(spool: Spool, facts: FactSet): void {
  const headers = spool.headers;
  facts.set('message.size', spool.size);
  // One pass over the fields: the records rules read, and the three fields the facts come from.
  const records: Array<{ name: string; value: string }> = [];
  let subject: string | undefined;
  let messageId: string | undefined;
  const from: string[] = [];
  for (const h of headers) {
    if (h.name === '') continue;
    records.push({ name: h.name, value: h.value });
    const n = h.name.length;
    // Only names of these lengths can match: no lower-casing of every field name.
    if (n === 4) {
      if (h.name.toLowerCase() === 'from') from.push(...extractAddresses(h.value));
    } else if (n === 7) {
      if (subject === undefined && h.name.toLowerCase() === 'subject') subject = h.value;
    } else if (n === 10) {
      if (messageId === undefined && h.name.toLowerCase() === 'message-id') messageId = h.value;
    }
  }
  facts.set('message.headers', records);
  let decoded = subject ?? '';
  // Every encoded word starts with "=?" (RFC 2047 2): without one there is nothing to decode.
  if (decoded.includes('=?')) {
    try {
      decoded = libmime().decodeWords(decoded);
    } catch {
      // undecodable encoded-words: match on the raw value
    }
  }
  facts.set('message.subject', decoded);
  facts.set('message.from', from);
  const only = from.length === 1 ? (from[0] as string) : undefined;
  facts.set('message.from_domain', only === undefined ? '' : normalizeDomain(only.slice(only.lastIndexOf('@') + 1)));
  facts.set('message.message_id', messageId ?? '');
}

/** Longest From value examined, and most addresses taken from it: hostile headers are 64 KB+. */
export const MAX_ADDRESS_LIST_CHARS = 16_384;
export const MAX_ADDRESSES = 100;

/**
 * Addresses in an address-list header: `<...>` forms, else bare `local@domain` tokens. One pass
 * per step and no regex, so the time is linear in the (capped) input whatever it contains: the
 * regexes this replaces were quadratic on a long run without `@` or `>` (issue 14, item 1).
 */
export function extractAddresses(value: string): string[] {
  const out: string[] = [];
  for (const part of splitAddressList(value.slice(0, MAX_ADDRESS_LIST_CHARS))) {
    const addr = angleAddress(part) ?? bareAddress(part);
    if (addr && addr.includes('@')) out.push(addr.trim().toLowerCase());
    if (out.length >= MAX_ADDRESSES) break;
  }
  return out;
}

/**
 * Splits on top-level commas, dropping quoted display names (kept as `""`) and comments (nested,
 * RFC 5322 3.2.2), which may themselves contain "@", "<" or ",". An unterminated quote or comment
 * runs to the end of the value.
 */
function splitAddressList(value: string): string[] {
  const parts: string[] = [];
  let cur = '';
  let depth = 0;
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i] as string;
    if (quoted) {
      if (c === '\\') i++;
      else if (c === '"') {
        quoted = false;
        cur += '""';
      }
    } else if (depth > 0) {
      if (c === '\\') i++;
      else if (c === '(') depth++;
      else if (c === ')' && --depth === 0) cur += ' ';
    } else if (c === '"') quoted = true;
    else if (c === '(') depth = 1;
    else if (c === ',') {
      parts.push(cur);
      cur = '';
    } else cur += c;
  }
  if (quoted) cur += '""';
  parts.push(cur);
  return parts;
}

/** The first `<...>` with no angle bracket inside (as the old `/<([^<>]*)>/`), or undefined. */
function angleAddress(part: string): string | undefined {
  let open = -1;
  for (let i = 0; i < part.length; i++) {
    const c = part[i];
    if (c === '<') open = i;
    else if (c === '>' && open >= 0) return part.slice(open + 1, i);
  }
  return undefined;
}

function isSpace(c: string): boolean {
  return c === ' ' || c === '\t' || c === '\r' || c === '\n' || c === '\f' || c === '\v';
}

/**
 * The first bare `local@domain` token: a run without whitespace, `<`, `>` or `;` in which an "@"
 * has at least one character before it (after the last ":", which ends a group name) and one after.
 */
function bareAddress(part: string): string {
  let i = 0;
  while (i < part.length) {
    while (i < part.length && isStop(part[i] as string)) i++;
    const runStart = i;
    while (i < part.length && !isStop(part[i] as string)) i++;
    const runEnd = i;
    let segStart = runStart;
    for (let j = runStart; j < runEnd; j++) {
      const c = part[j];
      if (c === ':') segStart = j + 1;
      else if (c === '@' && j > segStart && j + 1 < runEnd) return part.slice(segStart, runEnd);
    }
  }
  return '';
}

function isStop(c: string): boolean {
  return c === '<' || c === '>' || c === ';' || isSpace(c);
}
