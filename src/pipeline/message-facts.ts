// Facts about the message itself, computed once at end of DATA from the spooled header block:
// size, header fields, decoded Subject, RFC 5322.From addresses and domain, Message-ID.
import libmime from 'libmime';
import type { FactSet } from './facts.ts';
import type { Spool } from '../message/spool.ts';
import { normalizeDomain } from '../net/address.ts';

export function messageFacts(spool: Spool, facts: FactSet): void {
  const headers = spool.headers;
  facts.set('message.size', spool.size);
  facts.set(
    'message.headers',
    headers.filter((h) => h.name !== '').map((h) => ({ name: h.name, value: h.value })),
  );
  const get = (name: string) => headers.filter((h) => h.name.toLowerCase() === name);
  const subject = get('subject')[0]?.value ?? '';
  let decoded = subject;
  try {
    decoded = libmime.decodeWords(subject);
  } catch {
    // undecodable encoded-words: match on the raw value
  }
  facts.set('message.subject', decoded);
  const from = get('from').flatMap((h) => extractAddresses(h.value));
  facts.set('message.from', from);
  const domains = new Set(from.map((a) => normalizeDomain(a.slice(a.lastIndexOf('@') + 1))));
  facts.set('message.from_domain', from.length === 1 && domains.size === 1 ? [...domains][0] ?? '' : '');
  facts.set('message.message_id', get('message-id')[0]?.value ?? '');
}

/** Addresses in an address-list header: `<...>` forms, else bare `local@domain` tokens. */
export function extractAddresses(value: string): string[] {
  // Drop quoted display names and comments, which may themselves contain "@".
  const cleaned = value.replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/\((?:[^()\\]|\\.)*\)/g, ' ');
  const out: string[] = [];
  for (const part of cleaned.split(',')) {
    const angle = /<([^<>]*)>/.exec(part);
    const addr = angle ? angle[1] : (/[^\s<>:;]+@[^\s<>;]+/.exec(part)?.[0] ?? '');
    if (addr?.includes('@')) out.push(addr.trim().toLowerCase());
  }
  return out;
}
