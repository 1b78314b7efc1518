// Turns a pipeline Outcome into milter reply packets: refusals as REPLYCODE with the SMTP front's
// code, enhanced code and text; at end of message the header and envelope edits as modification
// actions (INSHEADER at the top, CHGHEADER with an empty value to delete, DELRCPT/ADDRCPT), then
// QUARANTINE (Postfix's HOLD queue), DISCARD or CONTINUE.
import { foldHeader } from '../../message/headers.ts';
import { encode, headerText } from './protocol.ts';
import type { FinalEdits, Outcome } from './milter-pipeline.ts';

/** A header field as the MTA sent it in SMFIC_HEADER (value with its leading space when negotiated). */
export interface SeenHeader {
  name: string;
  value: string;
}

/** The reply to connect, helo, mail and rcpt. */
export function stageReply(o: Outcome): Buffer {
  if (o.kind === 'refuse') return encode.replycode(o.reply.code, o.reply.enhanced, o.reply.text);
  // Quarantine and discard are end-of-message outcomes; earlier, only refusals stop anything.
  return encode.continue();
}

export interface EomOptions {
  /** SMFIP_HDR_LEADSPC was negotiated: header values are sent and received with their leading space. */
  leadingSpace: boolean;
}

/** The packets that answer end of message, modification actions first, the final reply last. */
export function eomReplies(o: Outcome, headers: readonly SeenHeader[], opts: EomOptions): Buffer[] {
  switch (o.kind) {
    case 'refuse':
      return [encode.replycode(o.reply.code, o.reply.enhanced, o.reply.text)];
    case 'discard':
      return [encode.discard()];
    case 'continue':
      return [encode.continue()];
    case 'deliver':
      return [...editPackets(o.edits, headers, opts), encode.continue()];
    case 'quarantine':
      // Kept in mailgate's own quarantine: the MTA must not deliver it (and has nothing to hold).
      if (o.stored !== undefined) return [encode.discard()];
      return [...editPackets(o.edits, headers, opts), encode.quarantine(o.reason), encode.continue()];
  }
}

/** Unfolded, trimmed, UTF-8 value, as parseHeaderBlock gives it to the SMTP front's predicates. */
export function unfoldValue(raw: string): string {
  let out = '';
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i] as string;
    if (c === '\r') continue;
    if (c === '\n') continue; // folding: the whitespace after it stays
    out += c;
  }
  return Buffer.from(out.trim(), 'latin1').toString('utf8');
}

/** Our header value on the wire: folded with "\n" + WSP (libmilter's convention), leading space per options, as a byte string. */
export function wireValue(name: string, value: string, opts: EomOptions): string {
  const folded = foldHeader(name, value);
  const v = headerText(folded.slice(name.length + 1, folded.length - 2).replace(/\r\n/g, '\n'));
  return opts.leadingSpace ? v : v.replace(/^ /, '');
}

export function editPackets(edits: FinalEdits, headers: readonly SeenHeader[], opts: EomOptions): Buffer[] {
  const out: Buffer[] = [];
  // Occurrence index per name (from 1, case-insensitive): CHGHEADER addresses "the nth Subject".
  const seen = new Map<string, number>();
  const indexed = headers.map((h) => {
    const key = h.name.toLowerCase();
    const n = (seen.get(key) ?? 0) + 1;
    seen.set(key, n);
    return { ...h, index: n, plain: unfoldValue(h.value) };
  });
  const removed = indexed.filter((h) => h.name !== '' && edits.removeHeaders.some((r) => r(h.name, h.plain)));
  // Highest index first per name, so a deletion never shifts the index of the next one.
  removed.sort((a, b) => (a.name.toLowerCase() === b.name.toLowerCase() ? b.index - a.index : 0));
  for (const h of removed) out.push(encode.chgHeader(h.index, h.name, ''));
  const tag = edits.tagSubject;
  if (tag !== undefined) {
    const subj = indexed.find((h) => h.name.toLowerCase() === 'subject' && !removed.includes(h));
    if (subj && !subj.plain.startsWith(tag)) {
      const lead = subj.value.startsWith(' ') ? '' : ' ';
      const t = headerText(tag);
      const v = opts.leadingSpace ? ` ${t}${lead}${subj.value}` : `${t} ${subj.value}`;
      out.push(encode.chgHeader(subj.index, subj.name, v));
    }
  }
  // Inserted at index 0 in reverse, so they end up on top in their given order (our
  // Authentication-Results above anything the sender wrote: RFC 8601 5).
  const top = [...edits.addHeaders, ...edits.appendHeaders];
  for (let i = top.length - 1; i >= 0; i--) {
    const h = top[i] as { name: string; value: string };
    out.push(encode.insHeader(0, headerText(h.name), wireValue(h.name, h.value, opts)));
  }
  for (const [from, to] of edits.rcptRewrites) {
    if (from === to) continue;
    out.push(encode.delRcpt(from), encode.addRcpt(to));
  }
  if (edits.senderRewrite !== undefined) out.push(encode.chgFrom(edits.senderRewrite));
  return out;
}
